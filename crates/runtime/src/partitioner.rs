//! The partition a keyed record lands on: the hash of its key modulo the partition count,
//! by the hash the topic's producers use ([`Partitioner`], `topics.events_partitioner`).
//!
//! - [`Partitioner::Crc32`]: librdkafka's default (`consistent_random`), the CRC-32 (IEEE,
//!   as zlib) of the key.
//! - [`Partitioner::Murmur2`]: the Java client's default (and franz-go's, and librdkafka's
//!   `murmur2_random`): Kafka's murmur2 of the key with the sign bit cleared
//!   (`Utils.toPositive(Utils.murmur2(key)) % partitions`).
//!
//! A counter finds a video's owner with it and `trendwatch replay --partitions N` splits
//! with it, so both see what a consumer of an N-partition topic sees when the producers
//! hash the same way. Pure functions: no I/O, nothing allocated.

pub use trendwatch_config::Partitioner;

/// The partition of `key` on a topic of `partitions` partitions (0 is taken as 1) when
/// `partitioner` placed it.
pub fn partition_for(partitioner: Partitioner, key: &[u8], partitions: u32) -> u32 {
    let n = partitions.max(1);
    match partitioner {
        Partitioner::Crc32 => crc32(key) % n,
        // Java clears the sign bit of the signed 32-bit hash (`toPositive`), then takes
        // the remainder: the same as masking the unsigned hash.
        Partitioner::Murmur2 => (murmur2(key) & 0x7fff_ffff) % n,
    }
}

/// The CRC-32 (IEEE) of `key`, as librdkafka's `consistent` partitioners hash it.
pub fn crc32(key: &[u8]) -> u32 {
    crc32fast::hash(key)
}

/// Kafka's 32-bit murmur2 of `key` (the Java client's `Utils.murmur2`: MurmurHash2 with
/// seed `0x9747b28c`, the key read as little-endian 32-bit words, the 1–3 trailing bytes
/// mixed in as unsigned bytes).
pub fn murmur2(key: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java's length is an int; a key of 4 GiB or more cannot be a Kafka record key.
    let mut h = SEED ^ (key.len() as u32);
    let mut words = key.chunks_exact(4);
    for w in &mut words {
        let mut k = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows printed by the Java client itself: `scripts/partitioner-vectors.sh` runs
    /// `scripts/PartitionerVectors.java` against kafka-clients 4.1.1 (the version of
    /// examples/java/pom.xml), which prints `Utils.murmur2(key)` and
    /// `BuiltInPartitioner.partitionForKey(key, n)` — the producer's own placement of a
    /// keyed record — for n = 3, 4 and 12. Keys: empty, lengths 1 to 9 (every tail length
    /// twice), video ids, UTF-8 of 2, 3 and 4 bytes a character, and bytes with the high bit
    /// set (Java's bytes are signed; the tail must be mixed in unsigned).
    const JAVA_MURMUR2: &[(&[u8], u32, [u32; 3])] = &[
        // kafka-clients 4.1.1: (key, murmur2 hash, partition of 3, 4, 12)
        (b"", 0x106e08d9, [0, 1, 9]),
        (b"a", 0xa2d0b27c, [1, 0, 4]),
        (b"ab", 0x12d8262a, [2, 2, 2]),
        (b"abc", 0x1c94221b, [0, 3, 3]),
        (b"abcd", 0xb11ab5f4, [2, 0, 8]),
        (b"abcde", 0x1b897edd, [1, 1, 1]),
        (b"abcdef", 0x6f7fdafc, [0, 0, 0]),
        (b"abcdefg", 0xeb595499, [1, 1, 1]),
        (b"abcdefgh", 0xc70d55dd, [0, 1, 9]),
        (b"abcdefghi", 0xdb106fbe, [0, 2, 6]),
        (b"v-example-java", 0x2d4a7ddf, [2, 3, 11]),
        (b"video-000042", 0xf992ce29, [1, 1, 1]),
        (b"vid\xc3\xa9o-\xe2\x9c\x93", 0x642cae32, [2, 2, 2]),
        (
            b"\xe5\x8b\x95\xe7\x94\xbb\xf0\x9f\x8e\xac",
            0x5558a9af,
            [1, 3, 7],
        ),
        (b"trending/2026", 0xd9755191, [0, 1, 9]),
        (b"\xff", 0xed6f615b, [0, 3, 3]),
        (b"\x80\xfe", 0x4e7ebd32, [2, 2, 2]),
        (b"\xff\x80\x00", 0xdb39f32a, [1, 2, 10]),
        (b"\xde\xad\xbe\xef\x90", 0x833942f6, [0, 2, 6]),
    ];

    #[test]
    fn murmur2_vectors_match_java_kafka_clients() {
        for (key, hash, parts) in JAVA_MURMUR2 {
            let shown = String::from_utf8_lossy(key);
            assert_eq!(murmur2(key), *hash, "murmur2 of {shown:?}");
            for (n, want) in [3, 4, 12].into_iter().zip(parts) {
                assert_eq!(
                    partition_for(Partitioner::Murmur2, key, n),
                    *want,
                    "{shown:?} on {n} partitions"
                );
            }
        }
        // Most of the hashes have the sign bit set: the masking is exercised.
        assert!(JAVA_MURMUR2.iter().filter(|r| r.1 >= 0x8000_0000).count() >= 5);
    }

    #[test]
    fn crc32_is_the_ieee_one() {
        // The check value of CRC-32/ISO-HDLC, which zlib and librdkafka compute.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"a"), 0xE8B7_BE43);
        let p = partition_for(Partitioner::Crc32, b"123456789", 7);
        assert_eq!(p, 0xCBF4_3926 % 7);
        assert_eq!(partition_for(Partitioner::Crc32, b"anything", 1), 0);
        assert_eq!(partition_for(Partitioner::Murmur2, b"anything", 0), 0);
    }

    #[test]
    fn the_two_hashes_place_videos_differently() {
        // Why the setting matters: on 4 partitions most video ids land elsewhere.
        let moved = (0..1000)
            .map(|i| format!("video-{i}"))
            .filter(|v| {
                partition_for(Partitioner::Crc32, v.as_bytes(), 4)
                    != partition_for(Partitioner::Murmur2, v.as_bytes(), 4)
            })
            .count();
        assert!((600..900).contains(&moved), "{moved} of 1000 moved");
    }
}
