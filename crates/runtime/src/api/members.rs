//! Who owns which events partition, and where to ask it: the counters' membership topic.
//!
//! Each counter writes one record to `topics.members` (compacted, one partition) under the
//! key `<group id>/<member>` — `<member>` is `counter.group_instance_id` when set (stable
//! across restarts), else `<host>-<pid>` — whose value is a [`MemberRecord`] (JSON): its
//! query address, the events topic and the partitions it owns, and the wall time it wrote
//! it. It writes it again whenever its assignment changes and every [`REFRESH`], and a
//! tombstone when it stops. Every counter reads the topic from the beginning into a
//! [`MemberTable`]; an entry not refreshed for [`TTL`] (a member that died without its
//! tombstone) is ignored. Kafka Streams does the same with `application.server` in the
//! group's member metadata; a topic of our own keeps the consumer group's protocol (and
//! both group protocols) untouched, and lets any process — a counter of another group,
//! a tool — read the map.
//!
//! The table is pure (time is an argument); [`spawn`] runs the thread that produces and
//! reads the topic. That thread never touches the counter's loop: it learns the owned
//! partitions from the [`Ownership`] the loop publishes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use trendwatch_config::Config;

use crate::client::{producer_config, reader_config};
use crate::error::{Result, RuntimeError};
use crate::partitioner::Partitioner;
use crate::wall_ms;

/// How often a counter writes its record even when nothing changed.
pub const REFRESH: Duration = Duration::from_secs(5);
/// An entry older than this (by its `updated_at`) is a member that is gone.
pub const TTL: Duration = Duration::from_secs(30);
/// Entries the table holds at most (members of this group and events topic).
pub const MAX_MEMBERS: usize = 1024;
/// Bytes a member record may have; a bigger one is ignored (it is not ours).
const MAX_RECORD_BYTES: usize = 64 * 1024;

/// One counter's advertisement on the membership topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The consumer group.
    pub group: String,
    /// The member's identity within it (the key's second half).
    pub member: String,
    /// `host:port` of its query API.
    pub address: String,
    /// The events topic whose partitions these are.
    pub events_topic: String,
    /// The partitions it owns.
    pub partitions: Vec<i32>,
    /// Wall time (ms since the epoch) it wrote this.
    pub updated_at: i64,
}

/// The key of a member's record.
pub fn member_key(group: &str, member: &str) -> String {
    format!("{group}/{member}")
}

/// This process's member identity: the static group instance id, else host and pid.
pub fn member_identity(config: &Config) -> String {
    if !config.counter.group_instance_id.is_empty() {
        return config.counter.group_instance_id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{host}-{}", std::process::id())
}

/// The members of one group on one events topic, as the membership topic says.
#[derive(Debug)]
pub struct MemberTable {
    group: String,
    events_topic: String,
    /// Our own key: our entry is never an answer to "who else owns it".
    own_key: String,
    entries: HashMap<String, MemberRecord>,
}

/// Where a partition lives, as far as the table knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// The owning member.
    pub member: String,
    /// Its query address.
    pub address: String,
    /// When it last said so.
    pub updated_at: i64,
}

impl MemberTable {
    /// An empty table for `group` reading `events_topic`; `own_key` is this member's key.
    pub fn new(group: &str, events_topic: &str, own_key: &str) -> Self {
        Self {
            group: group.into(),
            events_topic: events_topic.into(),
            own_key: own_key.into(),
            entries: HashMap::new(),
        }
    }

    /// Applies one record of the topic: a value replaces the key's entry, a tombstone
    /// (`None`) removes it. Records of other groups or topics, undecodable ones and ones
    /// whose key does not match their content are ignored; so is a new key once
    /// [`MAX_MEMBERS`] are held (the oldest is dropped first if it is past the TTL at `now`).
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>, now: i64) {
        let Ok(key) = std::str::from_utf8(key) else {
            return;
        };
        let Some(value) = value else {
            self.entries.remove(key);
            return;
        };
        if value.len() > MAX_RECORD_BYTES {
            return;
        }
        let Ok(record) = serde_json::from_slice::<MemberRecord>(value) else {
            return;
        };
        if record.group != self.group
            || record.events_topic != self.events_topic
            || member_key(&record.group, &record.member) != key
        {
            return;
        }
        if !self.entries.contains_key(key) && self.entries.len() >= MAX_MEMBERS {
            self.expire(now);
            if self.entries.len() >= MAX_MEMBERS {
                return;
            }
        }
        self.entries.insert(key.to_string(), record);
    }

    /// Drops entries past the TTL at `now`.
    pub fn expire(&mut self, now: i64) {
        let ttl = TTL.as_millis() as i64;
        self.entries
            .retain(|_, r| now.saturating_sub(r.updated_at) <= ttl);
    }

    /// The other member that owns `partition` at `now`: among live entries (within the
    /// TTL) claiming it, the most recently updated (two claim one partition only during a
    /// rebalance, and the newer claim is the newer assignment).
    pub fn owner_of(&self, partition: i32, now: i64) -> Option<Owner> {
        let ttl = TTL.as_millis() as i64;
        self.entries
            .iter()
            .filter(|(k, _)| **k != self.own_key)
            .filter(|(_, r)| now.saturating_sub(r.updated_at) <= ttl)
            .filter(|(_, r)| r.partitions.contains(&partition))
            .max_by_key(|(k, r)| (r.updated_at, std::cmp::Reverse((*k).clone())))
            .map(|(_, r)| Owner {
                member: r.member.clone(),
                address: r.address.clone(),
                updated_at: r.updated_at,
            })
    }

    /// The query addresses of every other live member at `now`, most recently updated
    /// first (each once).
    pub fn addresses(&self, now: i64) -> Vec<String> {
        let ttl = TTL.as_millis() as i64;
        let mut live: Vec<&MemberRecord> = self
            .entries
            .iter()
            .filter(|(k, _)| **k != self.own_key)
            .filter(|(_, r)| now.saturating_sub(r.updated_at) <= ttl)
            .map(|(_, r)| r)
            .collect();
        live.sort_by(|a, b| {
            b.updated_at
                .cmp(&a.updated_at)
                .then(a.member.cmp(&b.member))
        });
        let mut out: Vec<String> = Vec::with_capacity(live.len());
        for r in live {
            if !out.contains(&r.address) {
                out.push(r.address.clone());
            }
        }
        out
    }

    /// Every live member at `now`, by key.
    pub fn live(&self, now: i64) -> BTreeMap<String, MemberRecord> {
        let ttl = TTL.as_millis() as i64;
        self.entries
            .iter()
            .filter(|(_, r)| now.saturating_sub(r.updated_at) <= ttl)
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect()
    }
}

/// The partitions the counter's loop owns, published by the loop for the HTTP side and
/// the membership thread (a write per rebalance, never a wait on either reader).
#[derive(Debug, Default)]
pub struct Ownership {
    partitions: RwLock<Vec<i32>>,
    /// Bumped at every change, so the membership thread knows to write.
    generation: AtomicU64,
    /// Partitions of the events topic (0: not known yet).
    events_partitions: AtomicU64,
}

impl Ownership {
    /// The loop's assignment changed to `partitions`.
    pub fn set(&self, mut partitions: Vec<i32>) {
        partitions.sort_unstable();
        *self
            .partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner) = partitions;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The owned partitions now, sorted.
    pub fn partitions(&self) -> Vec<i32> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether `partition` is owned now.
    pub fn owns(&self, partition: i32) -> bool {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .binary_search(&partition)
            .is_ok()
    }

    /// The change counter.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The events topic has `n` partitions (from the loop's metadata refresh).
    pub fn set_events_partitions(&self, n: usize) {
        self.events_partitions.store(n as u64, Ordering::Relaxed);
    }

    /// Partitions of the events topic, once known.
    pub fn events_partitions(&self) -> Option<u32> {
        match self.events_partitions.load(Ordering::Relaxed) {
            0 => None,
            n => u32::try_from(n).ok(),
        }
    }
}

/// The membership as the HTTP side reads it.
#[derive(Debug)]
pub struct Directory {
    /// This member's key and identity.
    pub key: String,
    /// The address it advertises.
    pub address: String,
    /// What the topic says.
    pub table: RwLock<MemberTable>,
    /// What the loop owns.
    pub ownership: Arc<Ownership>,
    /// How the events topic's producers place a video (`topics.events_partitioner`):
    /// which partition, so which member, a video query is for.
    pub partitioner: Partitioner,
}

impl Directory {
    /// The directory of this counter (`member` identity, advertising `address`).
    pub fn new(config: &Config, member: &str, address: &str, ownership: Arc<Ownership>) -> Self {
        let key = member_key(&config.counter.group_id, member);
        Self {
            table: RwLock::new(MemberTable::new(
                &config.counter.group_id,
                &config.topics.events,
                &key,
            )),
            key,
            address: address.into(),
            ownership,
            partitioner: config.topics.events_partitioner,
        }
    }

    /// Who else owns `partition` now.
    pub fn owner_of(&self, partition: i32, now: i64) -> Option<Owner> {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .owner_of(partition, now)
    }
}

/// Starts the membership thread: writes this member's record on every change of the
/// loop's ownership and every [`REFRESH`], reads the topic into the directory's table, and
/// writes a tombstone when `shutdown` is cancelled. Fails only if its clients cannot be
/// created.
pub fn spawn(
    config: &Config,
    directory: Arc<Directory>,
    shutdown: CancellationToken,
) -> Result<std::thread::JoinHandle<()>> {
    let topic = config.topics.members.clone();
    let producer: ThreadedProducer<DefaultProducerContext> = producer_config(config)
        .create()
        .map_err(|e| RuntimeError::kafka("creating the membership producer", e))?;
    let reader = membership_reader(config)?;
    let group = config.counter.group_id.clone();
    let events_topic = config.topics.events.clone();
    let member = directory
        .key
        .strip_prefix(&format!("{group}/"))
        .unwrap_or(&directory.key)
        .to_string();
    let thread = std::thread::Builder::new()
        .name("members".into())
        .spawn(move || {
            let mut written: Option<(u64, Instant)> = None;
            while !shutdown.is_cancelled() {
                let generation = directory.ownership.generation();
                let due = written.is_none_or(|(g, at)| g != generation || at.elapsed() >= REFRESH);
                if due {
                    let record = MemberRecord {
                        group: group.clone(),
                        member: member.clone(),
                        address: directory.address.clone(),
                        events_topic: events_topic.clone(),
                        partitions: directory.ownership.partitions(),
                        updated_at: wall_ms(),
                    };
                    let value = serde_json::to_vec(&record).unwrap_or_default();
                    let sent = producer.send(
                        BaseRecord::to(&topic)
                            .partition(0)
                            .key(directory.key.as_str())
                            .payload(value.as_slice()),
                    );
                    match sent {
                        Ok(()) => written = Some((generation, Instant::now())),
                        Err((e, _)) => tracing::warn!(error = %e, "writing the membership record"),
                    }
                }
                apply_next(&reader, &directory.table);
            }
            // Gone: others stop redirecting here at once rather than after the TTL.
            let _ = producer.send(
                BaseRecord::<str, [u8]>::to(&topic)
                    .partition(0)
                    .key(directory.key.as_str()),
            );
            let _ = producer.flush(Duration::from_secs(2));
        })
        .map_err(|source| RuntimeError::Io {
            context: "starting the membership thread".into(),
            source,
        })?;
    Ok(thread)
}

/// A reader of the membership topic from its beginning.
fn membership_reader(config: &Config) -> Result<BaseConsumer> {
    let reader: BaseConsumer = reader_config(config, "members")
        .create()
        .map_err(|e| RuntimeError::kafka("creating the membership reader", e))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&config.topics.members, 0, Offset::Beginning)
        .and_then(|()| reader.assign(&tpl))
        .map_err(|e| RuntimeError::kafka("reading the membership topic", e))?;
    Ok(reader)
}

/// Applies the next record of the topic, if one comes within 200 ms, to `table` (whose
/// lock is held for that record only).
fn apply_next(reader: &BaseConsumer, table: &RwLock<MemberTable>) {
    match reader.poll(Duration::from_millis(200)) {
        Some(Ok(m)) => {
            if let Some(key) = m.key() {
                table.write().unwrap_or_else(PoisonError::into_inner).apply(
                    key,
                    m.payload(),
                    wall_ms(),
                );
            }
        }
        Some(Err(e)) => tracing::debug!(error = %e, "membership reader"),
        None => {}
    }
}

/// The counters' membership as seen by a process that is not one of them (the ranker,
/// which proxies video queries for its console): a table no entry of which is its own.
pub fn observer_table(config: &Config) -> MemberTable {
    // Member identities are never empty, so this key is nobody's.
    let key = member_key(&config.counter.group_id, "");
    MemberTable::new(&config.counter.group_id, &config.topics.events, &key)
}

/// Starts a thread that only reads the membership topic into `table` until `shutdown` is
/// cancelled (it writes nothing: the caller is no counter). Fails only if its client
/// cannot be created.
pub fn spawn_observer(
    config: &Config,
    table: Arc<RwLock<MemberTable>>,
    shutdown: CancellationToken,
) -> Result<std::thread::JoinHandle<()>> {
    let reader = membership_reader(config)?;
    std::thread::Builder::new()
        .name("members-observer".into())
        .spawn(move || {
            while !shutdown.is_cancelled() {
                apply_next(&reader, &table);
            }
        })
        .map_err(|source| RuntimeError::Io {
            context: "starting the membership observer thread".into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(member: &str, partitions: &[i32], at: i64) -> (String, Vec<u8>) {
        let r = MemberRecord {
            group: "g".into(),
            member: member.into(),
            address: format!("{member}:9464"),
            events_topic: "ev".into(),
            partitions: partitions.to_vec(),
            updated_at: at,
        };
        (member_key("g", member), serde_json::to_vec(&r).unwrap())
    }

    #[test]
    fn the_table_maps_partitions_to_live_owners() {
        let mut t = MemberTable::new("g", "ev", "g/me");
        let now = 1_000_000;
        for (m, p, at) in [("a", &[0, 1][..], now), ("me", &[2, 3][..], now)] {
            let (k, v) = record(m, p, at);
            t.apply(k.as_bytes(), Some(&v), now);
        }
        assert_eq!(t.owner_of(0, now).unwrap().address, "a:9464");
        assert_eq!(t.owner_of(2, now), None, "our own entry is no redirect");
        // A newer claim wins during a rebalance.
        let (k, v) = record("b", &[1], now + 10);
        t.apply(k.as_bytes(), Some(&v), now);
        assert_eq!(t.owner_of(1, now + 10).unwrap().member, "b");
        // Entries past the TTL are ignored; a tombstone removes at once.
        let later = now + TTL.as_millis() as i64 + 5;
        assert_eq!(t.owner_of(0, later), None);
        assert_eq!(t.owner_of(1, later).unwrap().member, "b");
        t.apply(b"g/b", None, later);
        assert_eq!(t.owner_of(1, later), None);
        assert_eq!(t.live(now).len(), 2);
    }

    #[test]
    fn an_observer_sees_every_live_member_newest_first() {
        let mut config = Config::default();
        config.counter.group_id = "g".into();
        config.topics.events = "ev".into();
        let mut t = observer_table(&config);
        for (m, p, at) in [
            ("a", &[0][..], 100),
            ("b", &[1][..], 200),
            ("c", &[2][..], 5),
        ] {
            let (k, v) = record(m, p, at);
            t.apply(k.as_bytes(), Some(&v), 200);
        }
        let now = 5 + TTL.as_millis() as i64 + 1;
        assert_eq!(
            t.addresses(now),
            vec!["b:9464", "a:9464"],
            "c is past the TTL"
        );
        assert_eq!(t.owner_of(1, now).unwrap().member, "b");
    }

    #[test]
    fn foreign_and_malformed_records_are_ignored() {
        let mut t = MemberTable::new("g", "ev", "g/me");
        let mut other = MemberRecord {
            group: "other".into(),
            member: "x".into(),
            address: "x:1".into(),
            events_topic: "ev".into(),
            partitions: vec![0],
            updated_at: 5,
        };
        t.apply(b"other/x", Some(&serde_json::to_vec(&other).unwrap()), 5);
        other.group = "g".into();
        // The key must be the record's own.
        t.apply(b"g/y", Some(&serde_json::to_vec(&other).unwrap()), 5);
        t.apply(b"g/z", Some(b"not json"), 5);
        t.apply(&[0xff, 0xfe], Some(b"{}"), 5);
        assert!(t.live(5).is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t = MemberTable::new("g", "ev", "g/me");
        for i in 0..MAX_MEMBERS + 10 {
            let (k, v) = record(&format!("m{i}"), &[0], 100);
            t.apply(k.as_bytes(), Some(&v), 100);
        }
        assert_eq!(t.entries.len(), MAX_MEMBERS);
        // Once the old ones expire, a newcomer gets in.
        let later = 100 + TTL.as_millis() as i64 + 1;
        let (k, v) = record("late", &[0], later);
        t.apply(k.as_bytes(), Some(&v), later);
        assert_eq!(t.owner_of(0, later).unwrap().member, "late");
    }

    #[test]
    fn ownership_publishes_changes() {
        let o = Ownership::default();
        let g = o.generation();
        o.set(vec![3, 1]);
        assert_eq!(o.partitions(), vec![1, 3]);
        assert!(o.owns(3) && !o.owns(2));
        assert!(o.generation() > g);
        assert_eq!(o.events_partitions(), None);
        o.set_events_partitions(4);
        assert_eq!(o.events_partitions(), Some(4));
    }
}
