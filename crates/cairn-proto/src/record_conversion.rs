//! The one place where records cross between `cairn_types` and the proto messages, for
//! the server and the client alike: `From` both ways for `Record` and `StoredRecord` (an
//! event's fields: `event_conversion.rs`).

use bytes::Bytes;
use cairn_types::{EventFields, Record, StoredRecord};

use crate::v1 as pb;

impl From<Record> for pb::Record {
    fn from(record: Record) -> pb::Record {
        pb::Record { key: record.key, headers: headers_to_proto(record.headers), value: record.value }
    }
}

impl From<pb::Record> for Record {
    fn from(record: pb::Record) -> Record {
        Record { key: record.key, headers: headers_from_proto(record.headers), value: record.value }
    }
}

impl From<StoredRecord> for pb::StoredRecord {
    fn from(record: StoredRecord) -> pb::StoredRecord {
        pb::StoredRecord {
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            key: record.key,
            headers: headers_to_proto(record.headers),
            value: record.value,
            event: record.event.map(pb::EventFields::from),
        }
    }
}

impl From<pb::StoredRecord> for StoredRecord {
    fn from(record: pb::StoredRecord) -> StoredRecord {
        StoredRecord {
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            key: record.key,
            headers: headers_from_proto(record.headers),
            value: record.value,
            event: record.event.map(EventFields::from),
        }
    }
}

pub fn stored_records_to_proto(records: Vec<StoredRecord>) -> Vec<pb::StoredRecord> {
    records.into_iter().map(pb::StoredRecord::from).collect()
}

pub fn stored_records_from_proto(records: Vec<pb::StoredRecord>) -> Vec<StoredRecord> {
    records.into_iter().map(StoredRecord::from).collect()
}

fn headers_to_proto(headers: Vec<(String, Bytes)>) -> Vec<pb::Header> {
    headers.into_iter().map(|(name, value)| pb::Header { name, value }).collect()
}

fn headers_from_proto(headers: Vec<pb::Header>) -> Vec<(String, Bytes)> {
    headers.into_iter().map(|header| (header.name, header.value)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_fields_survive_conversion() {
        let record = Record {
            key: Some(Bytes::from_static(b"k")),
            headers: vec![("h".to_string(), Bytes::from_static(b"v"))],
            value: Bytes::from_static(b"value"),
        };
        let proto_record = pb::Record::from(record.clone());
        assert_eq!(Record::from(proto_record.clone()), record);
        let stored = StoredRecord::from(pb::StoredRecord {
            offset: 7,
            timestamp_ms: 9,
            key: proto_record.key,
            headers: proto_record.headers,
            value: proto_record.value,
            event: None,
        });
        assert_eq!(stored.offset, 7);
        assert_eq!(stored.timestamp_ms, 9);
        assert_eq!(stored.key, record.key);
        assert_eq!(stored.headers, record.headers);
        assert_eq!(stored.value, record.value);
        assert_eq!(StoredRecord::from(pb::StoredRecord::from(stored.clone())), stored);
    }
}
