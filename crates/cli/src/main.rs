//! `trendwatch`: one command line for every tool and (soon) service.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;
use trendwatch_cli::backtest::{self, Score};
use trendwatch_cli::replay::{self, ReplayTotals};
use trendwatch_config::{Config, ConfigError};
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
    /// Generate a workload with ground truth (same options as trendwatch-loadgen).
    Loadgen(LoadgenArgs),
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
    /// Split events over N partitions as Kafka's default partitioner would.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
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
        Command::Loadgen(args) => trendwatch_loadgen::run(&args).map(|s| eprintln!("{s}")),
        Command::Replay(args) => run_replay(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_check(file: Option<&PathBuf>) -> ExitCode {
    match load_config(file) {
        Ok(c) => {
            print!("{}", c.to_toml());
            ExitCode::SUCCESS
        }
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
    let config = load_config(args.config.as_ref())?;
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
    let result = replay::replay(&args.input, format, args.partitions, &config)?;
    if let Some(path) = &args.alerts {
        replay::write_alerts(path, &result.alerts)?;
    }
    let score = truth.as_ref().map(|t| backtest::score(&result.alerts, t));
    if args.json {
        println!("{}", json!({ "replay": result.totals, "backtest": score }));
    } else {
        print_report(&result.totals, score.as_ref());
    }
    Ok(())
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.1}s"))
}

fn print_report(t: &ReplayTotals, score: Option<&Score>) {
    let rejected: u64 = t.rejected.values().sum();
    let counted: u64 = t.counted.values().sum();
    println!(
        "replayed {} events over {} partition(s) in {:.2}s ({:.2}M events/s, read + decode + validate + apply)",
        t.events_read,
        t.partitions,
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
        println!(
            "backtest: precision {:.3} ({} of {} alert episodes match), recall {:.3} ({} of {} episodes)",
            s.precision,
            s.matched_alert_episodes,
            s.alert_episodes,
            s.recall,
            s.overall.detected,
            s.overall.episodes
        );
        println!(
            "  delay from 10% of peak: median {}, p90 {}, max {}",
            opt(s.overall.median_delay_s),
            opt(s.overall.p90_delay_s),
            opt(s.overall.max_delay_s)
        );
        for (shape, d) in &s.by_shape {
            println!(
                "  {shape:6} {}/{} detected, median {}, p90 {}",
                d.detected,
                d.episodes,
                opt(d.median_delay_s),
                opt(d.p90_delay_s)
            );
        }
        println!(
            "  TRENDING on {} videos, {} of them episode videos",
            s.trending_videos, s.trending_episode_videos
        );
        for (class, d) in &s.decoys {
            println!(
                "  decoys {class:15} {:3}: {} VIRAL_VELOCITY, {} TRENDING",
                d.decoys, d.viral_velocity, d.trending
            );
        }
    }
}
