//! Stable hashing: the same bytes hash the same on every machine and in every version, so
//! alert ids, sketches and snapshots are reproducible.

use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

/// The 64-bit hash the engine keys videos and event ids by.
pub fn key_hash(s: &str) -> u64 {
    xxh3_64(s.as_bytes())
}

/// A 128-bit id rendered as 32 lower-case hex digits, from parts separated unambiguously.
pub fn stable_id(parts: &[&[u8]]) -> String {
    let mut buf = Vec::with_capacity(64);
    for p in parts {
        buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
        buf.extend_from_slice(p);
    }
    format!("{:032x}", xxh3_128(&buf))
}

/// A hasher for keys that are already uniformly distributed 64-bit hashes.
#[derive(Default, Clone, Copy)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed with this; fold anything else in for safety.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Build-hasher for sets and maps keyed by a [`key_hash`].
pub type Prehashed = BuildHasherDefault<PrehashedHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_unambiguous() {
        assert_eq!(stable_id(&[b"ab", b"c"]), stable_id(&[b"ab", b"c"]));
        assert_ne!(stable_id(&[b"ab", b"c"]), stable_id(&[b"a", b"bc"]));
        assert_eq!(stable_id(&[b"x"]).len(), 32);
    }
}
