//! The counter service: the engine wrapped in a consumer-group member.
//!
//! One `PartitionState` per assigned partition, fed the partition's records in offset
//! order. Alerts go to the alert topic keyed by video id; rejected records to the
//! dead-letter topic; late events to the late topic when one is configured; each closed
//! trending window's top candidates to the candidates topic, for the ranker.
//!
//! ## Delivery
//!
//! Everything this service decides about delivery — which record comes next, when output
//! is safe, what a checkpoint covers, when an offset is committed, what a lost
//! acknowledgement or an aborted transaction undoes, when a silent partition is idle —
//! is the pure machine of `crate::protocol`, whose module docs state the rules. This file
//! is its adapter: it feeds the machine the consumer's records, rebalances and ticks, and
//! carries out its actions ([`Effects`]) with rdkafka — the output producer (transactional
//! in exactly-once mode), the checkpoint store ([`crate::checkpoint`]) and the consumer's
//! seeks and commits. On assignment a partition is restored from its latest checkpoint and
//! consumption resumes at the checkpoint's offset (the committed offset is only consulted
//! when there is none); on revoke and on shutdown the partitions are checkpointed first; a
//! crash loses at most the work since the last checkpoint, done again from the same
//! records under the same deterministic alert ids.
//!
//! ## Threads
//!
//! The loop runs on the caller's thread with a `BaseConsumer`; rebalance callbacks run
//! inside its `poll`, on the same thread, so the worker's mutex is never contended. The
//! producers deliver on librdkafka's threads and report failures through their context.

use std::collections::HashMap;
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
use trendwatch_config::{Config, ProcessingGuarantee};
use trendwatch_core::{Alert, CandidateSet, EventKind};
use trendwatch_proto::files::Format;
use trendwatch_proto::{AlertRecord, CandidateRecord, Rejection};

use crate::api::members::{self, Ownership};
use crate::api::store::CounterAlerts;
use crate::api::{CounterEnd, Freshness, QUERIES_PER_ITERATION, VideoAnswer};
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::client::Membership;
use crate::client::{
    counter_topics, ensure_topics, group_consumer_config, producer_config, transaction_timeout,
    transactional_producer_config,
};
use crate::context::{
    FatalSlot, assign_partitions, forward_log, log_level, report_brokers, report_client_error,
    unassign_partitions,
};
use crate::deadletter;
use crate::error::{Result, RuntimeError};
use crate::health::Health;
use crate::output::{DeliveryTracker, send};
use crate::protocol::{
    Disposition, Effects, Owned, Protocol, Refused, Settings, Source, Step, Tally,
    TransactionFailed,
};
use crate::telemetry as m;
use crate::wall_ms;

/// Partitions a topic gets when the counter has to create it.
pub const DEFAULT_PARTITIONS: i32 = 6;

/// How often the events topic's partition count is read again (for the alert on partitions
/// without an owner, which a member without partitions must be able to report too).
const METADATA_EVERY: Duration = Duration::from_secs(30);

/// Runs the counter until `shutdown` is cancelled (or a fatal error), then drains: finishes
/// the record in hand, flushes alerts, checkpoints, commits and leaves the group. Between
/// records it answers the query API's video queries from `api` (see [`crate::api`]: at
/// most a few per iteration, never waiting for one) and keeps the ownership the membership
/// thread advertises current.
pub fn run(
    config: Config,
    health: Arc<Health>,
    api: CounterEnd,
    shutdown: CancellationToken,
) -> Result<()> {
    let created = ensure_topics(&config, &counter_topics(&config, DEFAULT_PARTITIONS))?;
    if !created.is_empty() {
        tracing::info!(topics = ?created, "created missing topics");
    }
    let CounterEnd {
        mut inbox,
        directory,
    } = api;
    // Its own token: it writes its tombstone when the counter stops, not later.
    let members_stop = shutdown.child_token();
    let membership = if config.topics.members.is_empty() {
        None
    } else {
        Some(members::spawn(
            &config,
            Arc::clone(&directory),
            members_stop.clone(),
        )?)
    };
    let mut worker = Worker::new(config.clone())?;
    worker.ownership = Arc::clone(&directory.ownership);
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
    loop {
        // Asked with the clock, every few hundred records or after an empty poll: asked
        // at every record it was 1 % of the loop's samples in a profile.
        if since_clock == 0 && shutdown.is_cancelled() {
            break;
        }
        if !inbox.is_empty() {
            let hw = consumer.context().high_watermarks();
            let worker = consumer.context().worker();
            inbox.answer_pending(QUERIES_PER_ITERATION, |video, p| {
                worker.answer(video, p, &hw)
            });
        }
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => {
                let refetch = consumer.context().worker().process(&consumer, &message);
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
            Some(Err(KafkaError::PartitionEOF(p))) => {
                consumer.context().worker().protocol.mark_eof(p)
            }
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
                    worker.ownership.set_events_partitions(n);
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
    members_stop.cancel();
    if let Some(thread) = membership
        && thread.join().is_err()
    {
        tracing::warn!("the membership thread panicked");
    }
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
                let restored = worker.adopt(consumer, &partitions, committed.as_ref());
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
                    worker.lose(consumer, &partitions);
                } else {
                    tracing::info!(?partitions, "revoked");
                    worker.refresh_clock();
                    worker.checkpoint(consumer, Some(&partitions), CommitMode::Sync);
                    worker.release(&partitions);
                }
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
                let held = worker.held();
                tracing::warn!(error = %code, partitions = ?held, "rebalance error: releasing every partition without a checkpoint");
                worker.lose(consumer, &held);
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

/// Everything the loop and the rebalance callbacks share: the protocol machine and the
/// clients that carry out its actions.
struct Worker {
    config: Config,
    protocol: Protocol,
    /// Transactional in exactly-once mode, with a transaction always open.
    producer: ThreadedProducer<DeliveryTracker>,
    store: CheckpointStore,
    encoded: Vec<u8>,
    now_ms: i64,
    /// Start of the monotonic clock the protocol's silences and rounds are measured on.
    started: Instant,
    /// The output producer's `message.max.bytes`: dead letters are cut to fit it.
    max_record_bytes: usize,
    /// Since when the member has had no partition (from the start until the first
    /// assignment, and after a revoke of all it had).
    unassigned_since: Option<Instant>,
    /// Partitions of the events topic, as the broker's metadata last said (0: unknown).
    events_partitions: usize,
    records: u64,
    rejected: Vec<u64>,
    /// The partitions owned, published for the query API and the membership thread.
    ownership: Arc<Ownership>,
    /// The last alerts emitted, for video queries.
    recent_alerts: CounterAlerts,
}

/// The protocol's actions, carried out with the worker's clients (see [`Effects`]).
struct Io<'a> {
    config: &'a Config,
    producer: &'a mut ThreadedProducer<DeliveryTracker>,
    store: &'a CheckpointStore,
    consumer: &'a BaseConsumer<CounterContext>,
    encoded: &'a mut Vec<u8>,
    recent_alerts: &'a mut CounterAlerts,
}

impl Worker {
    fn new(config: Config) -> Result<Self> {
        let settings = Settings::from_config(&config);
        let producer = output_producer(&config)?;
        if settings.exactly_once {
            producer
                .begin_transaction()
                .map_err(|e| RuntimeError::kafka("beginning a transaction", e))?;
        }
        let store = CheckpointStore::new(&config)?;
        Ok(Self {
            protocol: Protocol::new(settings, 0),
            producer,
            store,
            encoded: Vec::new(),
            now_ms: wall_ms(),
            started: Instant::now(),
            max_record_bytes: config
                .kafka
                .get("message.max.bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(deadletter::DEFAULT_MAX_MESSAGE_BYTES),
            unassigned_since: Some(Instant::now()),
            events_partitions: 0,
            records: 0,
            rejected: vec![0; Rejection::ALL_REASONS.len()],
            ownership: Arc::new(Ownership::default()),
            recent_alerts: CounterAlerts::default(),
            config,
        })
    }

    fn refresh_clock(&mut self) {
        self.now_ms = wall_ms();
    }

    /// Milliseconds on the monotonic clock since the worker started.
    fn mono_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// The protocol and the clients that carry out its actions, borrowed together.
    fn split<'a>(
        &'a mut self,
        consumer: &'a BaseConsumer<CounterContext>,
    ) -> (&'a mut Protocol, Io<'a>) {
        (
            &mut self.protocol,
            Io {
                config: &self.config,
                producer: &mut self.producer,
                store: &self.store,
                consumer,
                encoded: &mut self.encoded,
                recent_alerts: &mut self.recent_alerts,
            },
        )
    }

    /// Restores `partitions` from their checkpoints (or starts them empty) and returns the
    /// offsets to resume from, for those a checkpoint names (see [`Protocol::assign`]).
    fn adopt(
        &mut self,
        consumer: &BaseConsumer<CounterContext>,
        partitions: &[i32],
        committed: Option<&HashMap<i32, i64>>,
    ) -> Result<Vec<(i32, i64)>> {
        let started = Instant::now();
        let (protocol, mut io) = self.split(consumer);
        let offsets = protocol.assign(partitions, committed, &mut io)?;
        if !partitions.is_empty() {
            self.unassigned_since = None;
        }
        self.ownership.set(self.held());
        let seconds = started.elapsed().as_secs_f64();
        histogram!(m::RESTORE_DURATION).record(seconds);
        tracing::info!(partitions = partitions.len(), seconds, "restore done");
        Ok(offsets)
    }

    /// Drops revoked partitions (after their checkpoint). Their per-partition gauges are
    /// no longer set, so they leave `/metrics` (see [`m::GAUGE_IDLE_TIMEOUT`]); a 0 would
    /// claim a partition this instance no longer reads is caught up.
    fn release(&mut self, partitions: &[i32]) {
        self.protocol.release(partitions);
        self.ownership.set(self.held());
        if self.protocol.partitions().next().is_none() && self.unassigned_since.is_none() {
            self.unassigned_since = Some(Instant::now());
        }
        self.publish_gauges(&HashMap::new());
    }

    /// Drops partitions whose assignment was lost, without a checkpoint (see
    /// [`Protocol::lose`]: in exactly-once mode the open transaction is aborted).
    fn lose(&mut self, consumer: &BaseConsumer<CounterContext>, partitions: &[i32]) {
        let (protocol, mut io) = self.split(consumer);
        protocol.lose(partitions, &mut io);
        self.release(&[]);
    }

    /// The answer to a video query: the video's view from the partition's state (one
    /// lookup and a copy of one video), its last alerts, and the partition's progress.
    fn answer(&self, video_id: &str, partition: i32, hw: &HashMap<i32, i64>) -> VideoAnswer {
        let Some(owned) = self.protocol.partition(partition) else {
            return VideoAnswer::NotOwned;
        };
        let lag = lag_of(owned, hw.get(&partition).copied());
        let freshness = Freshness {
            watermark: owned.state.watermark(),
            lag_records: lag,
            caught_up: owned.eof || lag.is_some_and(|l| l <= self.config.counter.ready_max_lag),
        };
        match owned.state.video_view(video_id) {
            Some(view) => VideoAnswer::Found {
                view: Box::new(view),
                alerts: self.recent_alerts.of_video(video_id),
                freshness,
            },
            None => VideoAnswer::Untracked { freshness },
        }
    }

    /// Every partition held now.
    fn held(&self) -> Vec<i32> {
        self.protocol.partitions().map(|(p, _)| p).collect()
    }

    /// Feeds one record to the protocol and sets it aside when it is late (and a late topic
    /// is configured) or rejected. Returns a partition and offset to read again from when
    /// the record does not follow the state's last one.
    fn process(
        &mut self,
        consumer: &BaseConsumer<CounterContext>,
        message: &BorrowedMessage<'_>,
    ) -> Option<(i32, i64)> {
        let p = message.partition();
        let source = Source {
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
        };
        let payload = message.payload().unwrap_or_default();
        let now = self.now_ms;
        let (protocol, mut io) = self.split(consumer);
        let disposition = match protocol.record(p, source, payload, now, &mut io) {
            Step::NotOwned => {
                tracing::warn!(
                    partition = p,
                    offset = source.offset,
                    "record of a partition not assigned here"
                );
                return None;
            }
            Step::Again => return None,
            Step::ReadFrom(from) => {
                counter!(m::OFFSET_GAPS).increment(1);
                tracing::warn!(
                    partition = p,
                    got = source.offset,
                    reading_from = from,
                    "offset gap: reading the partition again from before the gap"
                );
                return Some((p, from));
            }
            Step::Taken {
                skipped,
                disposition,
            } => {
                if skipped > 0 {
                    note_skipped(p, source.offset, skipped);
                }
                disposition
            }
        };
        self.records += 1;
        match disposition {
            Disposition::Late if !self.config.topics.late.is_empty() => {
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
            Disposition::Late | Disposition::Applied => {}
            Disposition::Rejected(rejection) => {
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
        None
    }

    /// Clock tick: idle partitions move on, metrics and readiness are refreshed. A partition
    /// silent for `idle_timeout` moves on only when the broker confirms, now, that its
    /// reader has everything the log holds (see [`Protocol::tick`]); otherwise the silence
    /// is the reader's (an outage, fetch errors), not the stream's, and is not counted.
    fn tick(
        &mut self,
        consumer: &BaseConsumer<CounterContext>,
        high_watermarks: &HashMap<i32, i64>,
        health: &Health,
    ) {
        // Silence is measured on the monotonic clock: a step of the wall clock is not time
        // the stream was quiet.
        let now = self.mono_ms();
        let look = self.protocol.idle_looks(now);
        let (ends, positions) = if look.is_empty() {
            (HashMap::new(), HashMap::new())
        } else {
            (
                self.end_offsets(consumer, &look),
                positions(consumer, &self.config.topics.events),
            )
        };
        let (protocol, mut io) = self.split(consumer);
        protocol.tick(now, &look, &ends, &positions, &mut io);
        self.publish_counters();
        self.publish_gauges(high_watermarks);
        let max_lag = self.config.counter.ready_max_lag;
        let readiness = self
            .protocol
            .partitions()
            .map(|(p, o)| {
                let lag = lag_of(o, high_watermarks.get(&p).copied());
                (p, o.eof || lag.is_some_and(|l| l <= max_lag))
            })
            .collect();
        health.set_partitions(readiness);
        gauge!(m::READY).set(if health.readiness().is_ok() { 1.0 } else { 0.0 });
    }

    /// The reader reported trouble: no partition's silence counts before now.
    fn read_trouble(&mut self) {
        let now = self.mono_ms();
        self.protocol.read_trouble(now);
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
        for (_, o) in self.protocol.partitions_mut() {
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
        let mut assigned = 0usize;
        for (p, o) in self.protocol.partitions() {
            assigned += 1;
            videos += o.state.tracked_videos();
            bytes += o.state.memory_bytes();
            if let Some(lag) = lag_of(o, high_watermarks.get(&p).copied()) {
                gauge!(m::CONSUMER_LAG, "partition" => p.to_string()).set(lag as f64);
            }
            if let Some(wm) = o.state.watermark() {
                gauge!(m::WATERMARK_DELAY, "partition" => p.to_string())
                    .set(self.now_ms.saturating_sub(wm) as f64 / 1000.0);
            }
        }
        gauge!(m::TRACKED_VIDEOS).set(videos as f64);
        gauge!(m::STATE_BYTES).set(bytes as f64);
        gauge!(m::ASSIGNED_PARTITIONS).set(assigned as f64);
        gauge!(m::UNASSIGNED_SECONDS).set(
            self.unassigned_since
                .map_or(0.0, |since| since.elapsed().as_secs_f64()),
        );
        if self.events_partitions > 0 {
            gauge!(m::EVENTS_PARTITIONS).set(self.events_partitions as f64);
        }
    }

    /// One checkpoint round over `which` partitions (all when `None`); see
    /// [`Protocol::checkpoint`].
    fn checkpoint(
        &mut self,
        consumer: &BaseConsumer<CounterContext>,
        which: Option<&[i32]>,
        mode: CommitMode,
    ) {
        let started = Instant::now();
        self.publish_counters();
        let now = self.mono_ms();
        let (protocol, mut io) = self.split(consumer);
        protocol.checkpoint(which, matches!(mode, CommitMode::Sync), now, &mut io);
        histogram!(m::CHECKPOINT_DURATION).record(started.elapsed().as_secs_f64());
    }
}

impl Io<'_> {
    /// A new transactional producer (initialised, no transaction open) in place of one
    /// that cannot go on; init fences the old one's epoch.
    fn replace_producer(&mut self) {
        match output_producer(self.config) {
            Ok(p) => *self.producer = p,
            Err(e) => self.consumer.context().fail(e),
        }
    }
}

impl Effects for Io<'_> {
    fn alert(&mut self, partition: i32, alert: &Alert, source: Option<Source>) {
        let now = wall_ms();
        let record = AlertRecord::from_alert(alert, now);
        self.encoded.clear();
        match self.config.counter.output_format {
            Format::Protobuf => record.encode_protobuf(self.encoded),
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
        if send(self.producer, base, partition) {
            self.recent_alerts.push(alert, now);
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

    /// To the candidates topic (its one partition), keyed by the source partition.
    fn candidates(&mut self, partition: i32, set: CandidateSet) {
        let key = partition.to_string();
        let record = CandidateRecord {
            source_topic: self.config.topics.events.clone(),
            source_partition: partition,
            set,
        };
        self.encoded.clear();
        record.encode_protobuf(self.encoded);
        let base = BaseRecord::<str, [u8], usize>::with_opaque_to(
            &self.config.topics.candidates,
            partition as usize,
        )
        .partition(0)
        .key(key.as_str())
        .payload(self.encoded.as_slice());
        send(self.producer, base, partition);
        counter!(m::CANDIDATE_SETS).increment(1);
    }

    fn flush(&mut self) -> bool {
        match self.producer.flush(self.config.counter.ack_timeout) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "output not acknowledged in time");
                false
            }
        }
    }

    fn refused(&mut self) -> Refused {
        Refused {
            failed: self.producer.context().take_failed(),
            permanent: self.producer.context().take_permanent(),
        }
    }

    fn producer_fatal(&mut self) -> Option<String> {
        self.producer
            .client()
            .fatal_error()
            .map(|(code, reason)| format!("{code}: {reason}"))
    }

    fn read_checkpoints(&mut self, partitions: &[i32]) -> Result<Vec<Vec<Checkpoint>>> {
        self.store.restore_all(partitions)
    }

    fn write_checkpoints(&mut self, checkpoints: &[(i32, &Checkpoint)]) -> Vec<bool> {
        let (acked, bytes) = self.store.write(checkpoints);
        counter!(m::CHECKPOINT_BYTES).increment(bytes);
        acked
    }

    fn seek(&mut self, partition: i32, offset: i64) {
        if let Err(e) = self.consumer.seek(
            &self.config.topics.events,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(10),
        ) {
            tracing::error!(partition, offset, error = %e, "seek failed");
        }
    }

    fn commit(&mut self, offsets: &[(i32, i64)], sync: bool) {
        let list = self.offset_list(offsets);
        let mode = if sync {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        if let Err(e) = self.consumer.commit(&list, mode) {
            counter!(m::COMMIT_FAILURES).increment(1);
            tracing::warn!(error = %e, "offset commit failed (the checkpoint stands)");
        }
    }

    fn commit_transaction(
        &mut self,
        checkpoints: &[(i32, &Checkpoint)],
        offsets: &[(i32, i64)],
    ) -> std::result::Result<(), TransactionFailed> {
        let timeout = self.config.counter.ack_timeout;
        let mut bytes = 0u64;
        for (p, cp) in checkpoints {
            for (sp, key, value) in self.store.records(*p, cp) {
                let mut record =
                    BaseRecord::<str, [u8], usize>::with_opaque_to(self.store.topic(), *p as usize)
                        .partition(sp)
                        .key(key.as_str());
                // `None`: the deletion of another writer's key, in the same transaction.
                if let Some(value) = &value {
                    bytes += value.len() as u64;
                    record = record.payload(value.as_slice());
                }
                send(self.producer, record, *p);
            }
        }
        // Output the producer refused (the reasons stay for the abort's strikes).
        if !self.producer.context().take_failed().is_empty() {
            return Err(TransactionFailed {
                fatal: false,
                reason: "output of the transaction was refused".into(),
            });
        }
        let list = self.offset_list(offsets);
        let producer = &*self.producer;
        let consumer = self.consumer;
        let committed = (|| {
            if list.count() > 0 {
                match consumer.group_metadata() {
                    Some(group) => producer.send_offsets_to_transaction(&list, &group, timeout)?,
                    None => {
                        tracing::warn!("no group metadata: offsets stay in the checkpoints only")
                    }
                }
            }
            producer.commit_transaction(timeout)
        })();
        match committed {
            Ok(()) => {
                counter!(m::CHECKPOINT_BYTES).increment(bytes);
                let partitions: Vec<i32> = checkpoints.iter().map(|(p, _)| *p).collect();
                self.store.committed(&partitions);
                Ok(())
            }
            Err(e) => Err(TransactionFailed {
                fatal: matches!(&e, KafkaError::Transaction(t) if t.is_fatal()),
                reason: e.to_string(),
            }),
        }
    }

    fn abort_transaction(&mut self, failure: &TransactionFailed) {
        if failure.fatal {
            self.replace_producer();
        } else if let Err(e) = self
            .producer
            .abort_transaction(self.config.counter.ack_timeout)
        {
            tracing::error!(error = %e, "abort failed; a new producer takes over");
            self.replace_producer();
        }
    }

    fn begin_transaction(&mut self) {
        if let Err(e) = self.producer.begin_transaction() {
            tracing::error!(error = %e, "beginning a transaction failed; starting a new producer");
            self.replace_producer();
            if let Err(e) = self.producer.begin_transaction() {
                self.consumer
                    .context()
                    .fail(RuntimeError::kafka("beginning a transaction", e));
            }
        }
    }

    fn stop(&mut self, error: RuntimeError) {
        self.consumer.context().fail(error);
    }

    fn count(&mut self, tally: Tally, n: u64) {
        if n == 0 {
            return;
        }
        match tally {
            Tally::CheckpointsOk => counter!(m::CHECKPOINTS, "result" => "ok").increment(n),
            Tally::CheckpointsFailed => counter!(m::CHECKPOINTS, "result" => "failed").increment(n),
            Tally::CheckpointsMissing => counter!(m::CHECKPOINTS_MISSING).increment(n),
            Tally::CheckpointsUnreadable => counter!(m::CHECKPOINTS_UNREADABLE).increment(n),
            Tally::Rewinds => counter!(m::PARTITION_REWINDS).increment(n),
            Tally::TransactionsCommitted => {
                counter!(m::TRANSACTIONS, "result" => "committed").increment(n)
            }
            Tally::TransactionsAborted => {
                counter!(m::TRANSACTIONS, "result" => "aborted").increment(n)
            }
            Tally::TransactionsFenced => {
                counter!(m::TRANSACTIONS, "result" => "fenced").increment(n)
            }
            Tally::IdleHeld => counter!(m::IDLE_HELD).increment(n),
        }
    }
}

impl Io<'_> {
    /// The events topic's offsets as a list for the client.
    fn offset_list(&self, offsets: &[(i32, i64)]) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (p, offset) in offsets {
            if let Err(e) =
                list.add_partition_offset(&self.config.topics.events, *p, Offset::Offset(*offset))
            {
                tracing::warn!(error = %e, "building the offset list");
            }
        }
        list
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
        // Initialising fences the previous life of this transactional id and waits until
        // the broker has aborted its open transaction, which on a loaded broker can take
        // longer than one acknowledgement timeout (CI, 2026-12-02: a life restarted after a
        // SIGKILL exited with "Timed out waiting for operation to finish, retry call to
        // resume"). A retriable answer is retried until the transaction timeout, by which
        // the broker aborts that transaction by itself, has passed too.
        let deadline = Instant::now() + transaction_timeout(config) + config.counter.ack_timeout;
        loop {
            match producer.init_transactions(config.counter.ack_timeout) {
                Ok(()) => break,
                Err(KafkaError::Transaction(e))
                    if e.is_retriable() && Instant::now() < deadline =>
                {
                    tracing::warn!(error = %e, "initialising transactions: not yet (the broker may still be aborting a previous life's transaction); trying again");
                }
                Err(e) => {
                    return Err(RuntimeError::kafka(
                        "starting transactions (does the broker support them?)",
                        e,
                    ));
                }
            }
        }
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
