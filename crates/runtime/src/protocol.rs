//! The counter's delivery protocol: one synchronous machine that owns the assigned
//! partitions' engine state and decides everything about delivering it — which record is
//! taken next, when output is safe, what a checkpoint covers, when an offset may be
//! committed, what a lost acknowledgement or an aborted transaction undoes, and when a
//! silent partition is idle. It reads no clock and touches no broker: time comes in as
//! arguments, and everything it does to the outside goes through [`Effects`], which the
//! rdkafka adapter ([`crate::counter`]) carries out against a real broker and the
//! simulator (`crate::sim`) against a simulated one, from a seed.
//!
//! Why an effects trait rather than a returned list of actions: a checkpoint round is a
//! conversation with the broker — flush, learn which partitions lost output, rewind those,
//! write the others' checkpoints, learn which chunks were acknowledged, commit those
//! offsets. The order of that conversation is the protocol, so it is written here once,
//! and the adapter and the simulator only answer its questions.
//!
//! ## The rules
//!
//! - **Records** are taken once each, in offset order ([`OffsetTracker`]): one fetched
//!   again is skipped, one after a gap makes the reader go back (the adapter seeks).
//! - **At-least-once** (the default). Each round first waits until the broker has answered
//!   for every alert, dead letter and late record produced so far ([`Effects::flush`]). A
//!   partition whose output was not taken ([`Effects::refused`]) is not checkpointed: a
//!   periodic round rewinds it to its last checkpoint (or where this owner started) and its
//!   records are processed, and their output produced, again; a revoke round releases it
//!   and its next owner starts from that checkpoint. A refusal noticed in a round that did
//!   not cover its partition (a revoke of others) is kept for the round that does. Every
//!   other partition that moved has its state written with the offset it covers
//!   ([`Effects::write_checkpoints`]); only those acknowledged have their offset committed.
//! - **Exactly-once**: everything produced between two rounds is in one open transaction;
//!   the round adds the changed partitions' checkpoints and offsets to it and commits. A
//!   failure aborts it and every partition goes back to its last committed checkpoint; one
//!   that cannot go back stops the process, since its state would run ahead of committed
//!   output.
//! - **Refusals that repeat** (a record the broker will never take) stop the process after
//!   [`Strikes::LIMIT`] rounds in a row instead of rewinding forever.
//! - **Assignment** restores each partition from the newest whole checkpoint that decodes;
//!   a partition the group has committed offsets for but no checkpoint stops the process
//!   unless configured to start empty ([`RuntimeError::MissingCheckpoint`]).
//! - **Idle**: a silent partition's watermark moves with the clock only when the broker
//!   confirms its reader is at the end of its log ([`IdleWatch`], [`at_end_of_log`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use trendwatch_config::{Config, MissingCheckpoint, ProcessingGuarantee};
use trendwatch_core::{Alert, CandidateSet, EngineConfig, PartitionState, PartitionStats, Verdict};
use trendwatch_proto::InputFormat;
use trendwatch_proto::{Rejection, ValidationConfig, decode_in};

use crate::checkpoint::{Checkpoint, newest_decoded};
use crate::delivery::{
    IdleTick, IdleWatch, OffsetTracker, RecordOrder, Strikes, at_end_of_log, rewind_target,
    tick_partition, worth_checkpoint,
};
use crate::error::{Result, RuntimeError};

/// At-least-once: a partition whose watermark only moved on with the clock (idle) is
/// checkpointed every this many checkpoint intervals, not every one. Exactly-once
/// checkpoints every change, since the output of the advance commits with it.
pub(crate) const IDLE_CHECKPOINT_ROUNDS: i64 = 12;

/// What the machine needs of the configuration.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) exactly_once: bool,
    pub(crate) engine: EngineConfig,
    pub(crate) validation: ValidationConfig,
    pub(crate) input_format: InputFormat,
    /// Candidates each partition proposes per closed window to the ranker (0: none).
    pub(crate) candidates_k: usize,
    pub(crate) on_missing_checkpoint: MissingCheckpoint,
    /// See [`IDLE_CHECKPOINT_ROUNDS`].
    pub(crate) idle_checkpoint_every_ms: i64,
    pub(crate) idle_timeout_ms: i64,
    pub(crate) tick_ms: i64,
    /// Named in errors.
    pub(crate) events_topic: String,
    pub(crate) group: String,
    pub(crate) state_topic: String,
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Settings {
    pub(crate) fn from_config(config: &Config) -> Self {
        Self {
            exactly_once: config.counter.processing_guarantee == ProcessingGuarantee::ExactlyOnce,
            engine: config.engine.clone(),
            validation: config.validation.clone(),
            input_format: config.counter.input_format,
            candidates_k: if config.topics.candidates.is_empty() {
                0
            } else {
                config.ranking.exit_rank as usize
            },
            on_missing_checkpoint: config.counter.on_missing_checkpoint,
            idle_checkpoint_every_ms: ms(config.counter.checkpoint_interval)
                * IDLE_CHECKPOINT_ROUNDS,
            idle_timeout_ms: ms(config.engine.windows.idle_timeout),
            tick_ms: ms(config.counter.tick_interval),
            events_topic: config.topics.events.clone(),
            group: config.counter.group_id.clone(),
            state_topic: config.topics.state.clone(),
        }
    }
}

/// What the machine counts, for the adapter's metrics (names live in `telemetry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tally {
    CheckpointsOk,
    CheckpointsFailed,
    CheckpointsMissing,
    CheckpointsUnreadable,
    Rewinds,
    TransactionsCommitted,
    TransactionsAborted,
    TransactionsFenced,
    IdleHeld,
}

/// Output the broker did not take since it was last asked.
#[derive(Debug, Default)]
pub(crate) struct Refused {
    /// Events partitions whose output (any of it) was not acknowledged.
    pub(crate) failed: BTreeSet<i32>,
    /// Of those, the ones refused for a reason that retrying cannot mend, with it.
    pub(crate) permanent: BTreeMap<i32, String>,
}

/// Why a transaction did not commit.
#[derive(Debug)]
pub(crate) struct TransactionFailed {
    /// The producer cannot go on (fenced, or a fatal error): a new one must take over.
    pub(crate) fatal: bool,
    pub(crate) reason: String,
}

/// The record whose arrival made a decision, named in its alerts' headers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Source {
    pub(crate) offset: i64,
    /// Its Kafka timestamp (producer create time or broker append time), if any.
    pub(crate) timestamp: Option<i64>,
}

/// Everything the machine does to the outside world. Each method is one action; its
/// return value is what the broker answered.
pub(crate) trait Effects {
    /// Produces `alert`, decided on `partition` (at the record `source`, or at a tick).
    fn alert(&mut self, partition: i32, alert: &Alert, source: Option<Source>);
    /// Produces a closed window's candidates of `partition` for the ranker.
    fn candidates(&mut self, partition: i32, set: CandidateSet);
    /// Waits until the broker has answered for everything produced so far; false when it
    /// has not within the acknowledgement timeout (nothing may be checkpointed then).
    fn flush(&mut self) -> bool;
    /// Output not taken since the last call (and forgets it).
    fn refused(&mut self) -> Refused;
    /// The producer's fatal error, if it has one: nothing more will be acknowledged.
    fn producer_fatal(&mut self) -> Option<String>;
    /// The whole checkpoints of each of `partitions` (in that order, each newest first).
    fn read_checkpoints(&mut self, partitions: &[i32]) -> Result<Vec<Vec<Checkpoint>>>;
    /// Writes checkpoints; per checkpoint, whether the broker acknowledged all of it.
    fn write_checkpoints(&mut self, checkpoints: &[(i32, &Checkpoint)]) -> Vec<bool>;
    /// Reads `partition` from `offset` on.
    fn seek(&mut self, partition: i32, offset: i64);
    /// Commits the group's offsets (the next offset to read, per partition).
    fn commit(&mut self, offsets: &[(i32, i64)], sync: bool);
    /// Exactly-once: adds the checkpoints and offsets to the open transaction and commits
    /// it (it fails if any output in it was refused).
    fn commit_transaction(
        &mut self,
        checkpoints: &[(i32, &Checkpoint)],
        offsets: &[(i32, i64)],
    ) -> std::result::Result<(), TransactionFailed>;
    /// Exactly-once: gives the open transaction up (or replaces a producer that failed).
    fn abort_transaction(&mut self, failure: &TransactionFailed);
    /// Exactly-once: opens the next transaction.
    fn begin_transaction(&mut self);
    /// The process must stop, for this reason.
    fn stop(&mut self, error: RuntimeError);
    /// Counts `n` of `tally`.
    fn count(&mut self, tally: Tally, n: u64);
}

/// What became of a record offered with [`Protocol::record`].
#[derive(Debug)]
pub(crate) enum Step {
    /// Of a partition not assigned here.
    NotOwned,
    /// Already in the state (fetched again after a rewind or a re-read): skipped.
    Again,
    /// A gap before it: read the partition again from this offset.
    ReadFrom(i64),
    /// Taken; `skipped` offsets before it are missing from the topic itself.
    Taken {
        skipped: u64,
        disposition: Disposition,
    },
}

/// What a taken record was.
#[derive(Debug)]
pub(crate) enum Disposition {
    /// Counted (or a duplicate, or not tracked: in the state's own tallies).
    Applied,
    /// Behind the watermark by more than the allowed lateness (set aside if configured).
    Late,
    /// Not a valid event: to the dead-letter topic.
    Rejected(Rejection),
}

/// One assigned partition.
pub(crate) struct Owned {
    pub(crate) state: PartitionState,
    /// The next offset to process (records below it are already in `state`), a gap being
    /// healed, and where this owner started.
    offsets: OffsetTracker,
    /// Of the last checkpoint written or restored.
    generation: u64,
    /// What the last checkpoint covered: offset and watermark.
    checkpointed: Option<(Option<i64>, Option<i64>)>,
    /// Stats already published as metrics (the adapter's bookkeeping; reset with the state).
    pub(crate) published: PartitionStats,
    /// Dedup ids forgotten already published (since the state was made or restored).
    pub(crate) published_forgotten: u64,
    /// The consumer said it is at the end of the partition, and nothing came since.
    pub(crate) eof: bool,
    /// When (on the caller's monotonic clock) the last checkpoint was acknowledged.
    checkpointed_ms: i64,
    /// The last tick moved the watermark on with the clock.
    idle: bool,
}

impl Owned {
    /// The next offset to process; records below it are already in `state`.
    pub(crate) fn next_offset(&self) -> Option<i64> {
        self.offsets.next()
    }

    fn dirty(&self) -> bool {
        self.checkpointed != Some((self.next_offset(), self.state.watermark()))
    }

    /// Whether a periodic round should checkpoint the partition now (see
    /// [`worth_checkpoint`]).
    fn due(&self, now_ms: i64, idle_every_ms: i64) -> bool {
        let (offset, watermark) = self.checkpointed.unwrap_or((None, None));
        worth_checkpoint(
            offset != self.next_offset(),
            watermark != self.state.watermark(),
            now_ms.saturating_sub(self.checkpointed_ms),
            idle_every_ms,
        )
    }

    /// The checkpoint that would cover the state now (none before the first record).
    fn next_checkpoint(&self) -> Option<Checkpoint> {
        Some(Checkpoint {
            generation: self.generation + 1,
            offset: self.next_offset()?,
            state: self.state.to_bytes(),
        })
    }
}

/// The machine: the partitions this member owns and what their delivery owes.
pub(crate) struct Protocol {
    settings: Settings,
    partitions: BTreeMap<i32, Owned>,
    /// Partitions whose output the broker did not take (or whose rewind failed) and that
    /// no round has dealt with yet.
    unacknowledged: BTreeSet<i32>,
    /// Rounds in a row each partition's output was refused for good.
    strikes: Strikes,
    /// Exactly-once: a partition could not go back to its committed checkpoint after an
    /// abort, so its state is ahead of committed output; nothing may be committed any more
    /// (the process is ending).
    poisoned: bool,
    /// When silent partitions are looked at, and the reader's trouble since the last tick.
    idle_watch: IdleWatch,
    alerts: Vec<Alert>,
    candidate_sets: Vec<CandidateSet>,
}

impl Protocol {
    /// A member owning nothing yet; `now_ms` on the caller's monotonic clock.
    pub(crate) fn new(settings: Settings, now_ms: i64) -> Self {
        Self {
            idle_watch: IdleWatch::new(settings.idle_timeout_ms, settings.tick_ms, now_ms),
            settings,
            partitions: BTreeMap::new(),
            unacknowledged: BTreeSet::new(),
            strikes: Strikes::default(),
            poisoned: false,
            alerts: Vec::new(),
            candidate_sets: Vec::new(),
        }
    }

    /// The partitions owned now, in order.
    pub(crate) fn partitions(&self) -> impl Iterator<Item = (i32, &Owned)> {
        self.partitions.iter().map(|(p, o)| (*p, o))
    }

    /// One owned partition.
    pub(crate) fn partition(&self, partition: i32) -> Option<&Owned> {
        self.partitions.get(&partition)
    }

    /// The partitions owned now, to update the adapter's bookkeeping.
    pub(crate) fn partitions_mut(&mut self) -> impl Iterator<Item = (i32, &mut Owned)> {
        self.partitions.iter_mut().map(|(p, o)| (*p, o))
    }

    /// Takes `partitions` over: restores each from its newest readable checkpoint (or
    /// starts it empty) and returns the offsets to resume from, for those a checkpoint
    /// names. `committed` holds the group's committed offsets of them (`None` when the
    /// broker did not say): a partition with one but without a checkpoint lost its state.
    pub(crate) fn assign(
        &mut self,
        partitions: &[i32],
        committed: Option<&HashMap<i32, i64>>,
        fx: &mut impl Effects,
    ) -> Result<Vec<(i32, i64)>> {
        let checkpoints = fx.read_checkpoints(partitions)?;
        let mut offsets = Vec::new();
        for (p, candidates) in partitions.iter().zip(checkpoints) {
            if let Some(&offset) = committed
                .and_then(|c| c.get(p))
                .filter(|_| candidates.is_empty())
            {
                fx.count(Tally::CheckpointsMissing, 1);
                let missing = RuntimeError::MissingCheckpoint {
                    topic: self.settings.events_topic.clone(),
                    partition: *p,
                    group: self.settings.group.clone(),
                    committed: offset,
                    state_topic: self.settings.state_topic.clone(),
                };
                match self.settings.on_missing_checkpoint {
                    MissingCheckpoint::Fail => return Err(missing),
                    MissingCheckpoint::StartEmpty => tracing::error!(
                        error = %missing,
                        "counter.on_missing_checkpoint = \"start-empty\": starting the partition empty at the committed offset"
                    ),
                }
            }
            let (owned, checkpoint) = self.owned_from(*p, &candidates, fx)?;
            match checkpoint {
                Some(cp) => {
                    tracing::info!(
                        partition = p,
                        generation = cp.generation,
                        offset = cp.offset,
                        bytes = cp.state.len(),
                        videos = owned.state.tracked_videos(),
                        "restored"
                    );
                    offsets.push((*p, cp.offset));
                }
                None => tracing::info!(
                    partition = p,
                    "no checkpoint: starting empty from the committed offset or auto.offset.reset"
                ),
            }
            self.unacknowledged.remove(p);
            self.partitions.insert(*p, owned);
        }
        Ok(offsets)
    }

    /// The partition as the newest of its whole checkpoints (`candidates`, newest first)
    /// that decodes leaves it, with that checkpoint; empty when there is none; an error
    /// when there are some and none decodes.
    fn owned_from<'c>(
        &self,
        partition: i32,
        candidates: &'c [Checkpoint],
        fx: &mut impl Effects,
    ) -> Result<(Owned, Option<&'c Checkpoint>)> {
        let engine = &self.settings.engine;
        let restore_error = |reason: String| RuntimeError::Restore {
            topic: self.settings.events_topic.clone(),
            partition,
            reason,
        };
        let newest = newest_decoded(
            candidates,
            partition,
            |cp| PartitionState::from_bytes(engine.clone(), &cp.state),
            || fx.count(Tally::CheckpointsUnreadable, 1),
        );
        let (mut state, checkpoint) = match newest.map_err(restore_error)? {
            Some((cp, state)) => (state, Some(cp)),
            None => (
                PartitionState::new(engine.clone()).map_err(|e| restore_error(e.to_string()))?,
                None,
            ),
        };
        let next_offset = checkpoint.map(|cp| cp.offset);
        state.restart_idle_clock();
        state.propose_candidates(self.settings.candidates_k);
        let owned = Owned {
            published: state.stats().clone(),
            checkpointed: checkpoint.map(|_| (next_offset, state.watermark())),
            state,
            offsets: OffsetTracker::resume(next_offset),
            generation: checkpoint.map_or(0, |cp| cp.generation),
            eof: false,
            checkpointed_ms: 0,
            idle: false,
            published_forgotten: 0,
        };
        Ok((owned, checkpoint))
    }

    /// Gives `partitions` up (after their checkpoint, or without one when the assignment
    /// was lost): their next owner starts from their last checkpoint.
    pub(crate) fn release(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.partitions.remove(p);
            self.strikes.clear(*p);
            self.unacknowledged.remove(p);
        }
    }

    /// `partitions` are no longer this member's and were not checkpointed on the way out
    /// (the assignment was lost: the session expired, the member was fenced, the group
    /// failed). Another member may own them already, so nothing of them may be written
    /// any more. In exactly-once mode the open transaction holds output of their records
    /// since the last commit, which their new owner produces again from the last committed
    /// checkpoint: it is aborted (or it would commit with the next round, and a
    /// `read_committed` reader would see that output twice), and every partition kept goes
    /// back to its last committed checkpoint too, since its output was in the same
    /// transaction.
    pub(crate) fn lose(&mut self, partitions: &[i32], fx: &mut impl Effects) {
        let held: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| self.partitions.contains_key(p))
            .collect();
        self.release(&held);
        if self.settings.exactly_once && !held.is_empty() && !self.poisoned {
            let failure = TransactionFailed {
                fatal: false,
                reason: format!("partitions {held:?} lost without a checkpoint"),
            };
            self.abort_transaction(&failure, fx);
            fx.begin_transaction();
        }
    }

    /// The consumer reached the end of `partition`.
    pub(crate) fn mark_eof(&mut self, partition: i32) {
        if let Some(o) = self.partitions.get_mut(&partition) {
            o.eof = true;
        }
    }

    /// Decodes, validates and applies the record at `offset` of `partition` (`payload`,
    /// arriving at wall time `now_ms`); its alerts and candidates go out at once. The
    /// caller sets a late or rejected record aside as the returned [`Step`] says.
    pub(crate) fn record(
        &mut self,
        partition: i32,
        source: Source,
        payload: &[u8],
        now_ms: i64,
        fx: &mut impl Effects,
    ) -> Step {
        let Some(owned) = self.partitions.get_mut(&partition) else {
            return Step::NotOwned;
        };
        let skipped = match owned.offsets.offer(source.offset) {
            RecordOrder::Again => return Step::Again,
            RecordOrder::ReadFrom(from) => return Step::ReadFrom(from),
            RecordOrder::Take { skipped } => skipped,
        };
        let validation = &self.settings.validation;
        let outcome =
            decode_in(payload, self.settings.input_format, validation).and_then(|decoded| {
                decoded
                    .validate(now_ms, validation)
                    .map(|event| owned.state.apply(&event, &mut self.alerts))
            });
        owned.state.drain_candidates(&mut self.candidate_sets);
        owned.eof = false;
        let disposition = match outcome {
            Ok(Verdict::Late) => Disposition::Late,
            Ok(_) => Disposition::Applied,
            Err(rejection) => Disposition::Rejected(rejection),
        };
        self.emit(partition, Some(source), fx);
        Step::Taken {
            skipped,
            disposition,
        }
    }

    /// Hands the pending alerts and candidates of `partition` to the producer.
    fn emit(&mut self, partition: i32, source: Option<Source>, fx: &mut impl Effects) {
        for alert in self.alerts.drain(..) {
            fx.alert(partition, &alert, source);
        }
        for set in self.candidate_sets.drain(..) {
            fx.candidates(partition, set);
        }
    }

    /// The reader reported trouble at `now_ms`: no partition's silence counts before it.
    pub(crate) fn read_trouble(&mut self, now_ms: i64) {
        self.idle_watch.trouble(now_ms);
    }

    /// First half of a tick at `now_ms` (monotonic): the partitions whose end of log the
    /// broker must be asked for now (see [`IdleWatch::plan`]).
    pub(crate) fn idle_looks(&mut self, now_ms: i64) -> Vec<i32> {
        let plan = self.idle_watch.plan(
            now_ms,
            self.partitions
                .iter()
                .map(|(p, o)| (*p, o.state.silent_since(), o.state.idle_due(now_ms))),
        );
        if let Some(trouble) = plan.hold_all_from {
            for o in self.partitions.values_mut() {
                o.state.hold_idle(trouble);
            }
        }
        plan.look
    }

    /// Second half of the tick: `looked` are the partitions of [`Protocol::idle_looks`],
    /// `ends` the broker's answers (the end of each log; missing: no answer), `positions`
    /// the consumer's. A silent partition moves on with the clock only when confirmed at
    /// the end of its log; otherwise its silence is the reader's and starts again.
    pub(crate) fn tick(
        &mut self,
        now_ms: i64,
        looked: &[i32],
        ends: &HashMap<i32, i64>,
        positions: &HashMap<i32, i64>,
        fx: &mut impl Effects,
    ) {
        let partitions: Vec<i32> = self.partitions.keys().copied().collect();
        for p in partitions {
            let Some(o) = self.partitions.get_mut(&p) else {
                continue;
            };
            let look = looked.contains(&p);
            let at_end = look
                && at_end_of_log(
                    o.next_offset(),
                    positions.get(&p).copied(),
                    ends.get(&p).copied(),
                );
            match tick_partition(&mut o.state, look, at_end, now_ms, &mut self.alerts) {
                IdleTick::Held => {
                    fx.count(Tally::IdleHeld, 1);
                    tracing::debug!(
                        partition = p,
                        next = ?o.next_offset(),
                        end = ?ends.get(&p),
                        "silent but not at the end of its log: the watermark stays"
                    );
                    continue;
                }
                IdleTick::Ticked { moved } => {
                    o.state.drain_candidates(&mut self.candidate_sets);
                    if moved && !o.idle {
                        tracing::info!(
                            partition = p,
                            watermark = ?o.state.watermark(),
                            "partition idle at the end of its log: its watermark moves on with the clock"
                        );
                    }
                    o.idle = moved;
                }
            }
            self.emit(p, None, fx);
        }
    }

    /// One checkpoint round at `now_ms` (monotonic) over `which` partitions (all when
    /// `None`: a periodic round; some: a revoke). `sync` for the last round before
    /// shutdown, which takes every change. See the module docs.
    pub(crate) fn checkpoint(
        &mut self,
        which: Option<&[i32]>,
        sync: bool,
        now_ms: i64,
        fx: &mut impl Effects,
    ) {
        let chosen: Vec<i32> = match which {
            Some(list) => list
                .iter()
                .copied()
                .filter(|p| self.partitions.contains_key(p))
                .collect(),
            None => self.partitions.keys().copied().collect(),
        };
        if chosen.is_empty() {
            return;
        }
        if self.settings.exactly_once {
            // One transaction holds every partition's output: all of them commit together.
            self.commit_transaction(fx);
            return;
        }
        if let Some(reason) = fx.producer_fatal() {
            // Nothing more will be acknowledged: stop, and let the restart go on from the
            // last checkpoint with a new producer.
            fx.stop(RuntimeError::ProducerFatal(reason));
            return;
        }
        if !fx.flush() {
            // Some output is not acknowledged yet: nothing may be checkpointed past it.
            fx.count(Tally::CheckpointsFailed, chosen.len() as u64);
            tracing::warn!("alerts not acknowledged in time; checkpoint postponed");
            return;
        }
        let refused = fx.refused();
        // Refusals of partitions this round does not cover wait for one that does.
        self.unacknowledged.extend(refused.failed.iter().copied());
        let lost: Vec<i32> = chosen
            .iter()
            .copied()
            .filter(|p| self.unacknowledged.contains(p))
            .collect();
        for p in &lost {
            if let Some(reason) = refused.permanent.get(p)
                && self.strikes.refused(*p)
            {
                fx.stop(RuntimeError::OutputRefused {
                    partition: *p,
                    rounds: Strikes::LIMIT,
                    reason: reason.clone(),
                });
            }
        }
        fx.count(Tally::CheckpointsFailed, lost.len() as u64);
        // A partition being revoked is not rewound: its next owner starts from its last
        // checkpoint.
        if which.is_none() {
            for p in &lost {
                self.unacknowledged.remove(p);
            }
            let stuck = self.rewind(&lost, fx);
            self.unacknowledged.extend(stuck);
        }
        // A revoke or shutdown takes everything; a periodic round leaves a partition that
        // only moved on with the clock for a while.
        let complete = which.is_some() || sync;
        let idle_every = self.settings.idle_checkpoint_every_ms;
        let checkpoints: Vec<(i32, Checkpoint)> = chosen
            .iter()
            .filter(|p| !lost.contains(p))
            .filter_map(|p| {
                let o = self.partitions.get(p)?;
                let wanted = if complete {
                    o.dirty()
                } else {
                    o.due(now_ms, idle_every)
                };
                Some((*p, o.next_checkpoint().filter(|_| wanted)?))
            })
            .collect();
        if checkpoints.is_empty() {
            return;
        }
        let refs: Vec<(i32, &Checkpoint)> = checkpoints.iter().map(|(p, c)| (*p, c)).collect();
        let acked = fx.write_checkpoints(&refs);
        let mut commit = Vec::new();
        for ((p, cp), ok) in checkpoints.iter().zip(acked) {
            if !ok {
                fx.count(Tally::CheckpointsFailed, 1);
                continue;
            }
            fx.count(Tally::CheckpointsOk, 1);
            self.strikes.clear(*p);
            if let Some(o) = self.partitions.get_mut(p) {
                o.checkpointed_ms = now_ms;
                o.generation = cp.generation;
                o.checkpointed = Some((Some(cp.offset), o.state.watermark()));
            }
            commit.push((*p, cp.offset));
        }
        if !commit.is_empty() {
            fx.commit(&commit, sync);
        }
    }

    /// Exactly-once round: the changed partitions' checkpoints and their offsets join the
    /// open transaction (which holds the output since the last round), and it commits.
    /// Any failure aborts it and every partition goes back to its last committed
    /// checkpoint. A new transaction is open afterwards.
    fn commit_transaction(&mut self, fx: &mut impl Effects) {
        if self.poisoned {
            return;
        }
        let checkpoints: Vec<(i32, Checkpoint)> = self
            .partitions
            .iter()
            .filter(|(_, o)| o.dirty())
            .filter_map(|(p, o)| Some((*p, o.next_checkpoint()?)))
            .collect();
        let refs: Vec<(i32, &Checkpoint)> = checkpoints.iter().map(|(p, c)| (*p, c)).collect();
        let offsets: Vec<(i32, i64)> = checkpoints.iter().map(|(p, c)| (*p, c.offset)).collect();
        match fx.commit_transaction(&refs, &offsets) {
            Ok(()) => {
                fx.count(Tally::TransactionsCommitted, 1);
                fx.count(Tally::CheckpointsOk, checkpoints.len() as u64);
                for (p, cp) in &checkpoints {
                    self.strikes.clear(*p);
                    if let Some(o) = self.partitions.get_mut(p) {
                        o.generation = cp.generation;
                        o.checkpointed = Some((Some(cp.offset), o.state.watermark()));
                    }
                }
            }
            Err(failure) => {
                fx.count(Tally::CheckpointsFailed, checkpoints.len() as u64);
                self.abort_transaction(&failure, fx);
            }
        }
        fx.begin_transaction();
    }

    /// Gives up the open transaction and goes back to the last committed checkpoints.
    fn abort_transaction(&mut self, failure: &TransactionFailed, fx: &mut impl Effects) {
        if failure.fatal {
            fx.count(Tally::TransactionsFenced, 1);
            tracing::error!(error = %failure.reason, "transactional producer fenced or failed; a new one takes over");
        } else {
            fx.count(Tally::TransactionsAborted, 1);
            tracing::warn!(error = %failure.reason, "transaction failed; aborting it");
        }
        fx.abort_transaction(failure);
        // Output refused for good aborts every round the same way: after a few in a row
        // the process stops and says why, as in at-least-once mode.
        for (p, reason) in fx.refused().permanent {
            if self.strikes.refused(p) {
                fx.stop(RuntimeError::OutputRefused {
                    partition: p,
                    rounds: Strikes::LIMIT,
                    reason,
                });
            }
        }
        let all: Vec<i32> = self.partitions.keys().copied().collect();
        // State may never run ahead of what is committed with its output: a partition that
        // could not go back ends the process (a restart restores from the committed
        // checkpoints).
        let stuck = self.rewind(&all, fx);
        if let Some(&partition) = stuck.first() {
            self.poisoned = true;
            fx.stop(RuntimeError::Restore {
                topic: self.settings.events_topic.clone(),
                partition,
                reason: "could not go back to the last committed checkpoint after an abort".into(),
            });
        }
    }

    /// Goes back to the partitions' last checkpoints after output was lost, so their
    /// records are processed (and their output produced) again. Returns those that could
    /// not go back (their checkpoints could not be read): they stay as they are, and no
    /// checkpoint may be written past their lost output.
    fn rewind(&mut self, partitions: &[i32], fx: &mut impl Effects) -> Vec<i32> {
        if partitions.is_empty() {
            return Vec::new();
        }
        fx.count(Tally::Rewinds, partitions.len() as u64);
        let restored = match fx.read_checkpoints(partitions) {
            Ok(checkpoints) => checkpoints,
            Err(e) => {
                tracing::error!(?partitions, error = %e, "rewind failed; will retry");
                return partitions.to_vec();
            }
        };
        let mut stuck = Vec::new();
        for (p, candidates) in partitions.iter().zip(restored) {
            let mut owned = match self.owned_from(*p, &candidates, fx) {
                Ok((owned, _)) => owned,
                Err(e) => {
                    tracing::error!(partition = p, error = %e, "rewind failed; will retry");
                    stuck.push(*p);
                    continue;
                }
            };
            owned
                .offsets
                .keep_start(self.partitions.get(p).and_then(|o| o.offsets.started_at()));
            let target = rewind_target(owned.next_offset(), owned.offsets.started_at());
            self.partitions.insert(*p, owned);
            let Some(offset) = target else {
                tracing::warn!(
                    partition = p,
                    "rewinding: nothing read yet, nothing to read again"
                );
                continue;
            };
            tracing::warn!(
                partition = p,
                offset,
                "rewinding to the last checkpoint (or where this owner started)"
            );
            fx.seek(*p, offset);
        }
        stuck
    }
}
