//! The one place where records cross between `cairn_types` and the proto messages.

use cairn_types::{Record, StoredRecord};

use crate::proto;

pub(crate) fn record_to_proto(record: Record) -> proto::Record {
    proto::Record { key: record.key, headers: headers_to_proto(record.headers), value: record.value }
}

pub(crate) fn stored_record_from_proto(record: proto::StoredRecord) -> StoredRecord {
    StoredRecord {
        offset: record.offset,
        timestamp_ms: record.timestamp_ms,
        key: record.key,
        headers: headers_from_proto(record.headers),
        value: record.value,
    }
}

pub(crate) fn stored_records_from_proto(records: Vec<proto::StoredRecord>) -> Vec<StoredRecord> {
    records.into_iter().map(stored_record_from_proto).collect()
}

fn headers_to_proto(headers: Vec<(String, bytes::Bytes)>) -> Vec<proto::Header> {
    headers.into_iter().map(|(name, value)| proto::Header { name, value }).collect()
}

fn headers_from_proto(headers: Vec<proto::Header>) -> Vec<(String, bytes::Bytes)> {
    headers.into_iter().map(|header| (header.name, header.value)).collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn record_fields_survive_conversion() {
        let record = Record {
            key: Some(Bytes::from_static(b"k")),
            headers: vec![("h".to_string(), Bytes::from_static(b"v"))],
            value: Bytes::from_static(b"value"),
        };
        let proto_record = record_to_proto(record.clone());
        let stored = stored_record_from_proto(proto::StoredRecord {
            offset: 7,
            timestamp_ms: 9,
            key: proto_record.key,
            headers: proto_record.headers,
            value: proto_record.value,
        });
        assert_eq!(stored.offset, 7);
        assert_eq!(stored.timestamp_ms, 9);
        assert_eq!(stored.key, record.key);
        assert_eq!(stored.headers, record.headers);
        assert_eq!(stored.value, record.value);
    }
}
