//! The decisions of the counter's delivery protocol that need no broker: pure functions
//! of offsets and of what the broker last answered, so they are tested here, not through
//! a broker.
//!
//! - **Offsets** ([`OffsetTracker`], [`gap_action`]): each record is taken once, in offset
//!   order; a record beyond the offset the state needs next is either a broker answering
//!   from the wrong place (read again from before the gap) or a hole in the topic itself
//!   (go on, counting what is missing). The counter and the ranker share it.
//! - **Idle** ([`at_end_of_log`]): a silent partition's watermark may move on with the
//!   clock only when its reader has everything the broker holds for it. A partition that
//!   cannot be read is not idle.
//!   [`IdleWatch`] decides when to ask and since when silence counts.
//! - **Restores** ([`RestoreProgress`], [`newest_readable`]): a restore reads each state
//!   partition up to its marker and gives up only when reading stops making progress, not
//!   at a fixed deadline; then the newest whole checkpoint that decodes is taken, and a
//!   newest one that does not is reported and the one before it tried.
//! - **Rewinds** ([`rewind_target`]): where a partition whose output was lost is read
//!   again from.
//! - **Refusals that repeat** ([`Strikes`]): output the broker or the producer refuses for
//!   good (a record too big, no permission) would rewind its partition forever; after a
//!   few rounds in a row the process stops and says why.
//!
//! The rdkafka code in [`crate::counter`] asks these and carries out the answers.

use trendwatch_core::{Alert, PartitionState};

use crate::checkpoint::Checkpoint;

/// An offset gap being healed: the partition is read again from `from` (< `next`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Healing {
    /// The offset the state needs next.
    next: i64,
    /// Where the partition is read from now.
    from: i64,
    /// Re-reads so far for this gap.
    attempts: u32,
    /// A record before `next` arrived since the re-read began.
    saw_earlier: bool,
}

/// What to do about a record beyond the offset the state needs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GapAction {
    /// Read the partition again from this offset (records before `next` are skipped).
    ReadFrom(i64),
    /// The offsets in between do not exist on the broker: go on.
    Accept,
}

/// What to do with a record the consumer delivered (see [`OffsetTracker::offer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordOrder {
    /// Already in the state (fetched again after a rewind or a re-read): skip it.
    Again,
    /// A gap before it: read the partition again from this offset; skip the record.
    ReadFrom(i64),
    /// Take it; `skipped` offsets before it are missing from the topic itself.
    Take { skipped: u64 },
}

/// Where a partition's reader is: the offset the state needs next, the gap being healed,
/// and where this owner started reading (the rewind target when there is no checkpoint).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OffsetTracker {
    next: Option<i64>,
    healing: Option<Healing>,
    started_at: Option<i64>,
}

impl OffsetTracker {
    /// A reader whose state covers every record before `next` (none: nothing read yet).
    pub(crate) fn resume(next: Option<i64>) -> Self {
        Self {
            next,
            ..Self::default()
        }
    }

    /// The offset the state needs next.
    pub(crate) fn next(&self) -> Option<i64> {
        self.next
    }

    /// The first offset this owner read without a checkpoint to start from.
    pub(crate) fn started_at(&self) -> Option<i64> {
        self.started_at
    }

    /// Keeps `started_at` from the owner before a rewind, which restores a fresh tracker.
    pub(crate) fn keep_start(&mut self, started_at: Option<i64>) {
        self.started_at = started_at;
    }

    /// Decides about the record at `offset`; after [`RecordOrder::Take`] the state must take it.
    pub(crate) fn offer(&mut self, offset: i64) -> RecordOrder {
        if self.next.is_some_and(|next| offset < next) {
            if let Some(h) = self.healing.as_mut() {
                h.saw_earlier = true;
            }
            return RecordOrder::Again;
        }
        let mut skipped = 0;
        if let Some(next) = self.next.filter(|next| offset > *next) {
            match gap_action(self.healing.as_ref(), next) {
                GapAction::ReadFrom(from) => {
                    let attempts = self.healing.as_ref().map_or(0, |h| h.attempts) + 1;
                    self.healing = Some(Healing {
                        next,
                        from,
                        attempts,
                        saw_earlier: false,
                    });
                    return RecordOrder::ReadFrom(from);
                }
                GapAction::Accept => skipped = (offset - next).max(0) as u64,
            }
        }
        self.healing = None;
        if self.next.is_none() {
            self.started_at = Some(offset);
        }
        self.next = Some(offset + 1);
        RecordOrder::Take { skipped }
    }
}

/// Decides about a gap. A broker can answer a fetch at an offset inside a batch with the
/// batch after it (tansu 0.6.0 does), so the first answer is to read again from before the
/// gap, further back each time; only when a record before the gap is followed directly by
/// one after it are the offsets in between known to be missing from the topic itself
/// (transaction markers, compaction), or when reading from offset 0 did not help.
fn gap_action(healing: Option<&Healing>, next: i64) -> GapAction {
    match healing.filter(|h| h.next == next) {
        Some(h) if h.saw_earlier || h.from == 0 || h.attempts >= 8 => GapAction::Accept,
        Some(h) => GapAction::ReadFrom(next.saturating_sub(1024 << h.attempts).max(0)),
        None => GapAction::ReadFrom(next.saturating_sub(1).max(0)),
    }
}

/// Whether a partition's reader has everything the broker holds for it, so that its
/// silence is the stream's and not the reader's. `end` is the broker's answer just now
/// (the end of the log, or its last stable offset for a `read_committed` reader); `None`
/// when it did not answer — an unreachable partition is never idle. `next_offset` is the
/// offset the state needs next; `position` the consumer's own (which also moves past
/// transaction markers, which are never delivered as records).
pub(crate) fn at_end_of_log(
    next_offset: Option<i64>,
    position: Option<i64>,
    end: Option<i64>,
) -> bool {
    let Some(end) = end else {
        return false;
    };
    next_offset.max(position).unwrap_or(0) >= end
}

/// When the counter asks the broker whether its silent partitions are at the end of their
/// logs, and since when their silence may count. One look when the idle timeout passes is
/// not enough: a broker that was away for most of the timeout and answers again just
/// before the look would have its absence counted as the stream's silence (and the
/// producers' backlog, delivered a moment later, would be behind the advanced watermark).
/// So silent partitions are looked at every [`IdleWatch::every_ms`] (a quarter of the idle
/// timeout), a look that does not confirm the end of the log restarts the silence, and so
/// does any trouble the reader reports (a failed fetch, a broker connection lost): unread
/// time counted as silence is at most one look's interval, and none when the client says
/// it could not read. Looks that did not happen count as trouble: when the loop did not
/// look for an interval and two ticks (it was blocked, typically flushing output to a
/// broker that is away), silence starts again from the tick that finally looks.
#[derive(Debug)]
pub(crate) struct IdleWatch {
    every_ms: i64,
    /// A gap between looks longer than this means looks were missed.
    overdue_ms: i64,
    last_look_ms: i64,
    trouble_at: Option<i64>,
}

/// What a tick does about silence (see [`IdleWatch::plan`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct IdlePlan {
    /// The reader reported trouble at this time: no partition's silence counts before it.
    pub(crate) hold_all_from: Option<i64>,
    /// Partitions to look at now: each is held unless the broker confirms its reader is
    /// at the end of its log (see [`at_end_of_log`]).
    pub(crate) look: Vec<i32>,
}

impl IdleWatch {
    pub(crate) fn new(idle_timeout_ms: i64, tick_ms: i64, now_ms: i64) -> Self {
        let every_ms = (idle_timeout_ms / 4).max(tick_ms).max(1);
        Self {
            every_ms,
            overdue_ms: every_ms + 2 * tick_ms.max(1),
            last_look_ms: now_ms,
            trouble_at: None,
        }
    }

    /// The reader reported trouble (a consumer error) at `now_ms`.
    pub(crate) fn trouble(&mut self, now_ms: i64) {
        self.trouble_at = Some(now_ms);
    }

    /// The plan of a tick at `now_ms`, given each partition's `(partition, silent_since,
    /// idle_due)`: every silent partition is looked at once an interval has passed since
    /// the last look, and a partition whose idle advance is due is looked at whatever the
    /// interval (the advance happens only on a look that confirms the end of the log).
    pub(crate) fn plan(
        &mut self,
        now_ms: i64,
        partitions: impl IntoIterator<Item = (i32, Option<i64>, bool)>,
    ) -> IdlePlan {
        // Looks overdue by more than an interval: the loop was not looking (blocked in a
        // flush or a checkpoint while the broker was away, say). What happened meanwhile is
        // unknown, so no silence before now counts.
        let since_look = now_ms.saturating_sub(self.last_look_ms);
        let overdue = since_look > self.overdue_ms;
        let hold_all_from = match self.trouble_at.take() {
            _ if overdue => Some(now_ms),
            trouble => trouble,
        };
        let round = since_look >= self.every_ms;
        let look: Vec<i32> = partitions
            .into_iter()
            .filter(|&(_, silent_since, due)| due || (round && silent_since.is_some()))
            .map(|(p, _, _)| p)
            .collect();
        if round {
            self.last_look_ms = now_ms;
        }
        IdlePlan {
            hold_all_from,
            look,
        }
    }
}

/// What a tick did to one partition's clock (see [`tick_partition`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdleTick {
    /// Looked at and not confirmed at the end of its log: its silence starts again now.
    Held,
    /// Ticked; `moved` when its watermark moved on with the clock (it is idle).
    Ticked { moved: bool },
}

/// One partition's part of a tick at `now_ms`, after the [`IdlePlan`] was carried out:
/// `looked` when it was among [`IdlePlan::look`], `at_end` what the look found (see
/// [`at_end_of_log`]). A partition looked at and not at the end is held, not ticked.
pub(crate) fn tick_partition(
    state: &mut PartitionState,
    looked: bool,
    at_end: bool,
    now_ms: i64,
    out: &mut Vec<Alert>,
) -> IdleTick {
    if looked && !at_end {
        state.hold_idle(now_ms);
        return IdleTick::Held;
    }
    let before = state.watermark();
    state.tick(now_ms, out);
    IdleTick::Ticked {
        moved: state.watermark() != before,
    }
}

/// A restore's reading of the state partitions, each up to the offset of the marker it
/// wrote (see `checkpoint.rs`). A big or slow state topic is not a failure while records
/// keep coming: the restore gives up only after `patience_ms` without a record from a
/// partition still to be read.
#[derive(Debug)]
pub(crate) struct RestoreProgress {
    /// State partition → the marker's offset, for those not read up to it yet.
    pending: std::collections::BTreeMap<i32, i64>,
    patience_ms: i64,
    last_progress_ms: i64,
}

impl RestoreProgress {
    pub(crate) fn new(
        ends: std::collections::BTreeMap<i32, i64>,
        patience_ms: i64,
        now_ms: i64,
    ) -> Self {
        Self {
            pending: ends,
            patience_ms,
            last_progress_ms: now_ms,
        }
    }

    /// A record at `offset` of state partition `sp` arrived at `now_ms`: whether it is to be
    /// read (it is before its partition's marker). Reaching the marker completes the
    /// partition; both count as progress.
    pub(crate) fn record(&mut self, sp: i32, offset: i64, now_ms: i64) -> bool {
        let Some(&end) = self.pending.get(&sp) else {
            return false;
        };
        self.last_progress_ms = now_ms;
        if offset >= end {
            self.pending.remove(&sp);
            return false;
        }
        true
    }

    /// Every state partition was read up to its marker.
    pub(crate) fn done(&self) -> bool {
        self.pending.is_empty()
    }

    /// The state partitions still to be read, when nothing came for `patience_ms`.
    pub(crate) fn stalled(&self, now_ms: i64) -> Option<Vec<i32>> {
        (now_ms.saturating_sub(self.last_progress_ms) > self.patience_ms)
            .then(|| self.pending.keys().copied().collect())
    }
}

/// How many times a restore that stalled is tried again (with new markers) before the
/// assignment fails: a state partition's leader moving, or a transaction of a crashed
/// instance holding `read_committed` readers back, passes; a state topic that cannot be
/// read at all does not.
pub(crate) const RESTORE_ATTEMPTS: u32 = 3;

/// What a restore found among a partition's whole checkpoints (newest first): the newest
/// that decodes, and those newer than it that did not, with why.
#[derive(Debug)]
pub(crate) struct Readable<'a, T, E> {
    pub(crate) chosen: Option<(&'a Checkpoint, T)>,
    pub(crate) unreadable: Vec<(&'a Checkpoint, E)>,
}

/// Tries `decode` on each of `candidates` (newest first) until one decodes. A state that
/// does not decode (a bug in an older writer, a bit flip the chunk CRCs missed) does not
/// stop the partition while an older whole checkpoint does: the older one is taken and
/// the records after it are read again. None decoding is the caller's error to report.
pub(crate) fn newest_readable<T, E>(
    candidates: &[Checkpoint],
    mut decode: impl FnMut(&Checkpoint) -> Result<T, E>,
) -> Readable<'_, T, E> {
    let mut unreadable = Vec::new();
    for cp in candidates {
        match decode(cp) {
            Ok(t) => {
                return Readable {
                    chosen: Some((cp, t)),
                    unreadable,
                };
            }
            Err(e) => unreadable.push((cp, e)),
        }
    }
    Readable {
        chosen: None,
        unreadable,
    }
}

/// Where a partition whose output was lost is read again from: its last checkpoint, or,
/// when it has none, the offset this owner started from — never the beginning of the
/// partition, whose records before `started_at` are another owner's (or retention's).
/// `None` when the owner has not read anything yet (nothing to go back over).
pub(crate) fn rewind_target(checkpoint: Option<i64>, started_at: Option<i64>) -> Option<i64> {
    checkpoint.or(started_at)
}

/// Whether a periodic checkpoint round should write a partition's state (at-least-once).
/// Records processed since the last checkpoint: always — the committed offset waits for
/// it. Only a watermark moved on with the clock (an idle partition): every `idle_every_ms`,
/// since rewriting a quiet partition's whole state every round buys little — a crash
/// before it costs the new owner one idle timeout of waiting and the re-sent alerts of the
/// advance, under the same ids.
pub(crate) fn worth_checkpoint(
    offset_moved: bool,
    watermark_moved: bool,
    since_last_ms: i64,
    idle_every_ms: i64,
) -> bool {
    offset_moved || (watermark_moved && since_last_ms >= idle_every_ms)
}

/// Consecutive checkpoint rounds in which a partition's output was refused permanently,
/// per partition. A round in which the partition checkpoints clears its count.
#[derive(Debug, Default)]
pub(crate) struct Strikes {
    counts: std::collections::BTreeMap<i32, u32>,
}

impl Strikes {
    /// Rounds in a row a permanent refusal may repeat before the process stops: one is a
    /// record that will be cut or skipped next time round (a race with a configuration
    /// change), three is a partition that cannot make progress.
    pub(crate) const LIMIT: u32 = 3;

    /// Counts a round in which `partition`'s output was refused permanently; returns true
    /// when the partition has reached [`Strikes::LIMIT`] and the process must stop.
    pub(crate) fn refused(&mut self, partition: i32) -> bool {
        let n = self.counts.entry(partition).or_default();
        *n += 1;
        *n >= Self::LIMIT
    }

    /// The partition made progress (its checkpoint was written) or left.
    pub(crate) fn clear(&mut self, partition: i32) {
        self.counts.remove(&partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_is_read_again_from_further_back_until_proven_real() {
        // First sight: read again from just before the gap.
        assert_eq!(gap_action(None, 5_000), GapAction::ReadFrom(4_999));
        let mut h = Healing {
            next: 5_000,
            from: 4_999,
            attempts: 1,
            saw_earlier: false,
        };
        // The broker skipped ahead again without showing anything earlier: go further back.
        assert_eq!(
            gap_action(Some(&h), 5_000),
            GapAction::ReadFrom(5_000 - 2_048)
        );
        // A record before the gap came, and the next one is after it: the hole is real.
        h.saw_earlier = true;
        assert_eq!(gap_action(Some(&h), 5_000), GapAction::Accept);
        // Reading from the very beginning is as far back as it goes.
        let from_zero = Healing {
            next: 10,
            from: 0,
            attempts: 1,
            saw_earlier: false,
        };
        assert_eq!(gap_action(Some(&from_zero), 10), GapAction::Accept);
        // A new gap elsewhere starts over.
        assert_eq!(gap_action(Some(&h), 9_000), GapAction::ReadFrom(8_999));
        assert_eq!(gap_action(None, 0), GapAction::ReadFrom(0));
    }

    #[test]
    fn a_tracker_takes_each_record_once_and_heals_a_gap() {
        let mut t = OffsetTracker::resume(Some(10));
        assert_eq!(t.offer(9), RecordOrder::Again);
        assert_eq!(t.offer(10), RecordOrder::Take { skipped: 0 });
        // The broker skipped 11..=14: read again from 10.
        assert_eq!(t.offer(15), RecordOrder::ReadFrom(10));
        assert_eq!(t.offer(10), RecordOrder::Again);
        // 11 follows: no gap after all.
        assert_eq!(t.offer(11), RecordOrder::Take { skipped: 0 });
        // A real hole: re-read, see the record before it, then the one after it again.
        assert_eq!(t.offer(14), RecordOrder::ReadFrom(11));
        assert_eq!(t.offer(11), RecordOrder::Again);
        assert_eq!(t.offer(14), RecordOrder::Take { skipped: 2 });
        assert_eq!(t.next(), Some(15));
        // A fresh owner remembers where it started.
        let mut fresh = OffsetTracker::resume(None);
        assert_eq!(fresh.offer(700), RecordOrder::Take { skipped: 0 });
        assert_eq!(fresh.started_at(), Some(700));
    }

    #[test]
    fn only_a_reader_at_the_end_of_a_log_that_answers_is_idle() {
        // The broker did not answer (leader down, fetch errors): never idle, whatever the
        // reader has.
        assert!(!at_end_of_log(Some(500), Some(500), None));
        // Records are waiting: not idle.
        assert!(!at_end_of_log(Some(400), Some(400), Some(500)));
        // Everything read.
        assert!(at_end_of_log(Some(500), Some(500), Some(500)));
        // A commit marker ends the log: the consumer's position is past it, the state's
        // next offset is not.
        assert!(at_end_of_log(Some(499), Some(500), Some(500)));
        // A consumer position not known yet: the state's own offset decides.
        assert!(at_end_of_log(Some(500), None, Some(500)));
        // An empty partition.
        assert!(at_end_of_log(None, None, Some(0)));
        assert!(!at_end_of_log(None, None, Some(3)));
    }

    #[test]
    fn silent_partitions_are_looked_at_every_quarter_of_the_idle_timeout() {
        let mut w = IdleWatch::new(20_000, 1_000, 0);
        assert_eq!(w.every_ms, 5_000);
        // Partition 1 is silent, 2 busy, 3 due.
        let parts = [(1, Some(0), false), (2, None, false), (3, Some(0), true)];
        // Before an interval has passed only the due one is looked at.
        assert_eq!(
            w.plan(4_999, parts),
            IdlePlan {
                hold_all_from: None,
                look: vec![3]
            }
        );
        // Then every silent one, and the interval starts again.
        assert_eq!(w.plan(5_000, parts).look, vec![1, 3]);
        assert_eq!(w.plan(9_999, parts).look, vec![3]);
        assert_eq!(w.plan(10_000, parts).look, vec![1, 3]);
        // Trouble the reader reported holds everyone once.
        w.trouble(10_500);
        assert_eq!(w.plan(11_000, parts).hold_all_from, Some(10_500));
        assert_eq!(w.plan(11_500, parts).hold_all_from, None);
        // A tick that comes more than an interval and two ticks after the last look (the
        // loop was blocked): everyone's silence starts again then.
        assert_eq!(w.plan(21_000, parts).hold_all_from, Some(21_000));
        assert_eq!(w.plan(22_000, parts).hold_all_from, None);
        // A short idle timeout still looks no more often than once a tick.
        assert_eq!(IdleWatch::new(2_000, 1_000, 0).every_ms, 1_000);
    }

    #[test]
    fn an_idle_partition_is_checkpointed_now_and_then_a_busy_one_every_round() {
        assert!(worth_checkpoint(true, false, 0, 60_000));
        assert!(worth_checkpoint(true, true, 0, 60_000));
        assert!(!worth_checkpoint(false, true, 59_999, 60_000));
        assert!(worth_checkpoint(false, true, 60_000, 60_000));
        assert!(!worth_checkpoint(false, false, 1_000_000, 60_000));
    }

    #[test]
    fn a_permanent_refusal_stops_the_process_after_a_few_rounds_in_a_row() {
        let mut s = Strikes::default();
        assert!(!s.refused(3));
        assert!(!s.refused(3));
        // Another partition's progress does not reset partition 3.
        s.clear(4);
        assert!(s.refused(3));
        // Progress resets the count.
        s.clear(3);
        assert!(!s.refused(3));
    }

    #[test]
    fn a_restore_gives_up_only_when_reading_stops_making_progress() {
        let ends = [(0, 1_000), (1, 5)].into_iter().collect();
        let mut r = RestoreProgress::new(ends, 10_000, 0);
        // A slow, big partition: a record every 9 s keeps the restore going past any fixed
        // deadline.
        for (i, now) in (0..50).map(|i| (i, i * 9_000)) {
            assert!(r.stalled(now).is_none(), "at {now}");
            assert!(r.record(0, i, now));
        }
        // Partition 1 reaches its marker: done with it; records of unknown partitions are
        // not read.
        assert!(r.record(1, 4, 450_000));
        assert!(!r.record(1, 5, 450_000));
        assert!(!r.record(1, 6, 450_000));
        assert!(!r.record(7, 0, 450_000));
        assert!(!r.done());
        // Then nothing comes for longer than the patience: stalled, naming what is left.
        assert_eq!(r.stalled(460_000), None);
        assert_eq!(r.stalled(460_001), Some(vec![0]));
        assert!(!r.record(0, 1_000, 460_002));
        assert!(r.done());
    }

    #[test]
    fn a_restore_takes_the_newest_checkpoint_that_decodes() {
        let cp = |generation: u64, state: &[u8]| Checkpoint {
            generation,
            offset: generation as i64 * 100,
            state: state.to_vec(),
        };
        let decode = |c: &Checkpoint| match c.state.as_slice() {
            b"ok" => Ok(c.generation),
            _ => Err(format!("generation {} does not decode", c.generation)),
        };
        let both = [cp(7, b"bad"), cp(6, b"ok")];
        let r = newest_readable(&both, decode);
        assert_eq!(r.chosen.map(|(c, g)| (c.offset, g)), Some((600, 6)));
        assert_eq!(r.unreadable.len(), 1);
        assert_eq!(r.unreadable[0].0.generation, 7);
        // The newest decodes: nothing is reported.
        let r = newest_readable(&both[1..], decode);
        assert!(r.chosen.is_some() && r.unreadable.is_empty());
        // Nothing decodes: every reason is there for the caller's error.
        let r = newest_readable(&both[..1], decode);
        assert!(r.chosen.is_none());
        assert_eq!(r.unreadable[0].1, "generation 7 does not decode");
        // No checkpoint at all.
        let r = newest_readable(&[], decode);
        assert!(r.chosen.is_none() && r.unreadable.is_empty());
    }

    #[test]
    fn a_partition_whose_newest_state_does_not_decode_restores_the_one_before() {
        use trendwatch_core::{EngineConfig, EventKind, EventRef};
        let config = EngineConfig::default();
        let mut state = PartitionState::new(config.clone()).unwrap();
        let mut out = Vec::new();
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            state.apply(
                &EventRef {
                    event_id: id,
                    video_id: "v",
                    creator_id: "c",
                    kind: EventKind::Like,
                    event_time: 1_767_571_200_000 + i as i64,
                    user_id: None,
                },
                &mut out,
            );
        }
        let older = state.to_bytes();
        let mut newest = older.clone();
        newest.truncate(newest.len() / 2);
        let candidates = [
            Checkpoint {
                generation: 9,
                offset: 30,
                state: newest,
            },
            Checkpoint {
                generation: 8,
                offset: 3,
                state: older,
            },
        ];
        let r = newest_readable(&candidates, |c| {
            PartitionState::from_bytes(config.clone(), &c.state)
        });
        let (cp, restored) = r.chosen.unwrap();
        assert_eq!((cp.generation, cp.offset), (8, 3));
        assert_eq!(restored.stats().counted.iter().sum::<u64>(), 3);
        assert_eq!(r.unreadable.len(), 1);
    }

    #[test]
    fn a_rewind_goes_back_to_the_checkpoint_or_to_where_this_owner_started() {
        assert_eq!(rewind_target(Some(700), Some(100)), Some(700));
        assert_eq!(rewind_target(None, Some(100)), Some(100));
        assert_eq!(rewind_target(None, None), None);
    }
}
