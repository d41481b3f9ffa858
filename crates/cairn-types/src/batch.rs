//! The on-disk format of a record batch. Version 2 is written; version 1 is still read.
//! All integers little-endian.
//!
//! ```text
//! batch     := version:u8 crc32c:u32 body            (crc covers all of body)
//! body      := base_offset:u64 record_count:u32 first_timestamp_ms:u64 last_timestamp_ms:u64 record*
//! record v2 := timestamp_ms:u64 attributes:u8 key_len_plus_one:u32 key header_count:u32 header*
//!              value_len:u32 value event?               (event present iff attributes bit 0)
//!            | 0:u64 attributes:u8                      (attributes == 2: removed, see below)
//! record v1 := timestamp_ms:u64 key_len_plus_one:u32 key header_count:u32 header* value_len:u32 value
//! header    := name_len:u32 name(utf-8) value_len:u32 value
//! event     := event_id:[u8; 16] stream_revision:u64 type_len:u32 type(utf-8)
//!              content_type_len:u32 content_type(utf-8) metadata_len:u32 metadata
//!              tag_count:u32 (tag_len:u32 tag(utf-8))*
//! ```
//! `key_len_plus_one == 0` means "no key". Offsets are implicit: `base_offset + index`.
//! A **removed** record (attribute bit 1, alone) is a slot that compaction emptied (see
//! `remove_records`): it keeps its offset, so no other record moves, and holds nothing
//! else; decoding skips it. `record_count` counts slots, removed ones too. Attribute bits
//! above bit 1 are reserved: a batch that sets one is refused, so a later format can give
//! them a meaning. Decoding never panics: every length is checked against the buffer.

use bytes::Bytes;

use crate::{EventFields, Offset, Record, StoredRecord};

/// The version `encode_batch` writes.
pub const BATCH_FORMAT_VERSION: u8 = 2;
/// The first version: records without attributes or event fields.
const BATCH_FORMAT_V1: u8 = 1;
const PREFIX_LEN: usize = 1 + 4;
const BODY_HEADER_LEN: usize = 8 + 4 + 8 + 8;
/// Bytes of a batch before its first record.
pub const BATCH_HEADER_LEN: usize = PREFIX_LEN + BODY_HEADER_LEN;
/// Attribute bit: the record carries event fields.
const ATTRIBUTE_EVENT: u8 = 1;
/// Attribute bit: the record was removed; nothing follows the attributes.
const ATTRIBUTE_REMOVED: u8 = 2;
/// Bytes a removed record keeps: its (zeroed) timestamp and its attributes.
pub const REMOVED_RECORD_LEN: usize = 8 + 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("unknown batch format version {0}")]
    UnknownVersion(u8),
    #[error("batch checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch { stored: u32, computed: u32 },
    #[error("batch truncated: needed {needed} bytes at position {position}, {available} available")]
    Truncated { position: usize, needed: usize, available: usize },
    #[error("a header name, event type, content type or tag is not valid UTF-8")]
    NotUtf8,
    #[error("batch declares {declared} records but holds {found}")]
    CountMismatch { declared: u32, found: u32 },
    #[error("record attributes {0:#04x} set a reserved bit, or mark a removed record with others")]
    ReservedAttributes(u8),
}

/// The fixed fields of a stored batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: Offset,
    pub record_count: u32,
    pub first_timestamp_ms: u64,
    pub last_timestamp_ms: u64,
}

impl BatchHeader {
    /// One past the last offset in the batch.
    pub fn next_offset(&self) -> Offset {
        self.base_offset + u64::from(self.record_count)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    pub header: BatchHeader,
    pub records: Vec<StoredRecord>,
}

/// Encodes `records`, stamped with `timestamps_ms` (one per record), as one batch.
/// `events` is empty (plain records) or holds one record's event fields per record.
pub fn encode_batch(base_offset: Offset, records: &[Record], events: &[EventFields], timestamps_ms: &[u64]) -> Vec<u8> {
    assert_eq!(records.len(), timestamps_ms.len(), "one timestamp per record");
    assert!(events.is_empty() || events.len() == records.len(), "no event fields, or one per record");
    let body_len: usize = BODY_HEADER_LEN
        + records.iter().map(Record::encoded_len).sum::<usize>()
        + events.iter().map(EventFields::encoded_len).sum::<usize>();
    let mut buf = Vec::with_capacity(PREFIX_LEN + body_len);
    buf.push(BATCH_FORMAT_VERSION);
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&base_offset.to_le_bytes());
    buf.extend_from_slice(&(records.len() as u32).to_le_bytes());
    buf.extend_from_slice(&timestamps_ms.first().copied().unwrap_or(0).to_le_bytes());
    buf.extend_from_slice(&timestamps_ms.last().copied().unwrap_or(0).to_le_bytes());
    for (i, (record, timestamp_ms)) in records.iter().zip(timestamps_ms).enumerate() {
        put_record(&mut buf, *timestamp_ms, &record.key, &record.headers, &record.value, events.get(i));
    }
    debug_assert_eq!(buf.len(), PREFIX_LEN + body_len);
    seal(buf)
}

/// Re-encodes `batch` with the records whose offsets `remove` names emptied: each keeps
/// its slot as a removed record (`REMOVED_RECORD_LEN` bytes), so every other record keeps
/// its offset and the header stays as it was. Records already removed stay removed.
/// Written in the current version, whatever version `batch` was read from.
pub fn remove_records(batch: &DecodedBatch, remove: impl Fn(Offset) -> bool) -> Vec<u8> {
    let header = &batch.header;
    let mut buf = Vec::with_capacity(BATCH_HEADER_LEN + batch.records.len() * 64);
    buf.push(BATCH_FORMAT_VERSION);
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&header.base_offset.to_le_bytes());
    buf.extend_from_slice(&header.record_count.to_le_bytes());
    buf.extend_from_slice(&header.first_timestamp_ms.to_le_bytes());
    buf.extend_from_slice(&header.last_timestamp_ms.to_le_bytes());
    let mut kept = batch.records.iter().filter(|record| !remove(record.offset)).peekable();
    for offset in header.base_offset..header.next_offset() {
        match kept.next_if(|record| record.offset == offset) {
            Some(record) => put_record(
                &mut buf,
                record.timestamp_ms,
                &record.key,
                &record.headers,
                &record.value,
                record.event.as_ref(),
            ),
            None => {
                buf.extend_from_slice(&0u64.to_le_bytes());
                buf.push(ATTRIBUTE_REMOVED);
            }
        }
    }
    seal(buf)
}

/// Writes the checksum of the body into the prefix.
fn seal(mut buf: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&buf[PREFIX_LEN..]);
    buf[1..5].copy_from_slice(&crc.to_le_bytes());
    buf
}

fn put_record(
    buf: &mut Vec<u8>,
    timestamp_ms: u64,
    key: &Option<Bytes>,
    headers: &[(String, Bytes)],
    value: &[u8],
    event: Option<&EventFields>,
) {
    buf.extend_from_slice(&timestamp_ms.to_le_bytes());
    buf.push(if event.is_some() { ATTRIBUTE_EVENT } else { 0 });
    match key {
        None => buf.extend_from_slice(&0u32.to_le_bytes()),
        Some(key) => {
            buf.extend_from_slice(&(key.len() as u32 + 1).to_le_bytes());
            buf.extend_from_slice(key);
        }
    }
    buf.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (name, value) in headers {
        put_bytes(buf, name.as_bytes());
        put_bytes(buf, value);
    }
    put_bytes(buf, value);
    if let Some(event) = event {
        buf.extend_from_slice(&event.event_id);
        buf.extend_from_slice(&event.stream_revision.to_le_bytes());
        put_bytes(buf, event.event_type.as_bytes());
        put_bytes(buf, event.content_type.as_bytes());
        put_bytes(buf, &event.metadata);
        buf.extend_from_slice(&(event.tags.len() as u32).to_le_bytes());
        for tag in &event.tags {
            put_bytes(buf, tag.as_bytes());
        }
    }
}

/// A length (u32) and the bytes.
fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

/// Checks version and checksum, and returns the fixed fields without decoding records.
pub fn decode_header(buf: &[u8]) -> Result<BatchHeader, CodecError> {
    decode_prefix(buf).map(|(_, header)| header)
}

/// The format version and the fixed fields, after checking the checksum.
fn decode_prefix(buf: &[u8]) -> Result<(u8, BatchHeader), CodecError> {
    let mut reader = Reader { buf, position: 0 };
    let version = reader.u8()?;
    if version != BATCH_FORMAT_VERSION && version != BATCH_FORMAT_V1 {
        return Err(CodecError::UnknownVersion(version));
    }
    let stored = reader.u32()?;
    let computed = crc32c::crc32c(&buf[PREFIX_LEN..]);
    if stored != computed {
        return Err(CodecError::ChecksumMismatch { stored, computed });
    }
    let header = BatchHeader {
        base_offset: reader.u64()?,
        record_count: reader.u32()?,
        first_timestamp_ms: reader.u64()?,
        last_timestamp_ms: reader.u64()?,
    };
    Ok((version, header))
}

/// Verifies and decodes a whole batch. Record fields share `buf`'s memory.
pub fn decode_batch(buf: &Bytes) -> Result<DecodedBatch, CodecError> {
    let (version, header) = decode_prefix(buf)?;
    let mut reader = Reader { buf, position: BATCH_HEADER_LEN };
    let mut records = Vec::with_capacity(header.record_count.min(1 << 16) as usize);
    // Slots read so far, removed records too: the next record's offset is `base + slots`.
    let mut slots = 0u64;
    while reader.position < buf.len() {
        let timestamp_ms = reader.u64()?;
        let attributes = if version == BATCH_FORMAT_V1 { 0 } else { reader.u8()? };
        let offset = header.base_offset + slots;
        slots += 1;
        if attributes == ATTRIBUTE_REMOVED {
            continue;
        }
        if attributes & !ATTRIBUTE_EVENT != 0 {
            return Err(CodecError::ReservedAttributes(attributes));
        }
        let key = match reader.u32()? {
            0 => None,
            len_plus_one => Some(reader.bytes(buf, len_plus_one as usize - 1)?),
        };
        let header_count = reader.u32()?;
        let mut headers = Vec::with_capacity(header_count.min(64) as usize);
        for _ in 0..header_count {
            let name = reader.string()?;
            headers.push((name, reader.sized_bytes(buf)?));
        }
        let value = reader.sized_bytes(buf)?;
        let event = if attributes & ATTRIBUTE_EVENT != 0 { Some(reader.event(buf)?) } else { None };
        records.push(StoredRecord { offset, timestamp_ms, key, headers, value, event });
    }
    if slots != u64::from(header.record_count) {
        return Err(CodecError::CountMismatch { declared: header.record_count, found: slots as u32 });
    }
    Ok(DecodedBatch { header, records })
}

struct Reader<'a> {
    buf: &'a [u8],
    position: usize,
}

impl Reader<'_> {
    fn take(&mut self, needed: usize) -> Result<&[u8], CodecError> {
        let available = self.buf.len().saturating_sub(self.position);
        if needed > available {
            return Err(CodecError::Truncated { position: self.position, needed, available });
        }
        let slice = &self.buf[self.position..self.position + needed];
        self.position += needed;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        let mut raw = [0; 4];
        raw.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(raw))
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        let mut raw = [0; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(raw))
    }

    fn bytes(&mut self, whole: &Bytes, len: usize) -> Result<Bytes, CodecError> {
        let start = self.position;
        self.take(len)?;
        Ok(whole.slice(start..start + len))
    }

    /// A u32 length, then that many bytes.
    fn sized_bytes(&mut self, whole: &Bytes) -> Result<Bytes, CodecError> {
        let len = self.u32()? as usize;
        self.bytes(whole, len)
    }

    /// A u32 length, then that many bytes of UTF-8.
    fn string(&mut self) -> Result<String, CodecError> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| CodecError::NotUtf8)
    }

    fn event(&mut self, whole: &Bytes) -> Result<EventFields, CodecError> {
        let mut event_id = [0; 16];
        event_id.copy_from_slice(self.take(16)?);
        let stream_revision = self.u64()?;
        let event_type = self.string()?;
        let content_type = self.string()?;
        let metadata = self.sized_bytes(whole)?;
        let tag_count = self.u32()?;
        let mut tags = Vec::with_capacity(tag_count.min(64) as usize);
        for _ in 0..tag_count {
            tags.push(self.string()?);
        }
        Ok(EventFields { event_id, stream_revision, event_type, content_type, metadata, tags })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn record_strategy() -> impl Strategy<Value = Record> {
        (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32)),
            proptest::collection::vec(("[a-z]{0,8}", proptest::collection::vec(any::<u8>(), 0..16)), 0..4),
            proptest::collection::vec(any::<u8>(), 0..256),
        )
            .prop_map(|(key, headers, value)| Record {
                key: key.map(Bytes::from),
                headers: headers.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect(),
                value: Bytes::from(value),
            })
    }

    fn event_strategy() -> impl Strategy<Value = EventFields> {
        (
            any::<[u8; 16]>(),
            any::<u64>(),
            "[A-Za-z.]{0,12}",
            "[a-z/]{0,16}",
            proptest::collection::vec(any::<u8>(), 0..32),
            proptest::collection::vec("[a-z]{1,6}=[a-z0-9]{0,6}", 0..4),
        )
            .prop_map(|(event_id, stream_revision, event_type, content_type, metadata, tags)| EventFields {
                event_id,
                stream_revision,
                event_type,
                content_type,
                metadata: Bytes::from(metadata),
                tags,
            })
    }

    /// Records, and either no event fields or one per record.
    fn batch_strategy(records: std::ops::Range<usize>) -> impl Strategy<Value = (Vec<Record>, Vec<EventFields>)> {
        proptest::collection::vec((record_strategy(), event_strategy()), records).prop_flat_map(|pairs| {
            let (records, events): (Vec<Record>, Vec<EventFields>) = pairs.into_iter().unzip();
            (Just(records), prop_oneof![Just(Vec::new()), Just(events)])
        })
    }

    /// The version 1 encoding, as the first release wrote it: for checking that it is read.
    fn encode_v1(base_offset: Offset, records: &[Record], timestamps_ms: &[u64]) -> Vec<u8> {
        let mut buf = vec![BATCH_FORMAT_V1, 0, 0, 0, 0];
        buf.extend_from_slice(&base_offset.to_le_bytes());
        buf.extend_from_slice(&(records.len() as u32).to_le_bytes());
        buf.extend_from_slice(&timestamps_ms.first().copied().unwrap_or(0).to_le_bytes());
        buf.extend_from_slice(&timestamps_ms.last().copied().unwrap_or(0).to_le_bytes());
        for (record, timestamp_ms) in records.iter().zip(timestamps_ms) {
            buf.extend_from_slice(&timestamp_ms.to_le_bytes());
            match &record.key {
                None => buf.extend_from_slice(&0u32.to_le_bytes()),
                Some(key) => {
                    buf.extend_from_slice(&(key.len() as u32 + 1).to_le_bytes());
                    buf.extend_from_slice(key);
                }
            }
            buf.extend_from_slice(&(record.headers.len() as u32).to_le_bytes());
            for (name, value) in &record.headers {
                put_bytes(&mut buf, name.as_bytes());
                put_bytes(&mut buf, value);
            }
            put_bytes(&mut buf, &record.value);
        }
        let crc = crc32c::crc32c(&buf[PREFIX_LEN..]);
        buf[1..5].copy_from_slice(&crc.to_le_bytes());
        buf
    }

    proptest! {
        #[test]
        fn roundtrip(base in 0u64..u64::MAX / 2, (records, events) in batch_strategy(0..20), ts0 in 0u64..1 << 50) {
            let timestamps: Vec<u64> = (0..records.len() as u64).map(|i| ts0 + i).collect();
            let encoded = Bytes::from(encode_batch(base, &records, &events, &timestamps));
            let decoded = decode_batch(&encoded).expect("decodes");
            prop_assert_eq!(decoded.header.base_offset, base);
            prop_assert_eq!(decoded.header.record_count as usize, records.len());
            prop_assert_eq!(decoded.records.len(), records.len());
            for (i, (stored, original)) in decoded.records.iter().zip(&records).enumerate() {
                prop_assert_eq!(stored.offset, base + i as u64);
                prop_assert_eq!(stored.timestamp_ms, timestamps[i]);
                prop_assert_eq!(&stored.key, &original.key);
                prop_assert_eq!(&stored.headers, &original.headers);
                prop_assert_eq!(&stored.value, &original.value);
                prop_assert_eq!(stored.event.as_ref(), events.get(i));
            }
        }

        /// Batches written by version 1 decode to the same records, without event fields.
        #[test]
        fn version_1_is_read(base in 0u64..u64::MAX / 2, records in proptest::collection::vec(record_strategy(), 0..10)) {
            let timestamps: Vec<u64> = (0..records.len() as u64).map(|i| 100 + i).collect();
            let v1 = decode_batch(&Bytes::from(encode_v1(base, &records, &timestamps))).expect("v1 decodes");
            let v2 = decode_batch(&Bytes::from(encode_batch(base, &records, &[], &timestamps))).expect("v2 decodes");
            prop_assert_eq!(v1, v2);
        }

        /// Any single flipped bit is caught: by the checksum, or the version byte.
        #[test]
        fn bit_flip_detected((records, events) in batch_strategy(1..5), bit in any::<proptest::sample::Index>()) {
            let timestamps = vec![7; records.len()];
            let mut encoded = encode_batch(3, &records, &events, &timestamps);
            let bit = bit.index(encoded.len() * 8);
            encoded[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_batch(&Bytes::from(encoded)).is_err());
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn garbage_never_panics(garbage in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_batch(&Bytes::from(garbage));
        }

        /// Bodies behind a valid version byte and checksum reach the record parser: it never
        /// panics, and accepts a body only as the exact encoding of the records it returns.
        /// The body is either random bytes or a real batch's body with bytes overwritten (so
        /// lengths and counts are near-valid); the checksum is computed over it either way.
        #[test]
        fn checksummed_garbage_never_panics_the_record_parser(
            (records, events) in batch_strategy(0..5),
            random_body in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..6),
        ) {
            let timestamps: Vec<u64> = (0..records.len() as u64).collect();
            let mut encoded = encode_batch(9, &records, &events, &timestamps);
            if let Some(body) = random_body {
                encoded.truncate(PREFIX_LEN);
                encoded.extend_from_slice(&body);
            }
            // Overwrite bytes after the batch header (lengths, counts, record bytes); a
            // record count in the header is fair game too.
            for (position, byte) in edits {
                if encoded.len() > PREFIX_LEN + 8 {
                    let position = PREFIX_LEN + 8 + position.index(encoded.len() - PREFIX_LEN - 8);
                    encoded[position] = byte;
                }
            }
            let crc = crc32c::crc32c(&encoded[PREFIX_LEN..]);
            encoded[1..5].copy_from_slice(&crc.to_le_bytes());
            let encoded = Bytes::from(encoded);
            match decode_batch(&encoded) {
                Ok(decoded) => {
                    prop_assert_eq!(decoded.records.len(), decoded.header.record_count as usize);
                    let again: Vec<Record> = decoded
                        .records
                        .iter()
                        .map(|r| Record { key: r.key.clone(), headers: r.headers.clone(), value: r.value.clone() })
                        .collect();
                    let stamps: Vec<u64> = decoded.records.iter().map(|r| r.timestamp_ms).collect();
                    let again_events: Vec<EventFields> = decoded.records.iter().filter_map(|r| r.event.clone()).collect();
                    // A mix of events and plain records has no single encoding call.
                    prop_assume!(again_events.is_empty() || again_events.len() == again.len());
                    let reencoded = encode_batch(decoded.header.base_offset, &again, &again_events, &stamps);
                    prop_assert_eq!(&reencoded[BATCH_HEADER_LEN..], &encoded[BATCH_HEADER_LEN..]);
                    for (i, record) in decoded.records.iter().enumerate() {
                        prop_assert_eq!(record.offset, decoded.header.base_offset + i as u64);
                    }
                }
                // The prefix is valid by construction: only the body may be refused.
                Err(err @ (CodecError::UnknownVersion(_) | CodecError::ChecksumMismatch { .. })) => {
                    prop_assert!(false, "the prefix was refused: {}", err);
                }
                Err(_) => {}
            }
        }

        /// A truncated batch is an error, never a shorter batch.
        #[test]
        fn truncation_detected((records, events) in batch_strategy(1..5), cut in any::<proptest::sample::Index>()) {
            let encoded = encode_batch(0, &records, &events, &vec![1; records.len()]);
            let cut = cut.index(encoded.len());
            prop_assert!(decode_batch(&Bytes::copy_from_slice(&encoded[..cut])).is_err());
        }
    }

    #[test]
    fn encoded_len_matches_encoding() {
        let record = Record {
            key: Some(Bytes::from_static(b"k")),
            headers: vec![("h".into(), Bytes::from_static(b"vv"))],
            value: Bytes::from_static(b"value"),
        };
        let encoded = encode_batch(0, std::slice::from_ref(&record), &[], &[1]);
        assert_eq!(encoded.len(), BATCH_HEADER_LEN + record.encoded_len());
        let event = EventFields {
            event_id: [7; 16],
            stream_revision: 3,
            event_type: "Deposited".into(),
            content_type: "application/json".into(),
            metadata: Bytes::from_static(b"{}"),
            tags: vec!["account=42".into()],
        };
        let encoded = encode_batch(0, std::slice::from_ref(&record), std::slice::from_ref(&event), &[1]);
        assert_eq!(encoded.len(), BATCH_HEADER_LEN + record.encoded_len() + event.encoded_len());
    }

    /// A reserved attribute bit is refused, not ignored: a later format may give it a meaning.
    #[test]
    fn reserved_attributes_are_refused() {
        let record = Record { key: None, headers: Vec::new(), value: Bytes::from_static(b"v") };
        let mut encoded = encode_batch(0, &[record], &[], &[1]);
        for attributes in [0b100, 0b11, 0x80] {
            encoded[BATCH_HEADER_LEN + 8] = attributes;
            let crc = crc32c::crc32c(&encoded[PREFIX_LEN..]);
            encoded[1..5].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(decode_batch(&Bytes::from(encoded.clone())), Err(CodecError::ReservedAttributes(attributes)));
        }
    }

    proptest! {
        /// Removing records keeps every other record as it was, at its offset, and the
        /// header; removing more later, or again, composes; a removed slot costs
        /// `REMOVED_RECORD_LEN` bytes.
        #[test]
        fn removed_records_keep_their_slots(
            base in 0u64..1 << 40,
            (records, events) in batch_strategy(1..12),
            first in proptest::collection::vec(any::<bool>(), 12),
            second in proptest::collection::vec(any::<bool>(), 12),
        ) {
            let timestamps: Vec<u64> = (0..records.len() as u64).map(|i| 1000 + i).collect();
            let original = decode_batch(&Bytes::from(encode_batch(base, &records, &events, &timestamps))).expect("decodes");
            let once = remove_records(&original, |offset| first[(offset - base) as usize]);
            let once = decode_batch(&Bytes::from(once)).expect("a compacted batch decodes");
            prop_assert_eq!(once.header, original.header);
            let expected: Vec<_> = original.records.iter().filter(|r| !first[(r.offset - base) as usize]).cloned().collect();
            prop_assert_eq!(&once.records, &expected);
            let both = |offset: Offset| first[(offset - base) as usize] || second[(offset - base) as usize];
            let twice = remove_records(&once, |offset| second[(offset - base) as usize]);
            let direct = remove_records(&original, both);
            prop_assert_eq!(&twice, &direct);
            let removed = (0..records.len()).filter(|i| both(base + *i as u64)).count();
            let kept_len: usize = (0..records.len())
                .filter(|i| !both(base + *i as u64))
                .map(|i| records[i].encoded_len() + events.get(i).map_or(0, EventFields::encoded_len))
                .sum();
            prop_assert_eq!(twice.len(), BATCH_HEADER_LEN + kept_len + removed * REMOVED_RECORD_LEN);
        }
    }
}
