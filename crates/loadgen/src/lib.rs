//! The trendwatch load generator: deterministic, realistic engagement workloads with the
//! ground truth to score a detector against.
//!
//! [`model`] describes the workload (Zipf popularity, per-video like shares, daily rhythm,
//! viral episodes of five shapes and sizes from 10× to 150× of normal, three classes of
//! decoys, a platform scale, disorder, late and duplicate deliveries); [`truth`] the
//! JSON written next to the events; [`run`] is the command both `trendwatch-loadgen` and
//! `trendwatch loadgen` execute.

pub mod model;
pub mod truth;

use std::fmt;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use trendwatch_proto::files::EventFileWriter;

pub use model::{Workload, generate};
pub use truth::GroundTruth;

/// Options of the load generator (flattened into both command lines).
#[derive(Clone, Debug, clap::Args)]
pub struct LoadgenArgs {
    /// Events file to write: `.pb` (length-delimited protobuf) or `.jsonl` (JSON lines).
    #[arg(long, default_value = "out/events.pb")]
    pub out: PathBuf,
    /// Ground-truth JSON to write (default: `truth.json` beside the events file).
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Distinct videos.
    #[arg(long, default_value_t = 100_000)]
    pub videos: u64,
    /// Background events at scale 1 (the run has events × scale; episodes and decoys add
    /// theirs on top). Ignored if --rate is given.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Background events per second of simulated time at scale 1; overrides --events.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Platform scale: multiplies every rate — background events, episode peaks (and
    /// their floor of 10 extra likes a minute), view-bot bursts. Like blips stay 4–8 likes
    /// in one minute at every scale (the small-count case a detector must not fire on).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Simulated time span, e.g. "2h", "90m".
    #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Event time of the start: RFC 3339 (2026-01-05T00:00:00Z) or ms since the epoch.
    #[arg(long, default_value = "2026-01-05T00:00:00Z")]
    pub start: String,
    /// Seed: the same seed and options give byte-identical files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Viral episodes to inject: shapes step, ramp (exponential, time constant 1–5 min),
    /// slow_burn (linear over 10–40 min), double_peak, spike, drawn uniformly; peak extra
    /// likes 10–150× the video's normal (half of them 10–25×), at least 10 a minute × scale.
    #[arg(long, default_value_t = 50)]
    pub episodes: u32,
    /// Decoys of each class: popular_steady (the most popular videos, steady),
    /// view_bot_burst (800–3 000 views a minute × scale for 5–15 min, no likes),
    /// cold_blip (4–8 likes within one minute on a cold video).
    #[arg(long, default_value_t = 50)]
    pub decoys: u32,
    /// The consumer's allowed lateness: late events are delayed beyond it (40 s–5 min, or
    /// from 1 s past a longer lateness); out-of-order delays (0.5–25 s) are cut to
    /// lateness − 2 s when it is shorter.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub lateness: Duration,
    /// Fraction of events delivered out of order (delayed 0.5–25 s, within the lateness).
    #[arg(long, default_value_t = 0.06)]
    pub disorder_fraction: f64,
    /// Fraction of events delivered very late (delayed 40 s–5 min, beyond the lateness).
    #[arg(long, default_value_t = 0.0025)]
    pub late_fraction: f64,
    /// Fraction of events delivered twice (0–3 s after the first copy, same id).
    #[arg(long, default_value_t = 0.01)]
    pub dup_fraction: f64,
    /// Zipf exponent of video popularity.
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Fraction of background views that start a re-watch: the same viewer watches again
    /// 1–6 times within the minute, so views come in clumps (likes do not).
    #[arg(long, default_value_t = 0.0)]
    pub rewatch_fraction: f64,
    /// Popularity ranks LO:HI (0 the most popular, HI excluded) view bots pick their videos
    /// from; 10:1000 puts them on videos that get likes of their own.
    #[arg(long, default_value = "1000:50000")]
    pub view_bot_ranks: String,
}

impl LoadgenArgs {
    /// The workload these options describe.
    pub fn workload(&self) -> anyhow::Result<Workload> {
        let start_ms = match self.start.parse::<i64>() {
            Ok(ms) => ms,
            Err(_) => {
                let t = humantime::parse_rfc3339_weak(&self.start)
                    .with_context(|| format!("--start {:?}: not RFC 3339 or ms", self.start))?;
                let since = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .context("--start before 1970")?;
                i64::try_from(since.as_millis()).context("--start out of range")?
            }
        };
        let duration_ms =
            i64::try_from(self.duration.as_millis()).context("--duration too long")?;
        anyhow::ensure!(
            duration_ms >= 60_000,
            "--duration must be at least a minute"
        );
        for (name, f) in [
            ("--disorder-fraction", self.disorder_fraction),
            ("--late-fraction", self.late_fraction),
            ("--dup-fraction", self.dup_fraction),
        ] {
            anyhow::ensure!((0.0..=0.5).contains(&f), "{name} must be between 0 and 0.5");
        }
        anyhow::ensure!(self.videos >= 100, "--videos must be at least 100");
        anyhow::ensure!(
            self.scale.is_finite() && self.scale > 0.0 && self.scale <= 1_000.0,
            "--scale must be above 0 and at most 1000"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.rewatch_fraction),
            "--rewatch-fraction must be between 0 and 1"
        );
        let view_bot_ranks = self
            .view_bot_ranks
            .split_once(':')
            .and_then(|(lo, hi)| Some((lo.trim().parse().ok()?, hi.trim().parse().ok()?)))
            .filter(|(lo, hi): &(u64, u64)| lo < hi)
            .with_context(|| {
                format!(
                    "--view-bot-ranks {:?}: want LO:HI with LO below HI, e.g. 1000:50000",
                    self.view_bot_ranks
                )
            })?;
        let events = match self.rate {
            Some(r) => (r * duration_ms as f64 / 1_000.0) as u64,
            None => self.events,
        };
        Ok(Workload {
            videos: self.videos,
            events,
            duration_ms,
            start_ms,
            seed: self.seed,
            episodes: self.episodes,
            decoys_per_class: self.decoys,
            lateness_ms: i64::try_from(self.lateness.as_millis()).unwrap_or(30_000),
            disorder_fraction: self.disorder_fraction,
            late_fraction: self.late_fraction,
            dup_fraction: self.dup_fraction,
            zipf: self.zipf,
            scale: self.scale,
            rewatch_fraction: self.rewatch_fraction,
            view_bot_ranks,
        })
    }
}

/// What a run wrote.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The events file.
    pub events_path: PathBuf,
    /// The ground-truth file.
    pub truth_path: PathBuf,
    /// The truth (with its counts).
    pub truth: GroundTruth,
    /// Size of the events file.
    pub bytes: u64,
    /// Wall time taken.
    pub elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.truth.counts;
        write!(
            f,
            "wrote {} events ({} unique, {} duplicates, {} out of order, {} late) over {} videos with {} viral episodes and {} decoys to {} ({:.1} MB) and the ground truth to {} in {:.1}s",
            c.events_written,
            c.unique_events,
            c.duplicates,
            c.out_of_order,
            c.late,
            self.truth.videos,
            self.truth.episodes.len(),
            self.truth.decoys.len(),
            self.events_path.display(),
            self.bytes as f64 / 1e6,
            self.truth_path.display(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// Generates the workload the options describe and writes the events and the truth.
pub fn run(args: &LoadgenArgs) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let workload = args.workload()?;
    let truth_path = args
        .truth
        .clone()
        .unwrap_or_else(|| args.out.with_file_name("truth.json"));
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new((workload.events as f64 * workload.scale) as u64);
        bar.set_style(
            ProgressStyle::with_template("{msg:10} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message("generating");
        bar
    } else {
        ProgressBar::hidden()
    };
    let (events, truth) = generate(&workload, |done, total| {
        bar.set_length(total.max(done));
        bar.set_position(done);
    });
    bar.set_message("writing");
    bar.set_length(events.len() as u64);
    bar.set_position(0);
    let mut writer = EventFileWriter::create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (i, e) in events.iter().enumerate() {
        writer.write(e)?;
        if i % 65_536 == 0 {
            bar.set_position(i as u64);
        }
    }
    writer.finish()?;
    bar.finish_and_clear();
    if let Some(dir) = truth_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&truth_path, serde_json::to_vec_pretty(&truth)?)
        .with_context(|| format!("writing {}", truth_path.display()))?;
    let bytes = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    Ok(Summary {
        events_path: args.out.clone(),
        truth_path,
        truth,
        bytes,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::LoadgenArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadgenArgs,
    }

    fn workload(flags: &[&str]) -> anyhow::Result<crate::Workload> {
        let cli = Cli::try_parse_from(std::iter::once("loadgen").chain(flags.iter().copied()))?;
        cli.args.workload()
    }

    #[test]
    fn rewatches_and_bot_ranks_are_read_and_checked() {
        let w = workload(&[]).unwrap();
        assert_eq!(
            (w.rewatch_fraction, w.view_bot_ranks),
            (0.0, (1_000, 50_000))
        );
        let w = workload(&["--rewatch-fraction", "0.5", "--view-bot-ranks", "10:1000"]).unwrap();
        assert_eq!((w.rewatch_fraction, w.view_bot_ranks), (0.5, (10, 1_000)));
        for (flags, says) in [
            (["--view-bot-ranks", "5:5"], "--view-bot-ranks \"5:5\""),
            (["--view-bot-ranks", "10-1000"], "want LO:HI"),
            (
                ["--rewatch-fraction", "1.5"],
                "--rewatch-fraction must be between 0 and 1",
            ),
        ] {
            let err = workload(&flags).unwrap_err().to_string();
            assert!(err.contains(says), "{flags:?}: {err}");
        }
    }
}
