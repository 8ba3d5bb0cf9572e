//! The partition a keyed message lands on, as librdkafka's default partitioner
//! (`consistent_random`) places it: the CRC-32 (IEEE, as zlib) of the key, modulo the
//! partition count. A replay with `--partitions N` therefore sees what a consumer of an
//! N-partition topic sees when a producer with default settings wrote the same events.

/// The partition of `key` on a topic of `partitions` partitions.
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    crc32fast::hash(key) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_the_ieee_one() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(partition_for(b"123456789", 7), 0xCBF4_3926 % 7);
        assert_eq!(partition_for(b"anything", 1), 0);
    }
}
