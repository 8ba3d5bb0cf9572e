//! The ranker service (`trendwatch rank`): the second stage of the global top-K.
//!
//! It reads the candidates topic (one partition, written by every counter), feeds each
//! partition's candidate set to the pure [`Ranker`], and publishes what closes: one board
//! per window to the leaderboard topic (compacted, keyed by scope, so it holds the current
//! board) and the board's alerts (TRENDING with a rank, RANK_CHANGED, TRENDING_ENDED) to
//! the alert topic, keyed by video id like the counter's.
//!
//! ## Delivery
//!
//! As the counter: a checkpoint round waits for the broker to acknowledge every board and
//! alert produced so far, then writes the ranker's whole state with the candidates offset
//! it covers to the ranker state topic, and only then commits that offset. On assignment
//! the state is restored from the latest checkpoint and reading resumes at its offset; if
//! output was lost, the ranker goes back to its checkpoint and produces it again. A crash
//! or a move to another instance therefore re-publishes at most the boards and alerts
//! since the last checkpoint, identical to the first time (same board per window, same
//! alert ids), and never loses one.
//!
//! One ranker per group is active (the topic has one partition); others stand by and
//! take over on a rebalance.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use metrics::{counter, gauge};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use trendwatch_config::Config;
use trendwatch_core::Ranker;
use trendwatch_core::rank::{Offered, RankOutput};
use trendwatch_proto::files::Format;
use trendwatch_proto::{AlertRecord, CandidateRecord, LeaderboardRecord};

use crate::api::{RankerFeed, follow_alerts};
use crate::checkpoint::{Checkpoint, CheckpointStore, newest_decoded};
use crate::client::{
    ensure_topics, group_consumer_config, partition_count, producer_config, ranker_topics,
    reader_config,
};
use crate::context::{FatalSlot, forward_log, log_level, report_brokers, report_client_error};
use crate::counter::{DEFAULT_PARTITIONS, note_skipped};
use crate::delivery::{OffsetTracker, RecordOrder, rewind_target};
use crate::error::{Result, RuntimeError};
use crate::health::Health;
use crate::output::{DeliveryTracker, send};
use crate::telemetry as m;
use crate::wall_ms;

/// The scope of the one board the ranker keeps: the whole platform. Also the Kafka key of
/// its records on the compacted leaderboard topic.
pub const GLOBAL_SCOPE: &str = "global";

/// How often the events topic's partition count is looked up again.
const PARTITION_REFRESH: Duration = Duration::from_secs(10);

/// Runs the ranker until `shutdown` is cancelled (or a fatal error), then checkpoints,
/// commits and leaves the group. Every board it publishes goes to `feed` too, and a reader
/// thread keeps the alert topic's recent alerts there, for the query API.
pub fn run(
    config: Config,
    health: Arc<Health>,
    feed: Arc<RankerFeed>,
    shutdown: CancellationToken,
) -> Result<()> {
    let topic = config.topics.candidates.clone();
    if topic.is_empty() {
        return Err(RuntimeError::Config(
            "topics.candidates is empty: counters propose nothing, so there is nothing to rank"
                .into(),
        ));
    }
    let created = ensure_topics(&config, &ranker_topics(&config, DEFAULT_PARTITIONS))?;
    if !created.is_empty() {
        tracing::info!(topics = ?created, "created missing topics");
    }
    let probe: BaseConsumer = reader_config(&config, "ranker-metadata")
        .create()
        .map_err(|e| RuntimeError::kafka("creating a metadata client", e))?;
    match partition_count(&probe, &topic)? {
        Some(1) => {}
        Some(n) => {
            return Err(RuntimeError::Config(format!(
                "candidates topic {topic} has {n} partitions; the ranker needs exactly one (every partition's proposals in one order)"
            )));
        }
        None => {
            return Err(RuntimeError::Config(format!(
                "candidates topic {topic} does not exist"
            )));
        }
    }
    let follow_stop = shutdown.child_token();
    let follower = follow_alerts(&config, Arc::clone(&feed), follow_stop.clone())?;
    let worker = RankerWorker::new(config.clone(), probe, feed)?;
    let context = RankerContext {
        worker: Mutex::new(worker),
        health: Arc::clone(&health),
        high_watermark: Mutex::new(None),
        fatal: FatalSlot::default(),
        topic: topic.clone(),
    };
    let consumer: BaseConsumer<RankerContext> =
        group_consumer_config(&config, crate::client::Membership::ranker(&config))
            .set_log_level(log_level(&config))
            .create_with_context(context)
            .map_err(|e| RuntimeError::kafka("creating the consumer", e))?;
    consumer
        .subscribe(&[&topic])
        .map_err(|e| RuntimeError::kafka("subscribing to the candidates topic", e))?;
    tracing::info!(
        topic = %topic,
        group = %config.ranker.group_id,
        top_k = config.ranking.top_k,
        "ranker started"
    );
    health.set_started();

    let mut last_tick = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut outcome = Ok(());
    while !shutdown.is_cancelled() {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => {
                let refetch = consumer.context().worker().process(&message);
                if let Some(from) = refetch {
                    drop(message);
                    if let Err(e) = consumer.seek(
                        &config.topics.candidates,
                        0,
                        Offset::Offset(from),
                        Duration::from_secs(10),
                    ) {
                        tracing::error!(offset = from, error = %e, "seek back failed");
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => consumer.context().worker().eof = true,
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            None => {}
        }
        if let Some(e) = consumer.context().take_fatal() {
            outcome = Err(e);
            break;
        }
        if last_tick.elapsed() >= config.ranker.tick_interval {
            last_tick = Instant::now();
            let hw = *consumer
                .context()
                .high_watermark
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            consumer.context().worker().tick(hw, &health);
        }
        if last_checkpoint.elapsed() >= config.ranker.checkpoint_interval {
            last_checkpoint = Instant::now();
            consumer
                .context()
                .worker()
                .checkpoint(&consumer, CommitMode::Async);
        }
    }

    tracing::info!("ranker draining");
    health.set_stopping();
    consumer
        .context()
        .worker()
        .checkpoint(&consumer, CommitMode::Sync);
    consumer.unsubscribe();
    let leave_deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < leave_deadline && consumer.assignment().is_ok_and(|a| a.count() > 0) {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    if let Some(e) = consumer.context().take_fatal() {
        outcome = outcome.and(Err(e));
    }
    follow_stop.cancel();
    if follower.join().is_err() {
        tracing::warn!("the alert reader thread panicked");
    }
    tracing::info!("ranker stopped");
    outcome
}

/// The consumer's context: owns the worker so the rebalance callback can restore and
/// checkpoint, and reads the candidates partition's high watermark from the statistics.
struct RankerContext {
    worker: Mutex<RankerWorker>,
    health: Arc<Health>,
    high_watermark: Mutex<Option<i64>>,
    fatal: FatalSlot,
    topic: String,
}

impl RankerContext {
    fn worker(&self) -> MutexGuard<'_, RankerWorker> {
        self.worker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fail(&self, error: RuntimeError) {
        self.fatal.fail(error);
    }

    fn take_fatal(&self) -> Option<RuntimeError> {
        self.fatal.take()
    }
}

impl ClientContext for RankerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        forward_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        report_client_error(&self.health, &error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        report_brokers(&self.health, &statistics);
        let hw = statistics
            .topics
            .get(&self.topic)
            .and_then(|t| t.partitions.get(&0))
            .map(|p| p.hi_offset)
            .filter(|h| *h >= 0);
        if let Some(hw) = hw {
            *self
                .high_watermark
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(hw);
        }
    }
}

impl ConsumerContext for RankerContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                counter!(m::REBALANCES, "kind" => "assign").increment(1);
                let assigned = !tpl.elements_for_topic(&self.topic).is_empty();
                tracing::info!(assigned, "candidates partition assignment");
                if assigned {
                    self.health.set_restoring(true);
                    let restored = self.worker().adopt();
                    self.health.set_restoring(false);
                    match restored {
                        Ok(Some(offset)) => {
                            if let Err(e) =
                                tpl.set_partition_offset(&self.topic, 0, Offset::Offset(offset))
                            {
                                self.fail(RuntimeError::kafka("positioning the partition", e));
                            }
                        }
                        Ok(None) => {}
                        Err(e) => self.fail(e),
                    }
                }
                if let Err(e) = crate::context::assign_partitions(consumer, tpl) {
                    self.fail(RuntimeError::kafka("assigning the partition", e));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                counter!(m::REBALANCES, "kind" => "revoke").increment(1);
                tracing::info!("candidates partition revoked");
                let mut worker = self.worker();
                worker.checkpoint(consumer, CommitMode::Sync);
                worker.assigned = None;
                if let Err(e) = crate::context::unassign_partitions(consumer, tpl) {
                    tracing::warn!(error = %e, "unassign failed");
                }
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                tracing::warn!(error = %code, "rebalance error");
                if let Err(e) = consumer.unassign() {
                    tracing::warn!(error = %e, "unassign failed");
                }
            }
        }
    }
}

/// The ranker while this instance owns the candidates partition.
struct Assigned {
    ranker: Ranker,
    /// The next candidates offset to read (records below it are in `ranker`), a gap being
    /// healed, and where this owner started.
    offsets: OffsetTracker,
    /// Of the last checkpoint written or restored.
    generation: u64,
    /// The offset the last checkpoint covered.
    checkpointed: Option<i64>,
}

/// Everything the loop and the rebalance callback share.
struct RankerWorker {
    config: Config,
    producer: ThreadedProducer<DeliveryTracker>,
    store: CheckpointStore,
    /// Looks up the events topic's partition count.
    probe: BaseConsumer,
    assigned: Option<Assigned>,
    out: RankOutput,
    encoded: Vec<u8>,
    partitions_checked: Option<Instant>,
    /// Tallies already published as metrics.
    published: trendwatch_core::rank::RankerStats,
    eof: bool,
    /// The query API's recent boards.
    feed: Arc<RankerFeed>,
}

impl RankerWorker {
    fn new(config: Config, probe: BaseConsumer, feed: Arc<RankerFeed>) -> Result<Self> {
        let producer: ThreadedProducer<DeliveryTracker> = producer_config(&config)
            .create_with_context(DeliveryTracker::default())
            .map_err(|e| RuntimeError::kafka("creating the producer", e))?;
        let store = CheckpointStore::for_ranker(&config)?;
        Ok(Self {
            config,
            producer,
            store,
            probe,
            assigned: None,
            out: RankOutput::default(),
            encoded: Vec::new(),
            partitions_checked: None,
            published: Default::default(),
            eof: false,
            feed,
        })
    }

    /// Restores the ranker from its latest checkpoint (or starts it empty); returns the
    /// offset to resume from, if a checkpoint names one.
    fn adopt(&mut self) -> Result<Option<i64>> {
        let started = Instant::now();
        let candidates = self
            .store
            .restore_all(&[0])?
            .into_iter()
            .next()
            .unwrap_or_default();
        let (assigned, checkpoint) = self.assigned_from(&candidates)?;
        match checkpoint {
            Some(cp) => tracing::info!(
                generation = cp.generation,
                offset = cp.offset,
                bytes = cp.state.len(),
                closed_through = ?assigned.ranker.closed_through(),
                seconds = started.elapsed().as_secs_f64(),
                "ranker restored"
            ),
            None => tracing::info!("no ranker checkpoint: starting empty"),
        }
        let offset = assigned.offsets.next();
        self.assigned = Some(assigned);
        self.partitions_checked = None;
        self.refresh_partitions();
        self.eof = false;
        Ok(offset)
    }

    /// The ranker as the newest of its whole checkpoints (`candidates`, newest first) that
    /// decodes leaves it, with that checkpoint (see [`newest_decoded`]); empty when there
    /// is none; an error when there are some and none decodes.
    fn assigned_from<'c>(
        &self,
        candidates: &'c [Checkpoint],
    ) -> Result<(Assigned, Option<&'c Checkpoint>)> {
        let c = &self.config;
        let restore_error = |reason: String| RuntimeError::Restore {
            topic: c.topics.candidates.clone(),
            partition: 0,
            reason,
        };
        let newest = newest_decoded(
            candidates,
            0,
            |cp| Ranker::from_bytes(c.ranking.clone(), &c.engine, &cp.state),
            || counter!(m::CHECKPOINTS_UNREADABLE).increment(1),
        );
        let (mut ranker, checkpoint) = match newest.map_err(restore_error)? {
            Some((cp, ranker)) => (ranker, Some(cp)),
            None => (
                Ranker::new(c.ranking.clone(), &c.engine)
                    .map_err(|e| restore_error(e.to_string()))?,
                None,
            ),
        };
        ranker.restart_idle_clock();
        let assigned = Assigned {
            ranker,
            offsets: OffsetTracker::resume(checkpoint.map(|cp| cp.offset)),
            generation: checkpoint.map_or(0, |cp| cp.generation),
            checkpointed: checkpoint.map(|cp| cp.offset),
        };
        Ok((assigned, checkpoint))
    }

    /// Looks up the events topic's partition count when it is due.
    fn refresh_partitions(&mut self) {
        if self
            .partitions_checked
            .is_some_and(|t| t.elapsed() < PARTITION_REFRESH)
        {
            return;
        }
        self.partitions_checked = Some(Instant::now());
        let Some(a) = self.assigned.as_mut() else {
            return;
        };
        match partition_count(&self.probe, &self.config.topics.events) {
            Ok(Some(n)) => {
                let n = n.max(0) as u32;
                if n != a.ranker.partitions() {
                    tracing::info!(partitions = n, "events topic partitions");
                    a.ranker.set_partitions(n);
                }
            }
            Ok(None) => tracing::warn!(
                topic = %self.config.topics.events,
                "events topic not found; boards wait for it"
            ),
            Err(e) => tracing::warn!(error = %e, "reading the events topic's partition count"),
        }
    }

    /// Decodes one candidate set, merges it and publishes what closed. Returns an offset
    /// to read the candidates topic again from when the record does not follow the last.
    fn process(&mut self, message: &BorrowedMessage<'_>) -> Option<i64> {
        let offset = message.offset();
        let now = wall_ms();
        let events_topic = &self.config.topics.events;
        let a = self.assigned.as_mut()?;
        match a.offsets.offer(offset) {
            // Fetched again after a rewind or a gap: already in the state.
            RecordOrder::Again => return None,
            RecordOrder::ReadFrom(from) => {
                counter!(m::OFFSET_GAPS).increment(1);
                tracing::warn!(
                    expected = ?a.offsets.next(),
                    got = offset,
                    reading_from = from,
                    "offset gap in the candidates topic: reading it again from before the gap"
                );
                return Some(from);
            }
            RecordOrder::Take { skipped: 0 } => {}
            RecordOrder::Take { skipped } => note_skipped(0, offset, skipped),
        }
        self.eof = false;
        let record = match CandidateRecord::decode_protobuf(message.payload().unwrap_or_default()) {
            Ok(r) if r.source_topic == *events_topic => r,
            Ok(r) => {
                counter!(m::RANKER_SETS, "result" => "rejected").increment(1);
                tracing::error!(
                    offset,
                    source_topic = %r.source_topic,
                    "candidate set of another events topic; skipped (do the counters and the ranker share one configuration?)"
                );
                return None;
            }
            Err(e) => {
                counter!(m::RANKER_SETS, "result" => "rejected").increment(1);
                tracing::error!(offset, error = %e, "undecodable candidate set; skipped");
                return None;
            }
        };
        let (start, end) = (record.set.window_start, record.set.window_end);
        let offered = a
            .ranker
            .offer(record.source_partition, record.set, now, &mut self.out);
        if offered == Offered::Refused {
            tracing::error!(
                offset,
                window_start = start,
                window_end = end,
                "candidate set of another window geometry; skipped (do the counters and the ranker share engine.windows?)"
            );
        }
        counter!(m::RANKER_SETS, "result" => offered.as_str()).increment(1);
        self.publish(now);
        None
    }

    /// Produces the boards and alerts decided so far.
    fn publish(&mut self, now: i64) {
        for board in self.out.boards.drain(..) {
            let record = LeaderboardRecord {
                scope: GLOBAL_SCOPE.to_string(),
                board,
                emitted_at: now,
            };
            self.encoded.clear();
            match self.config.ranker.output_format {
                Format::Protobuf => record.encode_protobuf(&mut self.encoded),
                Format::Json => self.encoded.extend_from_slice(record.to_json().as_bytes()),
            }
            let base =
                BaseRecord::<str, [u8], usize>::with_opaque_to(&self.config.topics.leaderboard, 0)
                    .key(GLOBAL_SCOPE)
                    .payload(self.encoded.as_slice());
            if send(&self.producer, base, 0) {
                counter!(m::RANKER_BOARDS).increment(1);
                self.feed.board(&record);
            }
        }
        for alert in self.out.alerts.drain(..) {
            let record = AlertRecord::from_alert(&alert, now);
            self.encoded.clear();
            match self.config.counter.output_format {
                Format::Protobuf => record.encode_protobuf(&mut self.encoded),
                Format::Json => self.encoded.extend_from_slice(record.to_json().as_bytes()),
            }
            let base =
                BaseRecord::<str, [u8], usize>::with_opaque_to(&self.config.topics.alerts, 0)
                    .key(alert.video_id.as_str())
                    .payload(self.encoded.as_slice());
            if send(&self.producer, base, 0) {
                counter!(m::RANKER_ALERTS, "type" => alert.alert_type.as_str()).increment(1);
            }
        }
    }

    /// Wall-clock tick: the idle rule, partition count, metrics, readiness.
    fn tick(&mut self, high_watermark: Option<i64>, health: &Health) {
        let now = wall_ms();
        self.refresh_partitions();
        let Some(a) = self.assigned.as_mut() else {
            // Standing by: ready, nothing to report.
            health.set_partitions(BTreeMap::new());
            gauge!(m::READY).set(if health.readiness().is_ok() { 1.0 } else { 0.0 });
            return;
        };
        a.ranker.tick(now, &mut self.out);
        let r = &a.ranker;
        gauge!(m::RANKER_WAITING_PARTITIONS).set(r.waiting_partitions().len() as f64);
        gauge!(m::RANKER_IDLE_PARTITIONS).set(r.idle_partitions().len() as f64);
        gauge!(m::RANKER_PENDING_WINDOWS).set(r.pending_windows() as f64);
        gauge!(m::RANKER_BOARD_SIZE).set(r.board().map_or(0, |b| b.entries.len()) as f64);
        if let Some(c) = r.closed_through() {
            gauge!(m::RANKER_BOARD_DELAY).set(now.saturating_sub(c).max(0) as f64 / 1000.0);
        }
        let lag = match (high_watermark, a.offsets.next()) {
            (Some(hw), Some(next)) => Some((hw - next).max(0)),
            _ => None,
        };
        if let Some(lag) = lag {
            gauge!(m::RANKER_LAG).set(lag as f64);
        }
        let s = r.stats().clone();
        let p = &self.published;
        counter!(m::RANKER_WINDOWS_CLOSED).increment(s.windows_closed - p.windows_closed);
        counter!(m::RANKER_WINDOWS_LEFT_OUT)
            .increment(s.windows_with_left_out - p.windows_with_left_out);
        counter!(m::RANKER_FORCED_CLOSES).increment(s.forced_closes - p.forced_closes);
        self.published = s;
        let caught_up = self.eof || lag.is_some_and(|l| l <= self.config.counter.ready_max_lag);
        health.set_partitions(BTreeMap::from([(0, caught_up)]));
        gauge!(m::READY).set(if health.readiness().is_ok() { 1.0 } else { 0.0 });
        self.publish(now);
    }

    /// Waits for every board and alert to be acknowledged, then checkpoints the ranker with
    /// the offset it covers and commits that offset. Lost output sends the ranker back to
    /// its last checkpoint instead.
    fn checkpoint(&mut self, consumer: &BaseConsumer<RankerContext>, mode: CommitMode) {
        let Some(a) = self.assigned.as_ref() else {
            return;
        };
        let Some(offset) = a.offsets.next().filter(|o| a.checkpointed != Some(*o)) else {
            return;
        };
        if let Err(e) = self.producer.flush(self.config.ranker.ack_timeout) {
            counter!(m::CHECKPOINTS, "result" => "failed").increment(1);
            tracing::warn!(error = %e, "boards or alerts not acknowledged in time; checkpoint postponed");
            return;
        }
        if !self.producer.context().take_failed().is_empty() {
            counter!(m::CHECKPOINTS, "result" => "failed").increment(1);
            self.rewind(consumer);
            return;
        }
        let cp = Checkpoint {
            generation: a.generation + 1,
            offset,
            state: a.ranker.to_bytes(),
        };
        let (acked, bytes) = self.store.write(&[(0, &cp)]);
        counter!(m::CHECKPOINT_BYTES).increment(bytes);
        if !acked.first().copied().unwrap_or(false) {
            counter!(m::CHECKPOINTS, "result" => "failed").increment(1);
            return;
        }
        counter!(m::CHECKPOINTS, "result" => "ok").increment(1);
        if let Some(a) = self.assigned.as_mut() {
            a.generation = cp.generation;
            a.checkpointed = Some(offset);
        }
        let mut commit = TopicPartitionList::new();
        let added =
            commit.add_partition_offset(&self.config.topics.candidates, 0, Offset::Offset(offset));
        if let Err(e) = added.and_then(|()| consumer.commit(&commit, mode)) {
            counter!(m::COMMIT_FAILURES).increment(1);
            tracing::warn!(error = %e, "offset commit failed (the checkpoint stands)");
        }
    }

    /// Goes back to the last checkpoint after output was lost, so it is produced again.
    fn rewind(&mut self, consumer: &BaseConsumer<RankerContext>) {
        counter!(m::PARTITION_REWINDS).increment(1);
        let restored = self.store.restore_all(&[0]).and_then(|cps| {
            let candidates = cps.into_iter().next().unwrap_or_default();
            self.assigned_from(&candidates)
                .map(|(assigned, _)| assigned)
        });
        match restored {
            Ok(mut assigned) => {
                // Without a checkpoint, back to where this owner started, not to the
                // beginning of the topic (see `delivery::rewind_target`).
                let started_at = self.assigned.as_ref().and_then(|a| a.offsets.started_at());
                assigned.offsets.keep_start(started_at);
                let offset = rewind_target(assigned.offsets.next(), started_at)
                    .map_or(Offset::Beginning, Offset::Offset);
                tracing::warn!(
                    ?offset,
                    "output lost: ranker rewound to its last checkpoint"
                );
                self.assigned = Some(assigned);
                self.out = RankOutput::default();
                self.partitions_checked = None;
                self.refresh_partitions();
                if let Err(e) = consumer.seek(
                    &self.config.topics.candidates,
                    0,
                    offset,
                    Duration::from_secs(10),
                ) {
                    tracing::error!(error = %e, "seek after rewind failed");
                }
            }
            Err(e) => {
                // Nothing is checkpointed past the lost output while it stays unacknowledged:
                // mark it again so the next round retries the rewind.
                tracing::error!(error = %e, "ranker rewind failed; will retry");
                self.producer.context().record_failure(0);
            }
        }
    }
}
