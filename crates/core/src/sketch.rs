//! A Count-Min sketch of recent engagement, used to decide admission once the cap on
//! tracked videos is reached (TinyLFU-style: a newcomer must out-score the video it would
//! replace). Counters saturate at `u16::MAX` and are halved periodically, so the estimate
//! follows recent activity rather than all-time totals.

use serde::{Deserialize, Serialize};

const DEPTH: usize = 4;

/// Count-Min sketch with `DEPTH` rows of `width` saturating 16-bit counters.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct EngagementSketch {
    width_mask: u64,
    counters: Vec<u16>,
}

impl EngagementSketch {
    /// A sketch sized for about `expected_keys` keys (width rounded up to a power of two).
    pub(crate) fn new(expected_keys: usize) -> Self {
        let width = expected_keys.next_power_of_two().clamp(1 << 10, 1 << 22);
        Self {
            width_mask: width as u64 - 1,
            counters: vec![0; width * DEPTH],
        }
    }

    fn slots(&self, hash: u64) -> [usize; DEPTH] {
        let width = (self.width_mask + 1) as usize;
        let mut out = [0; DEPTH];
        // Double hashing: row i probes h1 + i*h2.
        let h1 = hash;
        let h2 = hash.rotate_left(32) | 1;
        for (i, slot) in out.iter_mut().enumerate() {
            let col = h1.wrapping_add((i as u64).wrapping_mul(h2)) & self.width_mask;
            *slot = i * width + col as usize;
        }
        out
    }

    /// Adds `weight` to the key and returns its new estimate.
    pub(crate) fn add(&mut self, hash: u64, weight: u32) -> u32 {
        let w = weight.min(u32::from(u16::MAX)) as u16;
        let mut est = u16::MAX;
        for s in self.slots(hash) {
            let c = &mut self.counters[s];
            *c = c.saturating_add(w);
            est = est.min(*c);
        }
        u32::from(est)
    }

    #[cfg(test)]
    /// The key's estimate (never below its true recent count, modulo halving and saturation).
    pub(crate) fn estimate(&self, hash: u64) -> u32 {
        self.slots(hash)
            .iter()
            .map(|&s| u32::from(self.counters[s]))
            .min()
            .unwrap_or(0)
    }

    /// Halves every counter: old activity fades.
    pub(crate) fn age(&mut self) {
        for c in &mut self.counters {
            *c >>= 1;
        }
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.counters.capacity() * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_never_undercount_and_age_halves() {
        let mut s = EngagementSketch::new(1024);
        for k in 0..500u64 {
            let h = crate::hash::key_hash(&k.to_string());
            s.add(h, (k % 7) as u32 + 1);
        }
        for k in 0..500u64 {
            let h = crate::hash::key_hash(&k.to_string());
            assert!(s.estimate(h) > (k % 7) as u32);
        }
        let h = crate::hash::key_hash("hot");
        s.add(h, 1000);
        let before = s.estimate(h);
        s.age();
        assert!(s.estimate(h) <= before / 2 + 1);
    }
}
