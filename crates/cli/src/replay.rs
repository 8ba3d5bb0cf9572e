//! `trendwatch replay`: the exact engine over an event file.
//!
//! Records are decoded and validated as the service will (rejections counted by reason),
//! split over partitions by `topics.events_partitioner` (CRC-32 as librdkafka's default
//! partitioner, or murmur2 as the Java client's; `--partitioner` overrides it), applied in
//! file order per
//! partition, and every partition is finished at the end (windows close, episodes end).
//! Alerts come out partition by partition, each in emission order.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use trendwatch_config::Config;
use trendwatch_core::{Alert, EventKind, EventRef, PartitionState};
use trendwatch_proto::files::{AlertFileWriter, Format, RecordReader};
use trendwatch_proto::{AlertRecord, decode_in};

use crate::partitioner::partition_for;

/// What a replay did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplayTotals {
    /// Records read from the file.
    pub events_read: u64,
    /// Records refused, by reason code.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Events counted, by kind name.
    pub counted: BTreeMap<&'static str, u64>,
    /// Re-deliveries dropped.
    pub duplicates: u64,
    /// Events older than their partition's watermark.
    pub late: u64,
    /// Events of videos not admitted under the cap.
    pub untracked: u64,
    /// Events whose time the engine cannot represent.
    pub out_of_range: u64,
    /// Videos evicted for hotter ones.
    pub evicted: u64,
    /// Videos expired after their TTL.
    pub expired: u64,
    /// Videos tracked at the end, over all partitions.
    pub tracked_videos: u64,
    /// State bytes at the end, over all partitions.
    pub state_bytes: u64,
    /// Alerts by type name.
    pub alerts: BTreeMap<&'static str, u64>,
    /// Partitions replayed.
    pub partitions: u32,
    /// The hash that placed each video on one of them (`crc32` or `murmur2`).
    pub partitioner: &'static str,
    /// Seconds spent reading, decoding, validating and applying.
    pub seconds: f64,
    /// `events_read / seconds`.
    pub events_per_second: f64,
}

/// The result of a replay: totals and every alert.
pub struct Replay {
    /// Tallies.
    pub totals: ReplayTotals,
    /// Every alert, partition by partition in emission order.
    pub alerts: Vec<Alert>,
}

/// Wall clock in ms (validation's notion of "now" for the future-skew check).
pub use trendwatch_runtime::wall_ms;

/// Replays `input` (in `format`, or the one its name implies) through `partitions`
/// partition states configured by `config`, each event on the partition
/// `config.topics.events_partitioner` puts its video on.
pub fn replay(
    input: &Path,
    format: Option<Format>,
    partitions: u32,
    config: &Config,
) -> anyhow::Result<Replay> {
    replay_observed(input, format, partitions, config, |_| {})
}

/// [`replay`], showing every accepted event (in file order, before the engine sees it) to
/// `observe` too: how a reference model reads the same events in the same pass.
pub fn replay_observed(
    input: &Path,
    format: Option<Format>,
    partitions: u32,
    config: &Config,
    mut observe: impl FnMut(&EventRef<'_>),
) -> anyhow::Result<Replay> {
    let format = match format {
        Some(f) => f,
        None => Format::from_path(input)?,
    };
    let partitions = partitions.max(1);
    let partitioner = config.topics.events_partitioner;
    let mut states = (0..partitions)
        .map(|_| PartitionState::new(config.engine.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut outs: Vec<Vec<Alert>> = (0..partitions).map(|_| Vec::new()).collect();
    let mut totals = ReplayTotals {
        partitions,
        partitioner: partitioner.as_str(),
        ..ReplayTotals::default()
    };
    let started = Instant::now();
    let mut rejected = BTreeMap::new();
    totals.events_read = each_accepted(
        input,
        format,
        config,
        |reason| *rejected.entry(reason).or_default() += 1,
        |event| {
            observe(event);
            let p = partition_for(partitioner, event.video_id.as_bytes(), partitions) as usize;
            // Verdicts are tallied by the state itself; the replay reads them from its stats.
            states[p].apply(event, &mut outs[p]);
        },
    )?;
    totals.rejected = rejected;
    for (state, out) in states.iter_mut().zip(outs.iter_mut()) {
        state.finish(out);
    }
    totals.seconds = started.elapsed().as_secs_f64();
    totals.events_per_second = totals.events_read as f64 / totals.seconds.max(1e-9);
    for state in &states {
        let s = state.stats();
        for kind in EventKind::ALL {
            *totals.counted.entry(kind.as_str()).or_default() += s.counted[kind.index()];
        }
        totals.duplicates += s.duplicates;
        totals.late += s.late;
        totals.untracked += s.untracked;
        totals.out_of_range += s.out_of_range;
        totals.evicted += s.evicted;
        totals.expired += s.expired;
        totals.tracked_videos += state.tracked_videos() as u64;
        totals.state_bytes += state.memory_bytes() as u64;
    }
    let alerts: Vec<Alert> = outs.into_iter().flatten().collect();
    for a in &alerts {
        *totals.alerts.entry(a.alert_type.as_str()).or_default() += 1;
    }
    Ok(Replay { totals, alerts })
}

/// Reads `input` (in `format`, or the one its name implies) and shows `observe` every
/// event a replay would accept, in file order, without running the engine: the same
/// decoding and validation as [`replay`], so a second look at a file (the backtest report's
/// like series) sees exactly the events the replay counted. Returns the records read.
pub fn read_accepted(
    input: &Path,
    format: Option<Format>,
    config: &Config,
    observe: impl FnMut(&EventRef<'_>),
) -> anyhow::Result<u64> {
    let format = match format {
        Some(f) => f,
        None => Format::from_path(input)?,
    };
    each_accepted(input, format, config, |_| {}, observe)
}

/// The one loop over a file's records: decodes and validates each as the service would,
/// names every refusal to `rejected` and hands every accepted event to `accepted`.
fn each_accepted(
    input: &Path,
    format: Format,
    config: &Config,
    mut rejected: impl FnMut(&'static str),
    mut accepted: impl FnMut(&EventRef<'_>),
) -> anyhow::Result<u64> {
    let mut reader = RecordReader::open_as(input, format)?;
    let now = wall_ms();
    let mut read = 0;
    while let Some(bytes) = reader.next_record()? {
        read += 1;
        let decoded = match decode_in(bytes, format, &config.validation) {
            Ok(d) => d,
            Err(r) => {
                rejected(r.reason());
                continue;
            }
        };
        match decoded.validate(now, &config.validation) {
            Ok(event) => accepted(&event),
            Err(r) => rejected(r.reason()),
        }
    }
    Ok(read)
}

/// Writes alerts to `path` in the form its name implies, stamped `emitted_at` = now.
pub fn write_alerts(path: &Path, alerts: &[Alert]) -> anyhow::Result<()> {
    let now = wall_ms();
    let mut w = AlertFileWriter::create(path)?;
    for a in alerts {
        w.write(&AlertRecord::from_alert(a, now))?;
    }
    w.finish()?;
    Ok(())
}
