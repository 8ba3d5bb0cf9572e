//! The decisions of the counter's delivery protocol that need no broker: pure functions
//! of offsets and of what the broker last answered, so they are tested here, not through
//! a broker.
//!
//! - **Offset gaps** ([`gap_action`]): a record beyond the offset the state needs next is
//!   either a broker answering from the wrong place (read again from before the gap) or a
//!   hole in the topic itself (go on).
//! - **Idle** ([`at_end_of_log`]): a silent partition's watermark may move on with the
//!   clock only when its reader has everything the broker holds for it. A partition that
//!   cannot be read is not idle.
//! - **Rewinds** ([`rewind_target`]): where a partition whose output was lost is read
//!   again from.
//! - **Refusals that repeat** ([`Strikes`]): output the broker or the producer refuses for
//!   good (a record too big, no permission) would rewind its partition forever; after a
//!   few rounds in a row the process stops and says why.
//!
//! The rdkafka code in [`crate::counter`] asks these and carries out the answers.

/// An offset gap being healed: the partition is read again from `from` (< `next`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Healing {
    /// The offset the state needs next.
    pub(crate) next: i64,
    /// Where the partition is read from now.
    pub(crate) from: i64,
    /// Re-reads so far for this gap.
    pub(crate) attempts: u32,
    /// A record before `next` arrived since the re-read began.
    pub(crate) saw_earlier: bool,
}

/// What to do about a record beyond the offset the state needs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GapAction {
    /// Read the partition again from this offset (records before `next` are skipped).
    ReadFrom(i64),
    /// The offsets in between do not exist on the broker: go on.
    Accept,
}

/// Decides about a gap. A broker can answer a fetch at an offset inside a batch with the
/// batch after it (tansu 0.6.0 does), so the first answer is to read again from before the
/// gap, further back each time; only when a record before the gap is followed directly by
/// one after it are the offsets in between known to be missing from the topic itself
/// (transaction markers, compaction), or when reading from offset 0 did not help.
pub(crate) fn gap_action(healing: Option<&Healing>, next: i64) -> GapAction {
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
    fn a_rewind_goes_back_to_the_checkpoint_or_to_where_this_owner_started() {
        assert_eq!(rewind_target(Some(700), Some(100)), Some(700));
        assert_eq!(rewind_target(None, Some(100)), Some(100));
        assert_eq!(rewind_target(None, None), None);
    }
}
