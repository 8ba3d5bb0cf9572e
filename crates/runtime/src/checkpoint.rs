//! Partition checkpoints on a compacted topic.
//!
//! A checkpoint is a partition's engine state together with the events-topic offset it
//! covers (the next offset to read). It is written as one or more chunk records to the
//! state partition `events partition % state partitions`, keyed
//! `<group>/<events topic>/<partition>/<writer>/<slot>/<chunk>`:
//!
//! - The group: two groups (two deployments) on one state topic never read each other's
//!   state.
//! - The writer: one life of one process ([`CheckpointKeys::new_writer`]). In
//!   at-least-once mode nothing fences a member that lost a partition without knowing it
//!   yet (a zombie), so it may go on writing checkpoints while the new owner writes its
//!   own; under shared keys their torn writes could leave no whole checkpoint at all.
//!   Each writer has keys of its own, so what one writes never tears another's.
//! - The slot: a writer's generations alternate between two slots, so a crash in the
//!   middle of writing generation *g* leaves the writer's generation *g − 1* whole in the
//!   other slot. Compaction keeps the latest record per key.
//!
//! Any whole checkpoint is a true state of the partition (the engine state of every record
//! before its offset, written after that output was acknowledged), whoever wrote it; the
//! restore takes the newest. The keys of other writers a restore found are deleted
//! (tombstoned) once a checkpoint of the new writer is durable, so a partition's keys
//! stay about two slots of its current writer, not one pair per process that ever held it.
//!
//! Keys written before the writer was in them (`<group>/<events topic>/<partition>/<slot>/…`)
//! and before the group was (`<events topic>/<partition>/…`, read as any group's) are
//! still read, so an upgrade resumes from them; the first checkpoint after it is under
//! the writer's keys, one generation further, and wins from then on.
//!
//! Every chunk carries the CRC of the whole state it is a piece of, which names the write:
//! a generation written again after a partly acknowledged attempt (the round failed, so
//! the generation number is used again) shares its keys with that attempt, and a chunk
//! the new write did not replace — a higher index when the state shrank, or any chunk
//! whose new copy was not acknowledged — belongs to the other write and is never
//! assembled with it.
//!
//! Restoring reads the state partition from the beginning up to a marker record written
//! just before (its offset comes back in the produce acknowledgement, which does not
//! depend on the broker's high watermark being exact), keeps the newest record per key,
//! and offers every whole write, newest generation first
//! ([`CheckpointAssembler::finish_all`]): the caller takes the newest one it can decode,
//! so a newest state that does not decode falls back to the older one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use trendwatch_config::{Config, ProcessingGuarantee};

use crate::client::{partition_count, producer_config, reader_config, transaction_timeout};
use crate::delivery::{RESTORE_ATTEMPTS, RestoreProgress, newest_readable};
use crate::error::{Result, RuntimeError};
use crate::telemetry as m;

const MAGIC: &[u8; 4] = b"TWCK";
const MARKER: &[u8; 4] = b"TWMK";
/// Version 2 adds the whole state's CRC; version 1 chunks (written before) are still read.
const VERSION: u8 = 2;
/// magic, version, partition, generation, offset, chunk, chunks, crc (version 1).
const HEADER_LEN_V1: usize = 4 + 1 + 4 + 8 + 8 + 4 + 4 + 4;
/// Version 2: and the CRC of the whole state.
const HEADER_LEN: usize = HEADER_LEN_V1 + 4;

/// The latest checkpoint of a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Increases by one per checkpoint of the partition.
    pub generation: u64,
    /// The next events-topic offset to read: every record before it is in `state`.
    pub offset: i64,
    /// The engine state (`PartitionState::to_bytes`).
    pub state: Vec<u8>,
}

/// Names one writer's checkpoint keys of one stream, and remembers, per partition, the
/// keys of other writers its last restore found, to delete them once a checkpoint of its
/// own is durable (see the module's documentation). Pure: the store and the simulation
/// carry out what it says.
#[derive(Debug)]
pub struct CheckpointKeys {
    group: String,
    stream: String,
    writer: String,
    chunk_bytes: usize,
    /// Per partition: other writers' keys found by its last restore, not deleted yet.
    retiring: HashMap<i32, Vec<String>>,
}

impl CheckpointKeys {
    /// The keys `writer` writes checkpoints of `stream` (the events or candidates topic)
    /// under, as `group` checkpoints it, in chunks of at most `chunk_bytes` of state.
    /// `writer` must not contain `/`.
    pub fn new(group: &str, stream: &str, writer: &str, chunk_bytes: usize) -> Self {
        Self {
            group: group.to_string(),
            stream: stream.to_string(),
            writer: writer.to_string(),
            chunk_bytes,
            retiring: HashMap::new(),
        }
    }

    /// A writer id for one life of this process: 64 random bits in hex (the standard
    /// library's per-process random hasher keys, mixed with the clock and the pid).
    pub fn new_writer() -> String {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        h.write_u128(now);
        h.write_u32(std::process::id());
        format!("{:016x}", h.finish())
    }

    /// This writer's id.
    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// The `(key, value)` records of a checkpoint of `partition`.
    pub fn chunks(&self, partition: i32, checkpoint: &Checkpoint) -> Vec<(String, Vec<u8>)> {
        encode_chunks(
            &self.group,
            &self.stream,
            &self.writer,
            partition,
            checkpoint,
            self.chunk_bytes,
        )
    }

    /// An assembler for a restore of `partition`; give it back to
    /// [`CheckpointKeys::restored`].
    pub fn assembler(&self, partition: i32) -> CheckpointAssembler {
        CheckpointAssembler::new(&self.group, &self.stream, partition)
    }

    /// The whole checkpoints a restore of `partition` found (newest first, as
    /// [`CheckpointAssembler::finish_all`]); the other writers' keys it saw are to be
    /// deleted once a checkpoint of ours is durable.
    pub fn restored(&mut self, partition: i32, assembler: CheckpointAssembler) -> Vec<Checkpoint> {
        let others = assembler.keys_of_others(&self.writer);
        if others.is_empty() {
            self.retiring.remove(&partition);
        } else {
            self.retiring.insert(partition, others);
        }
        assembler.finish_all()
    }

    /// Other writers' keys of `partition` to delete, now that a checkpoint of ours of it
    /// is durable (or in the same transaction as one). Never before: until then theirs
    /// may be the only whole checkpoint there is.
    pub fn retiring(&self, partition: i32) -> &[String] {
        self.retiring.get(&partition).map_or(&[], Vec::as_slice)
    }

    /// The deletions of [`CheckpointKeys::retiring`] for `partition` are acknowledged.
    pub fn retired(&mut self, partition: i32) {
        self.retiring.remove(&partition);
    }
}

/// The key of chunk `chunk` of a generation's slot, as `writer` writes it.
pub fn chunk_key(
    group: &str,
    events_topic: &str,
    writer: &str,
    partition: i32,
    generation: u64,
    chunk: u32,
) -> String {
    format!(
        "{group}/{events_topic}/{partition}/{writer}/{}/{chunk}",
        generation % 2
    )
}

fn marker_key(group: &str, events_topic: &str, partition: i32) -> String {
    format!("{group}/{events_topic}/{partition}/marker")
}

/// Splits a checkpoint into `(key, value)` records of at most `chunk_bytes` of state each,
/// under `writer`'s keys.
pub fn encode_chunks(
    group: &str,
    events_topic: &str,
    writer: &str,
    partition: i32,
    checkpoint: &Checkpoint,
    chunk_bytes: usize,
) -> Vec<(String, Vec<u8>)> {
    let pieces: Vec<&[u8]> = if checkpoint.state.is_empty() {
        vec![&[]]
    } else {
        checkpoint.state.chunks(chunk_bytes.max(1)).collect()
    };
    let chunks = pieces.len() as u32;
    let whole = crc32fast::hash(&checkpoint.state);
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            let mut v = Vec::with_capacity(HEADER_LEN + piece.len());
            v.extend_from_slice(MAGIC);
            v.push(VERSION);
            v.extend_from_slice(&partition.to_le_bytes());
            v.extend_from_slice(&checkpoint.generation.to_le_bytes());
            v.extend_from_slice(&checkpoint.offset.to_le_bytes());
            v.extend_from_slice(&(i as u32).to_le_bytes());
            v.extend_from_slice(&chunks.to_le_bytes());
            v.extend_from_slice(&crc32fast::hash(piece).to_le_bytes());
            v.extend_from_slice(&whole.to_le_bytes());
            v.extend_from_slice(piece);
            (
                chunk_key(
                    group,
                    events_topic,
                    writer,
                    partition,
                    checkpoint.generation,
                    i as u32,
                ),
                v,
            )
        })
        .collect()
}

#[derive(Clone, Debug)]
struct Chunk {
    generation: u64,
    offset: i64,
    index: u32,
    chunks: u32,
    /// The CRC of the whole state this chunk is a piece of (none in version 1).
    whole: Option<u32>,
    data: Vec<u8>,
}

fn decode_chunk(value: &[u8], partition: i32) -> Option<Chunk> {
    let rest = value.strip_prefix(MAGIC.as_slice())?;
    let (&version, rest) = rest.split_first()?;
    let header = match version {
        1 => HEADER_LEN_V1,
        2 => HEADER_LEN,
        _ => return None,
    };
    if rest.len() < header - 5 {
        return None;
    }
    let i32_at = |o: usize| rest[o..o + 4].try_into().ok().map(i32::from_le_bytes);
    let u32_at = |o: usize| rest[o..o + 4].try_into().ok().map(u32::from_le_bytes);
    let u64_at = |o: usize| rest[o..o + 8].try_into().ok().map(u64::from_le_bytes);
    if i32_at(0)? != partition {
        return None;
    }
    let generation = u64_at(4)?;
    let offset = u64_at(12)? as i64;
    let index = u32_at(20)?;
    let chunks = u32_at(24)?;
    let crc = u32_at(28)?;
    let whole = if version >= 2 {
        Some(u32_at(32)?)
    } else {
        None
    };
    let data = &rest[header - 5..];
    if crc32fast::hash(data) != crc || index >= chunks {
        return None;
    }
    Some(Chunk {
        generation,
        offset,
        index,
        chunks,
        whole,
        data: data.to_vec(),
    })
}

/// Who wrote a chunk key, by its layout.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum KeyOwner {
    /// `<group>/<stream>/<partition>/<writer>/<slot>/<chunk>`: one life of a process.
    Writer(String),
    /// `<group>/<stream>/<partition>/<slot>/<chunk>`: the group's, before writers were in
    /// the keys.
    Group,
    /// `<stream>/<partition>/<slot>/<chunk>`: before the group was in them (any group's).
    Legacy,
}

/// Folds the records of a state partition (in offset order) into the newest complete
/// checkpoint of one events partition.
#[derive(Debug)]
pub struct CheckpointAssembler {
    prefix: String,
    /// The keys before the group was in them.
    legacy_prefix: String,
    partition: i32,
    /// The newest chunk per key, and who wrote the key.
    latest: HashMap<String, (KeyOwner, Chunk)>,
    /// Every key that holds a record now (not deleted), valid chunk or not, and its owner.
    live: HashMap<String, KeyOwner>,
    /// Records under our prefix that were not valid chunks (corrupt or foreign).
    pub ignored: u64,
}

impl CheckpointAssembler {
    /// An assembler for `partition` of `events_topic`, as `group` checkpoints it.
    pub fn new(group: &str, events_topic: &str, partition: i32) -> Self {
        Self {
            prefix: format!("{group}/{events_topic}/{partition}/"),
            legacy_prefix: format!("{events_topic}/{partition}/"),
            partition,
            latest: HashMap::new(),
            live: HashMap::new(),
            ignored: 0,
        }
    }

    /// Who wrote `key`, if it is a chunk key of ours (not a marker, not another
    /// partition's or group's).
    fn owner(&self, key: &str) -> Option<KeyOwner> {
        if let Some(rest) = key.strip_prefix(&self.prefix) {
            let parts: Vec<&str> = rest.split('/').collect();
            return match parts.as_slice() {
                [_, _] => Some(KeyOwner::Group),
                [writer, _, _] => Some(KeyOwner::Writer((*writer).to_string())),
                _ => None,
            };
        }
        let rest = key.strip_prefix(&self.legacy_prefix)?;
        (rest.split('/').count() == 2).then_some(KeyOwner::Legacy)
    }

    /// Takes one record; records of other partitions and markers are skipped, a later
    /// record replaces an earlier one with the same key (compaction's rule), and an empty
    /// value deletes the key (a tombstone).
    pub fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Ok(key) = std::str::from_utf8(key) else {
            return;
        };
        let Some(owner) = self.owner(key) else {
            return;
        };
        match value {
            None => {
                self.latest.remove(key);
                self.live.remove(key);
            }
            Some(v) => {
                self.live.insert(key.to_string(), owner.clone());
                match decode_chunk(v, self.partition) {
                    Some(c) => {
                        self.latest.insert(key.to_string(), (owner, c));
                    }
                    None => {
                        self.latest.remove(key);
                        self.ignored += 1;
                    }
                }
            }
        }
    }

    /// The group's keys that hold a record and were not written by `writer` (sorted). The
    /// keys from before the group was in them are not among them: they may be another
    /// group's.
    pub fn keys_of_others(&self, writer: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .live
            .iter()
            .filter(|(_, owner)| match owner {
                KeyOwner::Writer(w) => w != writer,
                KeyOwner::Group => true,
                KeyOwner::Legacy => false,
            })
            .map(|(key, _)| key.clone())
            .collect();
        keys.sort();
        keys
    }

    /// The newest whole checkpoint, if any (see [`CheckpointAssembler::finish_all`]).
    pub fn finish(self) -> Option<Checkpoint> {
        self.finish_all().into_iter().next()
    }

    /// Every whole checkpoint, newest generation first (of one generation, the one
    /// furthest into the partition first): the writes whose chunks are all present, agree
    /// on their offset and count, and (version 2) put together the state their CRC names.
    /// A write's chunks are told apart from another write of the same generation by who
    /// wrote them and by that CRC.
    pub fn finish_all(self) -> Vec<Checkpoint> {
        let mut by_write: HashMap<(u64, &KeyOwner, Option<u32>), Vec<&Chunk>> = HashMap::new();
        for (owner, c) in self.latest.values() {
            by_write
                .entry((c.generation, owner, c.whole))
                .or_default()
                .push(c);
        }
        let mut whole: Vec<(&KeyOwner, Checkpoint)> = by_write
            .into_iter()
            .filter_map(|((generation, owner, crc), mut chunks)| {
                chunks.sort_by_key(|c| c.index);
                let total = chunks.first().map_or(0, |c| c.chunks);
                let complete = chunks.len() == total as usize
                    && chunks
                        .iter()
                        .enumerate()
                        .all(|(i, c)| c.index == i as u32 && c.chunks == total);
                let same_offset = chunks.windows(2).all(|w| w[0].offset == w[1].offset);
                if !(complete && same_offset) {
                    return None;
                }
                let mut state = Vec::with_capacity(chunks.iter().map(|c| c.data.len()).sum());
                for c in &chunks {
                    state.extend_from_slice(&c.data);
                }
                if crc.is_some_and(|crc| crc32fast::hash(&state) != crc) {
                    return None;
                }
                Some((
                    owner,
                    Checkpoint {
                        generation,
                        offset: chunks[0].offset,
                        state,
                    },
                ))
            })
            .collect();
        // Newest first; of one generation, the furthest, then the newest key layout (a
        // writer's, the group's, the legacy ones), then by writer and state so that the
        // order never depends on the hash map's.
        whole.sort_by(|(oa, a), (ob, b)| {
            (b.generation, b.offset)
                .cmp(&(a.generation, a.offset))
                .then_with(|| oa.cmp(ob))
                .then_with(|| a.state.cmp(&b.state))
        });
        whole.into_iter().map(|(_, c)| c).collect()
    }
}

/// The newest of `candidates` (newest first) that `decode` accepts, with its checkpoint
/// (see [`newest_readable`]); each newer one it refused is logged and passed to
/// `unreadable` (to be counted in `trendwatch_checkpoints_unreadable_total`). `None` when
/// there are no candidates; the newest one's reason when none decodes.
pub(crate) fn newest_decoded<T, E: std::fmt::Display>(
    candidates: &[Checkpoint],
    partition: i32,
    decode: impl FnMut(&Checkpoint) -> std::result::Result<T, E>,
    mut unreadable: impl FnMut(),
) -> std::result::Result<Option<(&Checkpoint, T)>, String> {
    let found = newest_readable(candidates, decode);
    for (cp, e) in &found.unreadable {
        unreadable();
        tracing::error!(
            partition,
            generation = cp.generation,
            offset = cp.offset,
            error = %e,
            "checkpoint does not decode; the one before it is tried"
        );
    }
    match (found.chosen, found.unreadable.into_iter().next()) {
        (Some(chosen), _) => Ok(Some(chosen)),
        (None, Some((_, e))) => Err(e.to_string()),
        (None, None) => Ok(None),
    }
}

/// Writes and reads the checkpoints of one input stream (the counter's events topic, or
/// the ranker's candidates topic).
pub struct CheckpointStore {
    /// The consumer group whose checkpoints these are (in the keys).
    group: String,
    /// Names the stream in the checkpoint keys.
    events_topic: String,
    state_topic: String,
    state_partitions: i32,
    /// This process's keys, and the other writers' keys to delete (locked only for the
    /// moment of a restore's or a write's bookkeeping).
    keys: Mutex<CheckpointKeys>,
    ack_timeout: Duration,
    /// Longest a restore waits for the next record of a state partition it has not read up
    /// to its marker yet: in exactly-once mode a transaction a crashed instance left open
    /// holds `read_committed` readers back until the broker aborts it.
    restore_timeout: Duration,
    producer: FutureProducer,
    config: Config,
}

impl CheckpointStore {
    /// The counter's store: checkpoints of the events topic's partitions on the state topic
    /// (which must exist).
    pub fn new(config: &Config) -> Result<Self> {
        let restore_timeout = match config.counter.processing_guarantee {
            ProcessingGuarantee::AtLeastOnce => config.counter.ack_timeout,
            ProcessingGuarantee::ExactlyOnce => {
                config.counter.ack_timeout + transaction_timeout(config)
            }
        };
        Self::open(
            config,
            &config.counter.group_id,
            &config.topics.events,
            &config.topics.state,
            config.counter.ack_timeout,
            restore_timeout,
        )
    }

    /// The ranker's store: its checkpoints (named after the candidates topic) on the
    /// ranker state topic (which must exist).
    pub fn for_ranker(config: &Config) -> Result<Self> {
        let ack = config.ranker.ack_timeout;
        Self::open(
            config,
            &config.ranker.group_id,
            &config.topics.candidates,
            &config.topics.ranker_state,
            ack,
            ack,
        )
    }

    fn open(
        config: &Config,
        group: &str,
        stream: &str,
        state_topic: &str,
        ack_timeout: Duration,
        restore_timeout: Duration,
    ) -> Result<Self> {
        let producer: FutureProducer = producer_config(config)
            .create()
            .map_err(|e| RuntimeError::kafka("creating the checkpoint producer", e))?;
        let probe: BaseConsumer = reader_config(config, "state-metadata")
            .create()
            .map_err(|e| RuntimeError::kafka("creating a metadata client", e))?;
        let state_partitions = partition_count(&probe, state_topic)?.ok_or_else(|| {
            RuntimeError::Config(format!("state topic {state_topic} does not exist"))
        })?;
        Ok(Self {
            group: group.to_string(),
            events_topic: stream.to_string(),
            state_topic: state_topic.to_string(),
            state_partitions,
            keys: Mutex::new(CheckpointKeys::new(
                group,
                stream,
                &CheckpointKeys::new_writer(),
                config.counter.checkpoint_chunk_bytes,
            )),
            ack_timeout,
            restore_timeout,
            producer,
            config: config.clone(),
        })
    }

    fn state_partition(&self, partition: i32) -> i32 {
        partition.rem_euclid(self.state_partitions.max(1))
    }

    /// The state topic.
    pub fn topic(&self) -> &str {
        &self.state_topic
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, CheckpointKeys> {
        // The lock is never held across a call that can panic; a poisoned one still holds
        // consistent bookkeeping.
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The records of `partition`'s checkpoint, `(state partition, key, value)`, for a
    /// caller that writes them itself inside a transaction: its chunks, then deletions
    /// (`None`) of the other writers' keys the last restore found, which may go in the same
    /// transaction as a checkpoint of ours. Call [`CheckpointStore::committed`] once the
    /// transaction is committed.
    pub fn records(
        &self,
        partition: i32,
        checkpoint: &Checkpoint,
    ) -> Vec<(i32, String, Option<Vec<u8>>)> {
        let sp = self.state_partition(partition);
        let keys = self.keys();
        let chunks = keys.chunks(partition, checkpoint);
        let deletions = keys.retiring(partition).iter().cloned();
        chunks
            .into_iter()
            .map(|(key, value)| (sp, key, Some(value)))
            .chain(deletions.map(|key| (sp, key, None)))
            .collect()
    }

    /// The transaction holding [`CheckpointStore::records`] of `partitions` is committed:
    /// the deletions in it are done.
    pub fn committed(&self, partitions: &[i32]) {
        let mut keys = self.keys();
        for p in partitions {
            keys.retired(*p);
        }
    }

    /// Writes the checkpoints and waits for the broker to acknowledge every chunk. Returns,
    /// per checkpoint in input order, whether it is durable, and the bytes written. Once a
    /// partition's checkpoint is durable, the other writers' keys of it the last restore
    /// found are deleted (a deletion not acknowledged is tried again after the next one).
    pub fn write(&self, checkpoints: &[(i32, &Checkpoint)]) -> (Vec<bool>, u64) {
        let records: Vec<(usize, i32, String, Vec<u8>)> = {
            let keys = self.keys();
            checkpoints
                .iter()
                .enumerate()
                .flat_map(|(i, (partition, cp))| {
                    let sp = self.state_partition(*partition);
                    keys.chunks(*partition, cp)
                        .into_iter()
                        .map(move |(key, value)| (i, sp, key, value))
                })
                .collect()
        };
        let bytes = records.iter().map(|r| r.3.len() as u64).sum();
        let pending = records.iter().map(|(i, sp, key, value)| {
            let record = FutureRecord::to(&self.state_topic)
                .partition(*sp)
                .key(key)
                .payload(value);
            (
                *i,
                self.producer.send(record, Timeout::After(self.ack_timeout)),
            )
        });
        let mut ok = vec![true; checkpoints.len()];
        let results = futures::executor::block_on(futures::future::join_all(
            pending
                .into_iter()
                .map(|(i, f)| async move { (i, f.await) }),
        ));
        for (i, r) in results {
            if let Err((e, _)) = r {
                tracing::warn!(partition = checkpoints[i].0, error = %e, "checkpoint chunk not acknowledged");
                ok[i] = false;
            }
        }
        let durable: Vec<i32> = checkpoints
            .iter()
            .zip(&ok)
            .filter(|(_, ok)| **ok)
            .map(|((p, _), _)| *p)
            .collect();
        self.retire(&durable);
        (ok, bytes)
    }

    /// Deletes the other writers' keys of `partitions` (each has a durable checkpoint of
    /// ours now) and forgets those whose deletions were all acknowledged.
    fn retire(&self, partitions: &[i32]) {
        let deletions: Vec<(i32, String)> = {
            let keys = self.keys();
            partitions
                .iter()
                .flat_map(|p| keys.retiring(*p).iter().map(move |k| (*p, k.clone())))
                .collect()
        };
        if deletions.is_empty() {
            return;
        }
        let sends = deletions.iter().map(|(p, key)| {
            let record = FutureRecord::<str, [u8]>::to(&self.state_topic)
                .partition(self.state_partition(*p))
                .key(key);
            self.producer.send(record, Timeout::After(self.ack_timeout))
        });
        let results = futures::executor::block_on(futures::future::join_all(sends));
        let mut failed = std::collections::BTreeSet::new();
        for ((p, key), r) in deletions.iter().zip(results) {
            if let Err((e, _)) = r {
                tracing::warn!(partition = p, key = %key, error = %e, "deleting another writer's checkpoint key not acknowledged; tried again after the next checkpoint");
                failed.insert(*p);
            }
        }
        let mut keys = self.keys();
        for p in partitions.iter().filter(|p| !failed.contains(p)) {
            keys.retired(*p);
        }
        tracing::debug!(
            keys = deletions.len(),
            "other writers' checkpoint keys deleted"
        );
    }

    /// The whole checkpoints of each of `partitions` (in that order; each newest first, see
    /// [`CheckpointAssembler::finish_all`]). A restore whose reading stalls (see
    /// [`RestoreProgress`]) is tried again from new markers, [`RESTORE_ATTEMPTS`] times in
    /// all, before its error is returned.
    pub fn restore_all(&self, partitions: &[i32]) -> Result<Vec<Vec<Checkpoint>>> {
        let mut attempt = 1;
        loop {
            match self.restore_once(partitions) {
                Err(e) if e.is_retryable() && attempt < RESTORE_ATTEMPTS => {
                    metrics::counter!(m::RESTORE_RETRIES).increment(1);
                    tracing::warn!(attempt, error = %e, "restore stalled; trying again");
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    /// One restore, read in one pass: a marker per partition, then one reader over the
    /// state partitions involved.
    fn restore_once(&self, partitions: &[i32]) -> Result<Vec<Vec<Checkpoint>>> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<(i32, String)> = partitions
            .iter()
            .map(|p| {
                let key = marker_key(&self.group, &self.events_topic, *p);
                (self.state_partition(*p), key)
            })
            .collect();
        let sends = keys.iter().map(|(sp, key)| {
            let marker = FutureRecord::to(&self.state_topic)
                .partition(*sp)
                .key(key)
                .payload(MARKER.as_slice());
            self.producer.send(marker, Timeout::After(self.ack_timeout))
        });
        let delivered = futures::executor::block_on(futures::future::join_all(sends));
        // Per state partition: read up to the newest of its markers.
        let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
        for ((sp, _), d) in keys.iter().zip(delivered) {
            let offset = d
                .map_err(|(e, _)| RuntimeError::kafka("writing a restore marker", e))?
                .offset;
            let end = ends.entry(*sp).or_insert(offset);
            *end = (*end).max(offset);
        }
        let reader: BaseConsumer = reader_config(&self.config, "restore")
            .create()
            .map_err(|e| RuntimeError::kafka("creating the restore reader", e))?;
        let mut tpl = TopicPartitionList::new();
        for sp in ends.keys() {
            tpl.add_partition_offset(&self.state_topic, *sp, Offset::Beginning)
                .map_err(|e| RuntimeError::kafka("assigning the state partitions", e))?;
        }
        reader
            .assign(&tpl)
            .map_err(|e| RuntimeError::kafka("assigning the state partitions", e))?;
        let mut assemblers: Vec<(i32, CheckpointAssembler)> = {
            let keys = self.keys();
            partitions
                .iter()
                .map(|p| (self.state_partition(*p), keys.assembler(*p)))
                .collect()
        };
        let started = Instant::now();
        let elapsed_ms = || i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let patience = i64::try_from(self.restore_timeout.as_millis()).unwrap_or(i64::MAX);
        let mut progress = RestoreProgress::new(ends, patience, 0);
        while !progress.done() {
            if let Some(left) = progress.stalled(elapsed_ms()) {
                return Err(RuntimeError::Timeout(format!(
                    "reading checkpoints of {}: state partitions {left:?} not read up to their markers, nothing read from them for {:?}",
                    self.state_topic, self.restore_timeout
                )));
            }
            let Some(polled) = reader.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = polled.map_err(|e| RuntimeError::kafka("reading checkpoints", e))?;
            let sp = m.partition();
            if !progress.record(sp, m.offset(), elapsed_ms()) {
                continue;
            }
            let key = m.key().unwrap_or_default();
            for (_, a) in assemblers.iter_mut().filter(|(asp, _)| *asp == sp) {
                a.push(key, m.payload());
            }
        }
        let mut keys = self.keys();
        Ok(assemblers
            .into_iter()
            .map(|(_, a)| {
                if a.ignored > 0 {
                    tracing::warn!(
                        partition = a.partition,
                        ignored = a.ignored,
                        "checkpoint records that are not valid chunks were skipped"
                    );
                }
                keys.restored(a.partition, a)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(generation: u64, offset: i64, len: usize) -> Checkpoint {
        Checkpoint {
            generation,
            offset,
            state: (0..len)
                .map(|i| (i * 7 + generation as usize) as u8)
                .collect(),
        }
    }

    fn feed(a: &mut CheckpointAssembler, records: &[(String, Vec<u8>)]) {
        for (k, v) in records {
            a.push(k.as_bytes(), Some(v));
        }
    }

    #[test]
    fn chunks_round_trip_and_the_newest_whole_generation_wins() {
        let g1 = cp(1, 100, 10_000);
        let g2 = cp(2, 250, 7_000);
        let mut a = CheckpointAssembler::new("g", "ev", 3);
        feed(&mut a, &encode_chunks("g", "ev", "w1", 3, &g1, 1024));
        feed(&mut a, &encode_chunks("g", "ev", "w1", 3, &g2, 1024));
        // Another partition's records on the same state partition are not ours.
        feed(
            &mut a,
            &encode_chunks("g", "ev", "w1", 4, &cp(9, 999, 10), 1024),
        );
        feed(
            &mut a,
            &encode_chunks("g", "ev", "w1", 13, &cp(9, 999, 10), 1024),
        );
        assert_eq!(a.finish(), Some(g2));
    }

    #[test]
    fn a_torn_generation_falls_back_to_the_previous_one() {
        let g1 = cp(1, 100, 5_000);
        let g2 = cp(2, 250, 5_000);
        let g3 = cp(3, 400, 5_000);
        let mut a = CheckpointAssembler::new("g", "ev", 0);
        feed(&mut a, &encode_chunks("g", "ev", "w1", 0, &g1, 1024));
        feed(&mut a, &encode_chunks("g", "ev", "w1", 0, &g2, 1024));
        // Generation 3 reuses generation 1's slot; the crash came after two of five chunks.
        feed(&mut a, &encode_chunks("g", "ev", "w1", 0, &g3, 1024)[..2]);
        assert_eq!(a.finish(), Some(g2));
    }

    #[test]
    fn corrupt_and_foreign_records_are_ignored() {
        let g1 = cp(1, 10, 3_000);
        let mut records = encode_chunks("g", "ev", "w1", 0, &g1, 1024);
        let mut a = CheckpointAssembler::new("g", "ev", 0);
        feed(&mut a, &records);
        // A later, corrupted copy of chunk 1 of generation 3 (same slot as 1).
        let mut g3 = encode_chunks("g", "ev", "w1", 0, &cp(3, 20, 3_000), 1024);
        let last = g3[1].1.len() - 1;
        g3[1].1[last] ^= 0xff;
        feed(&mut a, &g3);
        a.push(b"g/ev/0/marker", Some(MARKER));
        a.push(b"g/ev/0/0/9", Some(b"garbage"));
        assert_eq!(a.ignored, 2);
        // Generation 3 is incomplete (its chunk 1 is corrupt) and generation 1's chunks 0
        // and 2 were replaced: nothing is whole.
        assert_eq!(a.finish(), None);
        // Without the torn write, generation 1 stands.
        records.reverse();
        let mut b = CheckpointAssembler::new("g", "ev", 0);
        feed(&mut b, &records);
        assert_eq!(b.finish(), Some(g1));
    }

    #[test]
    fn a_generation_written_again_after_a_partial_write_is_whole() {
        // Generation 2's first write (three chunks) was partly acknowledged, so the round
        // failed and the next round writes generation 2 again — a smaller state, two
        // chunks. The first write's chunk 2 stays under its key.
        let g1 = cp(1, 100, 3_000);
        let first = cp(2, 250, 3_000);
        let again = cp(2, 300, 2_000);
        let mut a = CheckpointAssembler::new("g", "ev", 0);
        feed(&mut a, &encode_chunks("g", "ev", "w1", 0, &g1, 1024));
        feed(
            &mut a,
            &encode_chunks("g", "ev", "w1", 0, &first, 1024)[2..],
        );
        feed(&mut a, &encode_chunks("g", "ev", "w1", 0, &again, 1024));
        assert_eq!(a.finish_all(), vec![again, g1]);
    }

    #[test]
    fn chunks_of_two_writes_of_one_generation_are_never_put_together() {
        // Two writes of generation 2 at the same offset (an idle partition's watermark
        // moved, its offset did not), each partly acknowledged: the slot holds chunk 0 of
        // the first and chunks 1 and 2 of the second. Each piece is intact and the offsets
        // agree; put together they would be a state that never existed.
        let g1 = cp(1, 100, 3_000);
        let first = cp(2, 250, 3_000);
        let mut second = cp(2, 250, 3_000);
        second.state[0] ^= 1;
        second.state[2_500] ^= 1;
        let mut a = CheckpointAssembler::new("g", "ev", 0);
        feed(&mut a, &encode_chunks("g", "ev", "w1", 0, &g1, 1024));
        feed(
            &mut a,
            &encode_chunks("g", "ev", "w1", 0, &first, 1024)[..1],
        );
        feed(
            &mut a,
            &encode_chunks("g", "ev", "w1", 0, &second, 1024)[1..],
        );
        assert_eq!(a.finish_all(), vec![g1]);
    }

    #[test]
    fn version_1_chunks_are_still_read() {
        // A version 1 chunk: the version 2 layout without the whole state's CRC.
        let g = cp(4, 77, 100);
        let (key, mut v2) = encode_chunks("g", "ev", "w1", 2, &g, 1024).remove(0);
        v2[4] = 1;
        v2.drain(HEADER_LEN_V1..HEADER_LEN);
        let mut a = CheckpointAssembler::new("g", "ev", 2);
        a.push(key.as_bytes(), Some(&v2));
        assert_eq!(a.ignored, 0);
        assert_eq!(a.finish(), Some(g));
    }

    #[test]
    fn groups_sharing_a_state_topic_read_only_their_own_checkpoints_and_the_legacy_ones() {
        let legacy = cp(4, 100, 2_000);
        let ours = cp(5, 300, 2_000);
        let theirs = cp(9, 900, 2_000);
        // Legacy keys: the layout before the group was in them.
        let legacy_records: Vec<(String, Vec<u8>)> =
            encode_chunks("g", "ev", "w1", 0, &legacy, 1024)
                .into_iter()
                .map(|(k, v)| (k.replace("g/ev/0/w1/", "ev/0/"), v))
                .collect();
        assert!(legacy_records[0].0.starts_with("ev/0/"));
        let mut a = CheckpointAssembler::new("g", "ev", 0);
        feed(&mut a, &legacy_records);
        feed(
            &mut a,
            &encode_chunks("other", "ev", "w1", 0, &theirs, 1024),
        );
        // Right after an upgrade: the legacy checkpoint is the group's (another group's
        // newer one is not).
        let mut b = CheckpointAssembler::new("g", "ev", 0);
        feed(&mut b, &legacy_records);
        feed(
            &mut b,
            &encode_chunks("other", "ev", "w1", 0, &theirs, 1024),
        );
        assert_eq!(b.finish_all(), vec![legacy.clone()]);
        // After the group's first checkpoint under its own keys, that one wins.
        feed(&mut a, &encode_chunks("g", "ev", "w1", 0, &ours, 1024));
        assert_eq!(a.finish_all(), vec![ours, legacy]);
        // The other group sees its own.
        let mut c = CheckpointAssembler::new("other", "ev", 0);
        feed(
            &mut c,
            &encode_chunks("other", "ev", "w1", 0, &theirs, 1024),
        );
        feed(
            &mut c,
            &encode_chunks("g", "ev", "w1", 0, &cp(20, 5, 10), 1024),
        );
        assert_eq!(c.finish(), Some(theirs));
    }

    #[test]
    fn a_zombie_never_tears_the_new_owners_checkpoints_nor_the_owner_the_zombies() {
        // Writer A had generations 1 and 2 durable, then wrote 3, which landed whole but
        // whose acknowledgements were lost. The partition moved to B without A knowing: B
        // restored A's 3 and writes 4 (slot 0), torn; A, a zombie, writes its 3 again
        // (slot 1), torn too. Under keys shared by writers the two torn writes would leave
        // both slots without a whole checkpoint; with a slot pair per writer, A's
        // generation 2 stays whole.
        let (g1, g2, g3) = (cp(1, 100, 3_000), cp(2, 200, 3_000), cp(3, 300, 3_000));
        let mut a = CheckpointAssembler::new("g", "ev", 0);
        feed(&mut a, &encode_chunks("g", "ev", "A", 0, &g1, 1024));
        feed(&mut a, &encode_chunks("g", "ev", "A", 0, &g2, 1024));
        feed(&mut a, &encode_chunks("g", "ev", "A", 0, &g3, 1024));
        feed(
            &mut a,
            &encode_chunks("g", "ev", "B", 0, &cp(4, 350, 3_000), 1024)[..1],
        );
        feed(
            &mut a,
            &encode_chunks("g", "ev", "A", 0, &cp(3, 400, 2_500), 1024)[1..],
        );
        assert_eq!(a.finish_all(), vec![g2]);
    }

    #[test]
    fn the_newest_whole_checkpoint_of_any_writer_is_restored_and_the_others_keys_retire() {
        let before_writers = cp(3, 90, 2_000);
        let zombie = cp(5, 300, 2_000);
        let owner = cp(5, 280, 2_000);
        // The layout before writers were in the keys: `<group>/<stream>/<p>/<slot>/<chunk>`.
        let group_records: Vec<(String, Vec<u8>)> =
            encode_chunks("g", "ev", "w1", 0, &before_writers, 1024)
                .into_iter()
                .map(|(k, v)| (k.replace("/w1/", "/"), v))
                .collect();
        let legacy = encode_chunks("g", "ev", "w1", 0, &cp(1, 10, 100), 1024)
            .into_iter()
            .map(|(k, v)| (k.replace("g/ev/0/w1/", "ev/0/"), v))
            .collect::<Vec<_>>();
        let mut a = CheckpointAssembler::new("g", "ev", 0);
        feed(&mut a, &legacy);
        feed(&mut a, &group_records);
        assert_eq!(a.keys_of_others("w1"), {
            let mut k: Vec<String> = group_records.iter().map(|r| r.0.clone()).collect();
            k.sort();
            k
        });
        let mut b = CheckpointAssembler::new("g", "ev", 0);
        feed(&mut b, &group_records);
        assert_eq!(b.finish(), Some(before_writers.clone()));

        // Two writers at one generation: the one further into the partition first.
        let mut keys = CheckpointKeys::new("g", "ev", "owner", 1024);
        let mut c = keys.assembler(0);
        feed(&mut c, &legacy);
        feed(&mut c, &group_records);
        feed(
            &mut c,
            &encode_chunks("g", "ev", "zombie", 0, &zombie, 1024),
        );
        feed(&mut c, &keys.chunks(0, &owner));
        let mut c2 = keys.assembler(0);
        feed(&mut c2, &legacy);
        feed(&mut c2, &group_records);
        feed(
            &mut c2,
            &encode_chunks("g", "ev", "zombie", 0, &zombie, 1024),
        );
        feed(&mut c2, &keys.chunks(0, &owner));
        assert_eq!(
            keys.restored(0, c),
            vec![
                zombie.clone(),
                owner.clone(),
                before_writers,
                cp(1, 10, 100)
            ]
        );
        // Our own keys and the legacy ones (maybe another group's) are not retired; the
        // zombie's and the group's writer-less ones are.
        let retiring = keys.retiring(0).to_vec();
        assert_eq!(retiring.len(), group_records.len() + 2);
        assert!(
            retiring
                .iter()
                .all(|k| k.contains("/zombie/") || !k.contains("/owner/"))
        );
        assert!(retiring.iter().all(|k| k.starts_with("g/ev/0/")));
        // Once they are deleted, the owner's checkpoint (and the legacy one) is what is left.
        for k in &retiring {
            c2.push(k.as_bytes(), None);
        }
        assert!(c2.keys_of_others("owner").is_empty());
        assert_eq!(c2.finish_all(), vec![owner, cp(1, 10, 100)]);
        keys.retired(0);
        assert!(keys.retiring(0).is_empty());
    }

    #[test]
    fn writer_ids_differ_and_fit_in_a_key() {
        let (a, b) = (CheckpointKeys::new_writer(), CheckpointKeys::new_writer());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn an_empty_state_is_one_chunk() {
        let g = cp(5, 0, 0);
        let records = encode_chunks("g", "ev", "w1", 1, &g, 1024);
        assert_eq!(records.len(), 1);
        let mut a = CheckpointAssembler::new("g", "ev", 1);
        feed(&mut a, &records);
        assert_eq!(a.finish(), Some(g));
    }
}
