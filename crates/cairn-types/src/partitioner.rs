//! Which partition a record goes to when the producer names none.
//!
//! Keyed records: `(murmur2(hashed) & 0x7fff_ffff) % partition_count`, the same 32-bit
//! MurmurHash2 (seed `0x9747b28c`) Kafka's default partitioner uses, where `hashed` is the
//! key's hash tag when it has one, else the whole key. A hash tag, as in Redis Cluster, is
//! the text between the first `{` and the first `}` after it, when that is not empty: the
//! streams `{order-17}/payments` and `{order-17}/shipping` both hash `order-17`, so they
//! share a partition and one append can write both atomically. A key without a tag maps
//! to the same partition number in Cairn as in Kafka; a Kafka producer that partitions by
//! itself does not know tags, so it must name the partition of a tagged key. This mapping
//! is part of the API: it never changes for a given partition count.

use crate::PartitionId;

/// Kafka-compatible 32-bit MurmurHash2.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a keyed record.
pub fn partition_for_key(key: &[u8], partition_count: PartitionId) -> PartitionId {
    assert!(partition_count > 0, "a topic has at least one partition");
    ((murmur2(hashed_part(key)) as u32 & 0x7fff_ffff) % partition_count) as PartitionId
}

/// The part of `key` that decides its partition: its hash tag, or all of it.
pub fn hashed_part(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&byte| byte == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&byte| byte == b'}') {
        Some(len) if len > 0 => &key[open + 1..open + 1 + len],
        _ => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_pick_the_hashed_part() {
        assert_eq!(hashed_part(b"{order-17}/payments"), b"order-17");
        assert_eq!(hashed_part(b"shipping/{order-17}"), b"order-17");
        assert_eq!(hashed_part(b"{order-17}{x}"), b"order-17");
        assert_eq!(hashed_part(b"{}order-17"), b"{}order-17", "an empty tag hashes the whole key");
        assert_eq!(hashed_part(b"order{-17"), b"order{-17", "an open tag hashes the whole key");
        assert_eq!(hashed_part(b"account-42"), b"account-42");
        for count in [1, 3, 8, 64] {
            assert_eq!(
                partition_for_key(b"{order-17}/payments", count),
                partition_for_key(b"{order-17}/shipping", count)
            );
            assert_eq!(partition_for_key(b"{order-17}/payments", count), partition_for_key(b"order-17", count));
        }
    }

    #[test]
    fn spreads_keys() {
        let mut counts = [0u32; 8];
        for i in 0..8_000 {
            counts[partition_for_key(format!("key-{i}").as_bytes(), 8) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "uneven: {counts:?}");
    }

    #[test]
    fn every_tail_length_is_hashed() {
        // Keys that differ only in their last 1, 2 or 3 bytes must hash differently.
        for len in 1..8 {
            let a = vec![b'a'; len];
            let mut b = a.clone();
            *b.last_mut().expect("non-empty") = b'b';
            assert_ne!(murmur2(&a), murmur2(&b), "length {len}");
        }
    }
}
