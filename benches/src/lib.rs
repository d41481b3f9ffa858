//! Benchmarks for Cairn: criterion micro-benchmarks of the hot paths (`benches/`). The load
//! generator that drives a running cluster is `cairn-bench` (crates/cairn-bench).

use bytes::Bytes;
use cairn_types::Record;

/// `count` records of `value_bytes` each, with an 8-byte key.
pub fn records(count: usize, value_bytes: usize) -> Vec<Record> {
    (0..count)
        .map(|i| Record {
            key: Some(Bytes::from((i as u64).to_le_bytes().to_vec())),
            headers: vec![],
            value: Bytes::from(vec![b'x'; value_bytes]),
        })
        .collect()
}
