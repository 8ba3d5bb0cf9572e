//! The counter service: the engine wrapped in a consumer-group member.
//!
//! One [`PartitionState`] per assigned partition, fed the partition's records in offset
//! order. Alerts go to the alert topic keyed by video id; rejected records to the
//! dead-letter topic; late events to the late topic when one is configured; each closed
//! trending window's top candidates to the candidates topic, for the ranker.
//!
//! ## Delivery
//!
//! Each checkpoint round first waits until the broker has acknowledged every alert,
//! dead letter and late record produced so far, then writes each changed partition's state
//! with the offset it covers (see [`crate::checkpoint`]), waits for those acknowledgements,
//! and only then commits that offset. A partition whose output was not acknowledged is
//! not checkpointed: it is rewound to its last checkpoint and its records are processed
//! again, so nothing is skipped. On assignment the partition is restored from its latest
//! checkpoint and consumption resumes at the checkpoint's offset (the committed offset is
//! only consulted when there is no checkpoint). On revoke and on shutdown the partitions
//! are checkpointed first. A crash loses at most the work since the last checkpoint, which
//! is then done again from the same records: counts are never doubled, and re-sent alerts
//! carry the same deterministic `alert_id`.
//!
//! The decisions that need no broker — offset gaps, whether a silent partition is idle,
//! where a rewind goes, which partitions a periodic round checkpoints, when a refusal that
//! repeats must stop the process — are pure functions in `crate::delivery` (private).
//!
//! In exactly-once mode the producer is transactional: everything produced between two
//! checkpoint rounds (alerts, dead letters, late records) joins one transaction, and the
//! round adds the changed partitions' checkpoints and the consumed offsets to it and
//! commits. A failed commit aborts the transaction (a fenced producer is replaced) and
//! every partition goes back to its last committed checkpoint, so a `read_committed`
//! reader sees each alert once.
//!
//! ## Threads
//!
//! The loop runs on the caller's thread with a `BaseConsumer`; rebalance callbacks run
//! inside its `poll`, on the same thread, so the worker's mutex is never contended. The
//! producers deliver on librdkafka's threads and report failures through their context.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use trendwatch_config::{Config, MissingCheckpoint, ProcessingGuarantee};
use trendwatch_core::{Alert, CandidateSet, EventKind, PartitionState, PartitionStats, Verdict};
use trendwatch_proto::files::Format;
use trendwatch_proto::{AlertRecord, CandidateRecord, Rejection, decode_in};

use crate::checkpoint::{Checkpoint, CheckpointStore, newest_decoded};
use crate::client::Membership;
use crate::client::{
    counter_topics, ensure_topics, group_consumer_config, producer_config,
    transactional_producer_config,
};
use crate::context::{
    FatalSlot, assign_partitions, forward_log, log_level, report_brokers, report_client_error,
    unassign_partitions,
};
use crate::deadletter;
use crate::delivery::{
    IdleTick, IdleWatch, OffsetTracker, RecordOrder, Strikes, at_end_of_log, rewind_target,
    tick_partition, worth_checkpoint,
};
use crate::error::{Result, RuntimeError};
use crate::health::Health;
use crate::output::{DeliveryTracker, send};
use crate::telemetry as m;
use crate::wall_ms;

/// Partitions a topic gets when the counter has to create it.
pub const DEFAULT_PARTITIONS: i32 = 6;

/// At-least-once: a partition whose watermark only moved on with the clock (idle) is
/// checkpointed every this many checkpoint intervals, not every one. Exactly-once
/// checkpoints every change, since the output of the advance commits with it.
const IDLE_CHECKPOINT_ROUNDS: i64 = 12;

/// How often the events topic's partition count is read again (for the alert on partitions
/// without an owner, which a member without partitions must be able to report too).
const METADATA_EVERY: Duration = Duration::from_secs(30);

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Runs the counter until `shutdown` is cancelled (or a fatal error), then drains: finishes
/// the record in hand, flushes alerts, checkpoints, commits and leaves the group.
pub fn run(config: Config, health: Arc<Health>, shutdown: CancellationToken) -> Result<()> {
    let created = ensure_topics(&config, &counter_topics(&config, DEFAULT_PARTITIONS))?;
    if !created.is_empty() {
        tracing::info!(topics = ?created, "created missing topics");
    }
    let worker = Worker::new(config.clone())?;
    let context = CounterContext {
        worker: Mutex::new(worker),
        health: Arc::clone(&health),
        high_watermarks: Mutex::new(HashMap::new()),
        fatal: FatalSlot::default(),
        events_topic: config.topics.events.clone(),
    };
    let consumer: BaseConsumer<CounterContext> =
        group_consumer_config(&config, Membership::counter(&config))
            .set_log_level(log_level(&config))
            .create_with_context(context)
            .map_err(|e| RuntimeError::kafka("creating the consumer", e))?;
    consumer
        .subscribe(&[&config.topics.events])
        .map_err(|e| RuntimeError::kafka("subscribing to the events topic", e))?;
    tracing::info!(
        topic = %config.topics.events,
        group = %config.counter.group_id,
        protocol = config.counter.group_protocol.as_str(),
        instance = %config.counter.group_instance_id,
        bootstrap = %config.bootstrap_servers(),
        "counter started"
    );
    health.set_started();

    let tick_every = config.counter.tick_interval;
    let checkpoint_every = config.counter.checkpoint_interval;
    let mut last_tick = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut since_clock = 0u32;
    let mut last_metadata: Option<Instant> = None;
    let mut outcome = Ok(());
    while !shutdown.is_cancelled() {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => {
                let refetch = consumer.context().worker().process(&message);
                if let Some((p, offset)) = refetch {
                    drop(message);
                    if let Err(e) = consumer.seek(
                        &config.topics.events,
                        p,
                        Offset::Offset(offset),
                        Duration::from_secs(10),
                    ) {
                        tracing::error!(partition = p, offset, error = %e, "seek back failed");
                    }
                }
                // Reading the clock costs more than a record; look every few hundred.
                since_clock += 1;
                if since_clock < 256 {
                    continue;
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => consumer.context().worker().mark_eof(p),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                // Whatever failed, the reader may have missed records: silence so far is
                // not the stream's.
                consumer.context().worker().read_trouble();
            }
            None => {}
        }
        since_clock = 0;
        if let Some(e) = consumer.context().take_fatal() {
            outcome = Err(e);
            break;
        }
        let mut worker = consumer.context().worker();
        worker.refresh_clock();
        if last_tick.elapsed() >= tick_every {
            last_tick = Instant::now();
            let hw = consumer.context().high_watermarks();
            if last_metadata.is_none_or(|t: Instant| t.elapsed() >= METADATA_EVERY) {
                last_metadata = Some(Instant::now());
                if let Some(n) = topic_partitions(&consumer, &config.topics.events) {
                    worker.events_partitions = n;
                }
            }
            worker.tick(&consumer, &hw, &health);
        }
        if last_checkpoint.elapsed() >= checkpoint_every {
            last_checkpoint = Instant::now();
            worker.checkpoint(&consumer, None, CommitMode::Async);
        }
    }

    tracing::info!("counter draining");
    health.set_stopping();
    {
        let mut worker = consumer.context().worker();
        worker.refresh_clock();
        worker.checkpoint(&consumer, None, CommitMode::Sync);
    }
    // Leave the group: the revoke callback runs inside poll (nothing is dirty any more, so
    // it only releases the partitions).
    consumer.unsubscribe();
    let leave_deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < leave_deadline && consumer.assignment().is_ok_and(|a| a.count() > 0) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            // A record fetched before the revoke; it is past the checkpoint and the next
            // owner reads it again, so it is not processed here.
            let _ = message;
        }
    }
    if let Some(e) = consumer.context().take_fatal() {
        outcome = outcome.and(Err(e));
    }
    consumer.context().worker().publish_counters();
    tracing::info!("counter stopped");
    outcome
}

/// The consumer's context: owns the worker so rebalance callbacks can checkpoint and
/// restore, and reads the client's statistics for lag and broker reachability.
struct CounterContext {
    worker: Mutex<Worker>,
    health: Arc<Health>,
    high_watermarks: Mutex<HashMap<i32, i64>>,
    fatal: FatalSlot,
    events_topic: String,
}

impl CounterContext {
    fn worker(&self) -> MutexGuard<'_, Worker> {
        self.worker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn high_watermarks(&self) -> HashMap<i32, i64> {
        self.high_watermarks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fail(&self, error: RuntimeError) {
        self.fatal.fail(error);
    }

    fn take_fatal(&self) -> Option<RuntimeError> {
        self.fatal.take()
    }
}

impl ClientContext for CounterContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        forward_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        report_client_error(&self.health, &error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        report_brokers(&self.health, &statistics);
        if let Some(topic) = statistics.topics.get(&self.events_topic) {
            let mut hw = self
                .high_watermarks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (p, part) in &topic.partitions {
                if *p >= 0 && part.hi_offset >= 0 {
                    hw.insert(*p, part.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for CounterContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                counter!(m::REBALANCES, "kind" => "assign").increment(1);
                let partitions: Vec<i32> = tpl
                    .elements_for_topic(&self.events_topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                tracing::info!(?partitions, "assigned");
                let committed = committed_offsets(consumer, tpl, &self.events_topic);
                let mut worker = self.worker();
                self.health.set_restoring(true);
                let restored = worker.adopt(&partitions, committed.as_ref());
                self.health.set_restoring(false);
                match restored {
                    Ok(offsets) => {
                        for (p, offset) in offsets {
                            if let Err(e) = tpl.set_partition_offset(
                                &self.events_topic,
                                p,
                                Offset::Offset(offset),
                            ) {
                                self.fail(RuntimeError::kafka("positioning a partition", e));
                            }
                        }
                    }
                    Err(e) => self.fail(e),
                }
                if let Err(e) = assign_partitions(consumer, tpl) {
                    self.fail(RuntimeError::kafka("assigning partitions", e));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // A lost assignment (the session expired, or the member was fenced): the
                // partitions may already be another member's, whose checkpoints a write of
                // ours would shadow — a zombie. Its work since the last checkpoint is
                // dropped; the new owner redoes it from the same records.
                let lost = consumer.assignment_lost();
                counter!(m::REBALANCES, "kind" => if lost { "lost" } else { "revoke" })
                    .increment(1);
                let partitions: Vec<i32> = tpl
                    .elements_for_topic(&self.events_topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                let mut worker = self.worker();
                if lost {
                    tracing::warn!(
                        ?partitions,
                        "assignment lost: releasing without a checkpoint (the new owner restores the last one)"
                    );
                } else {
                    tracing::info!(?partitions, "revoked");
                    worker.refresh_clock();
                    worker.checkpoint(consumer, Some(&partitions), CommitMode::Sync);
                }
                worker.release(&partitions);
                if let Err(e) = unassign_partitions(consumer, tpl) {
                    tracing::warn!(error = %e, "unassign failed");
                }
            }
            other => {
                // Whatever the group did, this member no longer owns what it had: release
                // it without a checkpoint (as for a lost assignment), or it would go on
                // checkpointing partitions another member may own.
                let code: RDKafkaErrorCode = other.into();
                let mut worker = self.worker();
                let held: Vec<i32> = worker.partitions.keys().copied().collect();
                tracing::warn!(error = %code, partitions = ?held, "rebalance error: releasing every partition without a checkpoint");
                worker.release(&held);
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(error = %e, "unassign failed");
                }
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            counter!(m::COMMIT_FAILURES).increment(1);
            tracing::warn!(error = %e, "offset commit failed");
        }
    }
}

/// One assigned partition.
struct Owned {
    state: PartitionState,
    /// The next offset to process (records below it are already in `state`), a gap being
    /// healed, and where this owner started.
    offsets: OffsetTracker,
    /// Of the last checkpoint written or restored.
    generation: u64,
    /// What the last checkpoint covered: offset and watermark.
    checkpointed: Option<(Option<i64>, Option<i64>)>,
    /// Stats already published as metrics.
    published: PartitionStats,
    /// Dedup ids forgotten already published (since the state was made or restored).
    published_forgotten: u64,
    eof: bool,
    /// When (on the worker's monotonic clock) the last checkpoint was acknowledged.
    checkpointed_ms: i64,
    /// The last tick moved the watermark on with the clock.
    idle: bool,
}

impl Owned {
    /// The next offset to process; records below it are already in `state`.
    fn next_offset(&self) -> Option<i64> {
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

/// Everything the loop and the rebalance callbacks share.
struct Worker {
    config: Config,
    /// Transactional in exactly-once mode, with a transaction always open.
    producer: ThreadedProducer<DeliveryTracker>,
    exactly_once: bool,
    /// Exactly-once: a partition could not go back to its committed checkpoint after an
    /// abort, so its state is ahead of committed output; nothing may be committed any more
    /// (the process is ending).
    poisoned: bool,
    store: CheckpointStore,
    partitions: BTreeMap<i32, Owned>,
    alerts: Vec<Alert>,
    /// Candidates each partition proposes per closed window to the ranker (0: none).
    candidates_k: usize,
    candidate_sets: Vec<CandidateSet>,
    encoded: Vec<u8>,
    now_ms: i64,
    /// Start of the monotonic clock idle silence is measured on.
    started: Instant,
    /// When silent partitions are looked at, and the reader's trouble since the last tick.
    idle_watch: IdleWatch,
    /// The output producer's `message.max.bytes`: dead letters are cut to fit it.
    max_record_bytes: usize,
    /// Rounds in a row each partition's output was refused for good.
    strikes: Strikes,
    /// Since when the member has had no partition (from the start until the first
    /// assignment, and after a revoke of all it had).
    unassigned_since: Option<Instant>,
    /// Partitions of the events topic, as the broker's metadata last said (0: unknown).
    events_partitions: usize,
    records: u64,
    rejected: Vec<u64>,
}

impl Worker {
    fn new(config: Config) -> Result<Self> {
        let exactly_once = config.counter.processing_guarantee == ProcessingGuarantee::ExactlyOnce;
        let producer = output_producer(&config)?;
        if exactly_once {
            producer
                .begin_transaction()
                .map_err(|e| RuntimeError::kafka("beginning a transaction", e))?;
        }
        let store = CheckpointStore::new(&config)?;
        Ok(Self {
            producer,
            exactly_once,
            poisoned: false,
            store,
            partitions: BTreeMap::new(),
            alerts: Vec::new(),
            candidates_k: if config.topics.candidates.is_empty() {
                0
            } else {
                config.ranking.exit_rank as usize
            },
            candidate_sets: Vec::new(),
            encoded: Vec::new(),
            now_ms: wall_ms(),
            started: Instant::now(),
            idle_watch: IdleWatch::new(
                ms(config.engine.windows.idle_timeout),
                ms(config.counter.tick_interval),
                0,
            ),
            max_record_bytes: config
                .kafka
                .get("message.max.bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(deadletter::DEFAULT_MAX_MESSAGE_BYTES),
            strikes: Strikes::default(),
            unassigned_since: Some(Instant::now()),
            events_partitions: 0,
            records: 0,
            rejected: vec![0; Rejection::ALL_REASONS.len()],
            config,
        })
    }

    fn refresh_clock(&mut self) {
        self.now_ms = wall_ms();
    }

    /// Restores `partitions` from their checkpoints (or starts them empty) and returns the
    /// offsets to resume from, for those a checkpoint names. `committed` holds the group's
    /// committed offsets of them (`None` when the broker did not say): a partition with one
    /// but without a checkpoint lost its state (see [`MissingCheckpoint`]).
    fn adopt(
        &mut self,
        partitions: &[i32],
        committed: Option<&HashMap<i32, i64>>,
    ) -> Result<Vec<(i32, i64)>> {
        let started = Instant::now();
        let checkpoints = self.store.restore_all(partitions)?;
        let mut offsets = Vec::new();
        for (p, candidates) in partitions.iter().zip(checkpoints) {
            if let Some(&offset) = committed
                .and_then(|c| c.get(p))
                .filter(|_| candidates.is_empty())
            {
                counter!(m::CHECKPOINTS_MISSING).increment(1);
                let missing = RuntimeError::MissingCheckpoint {
                    topic: self.config.topics.events.clone(),
                    partition: *p,
                    group: self.config.counter.group_id.clone(),
                    committed: offset,
                    state_topic: self.config.topics.state.clone(),
                };
                match self.config.counter.on_missing_checkpoint {
                    MissingCheckpoint::Fail => return Err(missing),
                    MissingCheckpoint::StartEmpty => tracing::error!(
                        error = %missing,
                        "counter.on_missing_checkpoint = \"start-empty\": starting the partition empty at the committed offset"
                    ),
                }
            }
            let (owned, checkpoint) = self.owned_from(*p, &candidates)?;
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
            self.partitions.insert(*p, owned);
        }
        if !partitions.is_empty() {
            self.unassigned_since = None;
        }
        let seconds = started.elapsed().as_secs_f64();
        histogram!(m::RESTORE_DURATION).record(seconds);
        tracing::info!(partitions = partitions.len(), seconds, "restore done");
        Ok(offsets)
    }

    /// The partition as the newest of its whole checkpoints (`candidates`, newest first)
    /// that decodes leaves it (see [`newest_decoded`]), with that checkpoint; empty when
    /// there is none; an error when there are some and none decodes.
    fn owned_from<'c>(
        &self,
        partition: i32,
        candidates: &'c [Checkpoint],
    ) -> Result<(Owned, Option<&'c Checkpoint>)> {
        let engine = &self.config.engine;
        let restore_error = |reason: String| RuntimeError::Restore {
            topic: self.config.topics.events.clone(),
            partition,
            reason,
        };
        let newest = newest_decoded(candidates, partition, |cp| {
            PartitionState::from_bytes(engine.clone(), &cp.state)
        });
        let (mut state, checkpoint) = match newest.map_err(restore_error)? {
            Some((cp, state)) => (state, Some(cp)),
            None => (
                PartitionState::new(engine.clone()).map_err(|e| restore_error(e.to_string()))?,
                None,
            ),
        };
        let next_offset = checkpoint.map(|cp| cp.offset);
        let generation = checkpoint.map_or(0, |cp| cp.generation);
        state.restart_idle_clock();
        state.propose_candidates(self.candidates_k);
        let published = state.stats().clone();
        let checkpointed = checkpoint.map(|_| (next_offset, state.watermark()));
        let owned = Owned {
            state,
            offsets: OffsetTracker::resume(next_offset),
            generation,
            checkpointed,
            published,
            eof: false,
            checkpointed_ms: 0,
            idle: false,
            published_forgotten: 0,
        };
        Ok((owned, checkpoint))
    }

    /// Drops revoked partitions (after their checkpoint). Their per-partition gauges are
    /// no longer set, so they leave `/metrics` (see [`m::GAUGE_IDLE_TIMEOUT`]); a 0 would
    /// claim a partition this instance no longer reads is caught up.
    fn release(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.partitions.remove(p);
            self.strikes.clear(*p);
        }
        if self.partitions.is_empty() && self.unassigned_since.is_none() {
            self.unassigned_since = Some(Instant::now());
        }
        self.publish_gauges(&HashMap::new());
    }

    fn mark_eof(&mut self, partition: i32) {
        if let Some(o) = self.partitions.get_mut(&partition) {
            o.eof = true;
        }
    }

    /// Decodes, validates and applies one record; routes rejects, late events and alerts.
    /// Returns a partition and offset to read again from when the record does not follow
    /// the state's last one.
    fn process(&mut self, message: &BorrowedMessage<'_>) -> Option<(i32, i64)> {
        let p = message.partition();
        let offset = message.offset();
        let Some(owned) = self.partitions.get_mut(&p) else {
            tracing::warn!(
                partition = p,
                offset,
                "record of a partition not assigned here"
            );
            return None;
        };
        match owned.offsets.offer(offset) {
            // Fetched again (after a rewind or a gap): already in the state.
            RecordOrder::Again => return None,
            RecordOrder::ReadFrom(from) => {
                counter!(m::OFFSET_GAPS).increment(1);
                tracing::warn!(
                    partition = p,
                    expected = ?owned.next_offset(),
                    got = offset,
                    reading_from = from,
                    "offset gap: reading the partition again from before the gap"
                );
                return Some((p, from));
            }
            RecordOrder::Take { skipped: 0 } => {}
            RecordOrder::Take { skipped } => note_skipped(p, offset, skipped),
        }
        self.records += 1;
        let payload = message.payload().unwrap_or_default();
        let validation = &self.config.validation;
        let outcome =
            decode_in(payload, self.config.counter.input_format, validation).and_then(|decoded| {
                decoded
                    .validate(self.now_ms, validation)
                    .map(|event| owned.state.apply(&event, &mut self.alerts))
            });
        owned.state.drain_candidates(&mut self.candidate_sets);
        owned.eof = false;
        match outcome {
            Ok(Verdict::Late) if !self.config.topics.late.is_empty() => {
                let detail = "event time is behind the partition's watermark by more than the allowed lateness";
                if set_aside(
                    &self.producer,
                    &self.config.topics.late,
                    message,
                    "late",
                    detail,
                    self.max_record_bytes,
                ) {
                    counter!(m::LATE_RECORDS).increment(1);
                }
            }
            Ok(_) => {}
            Err(rejection) => {
                let reason = rejection.reason();
                if let Some(i) = Rejection::ALL_REASONS.iter().position(|r| *r == reason) {
                    self.rejected[i] += 1;
                }
                let detail = rejection.to_string();
                if set_aside(
                    &self.producer,
                    &self.config.topics.dlq,
                    message,
                    reason,
                    &detail,
                    self.max_record_bytes,
                ) {
                    counter!(m::DLQ_RECORDS, "reason" => reason).increment(1);
                }
            }
        }
        if !self.alerts.is_empty() {
            let source = Source {
                offset,
                timestamp: message.timestamp().to_millis(),
            };
            self.emit_alerts(p, Some(source));
        }
        if !self.candidate_sets.is_empty() {
            self.emit_candidates(p);
        }
        None
    }

    /// Produces the pending candidate sets of `partition` to the candidates topic (its one
    /// partition), keyed by the source partition.
    fn emit_candidates(&mut self, partition: i32) {
        let key = partition.to_string();
        let sets = std::mem::take(&mut self.candidate_sets);
        let count = sets.len() as u64;
        for set in sets {
            let record = CandidateRecord {
                source_topic: self.config.topics.events.clone(),
                source_partition: partition,
                set,
            };
            self.encoded.clear();
            record.encode_protobuf(&mut self.encoded);
            let base = BaseRecord::<str, [u8], usize>::with_opaque_to(
                &self.config.topics.candidates,
                partition as usize,
            )
            .partition(0)
            .key(key.as_str())
            .payload(self.encoded.as_slice());
            send(&self.producer, base, partition);
        }
        counter!(m::CANDIDATE_SETS).increment(count);
    }

    /// Produces the pending alerts of `partition`; `source` is the record whose arrival
    /// made the decision (none for wall-clock ticks), named in the alert's headers.
    fn emit_alerts(&mut self, partition: i32, source: Option<Source>) {
        let now = wall_ms();
        let format = self.config.counter.output_format;
        for alert in self.alerts.drain(..) {
            let record = AlertRecord::from_alert(&alert, now);
            self.encoded.clear();
            match format {
                Format::Protobuf => record.encode_protobuf(&mut self.encoded),
                Format::Json => self.encoded.extend_from_slice(record.to_json().as_bytes()),
            }
            let base = BaseRecord::<str, [u8], usize>::with_opaque_to(
                &self.config.topics.alerts,
                partition as usize,
            )
            .key(alert.video_id.as_str())
            .payload(self.encoded.as_slice())
            .headers(source_headers(
                &self.config.topics.events,
                partition,
                source,
            ));
            if send(&self.producer, base, partition) {
                counter!(
                    m::ALERTS_EMITTED,
                    "type" => alert.alert_type.as_str(),
                    "tier" => alert.tier.to_string()
                )
                .increment(1);
                histogram!(m::ALERT_LATENCY)
                    .record(now.saturating_sub(alert.detected_at).max(0) as f64 / 1000.0);
            }
        }
    }

    /// Clock tick: idle partitions move on, metrics and readiness are refreshed. A partition
    /// silent for `idle_timeout` moves on only when the broker confirms, now, that its
    /// reader has everything the log holds (see [`at_end_of_log`]); otherwise the silence
    /// is the reader's (an outage, fetch errors), not the stream's, and is not counted.
    fn tick(
        &mut self,
        consumer: &BaseConsumer<CounterContext>,
        high_watermarks: &HashMap<i32, i64>,
        health: &Health,
    ) {
        // Silence is measured on the monotonic clock: a step of the wall clock is not time
        // the stream was quiet.
        let now = self.idle_ms();
        let plan = self.idle_watch.plan(
            now,
            self.partitions
                .iter()
                .map(|(p, o)| (*p, o.state.silent_since(), o.state.idle_due(now))),
        );
        if let Some(trouble) = plan.hold_all_from {
            for o in self.partitions.values_mut() {
                o.state.hold_idle(trouble);
            }
        }
        let (ends, positions) = if plan.look.is_empty() {
            (HashMap::new(), HashMap::new())
        } else {
            (
                self.end_offsets(consumer, &plan.look),
                positions(consumer, &self.config.topics.events),
            )
        };
        let partitions: Vec<i32> = self.partitions.keys().copied().collect();
        for p in partitions {
            if let Some(o) = self.partitions.get_mut(&p) {
                let looked = plan.look.contains(&p);
                let at_end = looked
                    && at_end_of_log(
                        o.next_offset(),
                        positions.get(&p).copied(),
                        ends.get(&p).copied(),
                    );
                match tick_partition(&mut o.state, looked, at_end, now, &mut self.alerts) {
                    IdleTick::Held => {
                        counter!(m::IDLE_HELD).increment(1);
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
            }
            if !self.alerts.is_empty() {
                self.emit_alerts(p, None);
            }
            if !self.candidate_sets.is_empty() {
                self.emit_candidates(p);
            }
        }
        self.publish_counters();
        self.publish_gauges(high_watermarks);
        let max_lag = self.config.counter.ready_max_lag;
        let readiness = self
            .partitions
            .iter()
            .map(|(p, o)| {
                let lag = lag_of(o, high_watermarks.get(p).copied());
                (*p, o.eof || lag.is_some_and(|l| l <= max_lag))
            })
            .collect();
        health.set_partitions(readiness);
        gauge!(m::READY).set(if health.readiness().is_ok() { 1.0 } else { 0.0 });
    }

    /// The reader reported trouble: no partition's silence counts before now.
    fn read_trouble(&mut self) {
        let now = self.idle_ms();
        self.idle_watch.trouble(now);
    }

    /// Milliseconds on the monotonic clock since the worker started.
    fn idle_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// The end of the log of each of `partitions`, as the broker answers now (its last
    /// stable offset for a `read_committed` consumer). Partitions it did not answer for
    /// are missing; an unreachable broker answers for none.
    fn end_offsets(
        &self,
        consumer: &BaseConsumer<CounterContext>,
        partitions: &[i32],
    ) -> HashMap<i32, i64> {
        let topic = &self.config.topics.events;
        let mut query = TopicPartitionList::new();
        for p in partitions {
            // Asking for the offset of the "latest" timestamp is asking for the end.
            if let Err(e) = query.add_partition_offset(topic, *p, Offset::End) {
                tracing::warn!(error = %e, "building the end-offset query");
            }
        }
        let timeout = self
            .config
            .counter
            .tick_interval
            .clamp(Duration::from_millis(200), Duration::from_secs(2));
        match consumer.offsets_for_times(query, timeout) {
            Ok(answer) => answer
                .elements_for_topic(topic)
                .iter()
                .filter(|e| e.error().is_ok())
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, ?partitions, "end offsets not known");
                HashMap::new()
            }
        }
    }

    fn publish_counters(&mut self) {
        counter!(m::RECORDS_CONSUMED).increment(std::mem::take(&mut self.records));
        for (i, n) in self.rejected.iter_mut().enumerate() {
            if *n > 0 {
                counter!(m::EVENTS_REJECTED, "reason" => Rejection::ALL_REASONS[i])
                    .increment(std::mem::take(n));
            }
        }
        for o in self.partitions.values_mut() {
            let now = o.state.stats();
            let was = &o.published;
            for kind in EventKind::ALL {
                let i = kind.index();
                let d = now.counted[i].saturating_sub(was.counted[i]);
                if d > 0 {
                    counter!(m::EVENTS_COUNTED, "kind" => kind.as_str()).increment(d);
                }
            }
            counter!(m::EVENTS_DUPLICATE).increment(now.duplicates.saturating_sub(was.duplicates));
            counter!(m::EVENTS_LATE).increment(now.late.saturating_sub(was.late));
            counter!(m::EVENTS_UNTRACKED).increment(now.untracked.saturating_sub(was.untracked));
            counter!(m::VIDEOS_EVICTED).increment(now.evicted.saturating_sub(was.evicted));
            counter!(m::VIDEOS_EXPIRED).increment(now.expired.saturating_sub(was.expired));
            o.published = now.clone();
            let forgotten = o.state.dedup_forgotten();
            counter!(m::DEDUP_FORGOTTEN).increment(forgotten.saturating_sub(o.published_forgotten));
            o.published_forgotten = forgotten;
        }
    }

    fn publish_gauges(&self, high_watermarks: &HashMap<i32, i64>) {
        let mut videos = 0usize;
        let mut bytes = 0usize;
        for (p, o) in &self.partitions {
            videos += o.state.tracked_videos();
            bytes += o.state.memory_bytes();
            if let Some(lag) = lag_of(o, high_watermarks.get(p).copied()) {
                gauge!(m::CONSUMER_LAG, "partition" => p.to_string()).set(lag as f64);
            }
            if let Some(wm) = o.state.watermark() {
                gauge!(m::WATERMARK_DELAY, "partition" => p.to_string())
                    .set(self.now_ms.saturating_sub(wm) as f64 / 1000.0);
            }
        }
        gauge!(m::TRACKED_VIDEOS).set(videos as f64);
        gauge!(m::STATE_BYTES).set(bytes as f64);
        gauge!(m::ASSIGNED_PARTITIONS).set(self.partitions.len() as f64);
        gauge!(m::UNASSIGNED_SECONDS).set(
            self.unassigned_since
                .map_or(0.0, |since| since.elapsed().as_secs_f64()),
        );
        if self.events_partitions > 0 {
            gauge!(m::EVENTS_PARTITIONS).set(self.events_partitions as f64);
        }
    }

    /// One checkpoint round over `which` partitions (all when `None`); see the module docs.
    fn checkpoint(
        &mut self,
        consumer: &BaseConsumer<CounterContext>,
        which: Option<&[i32]>,
        mode: CommitMode,
    ) {
        let started = Instant::now();
        self.publish_counters();
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
        if self.exactly_once {
            // One transaction holds every partition's output: all of them commit together.
            self.commit_transaction(consumer);
            histogram!(m::CHECKPOINT_DURATION).record(started.elapsed().as_secs_f64());
            return;
        }
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            // Nothing more will be acknowledged: stop, and let the restart go on from the
            // last checkpoint with a new producer.
            consumer
                .context()
                .fail(RuntimeError::ProducerFatal(format!("{code}: {reason}")));
            return;
        }
        if let Err(e) = self.producer.flush(self.config.counter.ack_timeout) {
            // Some output is not acknowledged yet: nothing may be checkpointed past it.
            counter!(m::CHECKPOINTS, "result" => "failed").increment(chosen.len() as u64);
            tracing::warn!(error = %e, "alerts not acknowledged in time; checkpoint postponed");
            return;
        }
        let failed = self.producer.context().take_failed();
        let permanent = self.producer.context().take_permanent();
        let lost: Vec<i32> = failed
            .iter()
            .copied()
            .filter(|p| chosen.contains(p))
            .collect();
        for p in &lost {
            if let Some(reason) = permanent.get(p)
                && self.strikes.refused(*p)
            {
                consumer.context().fail(RuntimeError::OutputRefused {
                    partition: *p,
                    rounds: Strikes::LIMIT,
                    reason: reason.clone(),
                });
            }
        }
        counter!(m::CHECKPOINTS, "result" => "failed").increment(lost.len() as u64);
        // A partition being revoked is not rewound: its next owner starts from its last
        // checkpoint.
        if which.is_none() {
            self.rewind(consumer, &lost);
        }
        // A revoke or shutdown takes everything; a periodic round leaves a partition that
        // only moved on with the clock for a while.
        let complete = which.is_some() || matches!(mode, CommitMode::Sync);
        let now = self.idle_ms();
        let idle_every = ms(self.config.counter.checkpoint_interval) * IDLE_CHECKPOINT_ROUNDS;
        let dirty: Vec<i32> = chosen
            .iter()
            .copied()
            .filter(|p| !failed.contains(p))
            .filter(|p| {
                self.partitions.get(p).is_some_and(|o| {
                    if complete {
                        o.dirty()
                    } else {
                        o.due(now, idle_every)
                    }
                })
            })
            .collect();
        // A partition with output the broker did not take is not checkpointed: if it is
        // being revoked, its next owner starts from the previous checkpoint.
        let checkpoints: Vec<(i32, Checkpoint)> = dirty
            .iter()
            .filter_map(|p| Some((*p, self.partitions.get(p)?.next_checkpoint()?)))
            .collect();
        if checkpoints.is_empty() {
            return;
        }
        let refs: Vec<(i32, &Checkpoint)> = checkpoints.iter().map(|(p, c)| (*p, c)).collect();
        let (acked, bytes) = self.store.write(&refs);
        counter!(m::CHECKPOINT_BYTES).increment(bytes);
        let mut commit = TopicPartitionList::new();
        for ((p, cp), ok) in checkpoints.iter().zip(acked) {
            if !ok {
                counter!(m::CHECKPOINTS, "result" => "failed").increment(1);
                continue;
            }
            counter!(m::CHECKPOINTS, "result" => "ok").increment(1);
            self.strikes.clear(*p);
            if let Some(o) = self.partitions.get_mut(p) {
                o.checkpointed_ms = now;
                o.generation = cp.generation;
                o.checkpointed = Some((Some(cp.offset), o.state.watermark()));
            }
            if let Err(e) = commit.add_partition_offset(
                &self.config.topics.events,
                *p,
                Offset::Offset(cp.offset),
            ) {
                tracing::warn!(error = %e, "building the commit");
            }
        }
        if commit.count() > 0
            && let Err(e) = consumer.commit(&commit, mode)
        {
            counter!(m::COMMIT_FAILURES).increment(1);
            tracing::warn!(error = %e, "offset commit failed (the checkpoint stands)");
        }
        histogram!(m::CHECKPOINT_DURATION).record(started.elapsed().as_secs_f64());
    }

    /// Exactly-once round: the changed partitions' checkpoints and their offsets join the
    /// open transaction (which holds the output since the last round), and it commits.
    /// Any failure aborts it and every partition goes back to its last committed
    /// checkpoint. A new transaction is open afterwards.
    fn commit_transaction(&mut self, consumer: &BaseConsumer<CounterContext>) {
        if self.poisoned {
            return;
        }
        let timeout = self.config.counter.ack_timeout;
        let checkpoints: Vec<(i32, Checkpoint)> = self
            .partitions
            .iter()
            .filter(|(_, o)| o.dirty())
            .filter_map(|(p, o)| Some((*p, o.next_checkpoint()?)))
            .collect();
        let mut bytes = 0u64;
        let mut offsets = TopicPartitionList::new();
        for (p, cp) in &checkpoints {
            for (sp, key, value) in self.store.records(*p, cp) {
                bytes += value.len() as u64;
                let record =
                    BaseRecord::<str, [u8], usize>::with_opaque_to(self.store.topic(), *p as usize)
                        .partition(sp)
                        .key(key.as_str())
                        .payload(value.as_slice());
                send(&self.producer, record, *p);
            }
            if let Err(e) = offsets.add_partition_offset(
                &self.config.topics.events,
                *p,
                Offset::Offset(cp.offset),
            ) {
                tracing::warn!(error = %e, "building the transaction's offsets");
            }
        }
        let refused = self.producer.context().take_failed();
        let committed = if refused.is_empty() {
            let producer = &self.producer;
            (|| {
                if offsets.count() > 0 {
                    match consumer.group_metadata() {
                        Some(group) => {
                            producer.send_offsets_to_transaction(&offsets, &group, timeout)?
                        }
                        None => tracing::warn!(
                            "no group metadata: offsets stay in the checkpoints only"
                        ),
                    }
                }
                producer.commit_transaction(timeout)
            })()
        } else {
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::Fail))
        };
        match committed {
            Ok(()) => {
                counter!(m::TRANSACTIONS, "result" => "committed").increment(1);
                counter!(m::CHECKPOINT_BYTES).increment(bytes);
                counter!(m::CHECKPOINTS, "result" => "ok").increment(checkpoints.len() as u64);
                for (p, cp) in &checkpoints {
                    self.strikes.clear(*p);
                    if let Some(o) = self.partitions.get_mut(p) {
                        o.generation = cp.generation;
                        o.checkpointed = Some((Some(cp.offset), o.state.watermark()));
                    }
                }
            }
            Err(e) => {
                counter!(m::CHECKPOINTS, "result" => "failed").increment(checkpoints.len() as u64);
                self.abort_transaction(consumer, &e);
            }
        }
        if let Err(e) = self.producer.begin_transaction() {
            tracing::error!(error = %e, "beginning a transaction failed; starting a new producer");
            self.replace_producer(consumer);
            if let Err(e) = self.producer.begin_transaction() {
                consumer
                    .context()
                    .fail(RuntimeError::kafka("beginning a transaction", e));
            }
        }
    }

    /// Gives up the open transaction and goes back to the last committed checkpoints.
    fn abort_transaction(&mut self, consumer: &BaseConsumer<CounterContext>, error: &KafkaError) {
        let fatal = matches!(error, KafkaError::Transaction(e) if e.is_fatal());
        if fatal {
            counter!(m::TRANSACTIONS, "result" => "fenced").increment(1);
            tracing::error!(error = %error, "transactional producer fenced or failed; a new one takes over");
            self.replace_producer(consumer);
        } else {
            counter!(m::TRANSACTIONS, "result" => "aborted").increment(1);
            tracing::warn!(error = %error, "transaction failed; aborting it");
            if let Err(e) = self
                .producer
                .abort_transaction(self.config.counter.ack_timeout)
            {
                tracing::error!(error = %e, "abort failed; a new producer takes over");
                self.replace_producer(consumer);
            }
        }
        self.producer.context().take_failed();
        // Output refused for good aborts every round the same way: after a few in a row
        // the process stops and says why, as in at-least-once mode.
        for (p, reason) in self.producer.context().take_permanent() {
            if self.strikes.refused(p) {
                consumer.context().fail(RuntimeError::OutputRefused {
                    partition: p,
                    rounds: Strikes::LIMIT,
                    reason,
                });
            }
        }
        let all: Vec<i32> = self.partitions.keys().copied().collect();
        self.rewind(consumer, &all);
        // In exactly-once mode state may never run ahead of what is committed with its
        // output: a partition that could not go back ends the process (a restart restores
        // from the committed checkpoints).
        let stuck = self.producer.context().take_failed();
        if !stuck.is_empty() {
            self.poisoned = true;
            consumer.context().fail(RuntimeError::Restore {
                topic: self.config.topics.events.clone(),
                partition: stuck.first().copied().unwrap_or_default(),
                reason: "could not go back to the last committed checkpoint after an abort".into(),
            });
        }
    }

    /// A new transactional producer (initialised, no transaction open) in place of one
    /// that cannot go on; init fences the old one's epoch.
    fn replace_producer(&mut self, consumer: &BaseConsumer<CounterContext>) {
        match output_producer(&self.config) {
            Ok(p) => self.producer = p,
            Err(e) => consumer.context().fail(e),
        }
    }

    /// Goes back to the partitions' last checkpoints after output was lost, so their
    /// records are processed (and their output produced) again.
    fn rewind(&mut self, consumer: &BaseConsumer<CounterContext>, partitions: &[i32]) {
        if partitions.is_empty() {
            return;
        }
        counter!(m::PARTITION_REWINDS).increment(partitions.len() as u64);
        let restored = match self.store.restore_all(partitions) {
            Ok(checkpoints) => checkpoints,
            Err(e) => {
                // Keep the partitions as they are: no checkpoint is written past the lost
                // output while it stays unacknowledged, so a restart still recovers.
                tracing::error!(?partitions, error = %e, "rewind failed; will retry");
                for p in partitions {
                    self.producer.context().record_failure(*p);
                }
                return;
            }
        };
        for (p, candidates) in partitions.iter().zip(restored) {
            let owned = match self.owned_from(*p, &candidates) {
                Ok((owned, _)) => owned,
                Err(e) => {
                    tracing::error!(partition = p, error = %e, "rewind failed; will retry");
                    self.producer.context().record_failure(*p);
                    continue;
                }
            };
            let mut owned = owned;
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
            if let Err(e) = consumer.seek(
                &self.config.topics.events,
                *p,
                Offset::Offset(offset),
                Duration::from_secs(10),
            ) {
                tracing::error!(partition = p, error = %e, "seek after rewind failed");
            }
        }
    }
}

/// The group's committed offsets of the events partitions in `tpl`, those it has one for;
/// `None` when the broker did not answer (then a missing checkpoint cannot be told from a
/// new partition, and the partition starts as before).
fn committed_offsets(
    consumer: &BaseConsumer<CounterContext>,
    tpl: &TopicPartitionList,
    topic: &str,
) -> Option<HashMap<i32, i64>> {
    match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
        Ok(answer) => Some(
            answer
                .elements_for_topic(topic)
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some((e.partition(), o)),
                    _ => None,
                })
                .collect(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "committed offsets not known; a missing checkpoint cannot be noticed");
            None
        }
    }
}

/// Counts and reports offsets missing from a topic before the record at `offset` (see
/// [`RecordOrder::Take`]). A transaction marker or a compacted record leaves a hole of one or
/// a few offsets; a big one is records deleted (retention) before they were read — lost
/// input, which must not pass quietly. Shared with the ranker.
pub(crate) fn note_skipped(partition: i32, offset: i64, skipped: u64) {
    counter!(m::OFFSETS_SKIPPED).increment(skipped);
    let from = offset - skipped as i64;
    if skipped > 16 {
        tracing::error!(
            partition,
            from,
            to = offset,
            skipped,
            "offsets missing from the topic (deleted by retention before they were read?); those records are lost to the counts"
        );
    } else {
        tracing::info!(
            partition,
            from,
            to = offset,
            "offsets missing from the topic itself (transaction markers, compaction); continuing"
        );
    }
}

/// The producer of alerts, dead letters and late records: idempotent, and transactional
/// (initialised, no transaction open yet) in exactly-once mode.
fn output_producer(config: &Config) -> Result<ThreadedProducer<DeliveryTracker>> {
    let exactly_once = config.counter.processing_guarantee == ProcessingGuarantee::ExactlyOnce;
    let settings = if exactly_once {
        transactional_producer_config(config)
    } else {
        producer_config(config)
    };
    let producer: ThreadedProducer<DeliveryTracker> = settings
        .create_with_context(DeliveryTracker::default())
        .map_err(|e| RuntimeError::kafka("creating the producer", e))?;
    if exactly_once {
        producer
            .init_transactions(config.counter.ack_timeout)
            .map_err(|e| {
                RuntimeError::kafka("starting transactions (does the broker support them?)", e)
            })?;
    }
    Ok(producer)
}

/// Copies `message` (key, bytes, headers) to `topic` with headers saying why and where
/// from, cut to fit `max_bytes` when it is too big to copy whole (see
/// [`deadletter::set_aside_copy`]); returns whether the producer took it (a refusal
/// rewinds the partition).
fn set_aside(
    producer: &ThreadedProducer<DeliveryTracker>,
    topic: &str,
    message: &BorrowedMessage<'_>,
    reason: &str,
    detail: &str,
    max_bytes: usize,
) -> bool {
    let p = message.partition();
    let copy = deadletter::set_aside_copy(message, reason, detail, max_bytes);
    let record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, p as usize)
        .payload(copy.value)
        .headers(copy.headers);
    let record = match message.key() {
        Some(k) => record.key(k),
        None => record,
    };
    send(producer, record, p)
}

/// The record that triggered alerts.
#[derive(Clone, Copy, Debug)]
struct Source {
    offset: i64,
    /// Its Kafka timestamp (producer create time or broker append time), if any.
    timestamp: Option<i64>,
}

/// Headers of an alert record: where its deciding record came from, so a reader can find
/// it and measure the pipeline's delay (alert timestamp − source timestamp).
fn source_headers(topic: &str, partition: i32, source: Option<Source>) -> OwnedHeaders {
    let partition = partition.to_string();
    let mut h = OwnedHeaders::new()
        .insert(Header {
            key: deadletter::SOURCE_TOPIC,
            value: Some(topic),
        })
        .insert(Header {
            key: deadletter::SOURCE_PARTITION,
            value: Some(partition.as_str()),
        });
    if let Some(s) = source {
        h = h.insert(Header {
            key: deadletter::SOURCE_OFFSET,
            value: Some(s.offset.to_string().as_str()),
        });
        if let Some(t) = s.timestamp {
            h = h.insert(Header {
                key: deadletter::SOURCE_TIMESTAMP,
                value: Some(t.to_string().as_str()),
            });
        }
    }
    h
}

/// Partitions of `topic` as the broker's metadata says now (none when it does not answer
/// within a second).
fn topic_partitions(consumer: &BaseConsumer<CounterContext>, topic: &str) -> Option<usize> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(1))
        .ok()?;
    md.topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len())
}

/// The consumer's position in each assigned partition of `topic` (empty when unknown).
fn positions(consumer: &BaseConsumer<CounterContext>, topic: &str) -> HashMap<i32, i64> {
    consumer.position().map_or_else(
        |_| HashMap::new(),
        |tpl| {
            tpl.elements_for_topic(topic)
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect()
        },
    )
}

fn lag_of(owned: &Owned, high_watermark: Option<i64>) -> Option<i64> {
    Some((high_watermark? - owned.next_offset()?).max(0))
}
