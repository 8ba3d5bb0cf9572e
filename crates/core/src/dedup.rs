//! De-duplication of re-delivered events by `event_id`, bounded in event time.
//!
//! A re-delivery carries the same event time as its original, so ids are kept in
//! one-second generations keyed by event time. One look-up per event, in a set small
//! enough to stay in cache (consecutive events have close event times), and a whole
//! generation is dropped at once when the watermark has left it `horizon` behind: memory
//! is bounded by the events of `horizon` plus a second. Anything older than the watermark
//! is late and never counted, so the horizon only has to cover the lateness.
//!
//! When event times stall (every event stamped alike) or a flood outruns the horizon, the
//! watermark frees nothing, so the set also has a cap on ids: past it the oldest
//! generations are forgotten (a single one, when it is all there is), and counted.

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
    /// Most ids kept.
    max_ids: usize,
    /// Ids kept now (the sum of the generations' sizes).
    total: usize,
    /// Ids forgotten for the cap since this set was made (not part of a snapshot).
    forgotten: u64,
    /// Size of the last generation created, to pre-size the next one.
    last_len: usize,
    /// Generations in ascending order of their index.
    generations: VecDeque<(i64, HashSet<u64, Prehashed>)>,
}

impl EventDedup {
    pub(crate) fn new(horizon_ms: i64, max_ids: usize) -> Self {
        Self {
            horizon_ms,
            max_ids: max_ids.max(1),
            total: 0,
            forgotten: 0,
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
        let new = self.generations[pos].1.insert(id_hash);
        if new {
            self.total += 1;
            if self.total > self.max_ids {
                self.enforce_cap(generation, id_hash);
            }
        }
        new
    }

    /// Forgets the oldest generations until the cap holds; when one generation alone is
    /// over it, it starts over (with `id_hash` alone, if it is the one being written).
    fn enforce_cap(&mut self, writing: i64, id_hash: u64) {
        while self.total > self.max_ids && self.generations.len() > 1 {
            if let Some((_, set)) = self.generations.pop_front() {
                self.total -= set.len();
                self.forgotten += set.len() as u64;
            }
        }
        if self.total > self.max_ids
            && let Some((g, set)) = self.generations.front_mut()
        {
            self.forgotten += set.len() as u64;
            set.clear();
            self.total = 0;
            if *g == writing {
                set.insert(id_hash);
                self.forgotten -= 1;
                self.total = 1;
            }
        }
    }

    /// Ids forgotten for the cap since this set was made or restored.
    pub(crate) fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Forgets generations that ended more than a horizon before `watermark`.
    pub(crate) fn expire(&mut self, watermark: i64) {
        let oldest_kept = (watermark - self.horizon_ms).div_euclid(GENERATION_MS);
        while self
            .generations
            .front()
            .is_some_and(|(g, _)| *g < oldest_kept)
        {
            if let Some((_, set)) = self.generations.pop_front() {
                self.total -= set.len();
            }
        }
    }

    /// Ids currently remembered.
    pub(crate) fn len(&self) -> usize {
        self.total
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

    pub(crate) fn restore(horizon_ms: i64, max_ids: usize, snap: DedupSnapshot) -> Self {
        let generations: VecDeque<(i64, HashSet<u64, Prehashed>)> = snap
            .generations
            .into_iter()
            .map(|(g, ids)| (g, ids.into_iter().collect()))
            .collect();
        let total = generations.iter().map(|(_, s)| s.len()).sum();
        let mut d = Self {
            horizon_ms,
            max_ids: max_ids.max(1),
            total,
            forgotten: 0,
            last_len: 0,
            generations,
        };
        // A snapshot taken under a larger cap: keep the newest ids.
        while d.total > d.max_ids && d.generations.len() > 1 {
            if let Some((_, set)) = d.generations.pop_front() {
                d.total -= set.len();
                d.forgotten += set.len() as u64;
            }
        }
        d
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
        let mut d = EventDedup::new(60_000, 1_000);
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

    #[test]
    fn stalled_event_times_cannot_grow_the_set_past_its_cap() {
        let mut d = EventDedup::new(60_000, 1_000);
        // Every event stamped with the same time: the watermark frees nothing.
        for id in 0..20_000u64 {
            assert!(d.insert(id, 5_000));
            d.expire(5_000);
            assert!(d.len() <= 1_000, "{} ids kept", d.len());
        }
        assert_eq!(d.forgotten() + d.len() as u64, 20_000);
        // The newest id is still known.
        assert!(!d.insert(19_999, 5_000));
        // Over several seconds, whole old seconds go first and the newest stay.
        let mut d = EventDedup::new(60_000, 1_000);
        for id in 0..3_000u64 {
            d.insert(id, (id / 600) as i64 * 1_000);
        }
        assert!(d.len() <= 1_000);
        assert!(!d.insert(2_999, 4_000), "the newest second is kept");
        assert!(d.insert(0, 0), "the oldest second was forgotten");
        // A snapshot restored under a smaller cap keeps the newest generations.
        let snap = d.snapshot();
        let r = EventDedup::restore(60_000, 500, snap);
        assert!(r.len() <= 600, "{}", r.len());
    }
}
