//! Partition checkpoints on a compacted topic.
//!
//! A checkpoint is a partition's engine state together with the events-topic offset it
//! covers (the next offset to read). It is written as one or more chunk records to the
//! state partition `events partition % state partitions`, keyed
//! `<group>/<events topic>/<partition>/<slot>/<chunk>`: two groups (two deployments) on
//! one state topic never read each other's state. Keys written before the group was in
//! them (`<events topic>/<partition>/…`) are still read, as any group's, so an upgrade
//! resumes from them; the first checkpoint after it is under the group's own keys, one
//! generation further, and wins from then on. Generations alternate between two slots,
//! so a crash in the middle of writing generation *g* leaves generation *g − 1* whole in
//! the other slot; compaction keeps the latest record per key, i.e. at most two
//! generations.
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

/// The key of chunk `chunk` of a generation's slot.
pub fn chunk_key(
    group: &str,
    events_topic: &str,
    partition: i32,
    generation: u64,
    chunk: u32,
) -> String {
    format!(
        "{group}/{events_topic}/{partition}/{}/{chunk}",
        generation % 2
    )
}

fn marker_key(group: &str, events_topic: &str, partition: i32) -> String {
    format!("{group}/{events_topic}/{partition}/marker")
}

/// Splits a checkpoint into `(key, value)` records of at most `chunk_bytes` of state each.
pub fn encode_chunks(
    group: &str,
    events_topic: &str,
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

/// Folds the records of a state partition (in offset order) into the newest complete
/// checkpoint of one events partition.
#[derive(Debug)]
pub struct CheckpointAssembler {
    prefix: String,
    /// The keys before the group was in them.
    legacy_prefix: String,
    partition: i32,
    /// The newest chunk per key, and whether the key is a legacy one.
    latest: HashMap<String, (bool, Chunk)>,
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
            ignored: 0,
        }
    }

    /// Takes one record; records of other partitions and markers are skipped, a later
    /// record replaces an earlier one with the same key (compaction's rule), and an empty
    /// value deletes the key (a tombstone).
    pub fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Ok(key) = std::str::from_utf8(key) else {
            return;
        };
        let (legacy, rest) = match key.strip_prefix(&self.prefix) {
            Some(rest) => (false, rest),
            None => match key.strip_prefix(&self.legacy_prefix) {
                Some(rest) => (true, rest),
                None => return,
            },
        };
        if rest == "marker" {
            return;
        }
        match value {
            None => {
                self.latest.remove(key);
            }
            Some(v) => match decode_chunk(v, self.partition) {
                Some(c) => {
                    self.latest.insert(key.to_string(), (legacy, c));
                }
                None => self.ignored += 1,
            },
        }
    }

    /// The newest whole checkpoint, if any (see [`CheckpointAssembler::finish_all`]).
    pub fn finish(self) -> Option<Checkpoint> {
        self.finish_all().into_iter().next()
    }

    /// Every whole checkpoint, newest generation first: the writes whose chunks are all
    /// present, agree on their offset and count, and (version 2) put together the state
    /// their CRC names. A write's chunks are told apart from another write of the same
    /// generation by that CRC.
    pub fn finish_all(self) -> Vec<Checkpoint> {
        let mut by_write: HashMap<(u64, bool, Option<u32>), Vec<&Chunk>> = HashMap::new();
        for (legacy, c) in self.latest.values() {
            by_write
                .entry((c.generation, *legacy, c.whole))
                .or_default()
                .push(c);
        }
        let mut whole: Vec<(bool, Checkpoint)> = by_write
            .into_iter()
            .filter_map(|((generation, legacy, crc), mut chunks)| {
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
                    legacy,
                    Checkpoint {
                        generation,
                        offset: chunks[0].offset,
                        state,
                    },
                ))
            })
            .collect();
        // Newest first; of one generation, the group's own keys before the legacy ones.
        whole.sort_by_key(|(legacy, c)| (std::cmp::Reverse(c.generation), *legacy));
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
    chunk_bytes: usize,
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
            chunk_bytes: config.counter.checkpoint_chunk_bytes,
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

    /// The records of `partition`'s checkpoint: `(state partition, key, value)`, for a
    /// caller that writes them itself (inside a transaction).
    pub fn records(&self, partition: i32, checkpoint: &Checkpoint) -> Vec<(i32, String, Vec<u8>)> {
        let sp = self.state_partition(partition);
        encode_chunks(
            &self.group,
            &self.events_topic,
            partition,
            checkpoint,
            self.chunk_bytes,
        )
        .into_iter()
        .map(|(key, value)| (sp, key, value))
        .collect()
    }

    /// Writes the checkpoints and waits for the broker to acknowledge every chunk. Returns,
    /// per checkpoint in input order, whether it is durable, and the bytes written.
    pub fn write(&self, checkpoints: &[(i32, &Checkpoint)]) -> (Vec<bool>, u64) {
        let records: Vec<(usize, i32, String, Vec<u8>)> = checkpoints
            .iter()
            .enumerate()
            .flat_map(|(i, (partition, cp))| {
                self.records(*partition, cp)
                    .into_iter()
                    .map(move |(sp, key, value)| (i, sp, key, value))
            })
            .collect();
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
        (ok, bytes)
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
        let mut assemblers: Vec<(i32, CheckpointAssembler)> = partitions
            .iter()
            .map(|p| {
                (
                    self.state_partition(*p),
                    CheckpointAssembler::new(&self.group, &self.events_topic, *p),
                )
            })
            .collect();
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
                a.finish_all()
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
        feed(&mut a, &encode_chunks("g", "ev", 3, &g1, 1024));
        feed(&mut a, &encode_chunks("g", "ev", 3, &g2, 1024));
        // Another partition's records on the same state partition are not ours.
        feed(&mut a, &encode_chunks("g", "ev", 4, &cp(9, 999, 10), 1024));
        feed(&mut a, &encode_chunks("g", "ev", 13, &cp(9, 999, 10), 1024));
        assert_eq!(a.finish(), Some(g2));
    }

    #[test]
    fn a_torn_generation_falls_back_to_the_previous_one() {
        let g1 = cp(1, 100, 5_000);
        let g2 = cp(2, 250, 5_000);
        let g3 = cp(3, 400, 5_000);
        let mut a = CheckpointAssembler::new("g", "ev", 0);
        feed(&mut a, &encode_chunks("g", "ev", 0, &g1, 1024));
        feed(&mut a, &encode_chunks("g", "ev", 0, &g2, 1024));
        // Generation 3 reuses generation 1's slot; the crash came after two of five chunks.
        feed(&mut a, &encode_chunks("g", "ev", 0, &g3, 1024)[..2]);
        assert_eq!(a.finish(), Some(g2));
    }

    #[test]
    fn corrupt_and_foreign_records_are_ignored() {
        let g1 = cp(1, 10, 3_000);
        let mut records = encode_chunks("g", "ev", 0, &g1, 1024);
        let mut a = CheckpointAssembler::new("g", "ev", 0);
        feed(&mut a, &records);
        // A later, corrupted copy of chunk 1 of generation 3 (same slot as 1).
        let mut g3 = encode_chunks("g", "ev", 0, &cp(3, 20, 3_000), 1024);
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
        feed(&mut a, &encode_chunks("g", "ev", 0, &g1, 1024));
        feed(&mut a, &encode_chunks("g", "ev", 0, &first, 1024)[2..]);
        feed(&mut a, &encode_chunks("g", "ev", 0, &again, 1024));
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
        feed(&mut a, &encode_chunks("g", "ev", 0, &g1, 1024));
        feed(&mut a, &encode_chunks("g", "ev", 0, &first, 1024)[..1]);
        feed(&mut a, &encode_chunks("g", "ev", 0, &second, 1024)[1..]);
        assert_eq!(a.finish_all(), vec![g1]);
    }

    #[test]
    fn version_1_chunks_are_still_read() {
        // A version 1 chunk: the version 2 layout without the whole state's CRC.
        let g = cp(4, 77, 100);
        let (key, mut v2) = encode_chunks("g", "ev", 2, &g, 1024).remove(0);
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
        let legacy_records: Vec<(String, Vec<u8>)> = encode_chunks("g", "ev", 0, &legacy, 1024)
            .into_iter()
            .map(|(k, v)| (k.trim_start_matches("g/").to_string(), v))
            .collect();
        assert!(legacy_records[0].0.starts_with("ev/0/"));
        let mut a = CheckpointAssembler::new("g", "ev", 0);
        feed(&mut a, &legacy_records);
        feed(&mut a, &encode_chunks("other", "ev", 0, &theirs, 1024));
        // Right after an upgrade: the legacy checkpoint is the group's (another group's
        // newer one is not).
        let mut b = CheckpointAssembler::new("g", "ev", 0);
        feed(&mut b, &legacy_records);
        feed(&mut b, &encode_chunks("other", "ev", 0, &theirs, 1024));
        assert_eq!(b.finish_all(), vec![legacy.clone()]);
        // After the group's first checkpoint under its own keys, that one wins.
        feed(&mut a, &encode_chunks("g", "ev", 0, &ours, 1024));
        assert_eq!(a.finish_all(), vec![ours, legacy]);
        // The other group sees its own.
        let mut c = CheckpointAssembler::new("other", "ev", 0);
        feed(&mut c, &encode_chunks("other", "ev", 0, &theirs, 1024));
        feed(&mut c, &encode_chunks("g", "ev", 0, &cp(20, 5, 10), 1024));
        assert_eq!(c.finish(), Some(theirs));
    }

    #[test]
    fn an_empty_state_is_one_chunk() {
        let g = cp(5, 0, 0);
        let records = encode_chunks("g", "ev", 1, &g, 1024);
        assert_eq!(records.len(), 1);
        let mut a = CheckpointAssembler::new("g", "ev", 1);
        feed(&mut a, &records);
        assert_eq!(a.finish(), Some(g));
    }
}
