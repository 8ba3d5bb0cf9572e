//! [`PartitionState`]: everything the engine keeps for one Kafka partition, fed events in
//! offset order and wall-clock ticks, returning verdicts and alerts.
//!
//! ## Time
//!
//! The watermark is the newest event time seen minus the allowed lateness; an event older
//! than the watermark is late. A fine bucket closes when the watermark passes its end: the
//! velocity detector then scores every watched video on the window ending with that bucket.
//! A coarse slot closes likewise and the trending detector runs. Decisions are stamped with
//! the watermark at which they were made (`detected_at`).
//!
//! ## Determinism
//!
//! Events are applied one at a time and every bucket close happens inside the call of the
//! event that moved the watermark, so the same events in the same order give the same
//! verdicts and alerts however they are batched. Wall-clock ticks ([`PartitionState::tick`])
//! change nothing until the partition has received no event for `idle_timeout` of wall time
//! (measured from the first tick after the last event); only then does the watermark
//! advance, at wall-clock speed, so windows close and episodes end on a quiet partition.
//! Such an advance is an input like an event: it is part of the state, it is checkpointed,
//! and an event older than the advanced watermark is late. A replay (no ticks) therefore
//! equals a live run in which no partition went idle for longer than `idle_timeout`.

use std::mem;

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

use crate::config::EngineConfig;
use crate::config::FINE_SLOTS;
use crate::creators::CreatorTable;
use crate::dedup::{DedupSnapshot, EventDedup};
use crate::detect::{Detectors, Geometry, index32};
use crate::error::{CoreError, Result};
use crate::event::{Alert, EventKind, EventRef};
use crate::hash::key_hash;
use crate::rank::{Candidate, CandidateSet};
use crate::sketch::EngagementSketch;
use crate::video::{
    CAPPED_SLOTS, VideoState, ViewerSketch, bump, bump_likes, capped_index, coarse_index,
    fine_index,
};
use crate::view::{BucketLikes, EpisodeView, TrendingView, VelocityView, VideoView};

/// What happened to one applied event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Counted into the video's windows.
    Counted,
    /// A re-delivery of an event id already counted; dropped.
    Duplicate,
    /// Older than the watermark; not counted. The caller routes it (metric, late topic).
    Late,
    /// The video is not tracked (the cap is reached and the newcomer did not out-score a
    /// tracked video); its engagement went into the admission sketch only.
    Untracked,
    /// The event time is outside what the engine can represent (before 1970 or past
    /// 2106); not counted. Validation upstream rejects such events first.
    OutOfRange,
}

/// Running tallies of one partition, for metrics and reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStats {
    /// Events counted, by [`EventKind::index`].
    pub counted: [u64; 5],
    /// Re-deliveries dropped.
    pub duplicates: u64,
    /// Events older than the watermark.
    pub late: u64,
    /// Events of videos not admitted under the cap.
    pub untracked: u64,
    /// Tracked videos evicted to admit a hotter one.
    pub evicted: u64,
    /// Tracked videos forgotten after `video_ttl` without events.
    pub expired: u64,
    /// Events whose time lies outside what the engine can represent (before 1970 or
    /// beyond 2106); the caller's validation should have rejected them.
    pub out_of_range: u64,
    /// Alerts emitted, by type (in [`AlertType`] declaration order).
    pub alerts: [u64; 4],
}

/// The totals and current windows of one tracked video.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoCounts {
    /// Events counted (all kinds) since the video was first tracked.
    pub events: u32,
    /// Net likes in the velocity window ending with the last closed bucket.
    pub window_likes: i64,
    /// Weighted score in the trending window ending with the last closed slot.
    pub window_score: i64,
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"TWPS";
/// Version 4: each video's distinct-viewer sketches of its newest two trending slots (and
/// fine buckets of 16 bits). Version 3 brought the like slots of the long scan windows,
/// version 2 the sequential velocity tests (CUSUM state per video), view-capped trending
/// tallies and a variance-free trending baseline. Older snapshots are refused.
const SNAPSHOT_VERSION: u16 = 4;
/// Victims sampled per admission decision once the cap is reached.
const EVICTION_SAMPLES: usize = 8;

/// All state of one partition. See the module docs for the time model and determinism.
pub struct PartitionState {
    geo: Geometry,
    detectors: Detectors,
    max_videos: usize,
    /// `capacity.max_dedup_ids`.
    max_dedup_ids: usize,
    /// Slab of tracked videos; `None` is a free slot.
    videos: Vec<Option<VideoState>>,
    creators: CreatorTable,
    free: Vec<u32>,
    index: HashTable<u32>,
    /// Slots whose video the velocity detector scores at every bucket close.
    velocity_watch: Vec<u32>,
    /// Slots whose video the trending detector scores at every slot close.
    trending_watch: Vec<u32>,
    /// Per slot: bit 0 = in `velocity_watch`, bit 1 = in `trending_watch`. Kept with the
    /// slot, not the video, so a reused slot never sits in a list twice.
    watch_flags: Vec<u8>,
    dedup: EventDedup,
    sketch: Option<EngagementSketch>,
    clock: Clock,
    stats: PartitionStats,
    /// Candidates proposed per closed slot to the global ranker; 0: none.
    candidates_k: usize,
    /// Candidate sets not yet taken by the caller.
    candidate_sets: Vec<CandidateSet>,
    /// The last slot closed in this advance proposed nothing: its (empty) set is sent at
    /// the end of the advance, as the promise that the partition closed it.
    unsent_empty: Option<CandidateSet>,
    /// Reused by candidate selection: (score, slot of the video), at most `candidates_k`.
    scratch: Vec<(i64, u32)>,
    /// Heap bytes of the tracked videos' ids (those too long to be inline), kept as videos
    /// come and go so [`PartitionState::memory_bytes`] does not walk the slab.
    id_heap_bytes: usize,
}

/// The partition's notion of time.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Clock {
    /// Event time of the first event: warm-up is measured from here.
    started_at: i64,
    max_event_time: Option<i64>,
    watermark: i64,
    /// First fine bucket not yet closed.
    next_bucket: i64,
    /// First coarse slot not yet closed.
    next_slot: i64,
    last_sweep_slot: i64,
    slots_since_age: i64,
    /// Wall time of the first tick after the last event.
    idle_since: Option<i64>,
    events_since_tick: bool,
    /// xorshift state for sampling eviction victims (deterministic).
    rng: u64,
}

const VELOCITY_FLAG: u8 = 1;
const TRENDING_FLAG: u8 = 2;

impl PartitionState {
    /// An empty partition. Fails if the configuration does not validate.
    pub fn new(config: EngineConfig) -> Result<Self> {
        config.validate().map_err(CoreError::InvalidConfig)?;
        let geo = Geometry::new(&config);
        Ok(Self {
            dedup: EventDedup::new(geo.dedup_horizon_ms, config.capacity.max_dedup_ids as usize),
            detectors: Detectors::new(&config, &geo),
            geo,
            max_videos: config.capacity.max_videos as usize,
            max_dedup_ids: config.capacity.max_dedup_ids as usize,
            videos: Vec::new(),
            creators: CreatorTable::default(),
            free: Vec::new(),
            index: HashTable::new(),
            velocity_watch: Vec::new(),
            trending_watch: Vec::new(),
            watch_flags: Vec::new(),
            sketch: None,
            clock: Clock {
                started_at: 0,
                max_event_time: None,
                watermark: i64::MIN,
                next_bucket: 0,
                next_slot: 0,
                last_sweep_slot: 0,
                slots_since_age: 0,
                idle_since: None,
                events_since_tick: false,
                rng: 0x9E37_79B9_7F4A_7C15,
            },
            stats: PartitionStats::default(),
            candidates_k: 0,
            candidate_sets: Vec::new(),
            unsent_empty: None,
            scratch: Vec::new(),
            id_heap_bytes: 0,
        })
    }

    /// Makes the partition propose its best `k` videos to the global ranker at every
    /// closed trending slot (0, the default, proposes nothing). Not part of the snapshot:
    /// set it again after [`PartitionState::from_bytes`].
    pub fn propose_candidates(&mut self, k: usize) {
        self.candidates_k = k;
    }

    /// Moves the candidate sets of the slots closed since the last call into `out`, oldest
    /// first. A set is sent for every closed slot that has candidates, and for the last
    /// slot of each watermark advance even when it has none (see [`crate::rank`]).
    pub fn drain_candidates(&mut self, out: &mut Vec<CandidateSet>) {
        out.append(&mut self.candidate_sets);
    }

    /// Applies one event (in offset order), appending any alerts its watermark move caused.
    pub fn apply(&mut self, event: &EventRef<'_>, out: &mut Vec<Alert>) -> Verdict {
        let t = event.event_time;
        let Ok(bucket) = u32::try_from(t.div_euclid(self.geo.bucket_ms)) else {
            self.stats.out_of_range += 1;
            return Verdict::OutOfRange;
        };
        self.clock.events_since_tick = true;
        match self.clock.max_event_time {
            None => self.start_clock(t),
            Some(max) if t > max => {
                self.clock.max_event_time = Some(t);
                let wm = t.saturating_sub(self.geo.lateness_ms);
                if wm > self.clock.watermark {
                    self.advance_to(wm, out);
                }
            }
            Some(_) => {}
        }
        if t < self.clock.watermark {
            self.stats.late += 1;
            return Verdict::Late;
        }
        let event_hash = key_hash(event.event_id);
        if !self.dedup.insert(event_hash, t) {
            self.stats.duplicates += 1;
            return Verdict::Duplicate;
        }
        let video_hash = key_hash(event.video_id);
        let idx = match self.lookup(video_hash, event.video_id) {
            Some(i) => i,
            None => match self.admit(video_hash, event, bucket) {
                Some(i) => i,
                None => {
                    self.stats.untracked += 1;
                    return Verdict::Untracked;
                }
            },
        };
        // A view's viewer, for the distinct-viewer sketch; an anonymous view (no user id, or
        // an empty one, as producers that fill every field send) is a viewer of its own (its
        // event id is unique).
        let viewer = match (event.kind, event.user_id) {
            (EventKind::View, Some(user)) if !user.is_empty() => key_hash(user),
            _ => event_hash,
        };
        self.count(idx as usize, event.kind, viewer, bucket, out);
        self.stats.counted[event.kind.index()] += 1;
        Verdict::Counted
    }

    /// Tells the partition the wall clock reads `wall_now_ms`. Does nothing unless the
    /// partition has been silent for `idle_timeout`; then the watermark advances with the
    /// wall clock (see the module docs), closing windows and ending episodes.
    pub fn tick(&mut self, wall_now_ms: i64, out: &mut Vec<Alert>) {
        if self.clock.events_since_tick || self.clock.idle_since.is_none() {
            self.clock.idle_since = Some(wall_now_ms);
            self.clock.events_since_tick = false;
            return;
        }
        let (Some(max), Some(since)) = (self.clock.max_event_time, self.clock.idle_since) else {
            return;
        };
        let silent = wall_now_ms.saturating_sub(since);
        if silent <= self.geo.idle_timeout_ms {
            return;
        }
        let target = max
            .saturating_sub(self.geo.lateness_ms)
            .saturating_add(silent - self.geo.idle_timeout_ms);
        if target > self.clock.watermark {
            self.advance_to(target, out);
        }
    }

    /// Whether a [`PartitionState::tick`] at `wall_now_ms` would advance the watermark: the
    /// partition has been silent for longer than `idle_timeout`. Silence counts only when
    /// the reader is at the end of the partition's log; a caller that cannot confirm it
    /// (the broker does not answer, records are waiting) calls
    /// [`PartitionState::hold_idle`] instead of ticking.
    pub fn idle_due(&self, wall_now_ms: i64) -> bool {
        if self.clock.events_since_tick || self.clock.max_event_time.is_none() {
            return false;
        }
        self.clock
            .idle_since
            .is_some_and(|since| wall_now_ms.saturating_sub(since) > self.geo.idle_timeout_ms)
    }

    /// Since when (wall clock) the partition has been silent, if it is: events arrived
    /// before, none since the last [`PartitionState::tick`], and silence is being measured.
    pub fn silent_since(&self) -> Option<i64> {
        if self.clock.events_since_tick || self.clock.max_event_time.is_none() {
            return None;
        }
        self.clock.idle_since
    }

    /// The partition was not idle but unread until `wall_ms`: its reader was behind the end
    /// of the log or could not reach it. Silence before `wall_ms` does not count; it is
    /// measured from there, so a backlog read later is not behind an advanced watermark.
    /// No effect when events arrived since the last tick (the next tick measures silence
    /// from itself) or when silence already counts from later.
    pub fn hold_idle(&mut self, wall_ms: i64) {
        if self.clock.events_since_tick {
            return;
        }
        self.clock.idle_since = Some(self.clock.idle_since.map_or(wall_ms, |s| s.max(wall_ms)));
    }

    /// Advances the watermark to `target` (no effect unless it is ahead), closing windows
    /// and ending episodes as an idle tick does. Lets a replay follow a live run whose
    /// partition went idle at the end of its input.
    pub fn advance_watermark(&mut self, target: i64, out: &mut Vec<Alert>) {
        if self.clock.max_event_time.is_some() && target > self.clock.watermark {
            self.advance_to(target, out);
        }
    }

    /// Forgets when the partition was last heard of on the wall clock, so silence is measured
    /// from the next [`PartitionState::tick`]. Call it after restoring a checkpoint: the wall
    /// clock of the previous owner (and the time the partition spent unassigned) is not
    /// silence of the stream, and counting it would jump the watermark.
    pub fn restart_idle_clock(&mut self) {
        self.clock.idle_since = None;
    }

    /// End of input: advances the watermark, a bucket at a time, far enough that every
    /// window closes and every open episode ends. Used by replay and backtests.
    pub fn finish(&mut self, out: &mut Vec<Alert>) {
        if self.clock.max_event_time.is_none() {
            return;
        }
        let target = self
            .clock
            .watermark
            .saturating_add(self.detectors.drain_span_ms(&self.geo));
        while self.clock.watermark < target {
            let next = self
                .clock
                .watermark
                .saturating_add(self.geo.bucket_ms)
                .min(target);
            self.advance_to(next, out);
        }
    }

    /// The current watermark, once an event has been seen.
    pub fn watermark(&self) -> Option<i64> {
        self.clock.max_event_time.map(|_| self.clock.watermark)
    }

    /// Running tallies.
    pub fn stats(&self) -> &PartitionStats {
        &self.stats
    }

    /// Videos tracked now.
    pub fn tracked_videos(&self) -> usize {
        self.index.len()
    }

    /// Bytes of memory the state holds: video slab, ids on the heap, index, watch lists,
    /// de-duplication sets and admission sketch.
    pub fn memory_bytes(&self) -> usize {
        let slab = self.videos.capacity() * mem::size_of::<Option<VideoState>>();
        debug_assert_eq!(
            self.id_heap_bytes,
            self.recount_id_heap_bytes(),
            "the video ids' running heap tally"
        );
        let index = self.index.capacity() * (mem::size_of::<u32>() + 1);
        let lists = (self.free.capacity()
            + self.velocity_watch.capacity()
            + self.trending_watch.capacity())
            * mem::size_of::<u32>()
            + self.watch_flags.capacity();
        let sketch = self
            .sketch
            .as_ref()
            .map_or(0, EngagementSketch::memory_bytes);
        mem::size_of::<Self>()
            + slab
            + self.id_heap_bytes
            + index
            + lists
            + self.creators.memory_bytes()
            + self.dedup.memory_bytes()
            + sketch
    }

    fn recount_id_heap_bytes(&self) -> usize {
        self.videos
            .iter()
            .flatten()
            .map(VideoState::heap_bytes)
            .sum()
    }

    /// Event ids currently remembered for de-duplication.
    pub fn dedup_entries(&self) -> usize {
        self.dedup.len()
    }

    /// Event ids forgotten for `capacity.max_dedup_ids` since this state was made or
    /// restored (a re-delivery of one of them counts again).
    pub fn dedup_forgotten(&self) -> u64 {
        self.dedup.forgotten()
    }

    /// Counts and current windows of one video, if tracked.
    pub fn video_counts(&self, video_id: &str) -> Option<VideoCounts> {
        let idx = self.lookup(key_hash(video_id), video_id)? as usize;
        let v = self.videos[idx].as_ref()?;
        Some(VideoCounts {
            events: v.events,
            window_likes: v.likes_window(self.clock.next_bucket - 1, self.geo.velocity_buckets),
            window_score: v.score_window(
                self.clock.next_slot - 1,
                self.geo.trending_slots,
                self.geo.slot_buckets,
            ),
        })
    }

    /// A read-only view of one video as of the watermark, if tracked: its windows, its
    /// baselines brought up to the last closed bucket and slot (on a copy: the state does
    /// not change, so a query can never alter what the engine decides), the CUSUM and
    /// both episodes. Costs a copy of one video's fixed-size state and at most a ring's
    /// worth of baseline steps, whatever the number of tracked videos.
    pub fn video_view(&self, video_id: &str) -> Option<VideoView> {
        let idx = self.lookup(key_hash(video_id), video_id)? as usize;
        let mut v = self.videos[idx].as_ref()?.clone();
        let geo = &self.geo;
        let started = self.clock.started_at;
        let last_bucket = self.clock.next_bucket - 1;
        let last_slot = self.clock.next_slot - 1;
        self.detectors
            .catch_up_velocity(&mut v, last_bucket, started, geo);
        self.detectors
            .catch_up_trending(&mut v, last_slot, started, geo);
        let head = v.head();
        let open_likes = (last_bucket + 1..=head).map(|b| v.likes_at(b)).sum();
        // The bucket of the partition's newest event: where the detector stands at a like.
        let now = self
            .clock
            .max_event_time
            .map_or(last_bucket, |t| t.div_euclid(geo.bucket_ms));
        let buckets = (head - FINE_SLOTS as i64 + 1..=head)
            .filter(|b| *b >= 0)
            .map(|b| BucketLikes {
                start: b * geo.bucket_ms,
                likes: v.likes_at(b),
            })
            .collect();
        let (expected, cusum_threshold, v_tiers) = self
            .detectors
            .velocity_yardsticks(&v.velocity_baseline, geo);
        let (corroborated_expected, corroborated_cusum_threshold, corroborated) =
            self.detectors.corroborated_yardsticks(&v, now, geo);
        let (t_tiers, min_ratio) = self.detectors.trending_yardsticks();
        let vb = &v.velocity_baseline;
        let sb = geo.slot_buckets;
        let m = geo.trending_slots;
        Some(VideoView {
            video_id: v.video_id.to_string(),
            creator_id: self.creators.get(v.creator).to_string(),
            first_seen: v.first_seen,
            events: v.events,
            watermark: self.clock.watermark,
            velocity: VelocityView {
                bucket_ms: geo.bucket_ms,
                window_start: (last_bucket + 1 - geo.velocity_buckets) * geo.bucket_ms,
                window_end: (last_bucket + 1) * geo.bucket_ms,
                likes: v.likes_window(last_bucket, geo.velocity_buckets),
                open_likes,
                buckets,
                baseline: vb.mean(),
                baseline_stddev: vb.stddev(),
                expected,
                tiers: v_tiers.to_vec(),
                cusum: f64::from(v.cusum),
                cusum_threshold,
                corroborated_expected,
                corroborated_cusum_threshold,
                corroborated,
                cusum_since: (v.cusum > 0.0).then_some(i64::from(v.cusum_since) * geo.bucket_ms),
                episode: EpisodeView::of(&v.velocity, geo.bucket_ms),
            },
            trending: TrendingView {
                slot_ms: geo.slot_ms,
                window_start: (last_slot + 1 - m) * geo.slot_ms,
                window_end: (last_slot + 1) * geo.slot_ms,
                score: v.score_window(last_slot, m, sb),
                previous_score: v.score_window(last_slot - 1, m, sb),
                baseline: v.trending_baseline.mean(),
                tiers: t_tiers.to_vec(),
                min_ratio,
                episode: EpisodeView::of(&v.trending, geo.slot_ms),
            },
        })
    }

    /// Every tracked video's id, creator and events counted, sorted by id.
    pub fn video_totals(&self) -> Vec<(String, String, u32)> {
        let mut all: Vec<_> = self
            .videos
            .iter()
            .flatten()
            .map(|v| {
                (
                    v.video_id.to_string(),
                    self.creators.get(v.creator).to_string(),
                    v.events,
                )
            })
            .collect();
        all.sort_unstable();
        all
    }

    fn start_clock(&mut self, t: i64) {
        let wm = t.saturating_sub(self.geo.lateness_ms);
        let c = &mut self.clock;
        c.started_at = t;
        c.max_event_time = Some(t);
        c.watermark = wm;
        c.next_bucket = wm.div_euclid(self.geo.bucket_ms);
        c.next_slot = wm.div_euclid(self.geo.slot_ms);
        c.last_sweep_slot = c.next_slot;
    }

    fn lookup(&self, hash: u64, video_id: &str) -> Option<u32> {
        let videos = &self.videos;
        self.index
            .find(hash, |&i| {
                videos[i as usize]
                    .as_ref()
                    .is_some_and(|v| v.video_id == video_id)
            })
            .copied()
    }

    /// Starts tracking the event's video if there is room, or if it out-scores a sampled
    /// tracked video (which is then evicted).
    fn admit(&mut self, hash: u64, event: &EventRef<'_>, bucket: u32) -> Option<u32> {
        let fresh = |creators: &mut CreatorTable, clock: &Clock| {
            let creator = creators.acquire(event.creator_id);
            let mut v = VideoState::new(event.video_id, creator, bucket, event.event_time);
            v.velocity_baseline.through = index32(clock.next_bucket - 1);
            v.trending_baseline.through = index32(clock.next_slot - 1);
            v
        };
        if self.index.len() < self.max_videos {
            let fresh = fresh(&mut self.creators, &self.clock);
            self.id_heap_bytes += fresh.heap_bytes();
            let idx = match self.free.pop() {
                Some(i) => {
                    self.videos[i as usize] = Some(fresh);
                    i
                }
                None => {
                    self.videos.push(Some(fresh));
                    self.watch_flags.push(0);
                    (self.videos.len() - 1) as u32
                }
            };
            self.insert_index(hash, idx);
            return Some(idx);
        }
        let weight = self.detectors.weight(event.kind).unsigned_abs().max(1);
        let estimate = self
            .sketch
            .get_or_insert_with(|| EngagementSketch::new(self.max_videos))
            .add(hash, weight);
        let mut victim: Option<(i64, u32)> = None;
        for _ in 0..EVICTION_SAMPLES {
            let i = (self.next_random() % self.videos.len() as u64) as u32;
            if let Some(v) = &self.videos[i as usize] {
                if v.has_open_episode() {
                    continue;
                }
                let activity = v.activity();
                if victim.is_none_or(|(a, _)| activity < a) {
                    victim = Some((activity, i));
                }
            }
        }
        let (activity, idx) = victim?;
        if i64::from(estimate) <= activity {
            return None;
        }
        self.remove_video(idx);
        self.stats.evicted += 1;
        let fresh = fresh(&mut self.creators, &self.clock);
        self.id_heap_bytes += fresh.heap_bytes();
        self.videos[idx as usize] = Some(fresh);
        self.insert_index(hash, idx);
        Some(idx)
    }

    fn insert_index(&mut self, hash: u64, idx: u32) {
        let videos = &self.videos;
        self.index.insert_unique(hash, idx, |&i| {
            videos[i as usize]
                .as_ref()
                .map_or(0, |v| key_hash(&v.video_id))
        });
    }

    /// Forgets the video in slot `idx` (the slot stays allocated; the caller reuses or
    /// frees it).
    fn remove_video(&mut self, idx: u32) {
        if let Some(v) = self.videos[idx as usize].take() {
            self.id_heap_bytes = self.id_heap_bytes.saturating_sub(v.heap_bytes());
            self.creators.release(v.creator);
            let hash = key_hash(&v.video_id);
            if let Ok(entry) = self.index.find_entry(hash, |&i| i == idx) {
                entry.remove();
            }
        }
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.clock.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.clock.rng = x;
        x
    }

    /// Adds one counted event to its video's rings, tests the video at a like (an alert
    /// may fire at once, on still-open buckets), and watches the video if it must be scored
    /// at closes.
    fn count(
        &mut self,
        idx: usize,
        kind: EventKind,
        viewer: u64,
        bucket: u32,
        out: &mut Vec<Alert>,
    ) {
        let geo = &self.geo;
        let slot_buckets = geo.slot_buckets;
        let Some(v) = self.videos[idx].as_mut() else {
            return;
        };
        // Bring the baselines up to the last closed bucket and slot before the rings move,
        // so nothing a baseline still needs falls out of them.
        let started = self.clock.started_at;
        self.detectors
            .catch_up_velocity(v, self.clock.next_bucket - 1, started, geo);
        self.detectors
            .catch_up_trending(v, self.clock.next_slot - 1, started, geo);
        v.advance_head(bucket, geo.slot_buckets, geo.velocity_buckets);
        v.events = v.events.saturating_add(1);
        let bucket = i64::from(bucket);
        let like_delta = match kind {
            EventKind::Like => 1,
            EventKind::Unlike => -1,
            _ => 0,
        };
        if like_delta != 0 {
            // A counted event is at most the allowed lateness behind the partition's
            // newest (validated to leave two velocity windows of the fine ring), so its
            // like slot is never one already folded into `slot_likes`.
            debug_assert!(
                bucket >= v.head() - crate::config::FINE_SLOTS as i64 + geo.velocity_buckets,
                "a like counted into a folded like slot"
            );
            bump_likes(&mut v.likes[fine_index(bucket)], like_delta);
        }
        let slot = bucket.div_euclid(slot_buckets);
        let weight = self.capped_weight(idx, kind, viewer, slot);
        let geo = &self.geo;
        let Some(v) = self.videos[idx].as_mut() else {
            return;
        };
        if weight != 0 {
            bump(&mut v.score[coarse_index(slot)], weight);
        }
        let mut active = false;
        if like_delta > 0 {
            let newest = self.clock.max_event_time.unwrap_or(0);
            let now = newest.div_euclid(geo.bucket_ms);
            let creator = self.creators.get(v.creator);
            active = self.detectors.velocity_on_like(
                v,
                creator,
                now,
                (started, newest),
                geo,
                out,
                &mut self.stats.alerts,
            );
        }
        let flags = &mut self.watch_flags[idx];
        if *flags & VELOCITY_FLAG == 0 && active {
            *flags |= VELOCITY_FLAG;
            self.velocity_watch.push(idx as u32);
        }
        if *flags & TRENDING_FLAG == 0 && weight > 0 && self.detectors.trending_worth_watching(v) {
            *flags |= TRENDING_FLAG;
            self.trending_watch.push(idx as u32);
        }
    }

    /// The change of the video's trending score for one event in `slot`: the kind's
    /// weight, with views counted only up to the slot's allowance
    /// (`views_per_interaction` per interaction), whatever order a slot's events come in.
    /// A slot older than the newest two keeps no tallies: its views score nothing.
    fn capped_weight(&mut self, idx: usize, kind: EventKind, viewer: u64, slot: i64) -> i32 {
        let d = &self.detectors;
        let Some(v) = self.videos[idx].as_mut() else {
            return 0;
        };
        let head_slot = v.head().div_euclid(self.geo.slot_buckets);
        let tracked = slot > head_slot - CAPPED_SLOTS as i64;
        let i = capped_index(slot);
        let view_weight = i64::from(d.weight(EventKind::View));
        match kind {
            EventKind::View => {
                if !tracked {
                    return 0;
                }
                let seen = v.slot_views[i];
                v.slot_views[i] = seen.saturating_add(1);
                ViewerSketch::note(&mut v.slot_viewers[i], v.slot_viewer_level[i], viewer);
                let allowed = d.view_allowance(v.slot_interactions[i]);
                if i64::from(seen) < allowed {
                    d.weight(kind)
                } else {
                    0
                }
            }
            _ if !tracked => d.weight(kind),
            _ => {
                let views = i64::from(v.slot_views[i]);
                let before = views.min(d.view_allowance(v.slot_interactions[i]));
                let delta = if kind == EventKind::Unlike { -1 } else { 1 };
                v.slot_interactions[i] = v.slot_interactions[i].saturating_add(delta);
                let after = views.min(d.view_allowance(v.slot_interactions[i]));
                let released = (after - before) * view_weight;
                let total = i64::from(d.weight(kind)) + released;
                i32::try_from(total).unwrap_or(if total < 0 { i32::MIN } else { i32::MAX })
            }
        }
    }

    /// Moves the watermark to `wm`, closing every bucket and slot that ends at or before it.
    fn advance_to(&mut self, wm: i64, out: &mut Vec<Alert>) {
        self.clock.watermark = wm;
        let b = self.geo.bucket_ms;
        let sb = self.geo.slot_buckets;
        loop {
            let c = &mut self.clock;
            let bucket_end = (c.next_bucket + 1) * b;
            let slot_end = (c.next_slot + 1) * self.geo.slot_ms;
            if bucket_end <= wm && bucket_end <= slot_end {
                if self.velocity_watch.is_empty() {
                    // Nothing can fire: skip to the end of the current slot (or the watermark).
                    c.next_bucket = wm
                        .div_euclid(b)
                        .min((c.next_slot + 1) * sb)
                        .max(c.next_bucket + 1);
                } else {
                    let closing = c.next_bucket;
                    c.next_bucket += 1;
                    self.close_bucket(closing, out);
                }
            } else if slot_end <= wm {
                let closing = c.next_slot;
                c.next_slot += 1;
                self.close_slot(closing, out);
            } else {
                break;
            }
        }
        if let Some(set) = self.unsent_empty.take() {
            self.candidate_sets.push(set);
        }
        self.dedup.expire(wm);
    }

    fn close_bucket(&mut self, bucket: i64, out: &mut Vec<Alert>) {
        self.score_watched(false, bucket, out);
    }

    fn close_slot(&mut self, slot: i64, out: &mut Vec<Alert>) {
        self.score_watched(true, slot, out);
        if self.candidates_k > 0 {
            self.propose(slot);
        }

        self.clock.slots_since_age += 1;
        if self.clock.slots_since_age >= self.geo.trending_slots {
            self.clock.slots_since_age = 0;
            if let Some(s) = self.sketch.as_mut() {
                s.age();
            }
        }
        if slot - self.clock.last_sweep_slot >= self.geo.sweep_every_slots {
            self.clock.last_sweep_slot = slot;
            self.expire_idle_videos();
        }
    }

    /// Scores every video one detector watches at the close of `index` (a bucket for
    /// velocity, a slot for trending), and stops watching those that can no longer fire.
    fn score_watched(&mut self, trending: bool, index: i64, out: &mut Vec<Alert>) {
        let (mut watch, flag) = if trending {
            (mem::take(&mut self.trending_watch), TRENDING_FLAG)
        } else {
            (mem::take(&mut self.velocity_watch), VELOCITY_FLAG)
        };
        let score = if trending {
            Detectors::score_trending
        } else {
            Detectors::score_velocity
        };
        let clock = (self.clock.started_at, self.clock.watermark);
        watch.retain(|&i| {
            let keep = self.videos[i as usize].as_mut().is_some_and(|v| {
                let creator = self.creators.get(v.creator);
                score(
                    &self.detectors,
                    v,
                    creator,
                    index,
                    clock,
                    &self.geo,
                    out,
                    &mut self.stats.alerts,
                )
            });
            if !keep {
                self.watch_flags[i as usize] &= !flag;
            }
            keep
        });
        if trending {
            self.trending_watch = watch;
        } else {
            self.velocity_watch = watch;
        }
    }

    /// The best `candidates_k` videos by score over the trending window ending with closed
    /// slot `slot` (score descending, then video id), as a candidate set.
    fn propose(&mut self, slot: i64) {
        let m = self.geo.trending_slots;
        let sb = self.geo.slot_buckets;
        let first = slot - m + 1;
        let last_bucket = (slot + 1) * sb - 1;
        let k = self.candidates_k;
        let videos = &self.videos;
        let id = |i: u32| {
            videos[i as usize]
                .as_ref()
                .map_or("", |v| v.video_id.as_str())
        };
        // Rank order: higher score first, then the smaller id.
        let order = |a: &(i64, u32), b: &(i64, u32)| {
            b.0.cmp(&a.0)
                .then_with(|| id(a.1).as_bytes().cmp(id(b.1).as_bytes()))
        };
        let before = |a: &(i64, u32), b: &(i64, u32)| order(a, b).is_lt();
        // The best k so far, unordered, and where the worst of them is: memory stays at k
        // entries however many videos score.
        let best = &mut self.scratch;
        best.clear();
        let mut worst = 0usize;
        for (i, v) in videos.iter().enumerate() {
            let Some(v) = v else { continue };
            // Nothing since the window began: its score there is 0.
            if v.head().div_euclid(sb) < first {
                continue;
            }
            let score = v.score_window(slot, m, sb);
            if score <= 0 {
                continue;
            }
            let entry = (score, i as u32);
            if best.len() < k {
                best.push(entry);
                if best.len() == k {
                    worst = (0..k).fold(0, |w, j| if before(&best[w], &best[j]) { j } else { w });
                }
            } else if before(&entry, &best[worst]) {
                best[worst] = entry;
                worst = (0..k).fold(0, |w, j| if before(&best[w], &best[j]) { j } else { w });
            }
        }
        best.sort_unstable_by(order);
        let candidates: Vec<Candidate> = best
            .iter()
            .filter_map(|&(score, i)| {
                let v = videos[i as usize].as_ref()?;
                Some(Candidate {
                    video_id: v.video_id.to_string(),
                    creator_id: self.creators.get(v.creator).to_string(),
                    score,
                    previous_score: v.score_window(slot - 1, m, sb),
                    likes: v.likes_window(last_bucket, self.geo.velocity_buckets),
                    first_seen: v.first_seen,
                })
            })
            .collect();
        let set = CandidateSet {
            window_start: first * self.geo.slot_ms,
            window_end: (slot + 1) * self.geo.slot_ms,
            watermark: self.clock.watermark,
            candidates,
        };
        if set.candidates.is_empty() {
            self.unsent_empty = Some(set);
        } else {
            self.unsent_empty = None;
            self.candidate_sets.push(set);
        }
    }

    /// Forgets videos with no event for `video_ttl` and no open episode.
    fn expire_idle_videos(&mut self) {
        let horizon = self.clock.watermark.saturating_sub(self.geo.ttl_ms);
        for idx in 0..self.videos.len() {
            let idle = self.videos[idx].as_ref().is_some_and(|v| {
                (v.head() + 1) * self.geo.bucket_ms <= horizon && !v.has_open_episode()
            });
            if idle {
                self.remove_video(idx as u32);
                self.free.push(idx as u32);
                self.stats.expired += 1;
            }
        }
    }

    /// Serializes the whole state: a magic, a version, then the state. Restoring the bytes
    /// with [`PartitionState::from_bytes`] gives a state that behaves identically.
    pub fn to_bytes(&self) -> Vec<u8> {
        let snap = SnapshotRef {
            geometry: self.geo.fingerprint(),
            max_videos: self.max_videos as u64,
            videos: &self.videos,
            creators: &self.creators,
            free: &self.free,
            velocity_watch: &self.velocity_watch,
            trending_watch: &self.trending_watch,
            watch_flags: &self.watch_flags,
            dedup: self.dedup.snapshot(),
            sketch: self.sketch.as_ref(),
            clock: &self.clock,
            stats: &self.stats,
        };
        let mut out = Vec::with_capacity(64 + self.videos.len() * 200);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        // Serializing plain data into a Vec cannot fail; keep the header-only bytes if it did,
        // which from_bytes then refuses loudly rather than restoring something partial.
        if let Ok(body) = postcard::to_allocvec(&snap) {
            out.extend_from_slice(&body);
        }
        out
    }

    /// Restores a state written by [`PartitionState::to_bytes`]. Thresholds come from
    /// `config` (they may change between runs); the window geometry must be the one the
    /// snapshot was taken with.
    pub fn from_bytes(config: EngineConfig, bytes: &[u8]) -> Result<Self> {
        let mut state = Self::new(config)?;
        let body = bytes
            .strip_prefix(SNAPSHOT_MAGIC.as_slice())
            .ok_or_else(|| CoreError::Snapshot("not a partition snapshot (bad magic)".into()))?;
        let (version, body) = body
            .split_first_chunk::<2>()
            .ok_or_else(|| CoreError::Snapshot("truncated header".into()))?;
        let version = u16::from_le_bytes(*version);
        if version != SNAPSHOT_VERSION {
            let why = if version < SNAPSHOT_VERSION {
                "it was written by an older trendwatch whose detectors kept other state (version 2 brought the sequential velocity tests and view-capped trending, version 3 the like counts of the long scan windows, version 4 the distinct-viewer sketches); start this partition from an empty state or keep the older release (docs/OPERATIONS.md, upgrades)"
            } else {
                "it was written by a newer trendwatch; roll forward again or start from an empty state"
            };
            return Err(CoreError::Snapshot(format!(
                "snapshot version {version} cannot be restored by this build (it reads version {SNAPSHOT_VERSION}): {why}"
            )));
        }
        let snap: SnapshotOwned =
            postcard::from_bytes(body).map_err(|e| CoreError::Snapshot(e.to_string()))?;
        if snap.geometry != state.geo.fingerprint() {
            return Err(CoreError::Snapshot(format!(
                "window geometry changed since the snapshot (was {:?}, configured {:?}); windows cannot be re-bucketed",
                snap.geometry,
                state.geo.fingerprint()
            )));
        }
        if snap.watch_flags.len() != snap.videos.len() || !snap.creators.is_consistent() {
            return Err(CoreError::Snapshot("inconsistent slot tables".into()));
        }
        let slots = snap.videos.len();
        let in_range = |l: &[u32]| l.iter().all(|&i| (i as usize) < slots);
        if !in_range(&snap.free)
            || !in_range(&snap.velocity_watch)
            || !in_range(&snap.trending_watch)
        {
            return Err(CoreError::Snapshot("slot index out of range".into()));
        }
        state.max_videos = state.max_videos.max(snap.max_videos as usize);
        state.videos = snap.videos;
        state.creators = snap.creators;
        state.creators.rebuild_index();
        state.free = snap.free;
        state.velocity_watch = snap.velocity_watch;
        state.trending_watch = snap.trending_watch;
        state.watch_flags = snap.watch_flags;
        state.dedup =
            EventDedup::restore(state.geo.dedup_horizon_ms, state.max_dedup_ids, snap.dedup);
        state.sketch = snap.sketch;
        state.clock = snap.clock;
        state.stats = snap.stats;
        state.id_heap_bytes = state.recount_id_heap_bytes();
        for idx in 0..state.videos.len() {
            if let Some(v) = &state.videos[idx] {
                let hash = key_hash(&v.video_id);
                state.insert_index(hash, idx as u32);
            }
        }
        Ok(state)
    }
}

#[derive(Serialize)]
struct SnapshotRef<'a> {
    geometry: [i64; 9],
    max_videos: u64,
    videos: &'a Vec<Option<VideoState>>,
    creators: &'a CreatorTable,
    free: &'a Vec<u32>,
    velocity_watch: &'a Vec<u32>,
    trending_watch: &'a Vec<u32>,
    watch_flags: &'a Vec<u8>,
    dedup: DedupSnapshot,
    sketch: Option<&'a EngagementSketch>,
    clock: &'a Clock,
    stats: &'a PartitionStats,
}

#[derive(Deserialize)]
struct SnapshotOwned {
    geometry: [i64; 9],
    max_videos: u64,
    videos: Vec<Option<VideoState>>,
    creators: CreatorTable,
    free: Vec<u32>,
    velocity_watch: Vec<u32>,
    trending_watch: Vec<u32>,
    watch_flags: Vec<u8>,
    dedup: DedupSnapshot,
    sketch: Option<EngagementSketch>,
    clock: Clock,
    stats: PartitionStats,
}
