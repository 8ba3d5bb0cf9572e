//! The Kafka side of the command line: `run`, `rank`, `leaderboard`, `alerts tail`,
//! `publish`, `topics create` and
//! the load generator's Kafka mode. Each parses nothing itself: `main` hands it a loaded
//! configuration and the flags it owns.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use trendwatch_config::Config;
use trendwatch_proto::files::{Format, RecordReader};
use trendwatch_runtime::board::{BoardOptions, watch};
use trendwatch_runtime::client::{all_topics, ensure_topics};
use trendwatch_runtime::health::{self, Health};
use trendwatch_runtime::publish::{PublishOptions, PublishSummary, publish};
use trendwatch_runtime::tail::{TailOptions, tail};
use trendwatch_runtime::{api, counter, ranker, telemetry};

/// Flags every Kafka command accepts; they override the file and the environment.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct KafkaFlags {
    /// A TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers (overrides kafka."bootstrap.servers").
    #[arg(long, env = "TRENDWATCH_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
}

/// Flags of `trendwatch run`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RunFlags {
    /// Kafka connection and configuration file.
    #[command(flatten)]
    pub kafka: KafkaFlags,
    /// Address of /metrics, /healthz and /readyz (overrides telemetry.metrics_addr).
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Form of the events: protobuf, json, confluent-protobuf or confluent-json (Confluent
    /// Schema Registry framing); overrides counter.input_format.
    #[arg(long)]
    pub input_format: Option<String>,
    /// Form of the alerts: protobuf or json (overrides counter.output_format).
    #[arg(long)]
    pub output_format: Option<String>,
    /// Consumer group (overrides counter.group_id).
    #[arg(long)]
    pub group_id: Option<String>,
    /// Logs as JSON lines (overrides telemetry.log_format).
    #[arg(long)]
    pub log_json: bool,
}

/// Loads defaults ← file ← environment ← these flags, and validates the result.
pub fn load(flags: &KafkaFlags) -> anyhow::Result<Config> {
    let mut config = Config::load(flags.config.as_deref(), std::env::vars())?;
    if let Some(bs) = &flags.bootstrap_servers {
        config.kafka.insert("bootstrap.servers".into(), bs.clone());
    }
    Ok(config)
}

fn load_run(flags: &RunFlags) -> anyhow::Result<Config> {
    let mut config = load(&flags.kafka)?;
    if let Some(a) = flags.metrics_addr {
        config.telemetry.metrics_addr = a;
    }
    if let Some(f) = &flags.input_format {
        config.counter.input_format = f.parse::<trendwatch_proto::InputFormat>()?;
    }
    if let Some(f) = &flags.output_format {
        config.counter.output_format = f.parse::<Format>()?;
    }
    if let Some(g) = &flags.group_id {
        config.counter.group_id = g.clone();
    }
    if flags.log_json {
        config.telemetry.log_format = trendwatch_config::LogFormat::Json;
    }
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n  {}", e.join("\n  ")))?;
    Ok(config)
}

/// A token cancelled by SIGINT or SIGTERM.
async fn signals(token: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term => tracing::info!("SIGTERM: shutting down"),
        _ = token.cancelled() => {}
    }
    token.cancel();
}

/// A token cancelled by SIGINT or SIGTERM, for the synchronous tools.
pub fn shutdown_on_signals() -> CancellationToken {
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(signals(token));
        }
    });
    shutdown
}

/// `trendwatch run`: the counter with its metrics listener, until SIGINT/SIGTERM.
pub fn run_counter(flags: &RunFlags) -> anyhow::Result<()> {
    let config = load_run(flags)?;
    let drain = config.counter.shutdown_timeout;
    serve(config, drain, "counter", Kind::Counter)
}

/// Flags of `trendwatch rank`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RankFlags {
    /// Kafka connection and configuration file.
    #[command(flatten)]
    pub kafka: KafkaFlags,
    /// Address of /metrics, /healthz and /readyz (overrides telemetry.metrics_addr).
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Consumer group (overrides ranker.group_id).
    #[arg(long)]
    pub group_id: Option<String>,
    /// Form of the boards: protobuf or json (overrides ranker.output_format).
    #[arg(long)]
    pub output_format: Option<String>,
    /// Logs as JSON lines (overrides telemetry.log_format).
    #[arg(long)]
    pub log_json: bool,
}

/// `trendwatch rank`: the ranker with its metrics listener, until SIGINT/SIGTERM.
pub fn run_ranker(flags: &RankFlags) -> anyhow::Result<()> {
    let mut config = load(&flags.kafka)?;
    if let Some(a) = flags.metrics_addr {
        config.telemetry.metrics_addr = a;
    }
    if let Some(g) = &flags.group_id {
        config.ranker.group_id = g.clone();
    }
    if let Some(f) = &flags.output_format {
        config.ranker.output_format = f.parse::<Format>()?;
    }
    if flags.log_json {
        config.telemetry.log_format = trendwatch_config::LogFormat::Json;
    }
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n  {}", e.join("\n  ")))?;
    let drain = config.ranker.shutdown_timeout;
    serve(config, drain, "ranker", Kind::Ranker)
}

/// Which service [`serve`] runs.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Counter,
    Ranker,
}

/// Runs a service on a blocking thread beside its metrics listener (which serves its query
/// API too) until SIGINT/SIGTERM, then gives it `drain` to finish.
fn serve(config: Config, drain: Duration, name: &'static str, kind: Kind) -> anyhow::Result<()> {
    telemetry::init_logging(&config.telemetry);
    let metrics = telemetry::install_metrics()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let health = Health::new();
        let listener = health::bind(config.telemetry.metrics_addr).await?;
        let addr = listener.addr;
        let token = shutdown.clone();
        let (routes, service): (_, Box<dyn FnOnce() -> trendwatch_runtime::Result<()> + Send>) =
            match kind {
                Kind::Counter => {
                    let (routes, end) = api::counter_api(&config, addr);
                    let health = Arc::clone(&health);
                    (routes, Box::new(move || counter::run(config, health, end, token)))
                }
                Kind::Ranker => {
                    let feed = Arc::new(api::RankerFeed::default());
                    let routes = api::ranker_router(Arc::clone(&feed), shutdown.clone());
                    let health = Arc::clone(&health);
                    (routes, Box::new(move || ranker::run(config, health, feed, token)))
                }
            };
        let server = health::serve(listener, health, metrics, routes, shutdown.clone());
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz and the query API (/v1/)");
        tokio::spawn(signals(shutdown.clone()));
        let mut service = tokio::task::spawn_blocking(service);
        let outcome = tokio::select! {
            r = &mut service => r,
            _ = shutdown.cancelled() => {
                match tokio::time::timeout(drain, &mut service).await {
                    Ok(r) => r,
                    Err(_) => {
                        anyhow::bail!("shutdown took longer than {drain:?}; exiting without a final checkpoint (the last one stands)");
                    }
                }
            }
        };
        shutdown.cancel();
        let _ = server.await;
        outcome.with_context(|| format!("the {name} thread panicked"))??;
        Ok(())
    })
}

/// Flags of `trendwatch leaderboard`.
#[derive(Clone, Debug, clap::Args)]
pub struct LeaderboardFlags {
    /// Kafka connection and configuration file.
    #[command(flatten)]
    pub kafka: KafkaFlags,
    /// Leaderboard topic (default: topics.leaderboard).
    #[arg(long)]
    pub topic: Option<String>,
    /// Print the current board once and exit (non-zero if there is none).
    #[arg(long)]
    pub once: bool,
    /// JSON (the contract's form), one board per line.
    #[arg(long)]
    pub json: bool,
    /// With --once: how long to wait for a first board.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Also follow the alert topic and show the latest N alerts under the live board.
    #[arg(long, value_name = "N")]
    pub alerts: Option<usize>,
}

/// `trendwatch leaderboard`.
pub fn leaderboard(flags: &LeaderboardFlags) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let config = load(&flags.kafka)?;
    let terminal = std::io::stdout().is_terminal();
    let options = BoardOptions {
        topic: flags
            .topic
            .clone()
            .unwrap_or_else(|| config.topics.leaderboard.clone()),
        once: flags.once,
        json: flags.json,
        redraw: terminal && !flags.json && !flags.once,
        color: terminal,
        wait: flags.wait,
        alerts: flags.alerts,
    };
    let shutdown = shutdown_on_signals();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let last = watch(&config, &options, &mut out, &shutdown)?;
    if flags.once && last.is_none() {
        anyhow::bail!(
            "no board on {} within {:?} (is the ranker running, and have windows closed?)",
            options.topic,
            flags.wait
        );
    }
    Ok(())
}

/// Flags of `trendwatch alerts tail`.
#[derive(Clone, Debug, clap::Args)]
pub struct TailFlags {
    /// Kafka connection and configuration file.
    #[command(flatten)]
    pub kafka: KafkaFlags,
    /// Alert topic (default: topics.alerts).
    #[arg(long)]
    pub topic: Option<String>,
    /// Start with the oldest alert on the topic.
    #[arg(long)]
    pub from_beginning: bool,
    /// Print NDJSON (the contract's JSON form) instead of table lines.
    #[arg(long)]
    pub json: bool,
    /// Only alerts of this type (repeatable): TRENDING, VIRAL_VELOCITY, ..._ENDED.
    #[arg(long = "type")]
    pub types: Vec<String>,
    /// Only alerts about this video.
    #[arg(long)]
    pub video: Option<String>,
    /// Stop after this many alerts.
    #[arg(long)]
    pub max: Option<u64>,
    /// Stop after this long without a new alert (e.g. "5s").
    #[arg(long, value_parser = humantime::parse_duration)]
    pub idle_exit: Option<Duration>,
}

/// `trendwatch alerts tail`.
pub fn alerts_tail(flags: &TailFlags) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let config = load(&flags.kafka)?;
    let types = flags
        .types
        .iter()
        .map(|t| {
            serde_json::from_value(serde_json::Value::String(t.to_ascii_uppercase()))
                .with_context(|| format!("unknown alert type {t:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let options = TailOptions {
        topic: flags
            .topic
            .clone()
            .unwrap_or_else(|| config.topics.alerts.clone()),
        from_beginning: flags.from_beginning,
        json: flags.json,
        color: std::io::stdout().is_terminal(),
        types,
        video: flags.video.clone(),
        max: flags.max,
        idle_exit: flags.idle_exit,
    };
    let shutdown = shutdown_on_signals();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    tail(&config, &options, &mut out, &shutdown)?;
    Ok(())
}

/// Flags of `trendwatch publish` and of the load generator's Kafka mode.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct PublishFlags {
    /// Kafka connection and configuration file.
    #[command(flatten)]
    pub kafka: KafkaFlags,
    /// Topic to write (default: topics.events).
    #[arg(long)]
    pub topic: Option<String>,
    /// Records per second (default: as fast as the broker takes them).
    #[arg(long)]
    pub publish_rate: Option<f64>,
    /// Create the counter's topics first if they are missing, with this many partitions.
    #[arg(long)]
    pub create_topics: Option<i32>,
}

/// Publishes the records of an event file (`.pb` or `.jsonl`, sent in the form they are
/// in), keyed by video id.
pub fn publish_file(flags: &PublishFlags, input: &Path) -> anyhow::Result<PublishSummary> {
    let config = load(&flags.kafka)?;
    if let Some(partitions) = flags.create_topics {
        let created = ensure_topics(&config, &all_topics(&config, partitions))?;
        if !created.is_empty() {
            eprintln!("created topics {}", created.join(", "));
        }
    }
    let topic = flags
        .topic
        .clone()
        .unwrap_or_else(|| config.topics.events.clone());
    let format = Format::from_path(input)?;
    // The whole file is read first, so the publish rate is the broker's, not the disk's.
    let events = trendwatch_proto::files::read_event_file(input)?;
    let mut reader = RecordReader::open_as(input, format)?;
    let mut raw = Vec::with_capacity(events.len());
    while let Some(bytes) = reader.next_record()? {
        raw.push(bytes.to_vec());
    }
    let records = events
        .iter()
        .zip(raw)
        .map(|(e, bytes)| (Some(e.video_id.as_bytes()), bytes));
    let options = PublishOptions {
        rate: flags.publish_rate,
        progress: true,
    };
    let shutdown = CancellationToken::new();
    let summary = publish(
        &config,
        &topic,
        records,
        events.len() as u64,
        &options,
        &shutdown,
    )?;
    Ok(summary)
}

/// `trendwatch topics create`: the counter's and the ranker's topics, if missing.
pub fn topics_create(flags: &KafkaFlags, partitions: i32) -> anyhow::Result<()> {
    let config = load(flags)?;
    let created = ensure_topics(&config, &all_topics(&config, partitions))?;
    if created.is_empty() {
        println!("all topics exist");
    } else {
        println!("created {}", created.join(", "));
    }
    Ok(())
}

/// `trendwatch health`: GET `path` from `addr`; Ok when the answer is 200.
pub fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut bytes = Vec::new();
    let read = stream.read_to_end(&mut bytes);
    if bytes.is_empty() {
        read.with_context(|| format!("reading the answer of {addr}{path}"))?;
    }
    let response = String::from_utf8_lossy(&bytes);
    let status = response.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        let body = response
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b.trim());
        anyhow::bail!("{addr}{path}: {status} {body}")
    }
}
