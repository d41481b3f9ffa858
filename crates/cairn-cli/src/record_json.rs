use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use cairn_types::{PartitionId, StoredRecord};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// A consumed record as one JSON object, keys in this order:
/// `partition, offset, timestamp, key, headers, value`. Key and value are UTF-8 text;
/// when not valid UTF-8 they become `key_b64` / `value_b64` (standard base64). An absent
/// key is `null`. Headers map name to text, or to `{"b64": "..."}` when not UTF-8.
pub struct RecordJson<'a> {
    pub partition: PartitionId,
    pub record: &'a StoredRecord,
}

impl RecordJson<'_> {
    pub fn to_line(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }
}

impl Serialize for RecordJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let record = self.record;
        let mut map = serializer.serialize_map(Some(6))?;
        map.serialize_entry("partition", &self.partition)?;
        map.serialize_entry("offset", &record.offset)?;
        map.serialize_entry("timestamp", &record.timestamp_ms)?;
        match &record.key {
            None => map.serialize_entry("key", &None::<&str>)?,
            Some(key) => match std::str::from_utf8(key) {
                Ok(text) => map.serialize_entry("key", text)?,
                Err(_) => map.serialize_entry("key_b64", &BASE64.encode(key))?,
            },
        }
        map.serialize_entry("headers", &HeadersJson(&record.headers))?;
        match std::str::from_utf8(&record.value) {
            Ok(text) => map.serialize_entry("value", text)?,
            Err(_) => map.serialize_entry("value_b64", &BASE64.encode(&record.value))?,
        }
        map.end()
    }
}

struct HeadersJson<'a>(&'a [(String, Bytes)]);

impl Serialize for HeadersJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            match std::str::from_utf8(value) {
                Ok(text) => map.serialize_entry(name, text)?,
                Err(_) => map.serialize_entry(name, &Base64Json(value))?,
            }
        }
        map.end()
    }
}

/// `{"b64": "..."}`.
struct Base64Json<'a>(&'a [u8]);

impl Serialize for Base64Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("b64", &BASE64.encode(self.0))?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn record(key: Option<&'static [u8]>, headers: &[(&str, &'static [u8])], value: &'static [u8]) -> StoredRecord {
        StoredRecord {
            offset: 41,
            timestamp_ms: 1_700_000_000_123,
            key: key.map(Bytes::from_static),
            headers: headers.iter().map(|(name, value)| (name.to_string(), Bytes::from_static(value))).collect(),
            value: Bytes::from_static(value),
            event: None,
        }
    }

    fn render(partition: PartitionId, record: &StoredRecord) -> String {
        RecordJson { partition, record }.to_line().expect("serializes")
    }

    #[test]
    fn utf8_record_renders_as_text_in_key_order() {
        let line = render(3, &record(Some(b"user-1"), &[("trace", b"abc")], b"hello \"world\""));
        assert_eq!(
            line,
            r#"{"partition":3,"offset":41,"timestamp":1700000000123,"key":"user-1","headers":{"trace":"abc"},"value":"hello \"world\""}"#
        );
    }

    #[test]
    fn absent_key_is_null_and_no_headers_is_empty_object() {
        let value: Value = serde_json::from_str(&render(0, &record(None, &[], b""))).expect("json");
        assert_eq!(
            value,
            json!({"partition": 0, "offset": 41, "timestamp": 1_700_000_000_123u64, "key": null, "headers": {}, "value": ""})
        );
    }

    #[test]
    fn non_utf8_bytes_fall_back_to_base64() {
        let bytes: &'static [u8] = &[0xff, 0x00, 0xfe];
        let value: Value =
            serde_json::from_str(&render(1, &record(Some(bytes), &[("bin", bytes), ("txt", b"ok")], bytes)))
                .expect("json");
        let object = value.as_object().expect("object");
        assert!(!object.contains_key("key"));
        assert!(!object.contains_key("value"));
        assert_eq!(object["key_b64"], json!("/wD+"));
        assert_eq!(object["value_b64"], json!("/wD+"));
        assert_eq!(object["headers"], json!({"bin": {"b64": "/wD+"}, "txt": "ok"}));
        assert_eq!(BASE64.decode("/wD+").expect("b64"), bytes);
    }
}
