//! Deterministic simulation of whole counters: one to three members of a consumer group,
//! each the real delivery protocol ([`crate::protocol`]) with the real engine, checkpoint
//! encoder and assembler, driven through a simulated broker from a seed. The broker loses
//! output, loses acknowledgements of output it kept, times flushes out half-way, tears
//! checkpoint writes, refuses commits, aborts and fences transactions (and reports a
//! failure for a commit that landed); members crash with output in flight, partitions move
//! between members gracefully or are lost (and the member that lost them may do one more
//! round before it is told — a zombie). After the faults a quiet phase lets the group catch
//! up, and the run is checked against a replay of the same records through one engine
//! state each, with no broker at all:
//!
//! - each partition's final state is byte for byte the replay's: no record counted twice
//!   or lost, none classified late that the replay counts;
//! - at-least-once: every alert and every set-aside record of the replay is in the output
//!   topic, and nothing else is (copies allowed, under the same ids);
//! - exactly-once: what `read_committed` readers see of the output topic is exactly the
//!   replay's, each once.
//!
//! Wall-clock ticks are not driven here (the idle simulation of [`crate::sim`] covers
//! them), so every alert is decided by records and the replay is exact. A failing seed
//! prints `SIM_SEED=<n>`, which replays it; `SIM_SEEDS=<n>` runs more seeds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use trendwatch_config::{Config, ProcessingGuarantee};
use trendwatch_core::{Alert, CandidateSet, EventKind, PartitionState};
use trendwatch_proto::files::Format;
use trendwatch_proto::{EventRecord, decode_in};

use crate::checkpoint::{Checkpoint, CheckpointKeys};
use crate::error::{Result, RuntimeError};
use crate::protocol::{
    Disposition, Effects, Protocol, Refused, Settings, Source, Step, Tally, TransactionFailed,
};
use crate::sim::{Rng, seeds};

const GROUP: &str = "sim";
const TOPIC: &str = "events";
/// Small chunks, so most checkpoints are several records and can be torn.
const CHUNK_BYTES: usize = 700;
/// Event times start here; the wall clock of validation is after all of them.
const T0: i64 = 1_800_000_000_000;
const WALL_MS: i64 = T0 + 24 * 3_600_000;

/// A record of the output topic, as a reader identifies it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Out {
    Alert {
        id: String,
        kind: &'static str,
        tier: u32,
    },
    /// A late or rejected record copied to the late or dead-letter topic.
    SetAside { partition: i32, offset: i64 },
    /// A closed trending window's candidates, for the ranker.
    Candidates {
        partition: i32,
        window_end: i64,
        videos: Vec<String>,
    },
}

impl Out {
    fn alert(a: &Alert) -> Self {
        Out::Alert {
            id: a.alert_id.clone(),
            kind: a.alert_type.as_str(),
            tier: a.tier,
        }
    }

    fn candidates(partition: i32, set: &CandidateSet) -> Self {
        Out::Candidates {
            partition,
            window_end: set.window_end,
            videos: set.candidates.iter().map(|c| c.video_id.clone()).collect(),
        }
    }
}

/// How often each fault strikes in one run (drawn per seed, some runs have none).
#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    /// An output record not stored, its failure reported.
    output_lost: f64,
    /// An output record stored, its acknowledgement lost (a failure is reported).
    ack_lost: f64,
    /// A flush that times out after answering for part of the output.
    flush_timeout: f64,
    /// A checkpoint chunk not stored / stored with its acknowledgement lost.
    chunk_lost: f64,
    chunk_ack_lost: f64,
    /// A commit of offsets refused.
    commit_refused: f64,
    /// A read of the state topic that fails.
    restore_fails: f64,
    /// A transaction that aborts (of which a third fence the producer), and one that
    /// commits while its client is told it failed.
    transaction_fails: f64,
    transaction_lands_anyway: f64,
}

impl Faults {
    fn draw(rng: &mut Rng) -> Self {
        let mut p = |max: f64| {
            if rng.chance(0.25) {
                0.0
            } else {
                (rng.next() % 1000) as f64 / 1000.0 * max
            }
        };
        Faults {
            output_lost: p(0.05),
            ack_lost: p(0.05),
            flush_timeout: p(0.3),
            chunk_lost: p(0.1),
            chunk_ack_lost: p(0.1),
            commit_refused: p(0.3),
            restore_fails: p(0.1),
            transaction_fails: p(0.3),
            transaction_lands_anyway: p(0.1),
        }
    }
}

/// The simulated cluster: the events partitions, the output topic, the compacted state
/// topic, the group's committed offsets and who the group says owns each partition.
struct Broker {
    seed: u64,
    rng: Rng,
    faults: Faults,
    exactly_once: bool,
    logs: Vec<Vec<Vec<u8>>>,
    /// Output a reader sees (`read_committed` in exactly-once mode).
    output: Vec<Out>,
    /// The same, as a set.
    delivered: BTreeSet<Out>,
    /// The output the replay has for each record, by partition and offset.
    by_offset: Vec<Vec<Vec<Out>>>,
    /// The state topic's records in order; `None` deletes a key.
    state: Vec<(String, Option<Vec<u8>>)>,
    /// Process lives started so far (each names its checkpoint writer).
    lives: u64,
    committed: HashMap<i32, i64>,
    owner: HashMap<i32, usize>,
    tallies: BTreeMap<&'static str, u64>,
}

/// A member's clients: what its producer holds and has been told, where its consumer is,
/// and its checkpoint keys. A crash ends them; the next life gets new ones.
struct Clients {
    positions: HashMap<i32, i64>,
    /// Produced and not answered for yet (at-least-once), or in the open transaction,
    /// with the events partition each came from.
    pending: Vec<(i32, Out)>,
    failed: BTreeSet<i32>,
    stopped: Option<String>,
    keys: CheckpointKeys,
}

impl Clients {
    /// The clients of a new life of `member`'s process, with a checkpoint writer of its own.
    fn new(broker: &mut Broker, member: usize) -> Self {
        broker.lives += 1;
        let writer = format!("m{member}l{}", broker.lives);
        Clients {
            positions: HashMap::new(),
            pending: Vec::new(),
            failed: BTreeSet::new(),
            stopped: None,
            keys: CheckpointKeys::new(GROUP, TOPIC, &writer, CHUNK_BYTES),
        }
    }
}

struct Member {
    protocol: Option<Protocol>,
    clients: Clients,
}

/// One member's actions against the broker.
struct SimIo<'a> {
    broker: &'a mut Broker,
    clients: &'a mut Clients,
    member: usize,
}

impl SimIo<'_> {
    fn produce(&mut self, partition: i32, out: Out) {
        self.clients.pending.push((partition, out));
    }

    fn owns_in_group(&self, partition: i32) -> bool {
        self.broker.owner.get(&partition) == Some(&self.member)
    }

    fn tally(&mut self, what: &'static str, n: u64) {
        *self.broker.tallies.entry(what).or_default() += n;
    }
}

impl Broker {
    fn deliver(&mut self, out: Out) {
        self.delivered.insert(out.clone());
        self.output.push(out);
    }

    /// A checkpoint of `partition` covering the records before `offset` is durable now:
    /// their output must be in the output topic already, or a crash would lose it.
    fn check_covered(&self, partition: i32, offset: i64) {
        for (k, outs) in self.by_offset[partition as usize]
            .iter()
            .take(offset as usize)
            .enumerate()
        {
            for out in outs {
                assert!(
                    self.delivered.contains(out),
                    "SIM_SEED={}: a durable checkpoint of partition {partition} at offset {offset} is ahead of its output: {out:?} of the record at {k} is not in the output topic",
                    self.seed
                );
            }
        }
    }
}

impl Effects for SimIo<'_> {
    fn alert(&mut self, partition: i32, alert: &Alert, _source: Option<Source>) {
        self.produce(partition, Out::alert(alert));
    }

    fn candidates(&mut self, partition: i32, set: CandidateSet) {
        self.produce(partition, Out::candidates(partition, &set));
    }

    fn flush(&mut self) -> bool {
        let f = self.broker.faults;
        let pending = std::mem::take(&mut self.clients.pending);
        let timed_out = self.broker.rng.chance(f.flush_timeout);
        let answered = if timed_out {
            self.broker.rng.range(0, pending.len() as i64) as usize
        } else {
            pending.len()
        };
        for (i, (p, out)) in pending.into_iter().enumerate() {
            if i >= answered {
                self.clients.pending.push((p, out));
                continue;
            }
            if self.broker.rng.chance(f.output_lost) {
                self.clients.failed.insert(p);
                self.tally("output lost", 1);
            } else {
                if self.broker.rng.chance(f.ack_lost) {
                    self.clients.failed.insert(p);
                    self.tally("acknowledgements lost", 1);
                }
                self.broker.deliver(out);
            }
        }
        if timed_out {
            self.tally("flushes timed out", 1);
        }
        !timed_out
    }

    fn refused(&mut self) -> Refused {
        Refused {
            failed: std::mem::take(&mut self.clients.failed),
            permanent: BTreeMap::new(),
        }
    }

    fn producer_fatal(&mut self) -> Option<String> {
        None
    }

    fn read_checkpoints(&mut self, partitions: &[i32]) -> Result<Vec<Vec<Checkpoint>>> {
        if self.broker.rng.chance(self.broker.faults.restore_fails) {
            self.tally("state reads failed", 1);
            return Err(RuntimeError::Restore {
                topic: TOPIC.into(),
                partition: partitions.first().copied().unwrap_or_default(),
                reason: "simulated: the state topic did not answer".into(),
            });
        }
        Ok(partitions
            .iter()
            .map(|p| {
                let mut a = self.clients.keys.assembler(*p);
                for (k, v) in &self.broker.state {
                    a.push(k.as_bytes(), v.as_deref());
                }
                self.clients.keys.restored(*p, a)
            })
            .collect())
    }

    fn write_checkpoints(&mut self, checkpoints: &[(i32, &Checkpoint)]) -> Vec<bool> {
        let f = self.broker.faults;
        let mut acked = Vec::new();
        for (p, cp) in checkpoints {
            let mut all = true;
            for (key, value) in self.clients.keys.chunks(*p, cp) {
                if self.broker.rng.chance(f.chunk_lost) {
                    all = false;
                } else {
                    if self.broker.rng.chance(f.chunk_ack_lost) {
                        all = false;
                    }
                    self.broker.state.push((key, Some(value)));
                }
            }
            if all {
                self.broker.check_covered(*p, cp.offset);
                // Durable: the other writers' keys the restore found go, each deletion
                // as likely to be lost as a chunk.
                let mut deleted = true;
                for key in self.clients.keys.retiring(*p).to_vec() {
                    if self.broker.rng.chance(f.chunk_lost) {
                        deleted = false;
                    } else {
                        if self.broker.rng.chance(f.chunk_ack_lost) {
                            deleted = false;
                        }
                        self.broker.state.push((key, None));
                        self.tally("other writers' keys deleted", 1);
                    }
                }
                if deleted {
                    self.clients.keys.retired(*p);
                }
            } else {
                self.tally("checkpoint writes torn", 1);
            }
            acked.push(all);
        }
        acked
    }

    fn seek(&mut self, partition: i32, offset: i64) {
        self.clients.positions.insert(partition, offset);
    }

    fn commit(&mut self, offsets: &[(i32, i64)], _sync: bool) {
        for (p, offset) in offsets {
            // The group refuses the commit of a member that no longer owns the partition
            // (its generation is fenced).
            if !self.owns_in_group(*p) || self.broker.rng.chance(self.broker.faults.commit_refused)
            {
                self.tally("commits refused", 1);
                continue;
            }
            self.broker.committed.insert(*p, *offset);
        }
    }

    fn commit_transaction(
        &mut self,
        checkpoints: &[(i32, &Checkpoint)],
        offsets: &[(i32, i64)],
    ) -> std::result::Result<(), TransactionFailed> {
        let f = self.broker.faults;
        let fenced = offsets.iter().any(|(p, _)| !self.owns_in_group(*p));
        if fenced || self.broker.rng.chance(f.transaction_fails) {
            return Err(TransactionFailed {
                fatal: !fenced && self.broker.rng.chance(0.3),
                reason: if fenced {
                    "simulated: fenced (the group moved a partition)".into()
                } else {
                    "simulated: the transaction failed".into()
                },
            });
        }
        for (_, out) in std::mem::take(&mut self.clients.pending) {
            self.broker.deliver(out);
        }
        for (p, cp) in checkpoints {
            let chunks = self.clients.keys.chunks(*p, cp);
            self.broker
                .state
                .extend(chunks.into_iter().map(|(k, v)| (k, Some(v))));
            let deletions = self.clients.keys.retiring(*p).to_vec();
            self.tally("other writers' keys deleted", deletions.len() as u64);
            self.broker
                .state
                .extend(deletions.into_iter().map(|k| (k, None)));
            self.broker.check_covered(*p, cp.offset);
        }
        self.broker.committed.extend(offsets.iter().copied());
        if self.broker.rng.chance(f.transaction_lands_anyway) {
            self.tally("transactions committed but reported failed", 1);
            return Err(TransactionFailed {
                fatal: false,
                reason: "simulated: the commit's answer was lost".into(),
            });
        }
        for (p, _) in checkpoints {
            self.clients.keys.retired(*p);
        }
        Ok(())
    }

    fn abort_transaction(&mut self, _failure: &TransactionFailed) {
        self.clients.pending.clear();
    }

    fn begin_transaction(&mut self) {}

    fn stop(&mut self, error: RuntimeError) {
        self.clients.stopped.get_or_insert(error.to_string());
    }

    fn count(&mut self, tally: Tally, n: u64) {
        let name = match tally {
            Tally::Rewinds => "rewinds",
            Tally::TransactionsAborted | Tally::TransactionsFenced => "transactions aborted",
            Tally::CheckpointsOk => "checkpoints",
            _ => return,
        };
        self.tally(name, n);
    }
}

/// The events of one partition: a few videos, one or two of them with a burst of likes
/// big enough to fire, re-deliveries, events far behind the watermark, undecodable bytes.
fn partition_log(rng: &mut Rng, p: i32) -> Vec<Vec<u8>> {
    let videos = rng.range(2, 6);
    let viral: BTreeSet<i64> = (0..rng.range(1, 2))
        .map(|_| rng.range(0, videos - 1))
        .collect();
    let len = rng.range(40, 400);
    let mut t = T0;
    let mut log: Vec<Vec<u8>> = Vec::new();
    for i in 0..len {
        t += rng.range(100, 3_000);
        let roll = rng.range(0, 999);
        if roll < 10 && !log.is_empty() {
            let again = log[rng.range(0, log.len() as i64 - 1) as usize].clone();
            log.push(again);
            continue;
        }
        if roll < 15 {
            log.push(vec![0xff, 0x01, 0x02]);
            continue;
        }
        let late = roll < 22;
        let v = rng.range(0, videos - 1);
        let bursting = viral.contains(&v) && i > len / 3 && i < len / 3 + 120;
        let kind = match rng.range(0, 9) {
            _ if bursting => EventKind::Like,
            0..=1 => EventKind::Like,
            2 => EventKind::Share,
            _ => EventKind::View,
        };
        let event = EventRecord {
            event_id: format!("p{p}-e{i}"),
            video_id: format!("p{p}-v{v}"),
            creator_id: format!("c{v}"),
            user_id: None,
            kind,
            event_time: if late { t - 600_000 } else { t },
        };
        let mut bytes = Vec::new();
        event.encode_protobuf(&mut bytes);
        log.push(bytes);
    }
    log
}

/// What each record through one engine state gives, with no broker: the state after
/// every record, and the output a reader must see of each record (by partition and
/// offset): its alerts and the candidates of the windows it closed, or itself set aside.
fn replay(settings: &Settings, logs: &[Vec<Vec<u8>>]) -> (Vec<Vec<u8>>, Vec<Vec<Vec<Out>>>) {
    let mut states = Vec::new();
    let mut by_offset = Vec::new();
    for (p, log) in logs.iter().enumerate() {
        let p = p as i32;
        let mut state = PartitionState::new(settings.engine.clone()).expect("engine config");
        state.propose_candidates(settings.candidates_k);
        let (mut alerts, mut sets) = (Vec::new(), Vec::new());
        let mut outs = Vec::new();
        for (offset, payload) in log.iter().enumerate() {
            let outcome =
                decode_in(payload, Format::Protobuf, &settings.validation).and_then(|d| {
                    d.validate(WALL_MS, &settings.validation)
                        .map(|e| state.apply(&e, &mut alerts))
                });
            state.drain_candidates(&mut sets);
            let mut out: Vec<Out> = alerts.drain(..).map(|a| Out::alert(&a)).collect();
            out.extend(sets.drain(..).map(|c| Out::candidates(p, &c)));
            if !matches!(outcome, Ok(v) if v != trendwatch_core::Verdict::Late) {
                out.push(Out::SetAside {
                    partition: p,
                    offset: offset as i64,
                });
            }
            outs.push(out);
        }
        states.push(state.to_bytes());
        by_offset.push(outs);
    }
    (states, by_offset)
}

/// What a run did, for the figures.
#[derive(Debug, Default)]
struct Run {
    steps: u64,
    records: u64,
    crashes: u64,
    moves: u64,
    lost: u64,
    zombie_rounds: u64,
    /// The most checkpoint writers with keys of one partition in the state topic at the
    /// end of a run (the maximum over runs, not a sum).
    most_writers: u64,
    tallies: BTreeMap<&'static str, u64>,
}

struct Sim {
    settings: Settings,
    broker: Broker,
    members: Vec<Member>,
    now_ms: i64,
    run: Run,
}

impl Sim {
    fn io(&mut self, m: usize) -> Option<(&mut Protocol, SimIo<'_>)> {
        let member = &mut self.members[m];
        let protocol = member.protocol.as_mut()?;
        Some((
            protocol,
            SimIo {
                broker: &mut self.broker,
                clients: &mut member.clients,
                member: m,
            },
        ))
    }

    fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|m| self.members[*m].protocol.is_some())
            .collect()
    }

    /// A member that was told to stop (or crashed) loses everything in flight.
    fn crash(&mut self, m: usize) {
        let exactly_once = self.broker.exactly_once;
        let member = &mut self.members[m];
        if member.protocol.take().is_none() {
            return;
        }
        self.run.crashes += 1;
        let pending = std::mem::take(&mut member.clients.pending);
        if !exactly_once {
            // Output in flight may or may not have reached the broker.
            for (_, out) in pending {
                if self.broker.rng.chance(0.5) {
                    self.broker.deliver(out);
                }
            }
        }
        member.clients = Clients::new(&mut self.broker, m);
        self.broker.owner.retain(|_, owner| *owner != m);
    }

    fn stop_if_told(&mut self, m: usize) {
        if self.members[m].clients.stopped.is_some() {
            self.crash(m);
        }
    }

    /// The group gives `partitions` to member `m`, which restores them.
    fn assign(&mut self, m: usize, partitions: &[i32]) {
        if self.members[m].protocol.is_none() {
            return;
        }
        for p in partitions {
            self.broker.owner.insert(*p, m);
        }
        let committed: HashMap<i32, i64> = partitions
            .iter()
            .filter_map(|p| Some((*p, *self.broker.committed.get(p)?)))
            .collect();
        let Some((protocol, mut io)) = self.io(m) else {
            return;
        };
        match protocol.assign(partitions, Some(&committed), &mut io) {
            Ok(offsets) => {
                for p in partitions {
                    let from = offsets
                        .iter()
                        .find(|(q, _)| q == p)
                        .map(|(_, o)| *o)
                        .or_else(|| committed.get(p).copied())
                        .unwrap_or(0);
                    io.clients.positions.insert(*p, from);
                }
            }
            Err(e) => {
                io.clients.stopped = Some(e.to_string());
            }
        }
        self.stop_if_told(m);
    }

    /// Partitions no live member owns go to live ones.
    fn rebalance_orphans(&mut self) {
        let orphans: Vec<i32> = (0..self.broker.logs.len() as i32)
            .filter(|p| !self.broker.owner.contains_key(p))
            .collect();
        for p in orphans {
            let live = self.live();
            if live.is_empty() {
                return;
            }
            let m = live[self.broker.rng.range(0, live.len() as i64 - 1) as usize];
            self.assign(m, &[p]);
        }
    }

    /// Member `m` reads up to `n` records of `partition`.
    fn read(&mut self, m: usize, partition: i32, n: usize) {
        let log_len = self.broker.logs[partition as usize].len() as i64;
        for _ in 0..n {
            let Some((protocol, mut io)) = self.io(m) else {
                return;
            };
            let pos = io.clients.positions.get(&partition).copied().unwrap_or(0);
            if pos >= log_len {
                return;
            }
            let payload = io.broker.logs[partition as usize][pos as usize].clone();
            let source = Source {
                offset: pos,
                timestamp: None,
            };
            let next = match protocol.record(partition, source, &payload, WALL_MS, &mut io) {
                Step::NotOwned => return,
                Step::Again => pos + 1,
                Step::ReadFrom(from) => from,
                Step::Taken { disposition, .. } => {
                    if matches!(disposition, Disposition::Late | Disposition::Rejected(_)) {
                        io.produce(
                            partition,
                            Out::SetAside {
                                partition,
                                offset: pos,
                            },
                        );
                    }
                    pos + 1
                }
            };
            io.clients.positions.insert(partition, next);
            self.run.records += 1;
        }
    }

    fn round(&mut self, m: usize, which: Option<&[i32]>, sync: bool) {
        let now = self.now_ms;
        if let Some((protocol, mut io)) = self.io(m) {
            protocol.checkpoint(which, sync, now, &mut io);
        }
        self.stop_if_told(m);
    }

    fn held(&self, m: usize) -> Vec<i32> {
        self.members[m]
            .protocol
            .as_ref()
            .map(|p| p.partitions().map(|(q, _)| q).collect())
            .unwrap_or_default()
    }

    /// One random step of the faulty phase.
    fn step(&mut self) {
        self.run.steps += 1;
        self.now_ms += 100;
        let n = self.members.len();
        let m = self.broker.rng.range(0, n as i64 - 1) as usize;
        let roll = self.broker.rng.range(0, 99);
        match roll {
            0..=54 => {
                let held = self.held(m);
                if !held.is_empty() {
                    let p = held[self.broker.rng.range(0, held.len() as i64 - 1) as usize];
                    let k = self.broker.rng.range(1, 30) as usize;
                    self.read(m, p, k);
                }
            }
            55..=74 => self.round(m, None, false),
            75..=78 => self.crash(m),
            79..=84 if self.members[m].protocol.is_none() => {
                let settings = self.settings.clone();
                // The crash gave it the clients of its next life already.
                self.members[m].protocol = Some(Protocol::new(settings, self.now_ms));
            }
            85..=93 => {
                // A partition moves to another live member: gracefully (revoke: its last
                // round, then released), or lost (released without a round; maybe after a
                // zombie round the member made before it was told).
                let held = self.held(m);
                let live: Vec<usize> = self.live().into_iter().filter(|o| *o != m).collect();
                if held.is_empty() || live.is_empty() {
                    return;
                }
                let p = held[self.broker.rng.range(0, held.len() as i64 - 1) as usize];
                let to = live[self.broker.rng.range(0, live.len() as i64 - 1) as usize];
                self.run.moves += 1;
                if self.broker.rng.chance(0.7) {
                    self.round(m, Some(&[p]), true);
                    if let Some(protocol) = self.members[m].protocol.as_mut() {
                        protocol.release(&[p]);
                    }
                    self.assign(to, &[p]);
                } else {
                    self.run.lost += 1;
                    self.broker.owner.insert(p, to);
                    let zombie_first = self.broker.rng.chance(0.5);
                    if !zombie_first {
                        self.assign(to, &[p]);
                    }
                    if self.broker.rng.chance(0.5) {
                        self.run.zombie_rounds += 1;
                        self.round(m, None, false);
                    }
                    if let Some((protocol, mut io)) = self.io(m) {
                        protocol.lose(&[p], &mut io);
                    }
                    self.stop_if_told(m);
                    if zombie_first {
                        self.assign(to, &[p]);
                    }
                }
            }
            _ => {}
        }
        self.rebalance_orphans();
    }

    /// No more faults: the group reads everything and makes its last rounds.
    fn settle(&mut self, seed: u64) {
        self.broker.faults = Faults::default();
        if self.live().is_empty() {
            self.members[0].protocol = Some(Protocol::new(self.settings.clone(), self.now_ms));
        }
        self.rebalance_orphans();
        for _ in 0..50 {
            self.now_ms += 100;
            for m in self.live() {
                for p in self.held(m) {
                    self.read(m, p, usize::MAX);
                }
                self.round(m, None, true);
            }
            let caught_up = (0..self.broker.logs.len()).all(|p| {
                self.owner_state(p as i32).is_some_and(|(next, _)| {
                    next == Some(self.broker.logs[p].len() as i64) || self.broker.logs[p].is_empty()
                })
            });
            // A member that holds nothing has no round to flush in; what it still has in
            // flight belongs to partitions whose new owners produce it again.
            let idle = self.members.iter().all(|m| {
                m.protocol
                    .as_ref()
                    .is_none_or(|p| p.partitions().next().is_none())
                    || (m.clients.pending.is_empty() && m.clients.failed.is_empty())
            });
            if caught_up && idle {
                return;
            }
            if self.live().is_empty() {
                self.members[0].protocol = Some(Protocol::new(self.settings.clone(), self.now_ms));
            }
            self.rebalance_orphans();
        }
        let where_: Vec<String> = (0..self.broker.logs.len())
            .map(|p| {
                format!(
                    "partition {p}: owner {:?}, next {:?} of {}",
                    self.broker.owner.get(&(p as i32)),
                    self.owner_state(p as i32).map(|s| s.0),
                    self.broker.logs[p].len()
                )
            })
            .collect();
        let members: Vec<String> = self
            .members
            .iter()
            .map(|m| {
                format!(
                    "live {}, stopped {:?}, pending {}, failed {:?}, positions {:?}",
                    m.protocol.is_some(),
                    m.clients.stopped,
                    m.clients.pending.len(),
                    m.clients.failed,
                    m.clients.positions
                )
            })
            .collect();
        panic!(
            "SIM_SEED={seed}: the group did not catch up once the faults stopped: {where_:?}, members {members:?}"
        );
    }

    /// The next offset and state bytes of `partition` at its owner.
    fn owner_state(&self, partition: i32) -> Option<(Option<i64>, Vec<u8>)> {
        let m = *self.broker.owner.get(&partition)?;
        let protocol = self.members[m].protocol.as_ref()?;
        let (_, o) = protocol.partitions().find(|(p, _)| *p == partition)?;
        Some((o.next_offset(), o.state.to_bytes()))
    }
}

fn settings(exactly_once: bool) -> Settings {
    let mut config = Config::default();
    config.counter.processing_guarantee = if exactly_once {
        ProcessingGuarantee::ExactlyOnce
    } else {
        ProcessingGuarantee::AtLeastOnce
    };
    config.topics.events = TOPIC.into();
    config.counter.group_id = GROUP.into();
    // The runs last minutes of event time: warm-ups that short let them alert (detection
    // is not what is tested here; its warm-up is the engine's own tests' business).
    config.engine.velocity.warmup = std::time::Duration::from_secs(30);
    config.engine.trending.warmup = std::time::Duration::from_secs(60);
    Settings::from_config(&config)
}

/// One seeded schedule; panics with `SIM_SEED=<n>` when an invariant does not hold.
fn run(seed: u64, exactly_once: bool) -> Run {
    let mut rng = Rng(seed
        ^ if exactly_once {
            0xE0E0_1234
        } else {
            0xA10A_5678
        });
    let partitions = rng.range(1, 3) as i32;
    let logs: Vec<Vec<Vec<u8>>> = (0..partitions)
        .map(|p| partition_log(&mut rng, p))
        .collect();
    let members = rng.range(1, 3) as usize;
    let faults = Faults::draw(&mut rng);
    let steps = rng.range(20, 300);
    let settings = settings(exactly_once);
    let (expected_states, by_offset) = replay(&settings, &logs);
    let expected: Vec<Out> = by_offset.iter().flatten().flatten().cloned().collect();
    let mut broker = Broker {
        seed,
        rng,
        faults,
        exactly_once,
        logs,
        output: Vec::new(),
        delivered: BTreeSet::new(),
        by_offset,
        state: Vec::new(),
        lives: 0,
        committed: HashMap::new(),
        owner: HashMap::new(),
        tallies: BTreeMap::new(),
    };
    let first_lives = (0..members)
        .map(|m| Member {
            protocol: Some(Protocol::new(settings.clone(), 0)),
            clients: Clients::new(&mut broker, m),
        })
        .collect();
    let mut sim = Sim {
        broker,
        members: first_lives,
        settings,
        now_ms: 0,
        run: Run::default(),
    };
    sim.rebalance_orphans();
    for _ in 0..steps {
        sim.step();
    }
    sim.settle(seed);

    for (p, want) in expected_states.iter().enumerate() {
        let (next, got) = sim
            .owner_state(p as i32)
            .unwrap_or_else(|| panic!("SIM_SEED={seed}: partition {p} has no owner at the end"));
        assert_eq!(
            next,
            Some(sim.broker.logs[p].len() as i64).filter(|n| *n > 0),
            "SIM_SEED={seed}: partition {p} not read to its end"
        );
        assert!(
            got == *want,
            "SIM_SEED={seed}: partition {p}'s state differs from the replay's (a record counted twice, lost or late) — faults {faults:?}, run {:?}",
            sim.run
        );
    }
    let mut seen: BTreeMap<&Out, u64> = BTreeMap::new();
    for out in &sim.broker.output {
        *seen.entry(out).or_default() += 1;
    }
    let mut want: BTreeMap<&Out, u64> = BTreeMap::new();
    for out in &expected {
        *want.entry(out).or_default() += 1;
    }
    for (out, n) in &want {
        let got = seen.get(out).copied().unwrap_or(0);
        assert!(
            got >= 1,
            "SIM_SEED={seed}: {out:?} never reached the output topic — faults {faults:?}, run {:?}",
            sim.run
        );
        if exactly_once {
            assert_eq!(
                got, *n,
                "SIM_SEED={seed}: {out:?} seen {got} times by a read_committed reader, the replay has it {n} — run {:?}",
                sim.run
            );
        }
    }
    for out in seen.keys() {
        assert!(
            want.contains_key(out),
            "SIM_SEED={seed}: {out:?} is in the output and not in the replay"
        );
    }
    // The state topic stays bounded: the other writers' keys a restore finds are deleted
    // once the new owner's checkpoint is durable, so what is left of a partition at the end
    // is its owner's and those of a member that wrote after the owner's restore — here at
    // most the member it was taken from (a zombie round), since a move back to an earlier
    // holder is a new restore.
    let mut live: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, value) in &sim.broker.state {
        match value {
            Some(_) => live.insert(key, key),
            None => live.remove(key.as_str()),
        };
    }
    let mut writers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for key in live.keys() {
        let parts: Vec<&str> = key.split('/').collect();
        if let [_, _, p, writer, _, _] = parts.as_slice() {
            // A deletion whose acknowledgement was lost is sent again after the owner's
            // next checkpoint; until then the key is pending, not left behind.
            let pending = p.parse::<i32>().ok().is_some_and(|p| {
                sim.broker.owner.get(&p).is_some_and(|m| {
                    sim.members[*m]
                        .clients
                        .keys
                        .retiring(p)
                        .iter()
                        .any(|k| k == *key)
                })
            });
            if !pending {
                writers.entry(p).or_default().insert(writer);
            }
        }
    }
    let most_writers = writers.values().map(|w| w.len() as u64).max().unwrap_or(0);
    assert!(
        most_writers <= 2,
        "SIM_SEED={seed}: checkpoint keys of {most_writers} writers of one partition are left in the state topic: {writers:?}"
    );
    let mut run = sim.run;
    run.most_writers = most_writers;
    run.tallies = sim.broker.tallies;
    let count = |f: fn(&Out) -> bool| expected.iter().filter(|o| f(o)).count() as u64;
    run.tallies
        .insert("alerts expected", count(|o| matches!(o, Out::Alert { .. })));
    run.tallies.insert(
        "candidate sets expected",
        count(|o| matches!(o, Out::Candidates { .. })),
    );
    run.tallies.insert(
        "records set aside expected",
        count(|o| matches!(o, Out::SetAside { .. })),
    );
    run
}

fn runs(exactly_once: bool) -> Run {
    let mut total = Run::default();
    let started = std::time::Instant::now();
    let keep_going = std::env::var("SIM_KEEP_GOING").is_ok();
    let mut failed: Vec<u64> = Vec::new();
    for seed in seeds() {
        if seed > 0 && seed % 50_000 == 0 {
            eprintln!(
                "counter simulation ({}): {seed} seeds passed in {:.0} s",
                if exactly_once {
                    "exactly-once"
                } else {
                    "at-least-once"
                },
                started.elapsed().as_secs_f64()
            );
        }
        // SIM_KEEP_GOING: a long run reports every failing seed, not only the first.
        let r = if keep_going {
            match std::panic::catch_unwind(|| run(seed, exactly_once)) {
                Ok(r) => r,
                Err(_) => {
                    failed.push(seed);
                    continue;
                }
            }
        } else {
            run(seed, exactly_once)
        };
        total.steps += r.steps;
        total.records += r.records;
        total.crashes += r.crashes;
        total.moves += r.moves;
        total.lost += r.lost;
        total.zombie_rounds += r.zombie_rounds;
        total.most_writers = total.most_writers.max(r.most_writers);
        for (k, v) in r.tallies {
            *total.tallies.entry(k).or_default() += v;
        }
    }
    assert!(
        failed.is_empty(),
        "failing seeds: {failed:?} (replay one with SIM_SEED=<n>)"
    );
    total
}

#[test]
fn at_least_once_counters_lose_and_double_count_nothing_whatever_the_broker_does() {
    let total = runs(false);
    eprintln!(
        "counter simulation, at-least-once: {} seeds, {total:?}",
        seeds().len()
    );
    if seeds().len() >= 100 {
        for what in [
            "output lost",
            "acknowledgements lost",
            "rewinds",
            "checkpoint writes torn",
        ] {
            assert!(
                total.tallies.get(what).copied().unwrap_or(0) > 0,
                "no run exercised {what}"
            );
        }
        assert!(total.crashes > 0 && total.lost > 0 && total.zombie_rounds > 0);
        assert!(total.tallies.get("alerts expected").copied().unwrap_or(0) > seeds().len() as u64);
    }
}

#[test]
fn exactly_once_counters_deliver_every_output_once_whatever_the_broker_does() {
    let total = runs(true);
    eprintln!(
        "counter simulation, exactly-once: {} seeds, {total:?}",
        seeds().len()
    );
    if seeds().len() >= 100 {
        for what in [
            "transactions aborted",
            "rewinds",
            "transactions committed but reported failed",
        ] {
            assert!(
                total.tallies.get(what).copied().unwrap_or(0) > 0,
                "no run exercised {what}"
            );
        }
        assert!(total.crashes > 0 && total.lost > 0 && total.zombie_rounds > 0);
    }
}
