//! Key layouts. Big-endian integers so that RocksDB's byte order is numeric order.

use cairn_types::{GroupId, Offset};

pub const CF_RAFT_LOG: &str = "raft_log";
pub const CF_RAFT_META: &str = "raft_meta";
pub const CF_RECORDS: &str = "records";
pub const CF_INDEX: &str = "index";
pub const CF_SM_META: &str = "sm_meta";
pub const COLUMN_FAMILIES: [&str; 5] = [CF_RAFT_LOG, CF_RAFT_META, CF_RECORDS, CF_INDEX, CF_SM_META];

pub const INDEX_TIMESTAMP: u8 = b't';
pub const INDEX_KEY: u8 = b'k';
/// A stream's events by revision: `group 'r' len:u32 stream revision:u64` -> offset.
pub const INDEX_STREAM: u8 = b'r';
/// Events by id: `group 'e' event_id:[u8; 16]` -> offset.
pub const INDEX_EVENT_ID: u8 = b'e';
/// A stream's head (its next revision): `group 'h' stream` -> `StreamHead`.
pub const INDEX_STREAM_HEAD: u8 = b'h';
/// Events by tag: `group 'g' len:u32 tag offset:u64` -> nothing.
pub const INDEX_EVENT_TAG: u8 = b'g';
/// Events by type: `group 'y' len:u32 event_type offset:u64` -> nothing.
pub const INDEX_EVENT_TYPE: u8 = b'y';
/// Streams compaction looks at: `group 'c' len:u32 stream` -> nothing.
pub const INDEX_COMPACTION: u8 = b'c';
/// Heads of streams whose records a prefix deletion removed, as they were then:
/// `group 'x' len:u32 stream` -> `StreamHead`. Sent with snapshots.
pub const INDEX_RETIRED_HEAD: u8 = b'x';

pub fn group_u64(group: GroupId, value: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&group.to_be_bytes());
    key[8..].copy_from_slice(&value.to_be_bytes());
    key
}

pub fn group_tag(group: GroupId, tag: u8) -> [u8; 9] {
    let mut key = [0; 9];
    key[..8].copy_from_slice(&group.to_be_bytes());
    key[8] = tag;
    key
}

/// A keyed entry of a group's state-machine metadata: `tag` names the table, `id` the entry.
pub fn group_tag_u64(group: GroupId, tag: u8, id: u64) -> [u8; 17] {
    let mut key = [0; 17];
    key[..9].copy_from_slice(&group_tag(group, tag));
    key[9..].copy_from_slice(&id.to_be_bytes());
    key
}

/// The smallest key of `group` and the smallest key of the next group.
pub fn group_bounds(group: GroupId) -> ([u8; 8], [u8; 8]) {
    (group.to_be_bytes(), (group + 1).to_be_bytes())
}

pub fn timestamp_index(group: GroupId, timestamp_ms: u64, base_offset: Offset) -> [u8; 25] {
    let mut key = [0; 25];
    key[..8].copy_from_slice(&group.to_be_bytes());
    key[8] = INDEX_TIMESTAMP;
    key[9..17].copy_from_slice(&timestamp_ms.to_be_bytes());
    key[17..].copy_from_slice(&base_offset.to_be_bytes());
    key
}

pub fn key_index_prefix(group: GroupId, record_key: &[u8]) -> Vec<u8> {
    named(group, INDEX_KEY, record_key, 8)
}

pub fn key_index(group: GroupId, record_key: &[u8], offset: Offset) -> Vec<u8> {
    let mut key = key_index_prefix(group, record_key);
    key.extend_from_slice(&offset.to_be_bytes());
    key
}

/// The trailing big-endian u64 of a key, if it has one.
pub fn trailing_u64(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// The byte string just past every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

/// `group tag len:u32 name`, with room for `extra` more bytes.
fn named(group: GroupId, tag: u8, name: &[u8], extra: usize) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + 1 + 4 + name.len() + extra);
    key.extend_from_slice(&group.to_be_bytes());
    key.push(tag);
    key.extend_from_slice(&(name.len() as u32).to_be_bytes());
    key.extend_from_slice(name);
    key
}

pub fn stream_index_prefix(group: GroupId, stream: &[u8]) -> Vec<u8> {
    named(group, INDEX_STREAM, stream, 8)
}

pub fn stream_index(group: GroupId, stream: &[u8], revision: u64) -> Vec<u8> {
    let mut key = stream_index_prefix(group, stream);
    key.extend_from_slice(&revision.to_be_bytes());
    key
}

pub fn compaction_mark(group: GroupId, stream: &[u8]) -> Vec<u8> {
    named(group, INDEX_COMPACTION, stream, 0)
}

pub fn retired_head(group: GroupId, stream: &[u8]) -> Vec<u8> {
    named(group, INDEX_RETIRED_HEAD, stream, 0)
}

/// The stream a key of the form `group tag len:u32 stream` names (a compaction mark, a
/// retired head); `None` if the key is not of that form.
pub fn named_stream(key: &[u8]) -> Option<&[u8]> {
    let len: [u8; 4] = key.get(9..13)?.try_into().ok()?;
    let stream = key.get(13..)?;
    (stream.len() == u32::from_be_bytes(len) as usize).then_some(stream)
}

pub fn stream_head(group: GroupId, stream: &[u8]) -> Vec<u8> {
    named(group, INDEX_STREAM_HEAD, stream, 0)
}

pub fn event_id_index(group: GroupId, event_id: &[u8; 16]) -> [u8; 25] {
    let mut key = [0; 25];
    key[..8].copy_from_slice(&group.to_be_bytes());
    key[8] = INDEX_EVENT_ID;
    key[9..].copy_from_slice(event_id);
    key
}

/// The entries of the tag or type index (`INDEX_EVENT_TAG`, `INDEX_EVENT_TYPE`) of `term`.
pub fn event_term_prefix(group: GroupId, index: u8, term: &[u8]) -> Vec<u8> {
    named(group, index, term, 8)
}

pub fn event_term(group: GroupId, index: u8, term: &[u8], offset: Offset) -> Vec<u8> {
    let mut key = event_term_prefix(group, index, term);
    key.extend_from_slice(&offset.to_be_bytes());
    key
}
