//! Per-video state: three rings of counts (fine buckets of net likes for velocity, the
//! net likes of whole velocity windows before them for the long scan windows, coarse
//! slots of weighted engagement for trending), the baselines learned from them, the
//! velocity CUSUM, the view tallies of the newest slots (views, interactions and a sketch
//! of distinct viewers), and the state of each detector's episode. Fixed size, no heap
//! beyond long ids.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::config::{COARSE_SLOTS, FINE_SLOTS, LIKE_SLOTS, MAX_LONG_WINDOW};

/// Where a detector's episode stands for one video.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Phase {
    /// No episode; may fire.
    #[default]
    Quiet,
    /// An episode is open at `tier`.
    Active,
    /// An episode ended; no new one before `cooldown_until`.
    Cooldown,
}

/// One detector's episode state for one video. Times are bucket (velocity) or slot
/// (trending) indices, stored in 32 bits: at the smallest bucket (1 s) that reaches 2106.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EpisodeState {
    pub(crate) phase: Phase,
    /// Highest tier reached in the open episode.
    pub(crate) tier: u8,
    /// Consecutive calm evaluations.
    pub(crate) calm: u8,
    /// Index of the closed bucket or slot whose window opened the episode.
    pub(crate) start: u32,
    /// No new episode before this index closes.
    pub(crate) cooldown_until: u32,
}

impl EpisodeState {
    /// Whether a new episode may start at evaluation index `at`: none is open and any
    /// cooldown is over.
    pub(crate) fn may_fire_at(&self, at: i64) -> bool {
        match self.phase {
            Phase::Quiet => true,
            Phase::Active => false,
            Phase::Cooldown => at >= i64::from(self.cooldown_until),
        }
    }
}

/// An exponentially weighted mean and variance of a windowed count, updated once per
/// closed bucket (or slot) and brought up to date lazily. Stored in `f32` (a baseline
/// needs a few significant digits, and the video stays small); computed in `f64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Baseline {
    pub(crate) mean: f32,
    pub(crate) var: f32,
    /// The last bucket (or slot) folded in.
    pub(crate) through: u32,
    /// Observations folded in (saturating); drives the warm-up running mean.
    pub(crate) obs: u32,
}

impl Baseline {
    /// Folds one observation in (West's incremental EW variance). `decay` is `1 - alpha`.
    pub(crate) fn step(&mut self, x: f64, decay: f64) {
        self.obs = self.obs.saturating_add(1);
        let alpha = 1.0 - decay;
        let mean = f64::from(self.mean);
        let diff = x - mean;
        let incr = alpha * diff;
        self.mean = (mean + incr) as f32;
        self.var = (decay * (f64::from(self.var) + diff * incr)) as f32;
    }

    /// The mean, widened.
    pub(crate) fn mean(&self) -> f64 {
        f64::from(self.mean).max(0.0)
    }

    /// The standard deviation, widened.
    pub(crate) fn stddev(&self) -> f64 {
        f64::from(self.var).max(0.0).sqrt()
    }

    /// Folds `n` zero observations in, in closed form: for x = 0 the recurrences give
    /// mean_n = r^n mean and var_n = r^n (var + mean^2 (1 - r^n)).
    pub(crate) fn zeros(&mut self, n: i64, decay: f64) {
        if n <= 0 {
            return;
        }
        let rn = decay.powi(n.min(i64::from(i32::MAX)) as i32);
        let mean = f64::from(self.mean);
        self.var = (rn * (f64::from(self.var) + mean * mean * (1.0 - rn))) as f32;
        self.mean = (mean * rn) as f32;
    }
}

/// An exponentially weighted mean of a windowed quantity (no variance: the trending
/// detector decides on the mean alone), updated once per closed slot, lazily.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct LevelBaseline {
    pub(crate) mean: f32,
    /// The last slot folded in.
    pub(crate) through: u32,
    /// Observations folded in (saturating); drives the warm-up running mean.
    pub(crate) obs: u32,
}

impl LevelBaseline {
    /// Folds one observation in. `decay` is `1 - alpha`.
    pub(crate) fn step(&mut self, x: f64, decay: f64) {
        self.obs = self.obs.saturating_add(1);
        let mean = f64::from(self.mean);
        self.mean = (mean + (1.0 - decay) * (x - mean)) as f32;
    }

    /// The mean, widened.
    pub(crate) fn mean(&self) -> f64 {
        f64::from(self.mean).max(0.0)
    }

    /// Folds `n` zero observations in, in closed form.
    pub(crate) fn zeros(&mut self, n: i64, decay: f64) {
        if n > 0 {
            let rn = decay.powi(n.min(i64::from(i32::MAX)) as i32);
            self.mean = (f64::from(self.mean) * rn) as f32;
        }
    }
}

/// How many of a video's newest trending slots keep the tallies the view cap needs.
pub(crate) const CAPPED_SLOTS: usize = 2;

/// Everything the engine keeps for one tracked video: 256 bytes with ids up to 24 bytes
/// inline (checked by a test), so a million tracked videos fit in a quarter of a gigabyte.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct VideoState {
    pub(crate) video_id: CompactString,
    /// Handle into the partition's creator table.
    pub(crate) creator: u32,
    /// Events counted since the video was first tracked (all kinds, saturating).
    pub(crate) events: u32,
    /// Net likes per fine bucket; valid for buckets in `(head - FINE_SLOTS, head]`.
    /// Saturating at ±32 767 (3 276 likes a second at the 10 s bucket: a video that
    /// fast has fired long before).
    pub(crate) likes: [i16; FINE_SLOTS],
    /// Net likes of each whole velocity window of the bucket clock (a *like slot*: buckets
    /// `[s n, (s + 1) n)` for `n` buckets per velocity window) whose first bucket has left
    /// the fine ring, indexed by `s % LIKE_SLOTS`; valid for like slots in
    /// `(folded - LIKE_SLOTS, folded]`, `folded` being the like slot of bucket
    /// `head - FINE_SLOTS`. A slot is folded whole when its first bucket leaves (all of it
    /// is in the ring then), so the count is exact; [`i8::MAX`] and [`i8::MIN`] stand for
    /// "more than 126" and "fewer than -127". No like is counted into a folded slot (the
    /// fine ring holds the allowed lateness with two velocity windows to spare).
    pub(crate) slot_likes: [i8; LIKE_SLOTS],
    /// Weighted engagement per coarse slot, views capped (see `slot_views`); valid for
    /// slots in `(head_slot - COARSE_SLOTS, head_slot]`, where `head_slot` is the slot of
    /// `head`.
    pub(crate) score: [i32; COARSE_SLOTS],
    /// Interactions (likes net of unlikes, shares, comments) in each of the newest
    /// `CAPPED_SLOTS` slots, indexed by `slot % CAPPED_SLOTS`.
    pub(crate) slot_interactions: [i32; CAPPED_SLOTS],
    /// Views seen (saturating) in each of the newest `CAPPED_SLOTS` slots. A slot's score
    /// counts at most `views_per_interaction` views per interaction of that slot, so a
    /// burst of views with nothing else scores nothing, whatever order the events come in.
    pub(crate) slot_views: [u16; CAPPED_SLOTS],
    /// A linear-counting sketch of the distinct viewers of each of the newest
    /// `CAPPED_SLOTS` slots: bit `h % 64` of a viewer's hash `h`, for the viewers its
    /// sampling level keeps (see [`ViewerSketch`]). Views by the same viewer set the same
    /// bit, so re-watches do not look like a wider audience.
    pub(crate) slot_viewers: [u64; CAPPED_SLOTS],
    /// The sampling level of each slot's sketch: a viewer is kept with probability
    /// `2^-level`, fixed when the slot opens from the views of the slot before it.
    pub(crate) slot_viewer_level: [u8; CAPPED_SLOTS],
    /// The newest fine bucket holding data.
    pub(crate) head: u32,
    /// Event time of the first event seen.
    pub(crate) first_seen: i64,
    pub(crate) velocity_baseline: Baseline,
    pub(crate) trending_baseline: LevelBaseline,
    /// The velocity CUSUM through the baseline's last folded bucket (0: no evidence).
    pub(crate) cusum: f32,
    /// The bucket where the CUSUM's current run began (its change-point estimate); valid
    /// while `cusum > 0`.
    pub(crate) cusum_since: u32,
    pub(crate) velocity: EpisodeState,
    pub(crate) trending: EpisodeState,
}

impl VideoState {
    pub(crate) fn new(video_id: &str, creator: u32, bucket: u32, event_time: i64) -> Self {
        Self {
            video_id: CompactString::new(video_id),
            creator,
            events: 0,
            likes: [0; FINE_SLOTS],
            slot_likes: [0; LIKE_SLOTS],
            score: [0; COARSE_SLOTS],
            slot_interactions: [0; CAPPED_SLOTS],
            slot_views: [0; CAPPED_SLOTS],
            slot_viewers: [0; CAPPED_SLOTS],
            slot_viewer_level: [0; CAPPED_SLOTS],
            head: bucket,
            first_seen: event_time,
            velocity_baseline: Baseline::default(),
            trending_baseline: LevelBaseline::default(),
            cusum: 0.0,
            cusum_since: 0,
            velocity: EpisodeState::default(),
            trending: EpisodeState::default(),
        }
    }

    /// Moves the rings forward so `bucket` (in slot `bucket / slot_buckets`) is writable,
    /// folding the like slots (of `like_buckets` buckets) whose first bucket leaves the fine
    /// ring and zeroing what falls out.
    pub(crate) fn advance_head(&mut self, bucket: u32, slot_buckets: i64, like_buckets: i64) {
        if bucket <= self.head {
            return;
        }
        let head = self.head();
        let bucket_wide = i64::from(bucket);
        let folded = (head - FINE_SLOTS as i64).div_euclid(like_buckets);
        let folding = (bucket_wide - FINE_SLOTS as i64).div_euclid(like_buckets);
        // Slots after `folded` start after head - FINE_SLOTS: all of each is still in the
        // ring (or not yet written), read before the ring moves.
        for s in (folded + 1).max(folding - LIKE_SLOTS as i64 + 1)..=folding {
            let first = s * like_buckets;
            let sum = self.likes_window(first + like_buckets - 1, like_buckets);
            self.slot_likes[like_index(s)] = saturate_slot(sum);
        }
        if bucket_wide - head >= FINE_SLOTS as i64 {
            self.likes = [0; FINE_SLOTS];
        } else {
            for b in head + 1..=bucket_wide {
                self.likes[fine_index(b)] = 0;
            }
        }
        let bucket = bucket_wide;
        let old_slot = head.div_euclid(slot_buckets);
        let new_slot = bucket.div_euclid(slot_buckets);
        if new_slot - old_slot >= COARSE_SLOTS as i64 {
            self.score = [0; COARSE_SLOTS];
        } else {
            for s in old_slot + 1..=new_slot {
                self.score[coarse_index(s)] = 0;
            }
        }
        for s in (old_slot + 1).max(new_slot - CAPPED_SLOTS as i64 + 1)..=new_slot {
            // The slot before is the old head's (its tallies are still there) or one that
            // got no event.
            let before = if s - 1 == old_slot {
                self.slot_views[capped_index(old_slot)]
            } else {
                0
            };
            let i = capped_index(s);
            self.slot_interactions[i] = 0;
            self.slot_views[i] = 0;
            self.slot_viewers[i] = 0;
            self.slot_viewer_level[i] = ViewerSketch::level_after(before);
        }
        self.head = bucket_wide as u32;
    }

    /// The newest fine bucket holding data, widened.
    pub(crate) fn head(&self) -> i64 {
        i64::from(self.head)
    }

    /// Net likes in fine bucket `b` (0 outside the ring).
    pub(crate) fn likes_at(&self, b: i64) -> i64 {
        let head = self.head();
        if b > head || b <= head - FINE_SLOTS as i64 {
            0
        } else {
            i64::from(self.likes[fine_index(b)])
        }
    }

    /// Net likes in the `n` buckets ending with `last`.
    pub(crate) fn likes_window(&self, last: i64, n: i64) -> i64 {
        (last - n + 1..=last).map(|b| self.likes_at(b)).sum()
    }

    /// Net likes of the `n` newest like slots, newest first: `out[j]` is like slot
    /// `now / like_buckets - j`, counted up to bucket `now` (the newest one is partial),
    /// `None` where the count is outside `[-127, 126]` (or, for a slot older than the
    /// video remembers, unknown); the rest of `out` is `None`. `now` is at or after the
    /// head.
    pub(crate) fn recent_slot_likes(
        &self,
        now: i64,
        like_buckets: i64,
        n: usize,
    ) -> [Option<i64>; 2 * MAX_LONG_WINDOW] {
        let mut out = [None; 2 * MAX_LONG_WINDOW];
        let folded = (self.head() - FINE_SLOTS as i64).div_euclid(like_buckets);
        let now_slot = now.div_euclid(like_buckets);
        for (j, slot) in out.iter_mut().enumerate().take(n) {
            let s = now_slot - j as i64;
            let count = if s > folded {
                let last = ((s + 1) * like_buckets - 1).min(now);
                Some(self.likes_window(last, last - s * like_buckets + 1))
            } else if s > folded - LIKE_SLOTS as i64 {
                Some(i64::from(self.slot_likes[like_index(s)]))
            } else {
                None
            };
            *slot = count.filter(|c| (-127..=126).contains(c));
        }
        out
    }

    /// Weighted engagement in coarse slot `s` (0 outside the ring).
    pub(crate) fn score_at(&self, s: i64, slot_buckets: i64) -> i64 {
        let head_slot = self.head().div_euclid(slot_buckets);
        if s > head_slot || s <= head_slot - COARSE_SLOTS as i64 {
            0
        } else {
            i64::from(self.score[coarse_index(s)])
        }
    }

    /// Weighted engagement in the `m` slots ending with `last`.
    pub(crate) fn score_window(&self, last: i64, m: i64, slot_buckets: i64) -> i64 {
        (last - m + 1..=last)
            .map(|s| self.score_at(s, slot_buckets))
            .sum()
    }

    /// Recent weighted engagement held in the coarse ring: the activity eviction compares.
    pub(crate) fn activity(&self) -> i64 {
        self.score.iter().map(|&s| i64::from(s)).sum()
    }

    /// True while an episode of either detector is open.
    pub(crate) fn has_open_episode(&self) -> bool {
        self.velocity.phase == Phase::Active || self.trending.phase == Phase::Active
    }

    /// Bytes this video holds on the heap beyond its fixed size (a long id).
    pub(crate) fn heap_bytes(&self) -> usize {
        if self.video_id.is_heap_allocated() {
            self.video_id.capacity()
        } else {
            0
        }
    }
}

pub(crate) fn fine_index(b: i64) -> usize {
    b.rem_euclid(FINE_SLOTS as i64) as usize
}

pub(crate) fn coarse_index(s: i64) -> usize {
    s.rem_euclid(COARSE_SLOTS as i64) as usize
}

pub(crate) fn like_index(s: i64) -> usize {
    s.rem_euclid(LIKE_SLOTS as i64) as usize
}

/// A like slot's count as stored: exact in `[-127, 126]`, else the sign's extreme.
fn saturate_slot(x: i64) -> i8 {
    if x > 126 {
        i8::MAX
    } else if x < -127 {
        i8::MIN
    } else {
        x as i8
    }
}

pub(crate) fn capped_index(s: i64) -> usize {
    s.rem_euclid(CAPPED_SLOTS as i64) as usize
}

/// Adds `delta` to a counter, saturating rather than wrapping on absurd volumes.
pub(crate) fn bump(c: &mut i32, delta: i32) {
    *c = c.saturating_add(delta);
}

/// Adds `delta` to a fine bucket's net likes, saturating.
pub(crate) fn bump_likes(c: &mut i16, delta: i16) {
    *c = c.saturating_add(delta);
}

/// The distinct-viewer sketch of one slot: 64 bits and a sampling level (linear counting,
/// Whang et al. 1990, on a sample of the viewers). A viewer with hash `h` is kept when the
/// top `level` bits of `h` are 0 (probability `2^-level`, the same viewer always kept or
/// always not) and sets bit `h % 64`. The level is chosen when the slot opens so the
/// slot before it would have kept about [`ViewerSketch::TARGET`] viewers: the sketch then
/// resolves its usual audience and a rise of several times it before it fills.
pub(crate) struct ViewerSketch;

impl ViewerSketch {
    /// Sampled viewers a slot is sized for (a quarter to a half of its 64 bits).
    pub(crate) const TARGET: u16 = 24;

    /// The level of a slot that follows one with `views` views.
    pub(crate) fn level_after(views: u16) -> u8 {
        let mut level = 0u8;
        while (views >> level) > Self::TARGET {
            level += 1;
        }
        level
    }

    /// Marks a viewer (by hash) in a slot's bits at its level.
    pub(crate) fn note(bits: &mut u64, level: u8, viewer: u64) {
        if level == 0 || viewer >> (64 - u32::from(level.min(63))) == 0 {
            *bits |= 1u64 << (viewer & 63);
        }
    }

    /// The sampled viewers the bits stand for (`-64 ln(zeros / 64)`); a full sketch, which
    /// only says "at least about this many", reads as if one bit were still clear.
    pub(crate) fn sampled(bits: u64) -> f64 {
        let zeros = f64::from(bits.count_zeros()).max(1.0);
        -64.0 * (zeros / 64.0).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_runs_in_closed_form_match_stepping() {
        let decay = 0.99;
        let mut a = Baseline {
            mean: 12.0,
            var: 30.0,
            through: 0,
            obs: 0,
        };
        let mut b = a;
        for _ in 0..37 {
            a.step(0.0, decay);
        }
        b.zeros(37, decay);
        assert!((a.mean - b.mean).abs() < 1e-5 * a.mean.max(1.0));
        assert!((a.var - b.var).abs() < 1e-5 * a.var.max(1.0));
    }

    /// The sketch against exact distinct counts: re-watches change nothing, and the
    /// estimate (sampled or not) is within a few per cent of the truth on average.
    #[test]
    fn the_viewer_sketch_counts_viewers_not_views() {
        let hash = |set: u64, i: u64| crate::hash::key_hash(&format!("s{set}-u{i}"));
        let estimate = |set: u64, n: u64, level: u8, times: u64| {
            let mut bits = 0u64;
            for _ in 0..times {
                for i in 0..n {
                    ViewerSketch::note(&mut bits, level, hash(set, i));
                }
            }
            ViewerSketch::sampled(bits) * f64::from(level).exp2()
        };
        for n in [1, 5, 20, 60, 100] {
            assert_eq!(estimate(0, n, 0, 1), estimate(0, n, 0, 5), "{n}");
            let mean: f64 = (0..200).map(|set| estimate(set, n, 0, 1)).sum::<f64>() / 200.0;
            assert!(
                (mean - n as f64).abs() <= 0.05 * n as f64 + 0.5,
                "{n}: {mean}"
            );
        }
        // 2 000 viewers at the level a 2 000-view slot gives the next one.
        let level = ViewerSketch::level_after(2_000);
        assert_eq!(level, 7);
        let mean: f64 = (0..200)
            .map(|set| estimate(set, 2_000, level, 1))
            .sum::<f64>()
            / 200.0;
        assert!((mean - 2_000.0).abs() <= 100.0, "{mean}");
        assert_eq!(
            [0, 24, 25, 49, 50].map(ViewerSketch::level_after),
            [0, 0, 1, 1, 2]
        );
    }

    /// A fine bucket holds 16 bits: beyond them it saturates, it never wraps into a
    /// negative count.
    #[test]
    fn a_fine_bucket_saturates_instead_of_wrapping() {
        let mut c = i16::MAX - 1;
        for _ in 0..3 {
            bump_likes(&mut c, 1);
        }
        assert_eq!(c, i16::MAX);
        bump_likes(&mut c, -1);
        assert_eq!(c, i16::MAX - 1);
    }

    #[test]
    fn rings_forget_what_falls_out() {
        let mut v = VideoState::new("v", 0, 100, 0);
        v.likes[fine_index(100)] = 5;
        assert_eq!(v.likes_at(100), 5);
        v.advance_head(110, 6, 6);
        assert_eq!(v.likes_at(100), 5);
        assert_eq!(v.likes_window(110, 16), 5);
        v.advance_head(116, 6, 6);
        assert_eq!(v.likes_at(100), 0);
    }
}

#[cfg(test)]
mod size {
    #[test]
    fn a_tracked_video_stays_small() {
        let size = std::mem::size_of::<Option<super::VideoState>>();
        println!("Option<VideoState> = {size} bytes");
        assert!(size <= 256, "{size}");
    }
}
