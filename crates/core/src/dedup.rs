//! De-duplication of re-delivered events by `event_id`, bounded in event time.
//!
//! A re-delivery carries the same event time as its original, so ids are kept in
//! one-second generations keyed by event time. One look-up per event, in a set small
//! enough to stay in cache (consecutive events have close event times), and a whole
//! generation is dropped at once when the watermark has left it `horizon` behind: memory
//! is bounded by the events of `horizon` plus a second. Anything older than the watermark
//! is late and never counted, so the horizon only has to cover the lateness.

use std::collections::VecDeque;

use hashbrown::HashSet;
use serde::{Deserialize, Serialize};

use crate::hash::Prehashed;

/// Event-time width of one generation.
const GENERATION_MS: i64 = 1_000;

/// The set of recently seen event-id hashes.
#[derive(Debug, Default)]
pub(crate) struct EventDedup {
    horizon_ms: i64,
    /// Size of the last generation created, to pre-size the next one.
    last_len: usize,
    /// Generations in ascending order of their index.
    generations: VecDeque<(i64, HashSet<u64, Prehashed>)>,
}

impl EventDedup {
    pub(crate) fn new(horizon_ms: i64) -> Self {
        Self {
            horizon_ms,
            last_len: 0,
            generations: VecDeque::new(),
        }
    }

    /// Records `id_hash` for an event at `event_time`; false if it was seen already.
    pub(crate) fn insert(&mut self, id_hash: u64, event_time: i64) -> bool {
        let generation = event_time.div_euclid(GENERATION_MS);
        let pos = match self.generations.iter().rposition(|(g, _)| *g <= generation) {
            Some(p) if self.generations[p].0 == generation => p,
            found => {
                let at = found.map_or(0, |p| p + 1);
                if let Some((_, newest)) = self.generations.back() {
                    self.last_len = newest.len();
                }
                let set = HashSet::with_capacity_and_hasher(self.last_len, Prehashed::default());
                self.generations.insert(at, (generation, set));
                at
            }
        };
        self.generations[pos].1.insert(id_hash)
    }

    /// Forgets generations that ended more than a horizon before `watermark`.
    pub(crate) fn expire(&mut self, watermark: i64) {
        let oldest_kept = (watermark - self.horizon_ms).div_euclid(GENERATION_MS);
        while self
            .generations
            .front()
            .is_some_and(|(g, _)| *g < oldest_kept)
        {
            self.generations.pop_front();
        }
    }

    /// Ids currently remembered.
    pub(crate) fn len(&self) -> usize {
        self.generations.iter().map(|(_, s)| s.len()).sum()
    }

    /// Heap bytes, approximately (hash-set buckets plus control bytes).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.generations.iter().map(|(_, s)| s.capacity() * 9).sum()
    }

    pub(crate) fn snapshot(&self) -> DedupSnapshot {
        DedupSnapshot {
            generations: self
                .generations
                .iter()
                .map(|(g, s)| {
                    let mut ids: Vec<u64> = s.iter().copied().collect();
                    ids.sort_unstable();
                    (*g, ids)
                })
                .collect(),
        }
    }

    pub(crate) fn restore(horizon_ms: i64, snap: DedupSnapshot) -> Self {
        let generations = snap
            .generations
            .into_iter()
            .map(|(g, ids)| (g, ids.into_iter().collect()))
            .collect();
        Self {
            horizon_ms,
            last_len: 0,
            generations,
        }
    }
}

/// Serialized form of [`EventDedup`], ids sorted so snapshots are byte-stable.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DedupSnapshot {
    generations: Vec<(i64, Vec<u64>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_found_until_the_horizon_passes() {
        let mut d = EventDedup::new(60_000);
        assert!(d.insert(1, 100_000));
        assert!(d.insert(2, 30_000));
        assert!(!d.insert(1, 100_000));
        assert!(!d.insert(2, 30_000));
        d.expire(125_000);
        assert!(
            d.insert(2, 30_000),
            "generation 0 is gone once 2 horizons passed"
        );
        assert!(!d.insert(1, 100_000));
        assert_eq!(d.len(), 2);
    }
}
