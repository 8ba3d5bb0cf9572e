//! The end-to-end harness: one local broker for the whole test binary, fresh topics and
//! group per scenario, the counter as a real process, and the reference replay the
//! service's output is compared with.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use trendwatch_cli::partitioner::{Partitioner, partition_for};
use trendwatch_config::{Config, GroupProtocol};
use trendwatch_core::rank::RankOutput;
use trendwatch_core::{Alert, Board, CandidateSet, PartitionState, Ranker};
use trendwatch_proto::{AlertRecord, EventRecord, LeaderboardRecord, decode_in};
use trendwatch_runtime::checkpoint::CheckpointAssembler;
use trendwatch_runtime::publish::{PublishOptions, publish};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The local Apache Kafka every scenario of this test binary shares (started once by
/// `scripts/kafka.sh`, stopped when the test binary exits), or the broker named by
/// `TRENDWATCH_TEST_BOOTSTRAP`.
pub struct Broker {
    /// host:port of its PLAINTEXT listener.
    pub bootstrap: String,
    /// The client port (the controller listens on the next one); none for an external
    /// broker.
    port: Option<u16>,
    /// Its log dir, kept across restarts.
    data: PathBuf,
    /// The broker JVM's pid.
    pid: Mutex<Option<u32>>,
}

impl Broker {
    fn start() -> Self {
        if let Ok(b) = std::env::var("TRENDWATCH_TEST_BOOTSTRAP") {
            return Self {
                bootstrap: b,
                port: None,
                data: PathBuf::new(),
                pid: Mutex::new(None),
            };
        }
        let port = free_port_pair();
        let data =
            std::env::temp_dir().join(format!("trendwatch-test-kafka-{}", std::process::id()));
        let broker = Self {
            bootstrap: format!("127.0.0.1:{port}"),
            port: Some(port),
            data,
            pid: Mutex::new(None),
        };
        broker.launch();
        broker
    }

    /// Runs `scripts/kafka.sh --data DIR PORT OUR_PID` (a restart when DIR has data).
    fn launch(&self) {
        let port = self.port.expect("a local broker");
        let started = Instant::now();
        let out = Command::new(root().join("scripts/kafka.sh"))
            .arg("--data")
            .arg(&self.data)
            .arg(port.to_string())
            .arg(std::process::id().to_string())
            // The watcher deletes the log dir when this test binary exits.
            .env("TRENDWATCH_KAFKA_DISPOSABLE", "1")
            .stderr(Stdio::inherit())
            .output()
            .expect("running scripts/kafka.sh");
        assert!(out.status.success(), "the local Apache Kafka did not start");
        let pid: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("scripts/kafka.sh prints the broker's pid");
        eprintln!(
            "local Apache Kafka on {} (pid {pid}, data {}) answered after {:.1} s",
            self.bootstrap,
            self.data.display(),
            started.elapsed().as_secs_f64()
        );
        *self.pid.lock().unwrap() = Some(pid);
    }

    /// kill -9 of the broker JVM: no controlled shutdown, no flush beyond the page cache.
    pub fn kill(&self) {
        let pid = self
            .pid
            .lock()
            .unwrap()
            .take()
            .expect("a local broker to kill");
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists() {
            // A zombie (our grandchild, reaped by init) has no cmdline left.
            if std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty()) {
                break;
            }
            assert!(Instant::now() < deadline, "broker {pid} did not die");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGSTOP of the broker JVM: it stops answering (connections stay open, requests wait)
    /// until [`Broker::resume`] — a broker hung in a long pause.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Broker::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid.lock().unwrap().expect("a local broker");
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Starts the broker again on the same log dir and ports (after [`Broker::kill`]).
    pub fn restart(&self) {
        self.launch();
    }
}

/// The broker every scenario of this test binary shares.
pub fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(Broker::start)
}

/// Its bootstrap servers.
pub fn bootstrap() -> &'static str {
    &broker().bootstrap
}

/// A port nobody listens on whose successor is free too (the broker's controller
/// listener takes PORT+1).
fn free_port_pair() -> u16 {
    loop {
        let port = free_port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// End-to-end scenarios run one at a time: on two cores, parallel brokers clients and
/// debug-built services would starve each other into session timeouts.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `trendwatch` binary of this build, brought up to date once per test binary
/// (`cargo test -p trendwatch-tests` alone does not build another package's binaries, and
/// a stale one would test old code).
pub fn trendwatch_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/<test> → target/<profile>/trendwatch
        let profile = exe.parent().and_then(Path::parent).unwrap();
        let mut build = Command::new(env!("CARGO"));
        build
            .args([
                "build",
                "--quiet",
                "-p",
                "trendwatch",
                "--bin",
                "trendwatch",
            ])
            .current_dir(root());
        if profile.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().unwrap();
        assert!(status.success(), "building the trendwatch binary failed");
        profile.join("trendwatch")
    })
    .clone()
}

/// A test's own topics, group and configuration.
pub struct Scenario {
    /// Name (for logs and topic names).
    pub name: String,
    /// The configuration the counters run with (and the replay uses).
    pub config: Config,
    /// Events partitions.
    pub partitions: i32,
    /// Temporary directory: config file, logs.
    pub dir: tempfile::TempDir,
}

impl Scenario {
    /// Fresh topics and group; checkpoints every second, ticks every 200 ms, the idle rule
    /// at its default (see [`Reference::advanced_to`] for runs that end idle).
    pub fn new(name: &str, partitions: i32) -> Self {
        let s = Self::configured(name, partitions, bootstrap());
        trendwatch_runtime::client::ensure_topics(
            &s.config,
            &trendwatch_runtime::client::counter_topics(&s.config, partitions),
        )
        .unwrap();
        s
    }

    /// The same on a librdkafka mock cluster of its own (`brokers` brokers, the scenario's
    /// topics created up front: the mock does not serve CreateTopics).
    pub fn on_mock(name: &str, partitions: i32, brokers: i32) -> (Self, MockBroker) {
        let mut s = Self::configured(name, partitions, "");
        // The mock cluster does not serve CreateTopics, and the board is not under test
        // there: counters on the mock propose no candidates.
        s.config.topics.candidates = String::new();
        // Nor is the query API's membership (a counter there answers for its own partitions).
        s.config.topics.members = String::new();
        let t = &s.config.topics;
        let topics = [&t.events, &t.alerts, &t.state, &t.dlq]
            .map(String::as_str)
            .join(",");
        let mock = MockBroker::start(&topics, partitions, brokers, &s.dir.path().join("mock.log"));
        s.config
            .kafka
            .insert("bootstrap.servers".into(), mock.bootstrap.clone());
        (s, mock)
    }

    /// The scenario's settings on `bootstrap` without creating its topics (for tests that
    /// bring their own configuration).
    pub fn configured_on(bootstrap: &str, name: &str, partitions: i32) -> Self {
        Self::configured(name, partitions, bootstrap)
    }

    fn configured(name: &str, partitions: i32, bootstrap: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut config = Config::default();
        config
            .kafka
            .insert("bootstrap.servers".into(), bootstrap.into());
        config
            .kafka
            .insert("session.timeout.ms".into(), "6000".into());
        config
            .kafka
            .insert("heartbeat.interval.ms".into(), "500".into());
        config.topics.events = format!("ev-{id}");
        config.topics.alerts = format!("al-{id}");
        config.topics.state = format!("st-{id}");
        config.topics.dlq = format!("dlq-{id}");
        config.topics.candidates = format!("ca-{id}");
        config.topics.leaderboard = format!("lb-{id}");
        config.topics.ranker_state = format!("rs-{id}");
        config.topics.members = format!("mb-{id}");
        config.counter.group_id = format!("g-{id}");
        config.ranker.group_id = format!("gr-{id}");
        config.ranker.checkpoint_interval = Duration::from_secs(1);
        config.ranker.tick_interval = Duration::from_millis(200);
        config.counter.checkpoint_interval = Duration::from_secs(1);
        config.counter.tick_interval = Duration::from_millis(200);
        config.counter.shutdown_timeout = Duration::from_secs(20);
        // The idle rule stays on at its default (30 s): a counter moves a silent
        // partition on only when it has read everything the broker holds for it.
        Self {
            name: name.into(),
            config,
            partitions,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Makes the counters and rankers of this scenario speak `protocol`. Under the consumer
    /// protocol (KIP-848) the session timeout and heartbeat interval are the broker's
    /// (`group.consumer.*`, shortened by scripts/kafka.sh), and librdkafka refuses the
    /// classic properties, so the harness's are dropped.
    pub fn use_group_protocol(&mut self, protocol: GroupProtocol) {
        self.config.counter.group_protocol = protocol;
        self.config.ranker.group_protocol = protocol;
        if protocol == GroupProtocol::Consumer {
            for key in trendwatch_config::CLASSIC_ONLY_KAFKA_PROPERTIES {
                self.config.kafka.remove(*key);
            }
        }
    }

    /// The scenario's bootstrap servers.
    pub fn bootstrap(&self) -> &str {
        self.config
            .kafka
            .get("bootstrap.servers")
            .map_or("", String::as_str)
    }

    /// Writes the configuration for the counter processes.
    pub fn config_file(&self) -> PathBuf {
        let path = self.dir.path().join("trendwatch.toml");
        std::fs::write(&path, self.config.to_toml()).unwrap();
        path
    }

    /// Publishes raw `(key, bytes)` records to the events topic (at `rate` per second).
    pub fn publish_raw(&self, records: &[(Option<Vec<u8>>, Vec<u8>)], rate: Option<f64>) {
        let summary = publish(
            &self.config,
            &self.config.topics.events,
            records.iter().map(|(k, v)| (k.as_ref(), v)),
            records.len() as u64,
            &PublishOptions {
                rate,
                progress: false,
            },
            &CancellationToken::new(),
        )
        .unwrap();
        assert_eq!(summary.acknowledged, records.len() as u64, "{summary}");
    }

    /// Publishes raw records at `rate` per second on a thread of its own; join it for the
    /// summary.
    pub fn publish_in_background(
        &self,
        records: &[(Option<Vec<u8>>, Vec<u8>)],
        rate: f64,
    ) -> std::thread::JoinHandle<trendwatch_runtime::publish::PublishSummary> {
        let config = self.config.clone();
        let records = records.to_vec();
        std::thread::spawn(move || {
            publish(
                &config,
                &config.topics.events,
                records.iter().map(|(k, v)| (k.as_ref(), v)),
                records.len() as u64,
                &PublishOptions {
                    rate: Some(rate),
                    progress: false,
                },
                &CancellationToken::new(),
            )
            .unwrap()
        })
    }

    /// Publishes events in protobuf, keyed by video id.
    pub fn publish_events(&self, events: &[EventRecord], rate: Option<f64>) {
        self.publish_raw(&encode(events), rate);
    }

    /// Starts a counter process (`trendwatch run`). Its log filter is
    /// `info,librdkafka=warn`, or `TRENDWATCH_TEST_COUNTER_LOG` when set (e.g.
    /// `info,librdkafka=debug` together with `TRENDWATCH__KAFKA__DEBUG=cgrp,consumer` for
    /// librdkafka's own debug contexts); the ranker's likewise.
    pub fn start_counter(&self, label: &str) -> CounterProcess {
        self.start_service("run", label, &[])
    }

    /// Starts a counter process with extra environment (configuration overrides such as
    /// `TRENDWATCH__COUNTER__GROUP_INSTANCE_ID`, which differ between instances).
    pub fn start_counter_with(&self, label: &str, env: &[(&str, &str)]) -> CounterProcess {
        self.start_service("run", label, env)
    }

    /// Starts a ranker process (`trendwatch rank`).
    pub fn start_ranker(&self, label: &str) -> CounterProcess {
        self.start_service("rank", label, &[])
    }

    /// Starts a ranker whose listener takes `metrics` (`host:port`), the address of one
    /// stopped before: a restart as its clients see it.
    pub fn start_ranker_at(&self, label: &str, metrics: &str) -> CounterProcess {
        let port = metrics
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("{metrics}: not host:port"));
        self.start_service_on("rank", label, &[], port)
    }

    fn start_service(&self, subcommand: &str, label: &str, env: &[(&str, &str)]) -> CounterProcess {
        self.start_service_on(subcommand, label, env, free_port())
    }

    fn start_service_on(
        &self,
        subcommand: &str,
        label: &str,
        env: &[(&str, &str)],
        port: u16,
    ) -> CounterProcess {
        let log = self.dir.path().join(format!("{label}.log"));
        let child = Command::new(trendwatch_bin())
            .args([subcommand, "--config"])
            .arg(self.config_file())
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .env(
                "RUST_LOG",
                std::env::var("TRENDWATCH_TEST_COUNTER_LOG")
                    .unwrap_or_else(|_| "info,librdkafka=warn".into()),
            )
            .env_remove("TRENDWATCH_BOOTSTRAP_SERVERS")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        CounterProcess::adopt(label, child, port, log)
    }

    /// Committed offsets of the scenario's group, per events partition.
    pub fn committed(&self) -> BTreeMap<i32, i64> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", &self.config.counter.group_id)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&self.config.topics.events, p);
        }
        let Ok(got) = c.committed_offsets(tpl, Duration::from_secs(10)) else {
            return BTreeMap::new();
        };
        got.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    }

    /// Waits until the group has committed `ends` (records per partition).
    pub fn wait_committed(&self, ends: &BTreeMap<i32, i64>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.committed();
            if ends.iter().all(|(p, e)| got.get(p) == Some(e)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] committed {got:?}, expected {ends:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until every partition's latest checkpoint covers `ends` (on the mock cluster
    /// in exactly-once mode the group's offsets are not stored, so progress is read here).
    pub fn wait_checkpointed(
        &self,
        ends: &BTreeMap<i32, i64>,
        timeout: Duration,
        counter: &CounterProcess,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.checkpointed_states();
            if ends
                .iter()
                .all(|(p, e)| got.get(p).is_some_and(|(o, _)| o == e))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "[{}] checkpoints never reached {ends:?}; log:\n{}",
                self.name,
                counter.log_text()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The high watermark of each partition of `topic` that answers within a second (how
    /// far publishing got, for a report on a stall).
    pub fn high_watermarks(&self, topic: &str) -> BTreeMap<i32, i64> {
        let Ok(c) = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create::<BaseConsumer>()
        else {
            return BTreeMap::new();
        };
        (0..self.partitions)
            .filter_map(|p| {
                let (_, high) = c.fetch_watermarks(topic, p, Duration::from_secs(1)).ok()?;
                Some((p, high))
            })
            .collect()
    }

    /// Sum of the committed offsets.
    pub fn committed_total(&self) -> i64 {
        self.committed().values().sum()
    }

    /// Waits until the group has committed at least `n` records in all, failing with
    /// `counter`'s log after `timeout`.
    pub fn wait_committed_total(&self, n: i64, timeout: Duration, counter: &CounterProcess) {
        let deadline = Instant::now() + timeout;
        while self.committed_total() < n {
            assert!(
                Instant::now() < deadline,
                "[{}] committed {} of the {n} records waited for; log:\n{}",
                self.name,
                self.committed_total(),
                counter.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every record of `topic` (all partitions from the beginning), reading until `expect`
    /// records arrived or `quiet` passed without one.
    pub fn read_topic(&self, topic: &str, expect: Option<usize>, quiet: Duration) -> Vec<Record> {
        read_topic(self.bootstrap(), topic, expect, quiet, "read_committed")
    }

    /// The same as a `read_uncommitted` reader sees it: records of aborted and still-open
    /// transactions included.
    pub fn read_topic_uncommitted(&self, topic: &str, quiet: Duration) -> Vec<Record> {
        read_topic(self.bootstrap(), topic, None, quiet, "read_uncommitted")
    }

    /// Every board on the leaderboard topic, in the order written.
    pub fn boards(&self, quiet: Duration) -> Vec<LeaderboardRecord> {
        self.read_topic(&self.config.topics.leaderboard, None, quiet)
            .into_iter()
            .map(|r| {
                LeaderboardRecord::decode_any(&r.payload)
                    .unwrap_or_else(|e| panic!("undecodable board {r:?}: {e}"))
            })
            .collect()
    }

    /// Every alert on the alert topic.
    pub fn alerts(&self, quiet: Duration) -> Vec<AlertRecord> {
        self.read_topic(&self.config.topics.alerts, None, quiet)
            .into_iter()
            .map(|r| {
                trendwatch_runtime::tail::decode_alert(&r.payload)
                    .unwrap_or_else(|| panic!("undecodable alert record {r:?}"))
            })
            .collect()
    }

    /// Sum of the offsets the latest checkpoints cover, read up to the state topic's
    /// watermarks of the moment (on Apache Kafka they count transaction markers and aborted records too, so the read
    /// ends on the quiet period then), so it
    /// answers while checkpoints are still being written.
    pub fn checkpointed_total(&self) -> i64 {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .unwrap();
        let topic = &self.config.topics.state;
        let partitions = c
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_or(0, |md| md.topics()[0].partitions().len() as i32);
        let available: i64 = (0..partitions)
            .filter_map(|p| c.fetch_watermarks(topic, p, Duration::from_secs(10)).ok())
            .map(|(low, high)| high - low)
            .sum();
        let records = self.read_topic(topic, Some(available as usize), Duration::from_secs(2));
        (0..self.partitions)
            .filter_map(|p| {
                let mut a = CheckpointAssembler::new(
                    &self.config.counter.group_id,
                    &self.config.topics.events,
                    p,
                );
                for r in &records {
                    a.push(r.key.as_deref().unwrap_or_default(), Some(&r.payload));
                }
                a.finish().map(|cp| cp.offset)
            })
            .sum()
    }

    /// The latest checkpoint of each events partition, restored.
    pub fn checkpointed_states(&self) -> BTreeMap<i32, (i64, PartitionState)> {
        let records = self.read_topic(&self.config.topics.state, None, Duration::from_secs(2));
        let mut out = BTreeMap::new();
        for p in 0..self.partitions {
            let mut a = CheckpointAssembler::new(
                &self.config.counter.group_id,
                &self.config.topics.events,
                p,
            );
            for r in &records {
                a.push(r.key.as_deref().unwrap_or_default(), Some(&r.payload));
            }
            if let Some(cp) = a.finish() {
                let state =
                    PartitionState::from_bytes(self.config.engine.clone(), &cp.state).unwrap();
                out.insert(p, (cp.offset, state));
            }
        }
        out
    }
}

impl Drop for Scenario {
    /// Keeps the directory (logs, configuration) of a failed scenario, or of every
    /// scenario when `TRENDWATCH_TEST_KEEP` is set.
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("TRENDWATCH_TEST_KEEP").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!("[{}] logs kept in {}", self.name, kept.display());
        }
    }
}

/// One Kafka record as read back.
#[derive(Clone, Debug)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub payload: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// The value of header `key` as text.
    pub fn header(&self, key: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

fn read_topic(
    bootstrap: &str,
    topic: &str,
    expect: Option<usize>,
    quiet: Duration,
    isolation: &str,
) -> Vec<Record> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("isolation.level", isolation)
        .set("group.id", "trendwatch-tests-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = md.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet && expect.is_none_or(|n| out.len() < n) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            last = Instant::now();
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    out
}

/// A record as published: key (none for a keyless record) and value.
pub type RawRecord = (Option<Vec<u8>>, Vec<u8>);

/// Events as `(key, protobuf)` records.
pub fn encode(events: &[EventRecord]) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    events
        .iter()
        .map(|e| {
            let mut buf = Vec::new();
            e.encode_protobuf(&mut buf);
            (Some(e.video_id.as_bytes().to_vec()), buf)
        })
        .collect()
}

/// Records per partition as librdkafka's default partitioner places keyed records.
pub fn partition_ends(
    records: &[(Option<Vec<u8>>, Vec<u8>)],
    partitions: i32,
) -> BTreeMap<i32, i64> {
    partition_ends_by(Partitioner::Crc32, records, partitions)
}

/// Records per partition as `partitioner` places keyed records.
pub fn partition_ends_by(
    partitioner: Partitioner,
    records: &[(Option<Vec<u8>>, Vec<u8>)],
    partitions: i32,
) -> BTreeMap<i32, i64> {
    let mut ends: BTreeMap<i32, i64> = (0..partitions).map(|p| (p, 0)).collect();
    for (k, _) in records {
        let p = partition_for(
            partitioner,
            k.as_deref().unwrap_or_default(),
            partitions as u32,
        ) as i32;
        *ends.entry(p).or_default() += 1;
    }
    ends
}

/// The reference: the same records through the engine, partition by partition, without
/// ticks or a final drain (what a live run whose partitions never idle has emitted).
pub struct Reference {
    /// Final state per partition.
    pub states: BTreeMap<i32, PartitionState>,
    /// Every alert.
    pub alerts: Vec<Alert>,
    /// Records rejected, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Candidate sets each partition proposed, in order (as a counter would send them
    /// when the configuration names a candidates topic).
    pub candidate_sets: BTreeMap<i32, Vec<CandidateSet>>,
}

impl Reference {
    /// The reference carried on to where the service's partitions went idle after their
    /// last record: each replayed state whose watermark is behind the service's
    /// checkpointed one is advanced to it (as the service's idle ticks advanced it), with
    /// the alerts and candidate sets that closes. A service whose partitions went idle only
    /// at the end of their input then matches it exactly; one that moved a watermark on
    /// mid-stream (and so classified records late) does not.
    pub fn advanced_to(
        &self,
        config: &Config,
        service: &BTreeMap<i32, (i64, PartitionState)>,
    ) -> Reference {
        let mut alerts = self.alerts.clone();
        let mut candidate_sets = self.candidate_sets.clone();
        let states = self
            .states
            .iter()
            .map(|(p, want)| {
                let mut state =
                    PartitionState::from_bytes(config.engine.clone(), &want.to_bytes()).unwrap();
                state.propose_candidates(candidates_k(config));
                if let (Some(live), Some(ours)) = (
                    service.get(p).and_then(|(_, s)| s.watermark()),
                    state.watermark(),
                ) && live > ours
                {
                    state.advance_watermark(live, &mut alerts);
                    state.drain_candidates(candidate_sets.entry(*p).or_default());
                }
                (*p, state)
            })
            .collect();
        Reference {
            states,
            alerts,
            rejected: self.rejected.clone(),
            candidate_sets,
        }
    }
}

/// Candidates a counter with `config` proposes per closed window (0: no candidates topic).
fn candidates_k(config: &Config) -> usize {
    if config.topics.candidates.is_empty() {
        0
    } else {
        config.ranking.exit_rank as usize
    }
}

/// Replays `records` as the counter would see them.
pub fn replay(
    config: &Config,
    records: &[(Option<Vec<u8>>, Vec<u8>)],
    partitions: i32,
) -> Reference {
    let candidates_k = candidates_k(config);
    let mut states: BTreeMap<i32, PartitionState> = (0..partitions)
        .map(|p| {
            let mut state = PartitionState::new(config.engine.clone()).unwrap();
            state.propose_candidates(candidates_k);
            (p, state)
        })
        .collect();
    let mut alerts = Vec::new();
    let mut rejected = BTreeMap::new();
    let mut candidate_sets: BTreeMap<i32, Vec<CandidateSet>> = BTreeMap::new();
    let now = trendwatch_runtime::wall_ms();
    for (k, v) in records {
        let p = partition_for(
            config.topics.events_partitioner,
            k.as_deref().unwrap_or_default(),
            partitions as u32,
        ) as i32;
        let state = states.get_mut(&p).unwrap();
        match decode_in(v, config.counter.input_format, &config.validation).and_then(|d| {
            d.validate(now, &config.validation).map(|e| {
                state.apply(&e, &mut alerts);
            })
        }) {
            Ok(()) => state.drain_candidates(candidate_sets.entry(p).or_default()),
            Err(r) => *rejected.entry(r.reason()).or_default() += 1,
        }
    }
    Reference {
        states,
        alerts,
        rejected,
        candidate_sets,
    }
}

/// What the ranker decides from the reference's candidate sets, without wall-clock ticks
/// (no partition is left out): the boards and alerts of an uninterrupted run.
pub fn rank_reference(config: &Config, reference: &Reference, partitions: i32) -> RankOutput {
    let mut ranker = Ranker::new(config.ranking.clone(), &config.engine).unwrap();
    ranker.set_partitions(partitions as u32);
    let mut out = RankOutput::default();
    for (p, sets) in &reference.candidate_sets {
        for set in sets {
            ranker.offer(*p, set.clone(), 0, &mut out);
        }
    }
    out
}

/// A naive model of the global board, independent of the engine: per partition (placed by
/// `config.topics.events_partitioner`), an event behind the newest seen minus the allowed lateness is
/// late and an event id seen before is a duplicate; every other valid event counts into its
/// video's trending slot: a slot scores its interactions' weights plus its views' weight
/// for at most `views_per_interaction` views per interaction (likes net of unlikes,
/// shares, comments) of that slot; a window scores its slots. A window's board is the
/// `top_k` positive scores, highest first, ties by video id.
pub struct OfflineBoards {
    /// Window end → the board's (video, score), best first.
    pub boards: BTreeMap<i64, Vec<(String, i64)>>,
    /// The newest window end every partition with events has closed by event time.
    pub closed_through: i64,
}

/// Computes [`OfflineBoards`] for `records`.
pub fn offline_boards(config: &Config, records: &[RawRecord], partitions: i32) -> OfflineBoards {
    use trendwatch_core::EventKind;
    let w = &config.engine.trending.weights;
    let weight = |k: EventKind| -> i64 {
        match k {
            EventKind::View => i64::from(w.view),
            EventKind::Like => i64::from(w.like),
            EventKind::Unlike => -i64::from(w.like),
            EventKind::Share => i64::from(w.share),
            EventKind::Comment => i64::from(w.comment),
        }
    };
    let ms = |d: Duration| d.as_millis() as i64;
    let lateness = ms(config.engine.windows.allowed_lateness);
    let slot = ms(config.engine.windows.trending_slot);
    let window = ms(config.engine.windows.trending_window);
    let now = trendwatch_runtime::wall_ms();
    let mut newest: BTreeMap<i32, i64> = BTreeMap::new();
    let mut seen: BTreeMap<i32, std::collections::HashSet<String>> = BTreeMap::new();
    // (video, slot) -> (views, interactions, interaction weight).
    let mut slots: BTreeMap<(String, i64), (i64, i64, i64)> = BTreeMap::new();
    for (k, v) in records {
        let p = partition_for(
            config.topics.events_partitioner,
            k.as_deref().unwrap_or_default(),
            partitions as u32,
        ) as i32;
        let Ok((id, video, kind, t)) =
            decode_in(v, config.counter.input_format, &config.validation).and_then(|d| {
                d.validate(now, &config.validation).map(|e| {
                    (
                        e.event_id.to_string(),
                        e.video_id.to_string(),
                        e.kind,
                        e.event_time,
                    )
                })
            })
        else {
            continue;
        };
        let max = newest.entry(p).or_insert(t);
        *max = (*max).max(t);
        if t < *max - lateness || !seen.entry(p).or_default().insert(id) {
            continue;
        }
        let tally = slots.entry((video, t.div_euclid(slot))).or_default();
        match kind {
            EventKind::View => tally.0 += 1,
            EventKind::Unlike => tally.1 -= 1,
            _ => tally.1 += 1,
        }
        if kind != EventKind::View {
            tally.2 += weight(kind);
        }
    }
    let per = i64::from(config.engine.trending.views_per_interaction);
    let counted: Vec<(String, i64, i64)> = slots
        .into_iter()
        .map(|((video, s), (views, interactions, w))| {
            let capped = views.min(per * interactions.max(0));
            (video, s * slot, w + weight(EventKind::View) * capped)
        })
        .collect();
    let bound = newest.values().map(|t| t - lateness).min().unwrap_or(0);
    let closed_through = bound.div_euclid(slot) * slot;
    let first = counted
        .iter()
        .map(|c| c.1)
        .min()
        .unwrap_or(0)
        .div_euclid(slot)
        * slot
        + slot;
    let mut boards = BTreeMap::new();
    let mut end = first;
    while end <= closed_through {
        let mut scores: BTreeMap<&str, i64> = BTreeMap::new();
        for (video, t, wt) in &counted {
            if *t >= end - window && *t < end {
                *scores.entry(video.as_str()).or_default() += wt;
            }
        }
        let mut board: Vec<(String, i64)> = scores
            .into_iter()
            .filter(|(_, s)| *s > 0)
            .map(|(v, s)| (v.to_string(), s))
            .collect();
        board.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        board.truncate(config.ranking.top_k as usize);
        boards.insert(end, board);
        end += slot;
    }
    OfflineBoards {
        boards,
        closed_through,
    }
}

/// The boards read back, one per window: asserts that a window published more than once
/// (a re-send after a restart) was published identically each time, `emitted_at` aside.
pub fn boards_by_window(boards: &[LeaderboardRecord]) -> BTreeMap<i64, Board> {
    let mut out: BTreeMap<i64, Board> = BTreeMap::new();
    for b in boards {
        if let Some(earlier) = out.get(&b.board.window_end) {
            assert_eq!(
                earlier, &b.board,
                "window {} was published twice, differently",
                b.board.window_end
            );
        }
        out.insert(b.board.window_end, b.board.clone());
    }
    out
}

/// Asserts that the published boards are the naive model's, and that every window the
/// model has a non-empty board for, up to `through`, was published. Returns how many
/// windows were compared.
pub fn assert_boards_match(
    published: &BTreeMap<i64, Board>,
    offline: &OfflineBoards,
    through: i64,
) -> usize {
    for (w, b) in published {
        let got: Vec<(String, i64)> = b
            .entries
            .iter()
            .map(|e| (e.video_id.clone(), e.score))
            .collect();
        let want = offline.boards.get(w).cloned().unwrap_or_default();
        assert_eq!(
            got, want,
            "the board of window ending {w} differs from the naive top-K"
        );
    }
    let mut compared = 0;
    for (w, want) in offline.boards.range(..=through) {
        if !want.is_empty() {
            assert!(
                published.contains_key(w),
                "window ending {w} was never published"
            );
            compared += 1;
        }
    }
    compared
}

/// Asserts that every partition's checkpointed state holds the same videos with the same
/// counts and windows as the reference.
pub fn assert_same_counts(
    service: &BTreeMap<i32, (i64, PartitionState)>,
    reference: &Reference,
    ends: &BTreeMap<i32, i64>,
) -> usize {
    let mut videos = 0;
    for (p, want) in &reference.states {
        let (offset, got) = service
            .get(p)
            .unwrap_or_else(|| panic!("no checkpoint of partition {p}"));
        assert_eq!(
            Some(offset),
            ends.get(p),
            "partition {p}: checkpoint offset"
        );
        assert_eq!(got.stats(), want.stats(), "partition {p}: tallies");
        let totals = want.video_totals();
        assert_eq!(
            got.video_totals(),
            totals,
            "partition {p}: per-video event totals"
        );
        for (video, _, _) in &totals {
            assert_eq!(
                got.video_counts(video),
                want.video_counts(video),
                "partition {p}, video {video}: windows"
            );
        }
        videos += totals.len();
    }
    videos
}

/// Asserts that the service's alerts are the reference's: the same set of ids, and every
/// copy of an id (re-sent after a restart) is the same decision.
pub fn assert_same_alerts(service: &[AlertRecord], reference: &[Alert]) -> (usize, usize) {
    let mut by_id: HashMap<&str, &Alert> = HashMap::new();
    let mut duplicates = 0;
    for a in service {
        if let Some(first) = by_id.insert(a.alert.alert_id.as_str(), &a.alert) {
            duplicates += 1;
            assert_eq!(first, &a.alert, "two different alerts share an id");
        }
    }
    let want: HashMap<&str, &Alert> = reference.iter().map(|a| (a.alert_id.as_str(), a)).collect();
    let mut missing: Vec<&&Alert> = want
        .iter()
        .filter(|(id, _)| !by_id.contains_key(*id))
        .map(|(_, a)| a)
        .collect();
    missing.sort_by_key(|a| a.detected_at);
    let extra: Vec<&&Alert> = by_id
        .iter()
        .filter(|(id, _)| !want.contains_key(*id))
        .map(|(_, a)| a)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} alerts missing (first {:?}), {} unexpected (first {:?})",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    for (id, a) in &want {
        assert_eq!(by_id[id], *a, "alert {id} differs from the replay");
    }
    (want.len(), duplicates)
}

/// librdkafka's mock cluster in a process of its own (`trendwatch perf mock-cluster`),
/// taking trouble commands; killed when dropped.
pub struct MockBroker {
    child: Child,
    stdin: std::process::ChildStdin,
    /// Its bootstrap servers.
    pub bootstrap: String,
}

impl MockBroker {
    fn start(topics: &str, partitions: i32, brokers: i32, log: &Path) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(trendwatch_bin())
            .args(["perf", "mock-cluster", "--topics", topics])
            .args(["--brokers", &brokers.to_string()])
            .args(["--partitions", &partitions.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut bootstrap = String::new();
        out.read_line(&mut bootstrap).unwrap();
        // Drain the answers so the pipe never fills.
        std::thread::spawn(move || for _ in out.lines() {});
        Self {
            child,
            stdin,
            bootstrap: bootstrap.trim().to_string(),
        }
    }

    /// Sends a trouble command (see `trendwatch perf mock-cluster --help`).
    pub fn command(&mut self, line: &str) {
        use std::io::Write;
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A service process (a counter or a ranker); killed if still running when dropped.
pub struct CounterProcess {
    /// Name in messages.
    pub label: String,
    child: Option<Child>,
    /// host:port of its metrics listener.
    pub metrics: String,
    /// Its log file.
    pub log: PathBuf,
}

impl CounterProcess {
    /// A service process the test started itself, with its metrics on `port`; waits for
    /// the metrics listener.
    pub fn adopt(label: &str, child: Child, port: u16, log: PathBuf) -> Self {
        let c = Self {
            label: label.into(),
            child: Some(child),
            metrics: format!("127.0.0.1:{port}"),
            log,
        };
        c.wait_for("the metrics listener", Duration::from_secs(30), |c| {
            c.get("/healthz").is_some()
        });
        c
    }

    /// GET `path` from the metrics listener: the body if the status is 200.
    pub fn get(&self, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.metrics).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.metrics
        )
        .ok()?;
        let mut response = String::new();
        s.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_string())
    }

    /// The metrics page, parsed.
    pub fn metrics(&self) -> Metrics {
        Metrics::parse(&self.get("/metrics").unwrap_or_default())
            .unwrap_or_else(|e| panic!("[{}] /metrics is not Prometheus text: {e}", self.label))
    }

    /// Waits until `ready(self)` holds, failing with the log if it does not in `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "[{}] waited {timeout:?} for {what}; log:\n{}",
                self.label,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process's peak resident memory so far, in bytes (`VmHWM`), if it still runs.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// SIGSTOP: the process freezes (a long GC-like pause, a stalled VM) until
    /// [`CounterProcess::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`CounterProcess::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("a running process").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// SIGKILL: no drain, no checkpoint, no goodbye to the group.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to end by itself, failing with the log if it still runs after
    /// `timeout`; returns its exit status and log.
    pub fn wait_exit(mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, self.log_text());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "[{}] still running after {timeout:?}; log:\n{}",
                    self.label,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then waits for a clean exit (status 0).
    pub fn stop(self) {
        let pid = self.child.as_ref().unwrap().id();
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        let label = self.label.clone();
        let (status, log) = self.wait_exit(Duration::from_secs(30));
        assert!(
            status.success(),
            "[{label}] exited with {status}; log:\n{log}"
        );
    }
}

impl Drop for CounterProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The label set of one sample.
pub type Labels = BTreeMap<String, String>;

/// A parsed Prometheus text page: `name{labels}` → value.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Samples by name, each with its labels.
    pub samples: BTreeMap<String, Vec<(Labels, f64)>>,
    /// Names with a `# TYPE` line, and the type.
    pub types: BTreeMap<String, String>,
}

impl Metrics {
    /// Parses the exposition format strictly enough to catch a malformed page.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut m = Metrics::default();
        let valid_name = |n: &str| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !n.starts_with(|c: char| c.is_ascii_digit())
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or(format!("bad TYPE: {line}"))?;
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(format!("unknown type in {line}"));
                }
                m.types.insert(name.into(), kind.into());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').ok_or(format!("no value: {line}"))?;
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().map_err(|_| format!("bad value in {line}"))?,
            };
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest
                        .strip_suffix('}')
                        .ok_or(format!("unclosed labels: {line}"))?;
                    let mut labels = BTreeMap::new();
                    for pair in body.split(',').filter(|p| !p.is_empty()) {
                        let (k, v) = pair.split_once('=').ok_or(format!("bad label: {line}"))?;
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .ok_or(format!("unquoted label value: {line}"))?;
                        if !valid_name(k) {
                            return Err(format!("bad label name in {line}"));
                        }
                        labels.insert(k.to_string(), v.to_string());
                    }
                    (name, labels)
                }
            };
            if !valid_name(name) {
                return Err(format!("bad metric name in {line}"));
            }
            m.samples
                .entry(name.to_string())
                .or_default()
                .push((labels, value));
        }
        Ok(m)
    }

    /// Sum of a metric's samples whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples.get(name).map_or(0.0, |all| {
            all.iter()
                .filter(|(l, _)| {
                    labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
                })
                .map(|(_, v)| v)
                .sum()
        })
    }
}

/// A workload for librdkafka's mock cluster: the default one puts most of its records on
/// its episode videos' partitions, and the mock keeps only about 5 MB per partition.
pub fn flat_workload(seed: u64, events: u64) -> Vec<EventRecord> {
    let w = trendwatch_loadgen::Workload {
        seed,
        videos: 20_000,
        events,
        duration_ms: 900_000,
        episodes: 3,
        decoys_per_class: 1,
        zipf: 0.6,
        ..trendwatch_loadgen::Workload::default()
    };
    trendwatch_loadgen::generate(&w, |_, _| {}).0
}

/// Fails, saying why, when a partition of `records` would not fit in the mock cluster,
/// which silently deletes a partition's oldest records beyond about 5 MB.
pub fn assert_fits_mock(records: &[RawRecord], partitions: i32) {
    const BUDGET: usize = 4_500_000;
    let mut bytes = vec![0usize; partitions as usize];
    for (k, v) in records {
        let p = partition_for(
            Partitioner::Crc32,
            k.as_deref().unwrap_or_default(),
            partitions as u32,
        );
        // Value, key and about 70 bytes of record and batch overhead.
        bytes[p as usize] += v.len() + k.as_ref().map_or(0, Vec::len) + 70;
    }
    let most = bytes.iter().max().copied().unwrap_or(0);
    assert!(
        most < BUDGET,
        "a partition would hold {most} bytes; the mock cluster keeps about 5 MB per partition: use fewer events or more partitions"
    );
}

/// A small, fast workload from the load generator: a few thousand videos over an hour of
/// event time with viral episodes, decoys, disorder, late and duplicate deliveries.
pub fn workload(seed: u64, events: u64) -> Vec<EventRecord> {
    let w = trendwatch_loadgen::Workload {
        seed,
        videos: 3_000,
        events,
        duration_ms: 3_600_000,
        episodes: 8,
        decoys_per_class: 3,
        ..trendwatch_loadgen::Workload::default()
    };
    trendwatch_loadgen::generate(&w, |_, _| {}).0
}
