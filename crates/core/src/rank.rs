//! Global trending: the second stage of a two-stage top-K (Nexmark query 5, "hot items").
//!
//! A video lives in exactly one partition (the Kafka key is its id), so the global top-K
//! of a window is contained in the union of the partitions' local top-Ks: each
//! [`crate::PartitionState`] proposes, at every closed trending slot, its best videos by
//! engagement score over the trending window ending there (a [`CandidateSet`]), and the
//! [`Ranker`] merges the sets of every partition into one [`Board`] per window.
//!
//! ## When a window closes
//!
//! A set for window end `W` also promises that its partition has closed every window up to
//! `W`; a partition with nothing to propose for a window sends nothing for it, so silence
//! between two sets means "no candidates there". The ranker closes window `W` when every
//! partition has promised `W`. A partition that sends nothing for `idle_timeout` of wall
//! time (no events at all, or no counter owns it) is *left out* until it sends again, so
//! one quiet partition cannot hold the board back; the board names the partitions it left
//! out. (A partition that had events and then went quiet keeps sending: the counter's own
//! idle rule moves its watermark with the wall clock.) A set arriving for a window already
//! closed is *stale*: counted and dropped (a counter re-sends sets after a restart; those
//! are identical to what was merged).
//!
//! ## Order and ties
//!
//! Videos rank by score (descending), then by video id (ascending, bytewise): the same
//! candidates always give the same board, whatever order the sets arrived in.
//!
//! ## Alerts
//!
//! Per video the lifecycle of the partition detectors, counted in windows: a video that
//! enters the top K opens an episode (TRENDING with its global rank); while the episode is
//! open, a climb of `climb_places` or more since the last alert (measured from the worst
//! rank seen since then) is a RANK_CHANGED alert; the episode ends (TRENDING_ENDED) after
//! `clear_after` consecutive windows ranked worse than `exit_rank` (hysteresis: entering
//! needs the top `top_k`, staying only the top `exit_rank`), then a cooldown. Ids are
//! hashes of video, type, episode start (and the window, for a rank change), so a re-run
//! emits the same ids.
//!
//! ## Determinism
//!
//! Given the same sets, the same boards and alerts come out, however the sets were
//! batched and whatever their order within a window; only leaving a partition out depends
//! on the wall clock, and the board says when it did.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::EngineConfig;
use crate::error::{CoreError, Result};
use crate::event::{Alert, AlertType};
use crate::hash::stable_id;

/// One video a partition proposes for a window's board.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The video.
    pub video_id: String,
    /// Its creator.
    pub creator_id: String,
    /// Weighted engagement over the trending window ending at the set's `window_end`.
    pub score: i64,
    /// The same over the trending window ending one slot earlier.
    pub previous_score: i64,
    /// Net likes over the velocity window ending at `window_end`.
    pub likes: i64,
    /// When the partition first saw the video (event time, ms).
    pub first_seen: i64,
}

/// A partition's best videos for one closed window, and its promise that every window up
/// to `window_end` is closed there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateSet {
    /// Start of the trending window (inclusive, event time ms).
    pub window_start: i64,
    /// End of the trending window (exclusive); windows are named by their end.
    pub window_end: i64,
    /// The partition's watermark when the window closed.
    pub watermark: i64,
    /// Best first (score descending, then video id); only videos with a positive score.
    pub candidates: Vec<Candidate>,
}

/// One place on a board.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoardEntry {
    /// 1-based.
    pub rank: u32,
    /// The video.
    pub video_id: String,
    /// Its creator.
    pub creator_id: String,
    /// Weighted engagement over the window.
    pub score: i64,
    /// The same over the window one slot earlier (the change since the last window is
    /// `score - previous_score`).
    pub previous_score: i64,
    /// Net likes per minute over the velocity window ending with the window.
    pub likes_per_min: f64,
    /// Rank on the board of the window one slot earlier; 0 if it was not on it.
    pub previous_rank: u32,
}

/// The global top K of one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Board {
    /// Start of the trending window (inclusive, event time ms).
    pub window_start: i64,
    /// End of the trending window (exclusive).
    pub window_end: i64,
    /// The K of the top K.
    pub top_k: u32,
    /// Partitions of the events topic.
    pub partitions: u32,
    /// Partitions left out of this window because they were silent for the idle timeout.
    pub left_out: Vec<i32>,
    /// Best first; at most `top_k`.
    pub entries: Vec<BoardEntry>,
}

/// How the global board is ranked and when its alerts fire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RankingConfig {
    /// Places on the board.
    pub top_k: u32,
    /// An open episode ends only after its video ranks worse than this (or not at all) for
    /// `clear_after` windows; each partition proposes this many candidates. At least
    /// `top_k`.
    pub exit_rank: u32,
    /// A climb of this many places since the last alert is a RANK_CHANGED alert; 0 turns
    /// rank-change alerts off.
    pub climb_places: u32,
    /// Windows below `exit_rank` before TRENDING_ENDED.
    pub clear_after: u32,
    /// After TRENDING_ENDED, the video cannot open a new episode for this long (event time).
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// A partition that sends no candidates for this long (wall time) is left out of the
    /// windows that close meanwhile.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Windows waiting for slow partitions beyond this many are closed without them.
    pub max_pending_windows: u32,
    /// No board alerts for windows ending less than this (event time) after the first
    /// window the ranker closed: the first windows hold only the first minutes of data,
    /// so their top K is no news. Episodes still open and close silently meanwhile, so a
    /// video already on the board when warm-up ends does not fire then.
    #[serde(with = "humantime_serde")]
    pub warmup: Duration,
}

impl Default for RankingConfig {
    fn default() -> Self {
        Self {
            top_k: 10,
            exit_rank: 15,
            climb_places: 3,
            clear_after: 2,
            cooldown: Duration::from_secs(5 * 60),
            idle_timeout: Duration::from_secs(30),
            max_pending_windows: 120,
            warmup: Duration::from_secs(15 * 60),
        }
    }
}

impl RankingConfig {
    /// Every problem, each naming its key.
    pub fn validate(&self) -> std::result::Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.top_k == 0 || self.top_k > 1000 {
            errors.push("ranking.top_k: must be 1 to 1000".to_string());
        }
        if self.exit_rank < self.top_k || self.exit_rank > 2000 {
            errors
                .push("ranking.exit_rank: must be at least ranking.top_k and at most 2000".into());
        }
        if self.clear_after == 0 {
            errors.push("ranking.clear_after: must be at least 1".to_string());
        }
        if self.idle_timeout.is_zero() {
            errors.push("ranking.idle_timeout: must be positive".to_string());
        }
        if self.max_pending_windows == 0 {
            errors.push("ranking.max_pending_windows: must be at least 1".to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Running tallies of the ranker, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankerStats {
    /// Candidate sets merged.
    pub sets: u64,
    /// Sets for windows already closed (dropped).
    pub stale_sets: u64,
    /// Windows closed.
    pub windows_closed: u64,
    /// Boards published (a run of empty windows publishes one empty board).
    pub boards: u64,
    /// Windows closed while some partition was left out as idle.
    pub windows_with_left_out: u64,
    /// Windows closed early because too many were waiting.
    pub forced_closes: u64,
    /// Alerts, by type: TRENDING, RANK_CHANGED, TRENDING_ENDED.
    pub alerts: [u64; 3],
}

/// The latest window end a set may name: 2^32 seconds after the epoch (2106), the end of
/// the engine's own time range; it keeps every window computation far from overflow.
const MAX_WINDOW_END: i64 = (1 << 32) * 1000;

/// What became of an offered candidate set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offered {
    /// Merged into its window (or, empty, taken as progress).
    Merged,
    /// Its window is already closed: dropped (it still counts as the partition's progress).
    Stale,
    /// Not of this ranker's window geometry, or of a negative partition: ignored.
    Refused,
}

impl Offered {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Offered::Merged => "merged",
            Offered::Stale => "stale",
            Offered::Refused => "rejected",
        }
    }
}

/// What the ranker decided in one call.
#[derive(Debug, Default)]
pub struct RankOutput {
    /// Boards to publish, oldest first.
    pub boards: Vec<Board>,
    /// Alerts to publish, in decision order.
    pub alerts: Vec<Alert>,
}

/// Progress of one partition of the events topic.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SourceProgress {
    /// Every window up to this end is closed there.
    closed_through: Option<i64>,
    /// Wall time the last set arrived (or the ranker started waiting for one).
    heard_at: Option<i64>,
    /// Left out: silent for the idle timeout.
    idle: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Phase {
    Active,
    Cooldown,
}

/// A video's place in the board's alert lifecycle.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Episode {
    phase: Phase,
    creator_id: String,
    /// Window end at which the episode opened.
    start: i64,
    /// Rank of the last alert, worsened to the worst rank seen since.
    reference_rank: u32,
    /// The last rank held (within `exit_rank`).
    last_rank: u32,
    /// Consecutive windows below `exit_rank`.
    calm: u32,
    cooldown_until: i64,
}

/// Merges partitions' candidate sets into boards and alerts. See the module docs.
pub struct Ranker {
    config: RankingConfig,
    slot_ms: i64,
    window_ms: i64,
    velocity_minutes: f64,
    cooldown_ms: i64,
    warmup_ms: i64,
    state: RankerState,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RankerState {
    partitions: u32,
    sources: BTreeMap<i32, SourceProgress>,
    /// Window end → partition → its candidates.
    pending: BTreeMap<i64, BTreeMap<i32, Vec<Candidate>>>,
    /// Every window up to this end is closed.
    closed_through: Option<i64>,
    /// The first window closed (warm-up is measured from it).
    first_window: Option<i64>,
    /// The last board published (previous ranks come from it).
    board: Option<Board>,
    episodes: BTreeMap<String, Episode>,
    stats: RankerStats,
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"TWRK";
const SNAPSHOT_VERSION: u16 = 1;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Ranker {
    /// A ranker over windows of `engine`'s geometry. Fails if either configuration does not
    /// validate.
    pub fn new(config: RankingConfig, engine: &EngineConfig) -> Result<Self> {
        let mut errors = Vec::new();
        if let Err(e) = engine.validate() {
            errors.extend(e);
        }
        if let Err(e) = config.validate() {
            errors.extend(e);
        }
        if !errors.is_empty() {
            return Err(CoreError::InvalidConfig(errors));
        }
        let w = &engine.windows;
        Ok(Self {
            slot_ms: ms(w.trending_slot).max(1),
            window_ms: ms(w.trending_window),
            velocity_minutes: w.velocity_window.as_secs_f64() / 60.0,
            cooldown_ms: ms(config.cooldown),
            warmup_ms: ms(config.warmup),
            config,
            state: RankerState::default(),
        })
    }

    /// Sets the number of partitions of the events topic (it may grow while running).
    pub fn set_partitions(&mut self, partitions: u32) {
        self.state.partitions = partitions;
    }

    /// Partitions of the events topic, as last set.
    pub fn partitions(&self) -> u32 {
        self.state.partitions
    }

    /// Whether a set's window geometry is this ranker's.
    pub fn fits(&self, set: &CandidateSet) -> bool {
        (1..=MAX_WINDOW_END).contains(&set.window_end)
            && set.window_end.checked_sub(set.window_start) == Some(self.window_ms)
            && set.window_end.rem_euclid(self.slot_ms) == 0
    }

    /// Merges `set` from `partition`, received at wall time `now`, and closes what can
    /// close. A set of another window geometry, or of a negative partition, is refused
    /// and changes nothing.
    pub fn offer(
        &mut self,
        partition: i32,
        set: CandidateSet,
        now: i64,
        out: &mut RankOutput,
    ) -> Offered {
        if partition < 0 || !self.fits(&set) {
            return Offered::Refused;
        }
        let s = &mut self.state;
        s.stats.sets += 1;
        let src = s.sources.entry(partition).or_default();
        src.heard_at = Some(now);
        src.idle = false;
        src.closed_through = Some(
            src.closed_through
                .map_or(set.window_end, |c| c.max(set.window_end)),
        );
        let offered = if s.closed_through.is_some_and(|c| set.window_end <= c) {
            s.stats.stale_sets += 1;
            Offered::Stale
        } else {
            if !set.candidates.is_empty() {
                s.pending
                    .entry(set.window_end)
                    .or_default()
                    .insert(partition, set.candidates);
            }
            Offered::Merged
        };
        self.close_ready(out);
        offered
    }

    /// Tells the ranker the wall clock reads `now`: partitions silent for the idle timeout
    /// are left out, and what can close closes.
    pub fn tick(&mut self, now: i64, out: &mut RankOutput) {
        let idle_ms = ms(self.config.idle_timeout);
        for p in 0..self.state.partitions as i32 {
            let src = self.state.sources.entry(p).or_default();
            match src.heard_at {
                None => src.heard_at = Some(now),
                Some(t) if now.saturating_sub(t) > idle_ms => src.idle = true,
                Some(_) => {}
            }
        }
        self.close_ready(out);
    }

    /// Forgets when partitions were last heard of, so silence is measured from the next
    /// tick. Call it after restoring: time spent down is not the partitions' silence.
    pub fn restart_idle_clock(&mut self) {
        for src in self.state.sources.values_mut() {
            src.heard_at = None;
            src.idle = false;
        }
    }

    /// Partitions the next window waits for (not yet closed there and not left out).
    pub fn waiting_partitions(&self) -> Vec<i32> {
        let next = self.next_window();
        (0..self.state.partitions as i32)
            .filter(|p| {
                let src = self.state.sources.get(p);
                !src.is_some_and(|s| s.idle)
                    && src
                        .and_then(|s| s.closed_through)
                        .is_none_or(|c| next.is_none_or(|n| c < n))
            })
            .collect()
    }

    /// Partitions left out as idle now.
    pub fn idle_partitions(&self) -> Vec<i32> {
        self.state
            .sources
            .iter()
            .filter(|(p, s)| s.idle && (**p as u32) < self.state.partitions)
            .map(|(p, _)| *p)
            .collect()
    }

    /// Windows waiting to close.
    pub fn pending_windows(&self) -> usize {
        self.state.pending.len()
    }

    /// The last board published.
    pub fn board(&self) -> Option<&Board> {
        self.state.board.as_ref()
    }

    /// Every window up to this end is closed.
    pub fn closed_through(&self) -> Option<i64> {
        self.state.closed_through
    }

    /// Running tallies.
    pub fn stats(&self) -> &RankerStats {
        &self.state.stats
    }

    fn next_window(&self) -> Option<i64> {
        let first_pending = self.state.pending.keys().next().copied();
        let after_closed = self.state.closed_through.map(|c| c + self.slot_ms);
        match (first_pending, after_closed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The newest window every partition has closed (idle ones aside), if known.
    fn closable_through(&self) -> Option<i64> {
        let s = &self.state;
        if s.partitions == 0 {
            return None;
        }
        let mut bound: Option<i64> = None;
        let mut all_idle = true;
        for p in 0..s.partitions as i32 {
            let src = s.sources.get(&p);
            if src.is_some_and(|x| x.idle) {
                continue;
            }
            all_idle = false;
            let c = src.and_then(|x| x.closed_through)?;
            bound = Some(bound.map_or(c, |b| b.min(c)));
        }
        if all_idle {
            // Nobody is talking: close what has been promised.
            return s.sources.values().filter_map(|x| x.closed_through).max();
        }
        bound
    }

    fn close_ready(&mut self, out: &mut RankOutput) {
        let mut bound = self.closable_through();
        let max_pending = self.config.max_pending_windows as usize;
        if self.state.pending.len() > max_pending {
            let excess = self.state.pending.len() - max_pending;
            if let Some(&forced) = self.state.pending.keys().nth(excess - 1) {
                self.state.stats.forced_closes += excess as u64;
                bound = Some(bound.map_or(forced, |b| b.max(forced)));
            }
        }
        let Some(bound) = bound else {
            return;
        };
        if self.state.closed_through.is_some_and(|c| bound <= c) {
            return;
        }
        while let Some(entry) = self.state.pending.first_entry() {
            let w = *entry.key();
            if w > bound {
                break;
            }
            let sets = entry.remove();
            self.close_empty_windows_before(w, out);
            self.close_window(w, sets, out);
        }
        self.close_empty_windows_before(bound + self.slot_ms, out);
        self.state.closed_through = Some(self.state.closed_through.map_or(bound, |c| c.max(bound)));
    }

    /// Closes the empty windows after the last closed one and before `w`, as long as they
    /// change something (a board to clear, an episode to calm down).
    fn close_empty_windows_before(&mut self, w: i64, out: &mut RankOutput) {
        while let Some(c) = self.state.closed_through {
            let next = c + self.slot_ms;
            let active = self
                .state
                .episodes
                .values()
                .any(|e| e.phase == Phase::Active);
            let board_shown = self
                .state
                .board
                .as_ref()
                .is_some_and(|b| !b.entries.is_empty());
            if next >= w || !(active || board_shown) {
                break;
            }
            self.close_window(next, BTreeMap::new(), out);
        }
    }

    fn close_window(&mut self, w: i64, sets: BTreeMap<i32, Vec<Candidate>>, out: &mut RankOutput) {
        self.state.first_window.get_or_insert(w);
        let top_k = self.config.top_k as usize;
        let exit_rank = self.config.exit_rank as usize;
        let mut merged: Vec<Candidate> = sets.into_values().flatten().collect();
        merged.sort_by(|a, b| {
            b.score
                .cmp(&a.score)
                .then_with(|| a.video_id.as_bytes().cmp(b.video_id.as_bytes()))
        });
        // A video proposed twice (the partition count changed under it) counts once, at
        // its best score.
        merged.dedup_by(|later, earlier| later.video_id == earlier.video_id);
        merged.retain(|c| c.score > 0);
        merged.truncate(exit_rank);

        let previous = self
            .state
            .board
            .as_ref()
            .filter(|b| b.window_end == w - self.slot_ms);
        let previous_rank = |video: &str| {
            previous
                .and_then(|b| b.entries.iter().find(|e| e.video_id == video))
                .map_or(0, |e| e.rank)
        };
        let entries: Vec<BoardEntry> = merged
            .iter()
            .take(top_k)
            .enumerate()
            .map(|(i, c)| BoardEntry {
                rank: i as u32 + 1,
                video_id: c.video_id.clone(),
                creator_id: c.creator_id.clone(),
                score: c.score,
                previous_score: c.previous_score,
                likes_per_min: c.likes as f64 / self.velocity_minutes.max(f64::MIN_POSITIVE),
                previous_rank: previous_rank(&c.video_id),
            })
            .collect();
        self.run_lifecycle(w, &merged, out);

        let left_out = self.idle_partitions();
        let s = &mut self.state;
        s.stats.windows_closed += 1;
        if !left_out.is_empty() {
            s.stats.windows_with_left_out += 1;
        }
        let was_shown = s.board.as_ref().is_some_and(|b| !b.entries.is_empty());
        let board = Board {
            window_start: w - self.window_ms,
            window_end: w,
            top_k: self.config.top_k,
            partitions: s.partitions,
            left_out,
            entries,
        };
        if !board.entries.is_empty() || was_shown {
            s.stats.boards += 1;
            out.boards.push(board.clone());
        }
        s.board = Some(board);
        s.closed_through = Some(s.closed_through.map_or(w, |c| c.max(w)));
    }

    fn run_lifecycle(&mut self, w: i64, ranked: &[Candidate], out: &mut RankOutput) {
        let top_k = self.config.top_k;
        let bar = ranked
            .get(top_k as usize - 1)
            .or(ranked.last())
            .map_or(0, |c| c.score);
        let leader = ranked.first().map_or(0, |c| c.score);
        let warm = self
            .state
            .first_window
            .is_some_and(|first| w - first >= self.warmup_ms);
        let ctx = AlertContext {
            w,
            warm,
            window_ms: self.window_ms,
            top_k,
            exit_rank: self.config.exit_rank,
            clear_after: self.config.clear_after,
            bar,
            leader,
        };
        // Episodes whose video is not ranked this window calm down.
        let mut ranks: BTreeMap<&str, (u32, &Candidate)> = BTreeMap::new();
        for (i, c) in ranked.iter().enumerate() {
            ranks.insert(c.video_id.as_str(), (i as u32 + 1, c));
        }
        let videos: Vec<String> = self
            .state
            .episodes
            .keys()
            .filter(|v| !ranks.contains_key(v.as_str()))
            .cloned()
            .collect();
        for video in videos {
            self.step(&video, None, &ctx, out);
        }
        for (video, (rank, c)) in ranks {
            self.step(video, Some((rank, c)), &ctx, out);
        }
    }

    /// One lifecycle step of `video` at window `ctx.w`, ranked `ranked` (within
    /// `exit_rank`) or not at all.
    fn step(
        &mut self,
        video: &str,
        ranked: Option<(u32, &Candidate)>,
        ctx: &AlertContext,
        out: &mut RankOutput,
    ) {
        let cfg = &self.config;
        let episodes = &mut self.state.episodes;
        let tallies = &mut self.state.stats.alerts;
        // During warm-up episodes open and close silently (see `RankingConfig::warmup`).
        let mut emit = |i: usize, alert: Alert| {
            if ctx.warm {
                tallies[i] += 1;
                out.alerts.push(alert);
            }
        };
        if episodes
            .get(video)
            .is_some_and(|e| e.phase == Phase::Cooldown && ctx.w >= e.cooldown_until)
        {
            episodes.remove(video);
        }
        let Some(e) = episodes.get_mut(video) else {
            if let Some((rank, c)) = ranked
                && rank <= cfg.top_k
            {
                episodes.insert(
                    video.to_string(),
                    Episode {
                        phase: Phase::Active,
                        creator_id: c.creator_id.clone(),
                        start: ctx.w,
                        reference_rank: rank,
                        last_rank: rank,
                        calm: 0,
                        cooldown_until: 0,
                    },
                );
                emit(
                    0,
                    ctx.alert(
                        AlertType::Trending,
                        video,
                        &c.creator_id,
                        ctx.w,
                        Some((rank, 0, c)),
                    ),
                );
            }
            return;
        };
        if e.phase != Phase::Active {
            return;
        }
        match ranked {
            Some((rank, c)) => {
                e.calm = 0;
                e.last_rank = rank;
                if cfg.climb_places > 0 && rank + cfg.climb_places <= e.reference_rank {
                    let from = e.reference_rank;
                    e.reference_rank = rank;
                    emit(
                        1,
                        ctx.alert(
                            AlertType::RankChanged,
                            video,
                            &c.creator_id,
                            e.start,
                            Some((rank, from, c)),
                        ),
                    );
                } else {
                    e.reference_rank = e.reference_rank.max(rank);
                }
            }
            None => {
                e.calm += 1;
                if e.calm >= cfg.clear_after {
                    e.phase = Phase::Cooldown;
                    e.cooldown_until = ctx.w.saturating_add(self.cooldown_ms);
                    let mut ended = ctx.alert(
                        AlertType::TrendingEnded,
                        video,
                        &e.creator_id,
                        e.start,
                        None,
                    );
                    ended.previous_rank = e.last_rank;
                    emit(2, ended);
                }
            }
        }
    }

    /// Serializes the whole state; [`Ranker::from_bytes`] gives a ranker that behaves
    /// identically.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.slot_ms.to_le_bytes());
        out.extend_from_slice(&self.window_ms.to_le_bytes());
        // Plain data into a Vec cannot fail; header-only bytes are refused by from_bytes.
        if let Ok(body) = postcard::to_allocvec(&self.state) {
            out.extend_from_slice(&body);
        }
        out
    }

    /// Restores a ranker written by [`Ranker::to_bytes`]; the window geometry must match.
    pub fn from_bytes(config: RankingConfig, engine: &EngineConfig, bytes: &[u8]) -> Result<Self> {
        let mut r = Self::new(config, engine)?;
        let bad = |m: &str| CoreError::Snapshot(format!("ranker state: {m}"));
        let body = bytes
            .strip_prefix(SNAPSHOT_MAGIC.as_slice())
            .ok_or_else(|| bad("bad magic"))?;
        let (version, body) = body
            .split_first_chunk::<2>()
            .ok_or_else(|| bad("truncated header"))?;
        if u16::from_le_bytes(*version) != SNAPSHOT_VERSION {
            return Err(bad("unsupported version"));
        }
        let (slot, body) = body
            .split_first_chunk::<8>()
            .ok_or_else(|| bad("truncated header"))?;
        let (window, body) = body
            .split_first_chunk::<8>()
            .ok_or_else(|| bad("truncated header"))?;
        if i64::from_le_bytes(*slot) != r.slot_ms || i64::from_le_bytes(*window) != r.window_ms {
            return Err(bad(
                "the trending window or slot changed since the state was written",
            ));
        }
        r.state = postcard::from_bytes(body).map_err(|e| bad(&e.to_string()))?;
        Ok(r)
    }
}

/// What every alert of one window shares.
struct AlertContext {
    w: i64,
    /// Past the warm-up: alerts are emitted.
    warm: bool,
    window_ms: i64,
    top_k: u32,
    exit_rank: u32,
    clear_after: u32,
    /// Score of the last place on the board: what it took to be on it.
    bar: i64,
    /// Score of the first place.
    leader: i64,
}

impl AlertContext {
    /// An alert about `video`; `ranked` is its rank, the rank it climbed from, and its
    /// candidate entry (none for TRENDING_ENDED).
    fn alert(
        &self,
        alert_type: AlertType,
        video: &str,
        creator: &str,
        episode_start: i64,
        ranked: Option<(u32, u32, &Candidate)>,
    ) -> Alert {
        let window_minutes = self.window_ms as f64 / 60_000.0;
        let id = match alert_type {
            AlertType::RankChanged => stable_id(&[
                video.as_bytes(),
                b"GLOBAL_RANK_CHANGED",
                &episode_start.to_le_bytes(),
                &self.w.to_le_bytes(),
            ]),
            AlertType::TrendingEnded => stable_id(&[
                video.as_bytes(),
                b"GLOBAL_TRENDING_ENDED",
                &episode_start.to_le_bytes(),
            ]),
            _ => stable_id(&[
                video.as_bytes(),
                b"GLOBAL_TRENDING",
                &episode_start.to_le_bytes(),
            ]),
        };
        let (rank, from, score, previous, first_seen) = match ranked {
            Some((r, f, c)) => (r, f, c.score, c.previous_score, c.first_seen),
            None => (0, 0, 0, 0, 0),
        };
        let explanation = match alert_type {
            AlertType::RankChanged => format!(
                "climbed from #{from} to #{rank} of the global top {}: score {score} over {window_minutes:.0} min (#1 at {}, entry bar {})",
                self.top_k, self.leader, self.bar
            ),
            AlertType::TrendingEnded => format!(
                "left the global top {}: not in the top {} for the last {} windows (entry bar now {})",
                self.top_k, self.exit_rank, self.clear_after, self.bar
            ),
            _ => format!(
                "entered the global top {} at #{rank}: score {score} over {window_minutes:.0} min (#1 at {}, entry bar {})",
                self.top_k, self.leader, self.bar
            ),
        };
        Alert {
            alert_id: id,
            video_id: video.to_string(),
            creator_id: creator.to_string(),
            alert_type,
            tier: 0,
            window_start: self.w - self.window_ms,
            window_end: self.w,
            count: score,
            previous_count: previous,
            rate_per_min: score as f64 / window_minutes.max(f64::MIN_POSITIVE),
            baseline: 0.0,
            baseline_stddev: 0.0,
            z_score: 0.0,
            ratio: if self.bar > 0 {
                score as f64 / self.bar as f64
            } else {
                0.0
            },
            threshold: self.bar as f64,
            first_seen,
            episode_start,
            detected_at: self.w,
            explanation,
            rank,
            previous_rank: from,
        }
    }
}
