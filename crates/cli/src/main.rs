//! `trendwatch`: one command line for every tool and service.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;
use trendwatch_cli::backtest::{self, Score};
use trendwatch_cli::oracle::{BLIP_SAFE_LIKES, ORACLE_LIKES, OracleBaseline};
use trendwatch_cli::poisson::{PoissonBaseline, PoissonParams};
use trendwatch_cli::replay::{self, ReplayTotals};
use trendwatch_cli::report::{self, LikeSeries, ReportInput};
use trendwatch_cli::service::{
    self, KafkaFlags, LeaderboardFlags, PublishFlags, RankFlags, RunFlags, TailFlags,
};
use trendwatch_config::{Config, ConfigError, Partitioner};
use trendwatch_loadgen::{GroundTruth, LoadgenArgs};
use trendwatch_proto::files::Format;

#[derive(Parser)]
#[command(
    name = "trendwatch",
    version,
    about = "Real-time trending and viral-velocity detection"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine over an event file; with --truth, score it (a backtest).
    Replay(ReplayArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Generate a workload with ground truth (same options as trendwatch-loadgen); with
    /// --publish, also publish it to the events topic.
    Loadgen(LoadgenCmd),
    /// Run the counter service: consume events, count, alert, checkpoint (until SIGTERM).
    Run(RunFlags),
    /// Run the ranker service: merge the counters' candidates into the global board per
    /// window, publish it and its alerts (until SIGTERM).
    Rank(RankFlags),
    /// Show the global board: live, redrawn at every window, or --once (--json) for scripts.
    Leaderboard(LeaderboardFlags),
    /// Alert topic tools.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// Publish an event file (`.pb` or `.jsonl`) to the events topic, keyed by video id.
    Publish {
        /// The event file.
        #[arg(long)]
        input: PathBuf,
        #[command(flatten)]
        flags: PublishFlags,
    },
    /// Probe a service's HTTP endpoint (for container health checks): exit 0 when it
    /// answers 200, else 1 with the reason.
    Health {
        /// The listener (telemetry.metrics_addr of the service).
        #[arg(long, default_value = "127.0.0.1:9464")]
        addr: std::net::SocketAddr,
        /// /healthz (alive) or /readyz (caught up).
        #[arg(long, default_value = "/healthz")]
        path: String,
        /// Give up after this long.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Topic tools.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Performance tools (the broker benchmark's yardsticks).
    Perf {
        #[command(subcommand)]
        command: PerfCommand,
    },
}

#[derive(Subcommand)]
enum PerfCommand {
    /// A bare consumer: join a group, read N records, print throughput and CPU as JSON.
    Consume {
        #[command(flatten)]
        flags: KafkaFlags,
        /// Topic (default: topics.events).
        #[arg(long)]
        topic: Option<String>,
        /// Consumer group (default: a fresh one).
        #[arg(long)]
        group: Option<String>,
        /// Records to read.
        #[arg(long)]
        records: u64,
        /// Give up after this long.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Run librdkafka's in-process mock cluster; prints its bootstrap servers, serves
    /// until Ctrl-C, and makes trouble on command from stdin, one per line: `down B`,
    /// `up B`, `errors API ERROR [N]`, `rtt B MS`, `leader TOPIC B` (each answered on stdout
    /// with `ok …`).
    MockCluster {
        /// Brokers in the cluster.
        #[arg(long, default_value_t = 1)]
        brokers: i32,
        /// Topics to create (comma-separated; the mock cluster does not serve CreateTopics).
        #[arg(long, value_delimiter = ',')]
        topics: Vec<String>,
        /// Partitions of each created topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
    },
    /// Delay from each alert's source record to the alert, over the alert topic (JSON).
    AlertDelay {
        #[command(flatten)]
        flags: KafkaFlags,
        /// Alert topic (default: topics.alerts).
        #[arg(long)]
        topic: Option<String>,
        /// Stop reading after this long without an alert.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        quiet: std::time::Duration,
    },
}

#[derive(clap::Args)]
struct LoadgenCmd {
    #[command(flatten)]
    args: LoadgenArgs,
    /// Publish the generated events to Kafka (see --bootstrap-servers, --publish-rate).
    #[arg(long)]
    publish: bool,
    #[command(flatten)]
    kafka: PublishFlags,
}

#[derive(Subcommand)]
enum AlertsCommand {
    /// Follow the alert topic and print alerts as they arrive.
    Tail(TailFlags),
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create the counter's and the ranker's topics (events, alerts, state compacted, dead
    /// letters, late, candidates, leaderboard and ranker state compacted) if missing.
    Create {
        #[command(flatten)]
        flags: KafkaFlags,
        /// Partitions of each created topic.
        #[arg(long, default_value_t = 6)]
        partitions: i32,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (defaults, FILE, TRENDWATCH__* environment) or
    /// every validation error.
    Check {
        /// A TOML configuration file.
        file: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Events: `.pb` (length-delimited protobuf) or `.jsonl`/`.ndjson` (JSON lines).
    #[arg(long)]
    input: PathBuf,
    /// Override the input format: protobuf or json.
    #[arg(long)]
    input_format: Option<String>,
    /// Ground truth from the load generator: report precision, recall and delays.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// A TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write the alerts here (`.pb` or `.jsonl`).
    #[arg(long)]
    alerts: Option<PathBuf>,
    /// Print one JSON object instead of the readable report.
    #[arg(long)]
    json: bool,
    /// Split events over N partitions as the events' producers would (see --partitioner).
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// The hash that places a video on one of --partitions: crc32 (librdkafka's default)
    /// or murmur2 (the Java client's). Default: topics.events_partitioner of the
    /// configuration (crc32 unless set).
    #[arg(long)]
    partitioner: Option<Partitioner>,
    /// With --truth, also score a reference model on the same events and print it beside
    /// ours. `poisson`: the per-minute point-by-point Poisson model of Gnip/Twitter
    /// (offline, perfect ordering: duplicates dropped, late events counted; net likes per
    /// video and event-time minute; a minute fires when its count c ≥ 10 and c ≥ ν + 3 ×
    /// the width of the 99% Poisson interval of ν, the previous minute's count).
    #[arg(long, value_enum)]
    baseline: Option<Baseline>,
    /// With --truth, write a self-contained HTML report here: the quality table and a
    /// chart of the video's likes per 10 s for every missed episode, false alert, late
    /// alert (over 90 s after the start) and detected episode, with the episode's start,
    /// our alert, the Poisson model's (with --baseline poisson) and ENDED marked.
    #[arg(long)]
    report: Option<PathBuf>,
    /// At most this many charts in the report: missed, false, late, then detected ones;
    /// the report says how many were left out.
    #[arg(long, default_value_t = report::DEFAULT_MAX_CHARTS)]
    report_charts: usize,
}

/// Reference models `replay --baseline` can score.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Baseline {
    /// Point-by-point Poisson, η = 3, α = 0.99, c_min = 10.
    Poisson,
}

fn load_config(file: Option<&PathBuf>) -> Result<Config, ConfigError> {
    Config::load(file.map(PathBuf::as_path), std::env::vars())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Config {
            command: ConfigCommand::Check { file },
        } => return config_check(file.as_ref()),
        Command::Loadgen(cmd) => run_loadgen(&cmd),
        Command::Replay(args) => run_replay(&args),
        Command::Run(flags) => service::run_counter(&flags),
        Command::Rank(flags) => service::run_ranker(&flags),
        Command::Leaderboard(flags) => service::leaderboard(&flags),
        Command::Alerts {
            command: AlertsCommand::Tail(flags),
        } => service::alerts_tail(&flags),
        Command::Publish { input, flags } => {
            service::publish_file(&flags, &input).map(|s| eprintln!("{s}"))
        }
        Command::Topics {
            command: TopicsCommand::Create { flags, partitions },
        } => service::topics_create(&flags, partitions),
        Command::Perf { command } => run_perf(command),
        Command::Health {
            addr,
            path,
            timeout,
        } => service::probe(addr, &path, timeout),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_loadgen(cmd: &LoadgenCmd) -> anyhow::Result<()> {
    let summary = trendwatch_loadgen::run(&cmd.args)?;
    eprintln!("{summary}");
    if cmd.publish {
        let published = service::publish_file(&cmd.kafka, &summary.events_path)?;
        eprintln!("{published}");
        if published.failed > 0 {
            anyhow::bail!("{} events were not acknowledged", published.failed);
        }
    }
    Ok(())
}

fn run_perf(command: PerfCommand) -> anyhow::Result<()> {
    use trendwatch_runtime::perf;
    match command {
        PerfCommand::Consume {
            flags,
            topic,
            group,
            records,
            timeout,
        } => {
            let config = service::load(&flags)?;
            let topic = topic.unwrap_or_else(|| config.topics.events.clone());
            let group = group.unwrap_or_else(|| format!("perf-{}", std::process::id()));
            let report = perf::consume(&config, &topic, &group, records, timeout)?;
            println!("{}", serde_json::to_string(&report)?);
        }
        PerfCommand::MockCluster {
            brokers,
            topics,
            partitions,
        } => {
            let shutdown = service::shutdown_on_signals();
            let (send, commands) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::stdin().lines().map_while(Result::ok) {
                    if send.send(line).is_err() {
                        break;
                    }
                }
            });
            let flush = || {
                use std::io::Write;
                let _ = std::io::stdout().flush();
            };
            perf::mock_cluster(
                brokers,
                &topics,
                partitions,
                &shutdown,
                &commands,
                |bootstrap| {
                    println!("{bootstrap}");
                    flush();
                },
                |answer| {
                    match answer {
                        Ok(done) => println!("ok {done}"),
                        Err(e) => eprintln!("error: {e}"),
                    }
                    flush();
                },
            )?;
        }
        PerfCommand::AlertDelay {
            flags,
            topic,
            quiet,
        } => {
            let config = service::load(&flags)?;
            let topic = topic.unwrap_or_else(|| config.topics.alerts.clone());
            let report = perf::alert_delays(&config, &topic, quiet)?;
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}

fn config_check(file: Option<&PathBuf>) -> ExitCode {
    match load_config(file) {
        Ok(c) => match trendwatch_runtime::client::check_properties(&c) {
            Ok(()) => {
                print!("{}", c.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Err(ConfigError::Invalid(errors)) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_replay(args: &ReplayArgs) -> anyhow::Result<()> {
    let mut config = load_config(args.config.as_ref())?;
    if let Some(p) = args.partitioner {
        config.topics.events_partitioner = p;
    }
    let format = args
        .input_format
        .as_deref()
        .map(str::parse::<Format>)
        .transpose()?;
    let truth: Option<GroundTruth> = match &args.truth {
        Some(p) => Some(
            serde_json::from_slice(
                &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("{}: not a ground-truth file", p.display()))?,
        ),
        None => None,
    };
    anyhow::ensure!(
        args.baseline.is_none() || truth.is_some(),
        "--baseline needs --truth: a reference model is only scored"
    );
    anyhow::ensure!(
        args.report.is_none() || truth.is_some(),
        "--report needs --truth: the report charts the ground truth's episodes and the alerts scored against them"
    );
    let mut poisson = args
        .baseline
        .map(|Baseline::Poisson| PoissonBaseline::new(PoissonParams::default()));
    // Beside the reference model, the physical limit: an oracle that knows the episodes.
    let mut oracle = match (&poisson, &truth) {
        (Some(_), Some(t)) => Some(OracleBaseline::new(t, ORACLE_LIKES)),
        _ => None,
    };
    let result = replay::replay_observed(&args.input, format, args.partitions, &config, |e| {
        if let Some(p) = poisson.as_mut() {
            p.observe(e);
        }
        if let Some(o) = oracle.as_mut() {
            o.observe(e);
        }
    })?;
    if let Some(path) = &args.alerts {
        replay::write_alerts(path, &result.alerts)?;
    }
    let score = truth.as_ref().map(|t| backtest::score(&result.alerts, t));
    let poisson_episodes = poisson.map(PoissonBaseline::alert_episodes);
    let baseline = match (&poisson_episodes, truth.as_ref()) {
        (Some(p), Some(t)) => Some(backtest::score_episodes(p, &[], t)),
        _ => None,
    };
    let written = match (&args.report, truth.as_ref(), score.as_ref()) {
        (Some(path), Some(t), Some(s)) => Some(write_report(
            path,
            args,
            format,
            &config,
            ReportParts {
                truth: t,
                result: &result,
                ours: s,
                poisson: poisson_episodes.as_deref().zip(baseline.as_ref()),
            },
        )?),
        _ => None,
    };
    if args.json {
        let mut out = json!({ "replay": result.totals, "backtest": score });
        if let Some(w) = &written {
            out["report"] = json!(w);
        }
        if let Some(b) = &baseline {
            out["baseline"] = json!(b);
            out["baseline_model"] = json!("poisson");
        }
        if let (Some(mut o), Some(t)) = (oracle, truth.as_ref()) {
            let blip_safe = o.alert_episodes_at(t, BLIP_SAFE_LIKES);
            out["oracle_blip_safe"] = json!(backtest::score_episodes(&blip_safe, &[], t));
            out["oracle_blip_safe_likes"] = json!(BLIP_SAFE_LIKES);
            out["oracle"] = json!(backtest::score_episodes(&o.alert_episodes(t), &[], t));
            out["oracle_likes"] = json!(ORACLE_LIKES);
        }
        println!("{out}");
    } else {
        print_report(&result.totals, score.as_ref(), baseline.as_ref());
        if let (Some(mut o), Some(t)) = (oracle, truth.as_ref()) {
            let blip_safe =
                backtest::score_episodes(&o.alert_episodes_at(t, BLIP_SAFE_LIKES), &[], t);
            let limit = backtest::score_episodes(&o.alert_episodes(t), &[], t);
            println!(
                "  physical limit (an oracle deciding at the {ORACLE_LIKES}th like from each start): median {}, p90 {}",
                opt(limit.overall.median_delay_s),
                opt(limit.overall.p90_delay_s)
            );
            for (shape, d) in &limit.by_shape {
                println!(
                    "    {shape:<11} median {}, p90 {}",
                    opt(d.median_delay_s),
                    opt(d.p90_delay_s)
                );
            }
            println!(
                "  blip-safe limit of like counts alone (the oracle at the {BLIP_SAFE_LIKES}th like: one more than the largest blip): median {}, p90 {}",
                opt(blip_safe.overall.median_delay_s),
                opt(blip_safe.overall.p90_delay_s)
            );
        }
    }
    Ok(())
}

/// What went into a report besides the flags.
struct ReportParts<'a> {
    truth: &'a GroundTruth,
    result: &'a replay::Replay,
    ours: &'a Score,
    /// The Poisson model's alert episodes and figures, when it was scored.
    poisson: Option<(&'a [backtest::AlertEpisode], &'a Score)>,
}

/// What `--report` wrote, for the JSON output and the terminal.
#[derive(serde::Serialize)]
struct ReportWritten {
    path: PathBuf,
    bytes: u64,
    charts: usize,
    left_out: u64,
    seconds: f64,
}

/// Plans the report's charts, reads the file once more for the charted videos' likes
/// only (they are known once the replay is scored, and a chart needs the minutes before
/// an alert, which no bounded buffer of every video could keep), and writes the page.
fn write_report(
    path: &std::path::Path,
    args: &ReplayArgs,
    format: Option<Format>,
    config: &Config,
    parts: ReportParts<'_>,
) -> anyhow::Result<ReportWritten> {
    let started = std::time::Instant::now();
    let plan = report::plan(
        parts.truth,
        &parts.result.alerts,
        parts.poisson.map(|(episodes, _)| episodes),
        args.report_charts,
    );
    let mut likes = LikeSeries::for_plan(&plan);
    replay::read_accepted(&args.input, format, config, |e| likes.observe(e))?;
    let html = report::render(&ReportInput {
        input_name: &args.input.display().to_string(),
        totals: &parts.result.totals,
        truth: parts.truth,
        ours: parts.ours,
        poisson: parts.poisson.map(|(_, score)| score),
        plan: &plan,
        likes: &likes,
    });
    std::fs::write(path, &html).with_context(|| format!("writing {}", path.display()))?;
    let written = ReportWritten {
        path: path.to_path_buf(),
        bytes: html.len() as u64,
        charts: plan.charts.len(),
        left_out: plan.left_out_total(),
        seconds: started.elapsed().as_secs_f64(),
    };
    eprintln!(
        "wrote the report to {} ({:.1} KB, {} charts, {} left out) in {:.2}s",
        path.display(),
        written.bytes as f64 / 1e3,
        written.charts,
        written.left_out,
        written.seconds
    );
    Ok(written)
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.1}s"))
}

fn print_report(t: &ReplayTotals, score: Option<&Score>, baseline: Option<&Score>) {
    let rejected: u64 = t.rejected.values().sum();
    let counted: u64 = t.counted.values().sum();
    println!(
        "replayed {} events over {} partition(s) placed by {} in {:.2}s ({:.2}M events/s, read + decode + validate + apply)",
        t.events_read,
        t.partitions,
        t.partitioner,
        t.seconds,
        t.events_per_second / 1e6
    );
    println!(
        "  counted {counted} {:?}; duplicates {}; late {}; rejected {rejected} {:?}; untracked {}",
        t.counted, t.duplicates, t.late, t.rejected, t.untracked
    );
    println!(
        "  tracked videos {}; state {:.1} MB; evicted {}; expired {}",
        t.tracked_videos,
        t.state_bytes as f64 / 1e6,
        t.evicted,
        t.expired
    );
    println!("  alerts {:?}", t.alerts);
    if let Some(s) = score {
        // Ours, and the reference model's beside it when there is one.
        let beside = |f: &dyn Fn(&Score) -> String| {
            baseline.map_or_else(String::new, |b| format!("   | poisson: {}", f(b)))
        };
        println!(
            "backtest: precision {:.3} ({} of {} alert episodes match), recall {:.3} ({} of {} episodes){}",
            s.precision,
            s.matched_alert_episodes,
            s.alert_episodes,
            s.recall,
            s.overall.detected,
            s.overall.episodes,
            beside(&|b| format!(
                "precision {:.3} ({}/{}), recall {:.3}",
                b.precision, b.matched_alert_episodes, b.alert_episodes, b.recall
            ))
        );
        let delays = |d: &backtest::Detection| {
            format!(
                "median {}, p90 {}, max {}",
                opt(d.median_delay_s),
                opt(d.p90_delay_s),
                opt(d.max_delay_s)
            )
        };
        println!(
            "  delay from 10% of peak: {}{}",
            delays(&s.overall),
            beside(&|b| delays(&b.overall))
        );
        for (shape, d) in &s.by_shape {
            let line = |d: &backtest::Detection| {
                format!(
                    "{}/{} detected, median {}, p90 {}",
                    d.detected,
                    d.episodes,
                    opt(d.median_delay_s),
                    opt(d.p90_delay_s)
                )
            };
            println!(
                "  {shape:11} {}{}",
                line(d),
                beside(&|b| b.by_shape.get(shape).map_or_else(String::new, line))
            );
        }
        println!(
            "  TRENDING: {} alerts, {} on episode videos (precision {:.3}), {} on view-bot decoys; on {} videos, {} of them episode videos",
            s.trending_alerts,
            s.trending_alerts_on_episode_videos,
            s.trending_precision,
            s.trending_on_view_bots,
            s.trending_videos,
            s.trending_episode_videos
        );
        for (class, d) in &s.decoys {
            println!(
                "  decoys {class:15} {:3}: {} VIRAL_VELOCITY, {} TRENDING{}",
                d.decoys,
                d.viral_velocity,
                d.trending,
                beside(&|b| format!(
                    "{} alert episodes",
                    b.decoys.get(class).map_or(0, |x| x.viral_velocity)
                ))
            );
        }
    }
}
