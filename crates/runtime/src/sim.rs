//! Deterministic simulation of the counter's delivery decisions ([`crate::delivery`]):
//! a partition, a broker that goes away and comes back, producers that queue meanwhile,
//! and a reader, on a simulated clock driven by a seed. Each run checks what a user would
//! notice; a failing seed replays exactly (`SIM_SEED=<n>`), and `SIM_SEEDS=<n>` runs more
//! seeds than the default.

use trendwatch_core::{Alert, EngineConfig, EventKind, EventRef, PartitionState};

use crate::delivery::{IdleTick, IdleWatch, at_end_of_log, tick_partition};

/// splitmix64: a seeded generator with no dependency, good enough to pick faults.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

/// How the broker is away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Away {
    /// Connections refused: the reader reports an error every second.
    Refused,
    /// The broker is frozen: requests time out, the reader reports nothing.
    Frozen,
}

#[derive(Debug)]
struct Outcome {
    produced: u64,
    counted: u64,
    late: u64,
    idle_advances: u64,
    outages: u32,
    /// The most time the reader could not read inside the silence an idle advance counted.
    worst_unread_counted_ms: i64,
    /// What [`IdleWatch`] promises for it (see [`unread_bound`]).
    unread_bound_ms: i64,
}

/// One run: 300 s of simulated wall clock in 100 ms steps. Events carry event times that
/// run `speed` times faster than the wall clock, in order up to a jitter well inside the
/// allowed lateness, so none may end up late. The broker goes away now and then for up to
/// a minute (refused or frozen); the reader reconnects a few seconds after it is back;
/// the producers, which queued meanwhile, hand their backlog over later still — up to the
/// bound the counter promises to wait for (see [`producer_delay_bound`]). Producers also
/// pause for real, sometimes longer than the idle timeout, so the partition does go idle
/// and its watermark moves on with the clock. With `overlapping`, the broker may go away
/// again before the producers have handed over the last backlog (their wait then adds up
/// across outages, and the silence the reader sees between them is the stream's).
fn run(seed: u64, overlapping: bool) -> Outcome {
    let mut rng = Rng(seed);
    let idle_timeout_ms = [10_000, 20_000, 30_000][rng.range(0, 2) as usize];
    let lateness_ms = 5_000;
    let speed = [1, 10, 37][rng.range(0, 2) as usize];
    let tick_ms = 1_000;
    let mut config = EngineConfig::default();
    config.windows.idle_timeout = std::time::Duration::from_millis(idle_timeout_ms as u64);
    config.windows.allowed_lateness = std::time::Duration::from_millis(lateness_ms as u64);
    let mut state = PartitionState::new(config).expect("default engine configuration");
    let mut watch = IdleWatch::new(idle_timeout_ms, tick_ms, 0);
    let mut alerts: Vec<Alert> = Vec::new();

    let base = 1_767_571_200_000_i64;
    let mut log: Vec<i64> = Vec::new(); // event times, by offset
    let mut queued: Vec<i64> = Vec::new(); // the producers' backlog
    let mut read = 0usize; // the reader's position
    let mut produced = 0u64;
    let mut idle_advances = 0u64;
    let mut outages = 0u32;
    // The broker is away until `away_until`; producers and reader are back later still.
    let mut away: Option<(Away, i64)> = None;
    let mut producer_back = 0i64;
    let mut reader_back = 0i64;
    let mut pause_until = 0i64;
    // The counter's loop is blocked (a flush or a checkpoint waiting for a broker that is
    // away) until then: it neither reads nor ticks nor hears of trouble.
    let mut blocked_until = 0i64;
    let mut id = String::new();
    // When the reader could not read: closed intervals, and the one open now.
    let mut unread: Vec<(i64, i64)> = Vec::new();
    let mut unread_since: Option<i64> = None;
    let mut worst_unread_counted_ms = 0;

    let end_ms = 300_000;
    let mut now = 0i64;
    while now <= end_ms + 120_000 {
        let broker_up = away.is_none_or(|(_, until)| now >= until);
        if broker_up && away.is_some() {
            away = None;
        }
        // Faults start only in the first 300 s; the last two minutes let everything drain.
        if now < end_ms && broker_up && (overlapping || now >= producer_back) && rng.chance(0.002) {
            let kind = if rng.chance(0.5) {
                Away::Refused
            } else {
                Away::Frozen
            };
            let until = now + rng.range(1_000, 60_000);
            away = Some((kind, until));
            let bound = producer_delay_bound(kind, idle_timeout_ms, lateness_ms, tick_ms);
            producer_back = until + rng.range(0, bound);
            reader_back = until + rng.range(0, 3_000);
            outages += 1;
            if rng.chance(0.5) {
                blocked_until = now + rng.range(1_000, 25_000);
            }
        }
        if now < end_ms && now >= pause_until && rng.chance(0.003) {
            pause_until = now + rng.range(1_000, 2 * idle_timeout_ms);
        }
        let broker_up = away.is_none();
        // Producers: a few events a step unless paused, in order up to a small jitter.
        if now < end_ms && now >= pause_until {
            for _ in 0..rng.range(0, 3) {
                let jitter = rng.range(0, lateness_ms / 4);
                queued.push(base + now * speed - jitter);
                produced += 1;
            }
        }
        if broker_up && now >= producer_back {
            log.append(&mut queued);
        }
        // The reader: everything the log holds, when it can reach it.
        let looping = now >= blocked_until;
        let reader_ok = broker_up && now >= reader_back && looping;
        match (reader_ok, unread_since) {
            (false, None) => unread_since = Some(now),
            (true, Some(from)) => {
                unread.push((from, now));
                unread_since = None;
            }
            _ => {}
        }
        if reader_ok {
            for (offset, &t) in log.iter().enumerate().skip(read) {
                use std::fmt::Write;
                id.clear();
                let _ = write!(id, "e{offset}");
                state.apply(
                    &EventRef {
                        event_id: &id,
                        video_id: "v",
                        creator_id: "c",
                        kind: EventKind::View,
                        event_time: t,
                        user_id: None,
                    },
                    &mut alerts,
                );
            }
            read = log.len();
        } else if looping && matches!(away, Some((Away::Refused, _))) && now % 1_000 == 0 {
            watch.trouble(now);
        }
        // The tick, as the counter does it.
        if looping && now % tick_ms == 0 {
            let plan = watch.plan(now, [(0, state.silent_since(), state.idle_due(now))]);
            if let Some(t) = plan.hold_all_from {
                state.hold_idle(t);
            }
            let looked = plan.look.contains(&0);
            // The end of the log is known only when the reader reaches the broker.
            let end = reader_ok.then_some(log.len() as i64);
            let at_end = looked && at_end_of_log(Some(read as i64), Some(read as i64), end);
            let since = state.silent_since();
            if let IdleTick::Ticked { moved: true } =
                tick_partition(&mut state, looked, at_end, now, &mut alerts)
            {
                idle_advances += 1;
                let from = since.unwrap_or(now);
                let counted: i64 = unread
                    .iter()
                    .map(|&(a, b)| (b.min(now) - a.max(from)).max(0))
                    .sum::<i64>()
                    + unread_since.map_or(0, |a| (now - a.max(from)).max(0));
                worst_unread_counted_ms = worst_unread_counted_ms.max(counted);
            }
        }
        now += 100;
    }
    let stats = state.stats();
    Outcome {
        produced,
        counted: stats.counted.iter().sum(),
        late: stats.late,
        idle_advances,
        outages,
        worst_unread_counted_ms,
        unread_bound_ms: unread_bound(idle_timeout_ms, tick_ms),
    }
}

/// The most unread time an idle advance may count as silence: a broker that froze right
/// after a look (reporting nothing) and answered again right before the next, or a loop
/// blocked just short of missing a look, plus a tick. One look's interval is a quarter of
/// the idle timeout, rounded up to whole ticks; a look is missed after that and two ticks.
fn unread_bound(idle_timeout_ms: i64, tick_ms: i64) -> i64 {
    (idle_timeout_ms / 4 + tick_ms - 1) / tick_ms * tick_ms + 3 * tick_ms
}

/// How long after the broker is back the producers' backlog may arrive and still not be
/// late. The watermark moves on once the silence counted reaches the idle timeout, and the
/// backlog is behind it once it has moved `lateness` past the newest event. Silence counts
/// from the last trouble the reader reported (a refused broker: an error a second) or,
/// when it reported none (a frozen broker), from the last look that found the broker away,
/// at most one look's interval (a quarter of the idle timeout, rounded up to ticks) before
/// it came back. One tick of slack either side for the simulation's granularity.
fn producer_delay_bound(away: Away, idle_timeout_ms: i64, lateness_ms: i64, tick_ms: i64) -> i64 {
    let unread_counted = match away {
        Away::Refused => 1_000,
        Away::Frozen => unread_bound(idle_timeout_ms, tick_ms),
    };
    idle_timeout_ms + lateness_ms - unread_counted - 2 * tick_ms
}

pub(crate) fn seeds() -> Vec<u64> {
    if let Some(one) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![one];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    // A long run can be split: SIM_FIRST=<k> starts at seed k.
    let first: u64 = std::env::var("SIM_FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (first..first + n).collect()
}

/// Runs every seed of the idle simulation, checks each outcome with `check` and that no
/// idle advance counted more unread time than [`unread_bound`], and sums what the runs did:
/// outages, idle ticks, events, the most unread time counted. Fails when the runs did not
/// exercise what they claim to (no outage, or no partition that went idle).
fn idle_runs(overlapping: bool, check: impl Fn(u64, &Outcome)) -> (u64, u64, u64, i64) {
    let (mut outages, mut idle, mut produced, mut worst) = (0u64, 0u64, 0u64, 0i64);
    for seed in seeds() {
        let o = run(seed, overlapping);
        check(seed, &o);
        assert!(
            o.worst_unread_counted_ms <= o.unread_bound_ms,
            "seed {seed}: {o:?} (replay with SIM_SEED={seed})"
        );
        outages += u64::from(o.outages);
        idle += o.idle_advances;
        produced += o.produced;
        worst = worst.max(o.worst_unread_counted_ms);
    }
    assert!(
        outages > 0 && idle > 0,
        "outages {outages}, idle ticks {idle}"
    );
    (outages, idle, produced, worst)
}

/// The promise of [`IdleWatch`]: an outage's backlog that producers hand over within
/// [`producer_delay_bound`] of the broker's return is never late, nothing is lost, and
/// no idle advance counts more unread time than [`unread_bound`].
#[test]
fn silence_the_reader_could_not_read_through_never_makes_a_backlog_late() {
    let (outages, idle, produced, worst) = idle_runs(false, |seed, o| {
        assert_eq!(
            (o.late, o.counted),
            (0, o.produced),
            "seed {seed}: {o:?} (replay with SIM_SEED={seed})"
        );
    });
    eprintln!(
        "idle simulation: {} seeds, {outages} outages, {idle} idle ticks, {produced} events, none late; at most {worst} ms unread counted as silence",
        seeds().len()
    );
}

/// Outages one after the other, the producers' backlog of one still waiting when the next
/// begins: the silence between them is the stream's (the reader had everything the broker
/// held), so a late backlog is possible and allowed; counting unread time as silence is
/// not, beyond [`unread_bound`], and nothing is lost.
#[test]
fn outages_in_a_row_count_no_more_unread_time_than_one_look_interval() {
    let (outages, idle, _, worst) = idle_runs(true, |seed, o| {
        assert_eq!(o.counted + o.late, o.produced, "seed {seed}: {o:?}");
    });
    eprintln!(
        "idle simulation, outages in a row: {} seeds, {outages} outages, {idle} idle ticks; at most {worst} ms unread counted as silence",
        seeds().len()
    );
}

/// One run of checkpoint rounds for one partition against a simulated compacted state
/// topic (a later record under a key replaces an earlier one, as compaction keeps it),
/// with the real chunk encoding and assembler. Each chunk of a round is stored and
/// acknowledged, lost (never stored), or stored with its acknowledgement lost; a round is
/// durable only when every chunk was acknowledged, and a failed round writes the same
/// generation again with the state as it is by then (smaller or larger, at the same offset
/// when the partition only moved on with the clock). A restore after any round must find
/// the last durable checkpoint or a newer one that landed whole — never an older one,
/// never nothing, never a state put together from two writes.
fn checkpoint_run(seed: u64) -> (u32, u32) {
    use std::collections::HashMap;

    use crate::checkpoint::{Checkpoint, CheckpointAssembler, encode_chunks};

    let mut rng = Rng(seed ^ 0xC0FF_EE00);
    let chunk_bytes = 1024;
    let mut topic: Vec<(String, Vec<u8>)> = Vec::new();
    // Writes that landed whole (every chunk stored), by (generation, state).
    let mut landed: HashMap<(u64, Vec<u8>), i64> = HashMap::new();
    let mut durable: Option<Checkpoint> = None;
    let mut offset = 0i64;
    let (mut failed_rounds, mut restores) = (0u32, 0u32);
    for _ in 0..rng.range(5, 60) {
        if rng.chance(0.7) {
            offset += rng.range(1, 500);
        }
        let len = rng.range(1, 5 * chunk_bytes as i64) as usize;
        let state: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let next = Checkpoint {
            generation: durable.as_ref().map_or(1, |d| d.generation + 1),
            offset,
            state,
        };
        let mut all_acked = true;
        let mut all_stored = true;
        for record in encode_chunks("g", "ev", "w1", 0, &next, chunk_bytes) {
            match rng.range(0, 19) {
                0..=2 => {
                    all_acked = false;
                    all_stored = false;
                }
                3 => {
                    all_acked = false;
                    topic.push(record);
                }
                _ => topic.push(record),
            }
        }
        if all_stored {
            landed.insert((next.generation, next.state.clone()), next.offset);
        }
        if all_acked {
            durable = Some(next);
        } else {
            failed_rounds += 1;
        }
        if rng.chance(0.5) {
            restores += 1;
            let mut a = CheckpointAssembler::new("g", "ev", 0);
            for (k, v) in &topic {
                a.push(k.as_bytes(), Some(v));
            }
            let found = a.finish();
            let Some(d) = &durable else {
                continue;
            };
            let Some(f) = found else {
                panic!(
                    "seed {seed}: nothing restored, generation {} is durable",
                    d.generation
                );
            };
            assert!(
                f.generation >= d.generation,
                "seed {seed}: restored generation {} older than the durable {}",
                f.generation,
                d.generation
            );
            assert_eq!(
                landed.get(&(f.generation, f.state.clone())),
                Some(&f.offset),
                "seed {seed}: restored a state no single write left whole (generation {})",
                f.generation
            );
            if f.generation == d.generation {
                assert_eq!(
                    &f, d,
                    "seed {seed}: the durable generation restored differently"
                );
            }
        }
    }
    (failed_rounds, restores)
}

/// The promise of the chunked checkpoint format (`checkpoint.rs`) under partly
/// acknowledged writes, over many seeds.
#[test]
fn a_restore_finds_the_last_durable_checkpoint_whatever_writes_failed() {
    let (mut failed, mut restores) = (0u32, 0u32);
    for seed in seeds() {
        let (f, r) = checkpoint_run(seed);
        failed += f;
        restores += r;
    }
    assert!(failed > 0 && restores > 0);
    eprintln!(
        "checkpoint simulation: {} seeds, {failed} partly acknowledged rounds, {restores} restores, each the last durable checkpoint or a newer whole one",
        seeds().len()
    );
}

/// One run of a reader through a partition whose log has holes (transaction markers,
/// compacted records: offsets that hold nothing) and a broker that, now and then, answers a
/// fetch at an offset inside a batch with the batch after it (tansu 0.6.0 does), skipping
/// records that exist. Driven by [`OffsetTracker`] as the counter and the ranker are.
/// Returns the offsets taken, the offsets the log holds, and the missing ones reported.
fn offsets_run(seed: u64) -> (Vec<i64>, Vec<i64>, u64) {
    use crate::delivery::{OffsetTracker, RecordOrder};

    let mut rng = Rng(seed ^ 0x0FF5_E75E);
    // The log: batches of present offsets; a hole now and then between or inside them.
    let mut batches: Vec<Vec<i64>> = Vec::new();
    let mut offset = rng.range(0, 3);
    for _ in 0..rng.range(1, 40) {
        let mut batch = Vec::new();
        for _ in 0..rng.range(1, 30) {
            if rng.chance(0.05) {
                let widest = if rng.chance(0.1) { 40 } else { 2 };
                offset += rng.range(1, widest);
            }
            batch.push(offset);
            offset += 1;
        }
        batches.push(batch);
        if rng.chance(0.3) {
            offset += 1; // a transaction marker
        }
    }
    let present: Vec<i64> = batches.iter().flatten().copied().collect();
    let quirky = rng.chance(0.5);
    // A fetch at `pos`: the records of the batch holding it from `pos` on — or, from a
    // quirky broker asked inside a batch, the next batch. Clients fetch whole batches, so
    // a fetch starts inside one only where the reader was put: a restart at its
    // checkpoint's offset, or a re-read.
    let fetch = |pos: i64, rng: &mut Rng| -> Vec<i64> {
        let Some(i) = batches.iter().position(|b| *b.last().unwrap() >= pos) else {
            return Vec::new();
        };
        let b = &batches[i];
        if quirky && pos > b[0] && rng.chance(0.5) {
            return batches.get(i + 1).cloned().unwrap_or_default();
        }
        b.iter().copied().filter(|&o| o >= pos).collect()
    };
    let mut tracker = OffsetTracker::resume(None);
    let mut taken = Vec::new();
    let mut skipped = 0;
    let mut pos = 0;
    let last = *present.last().unwrap();
    for _ in 0..10_000 {
        if tracker.next().is_some_and(|next| next > last) {
            break;
        }
        // An empty answer (the quirky broker had no next batch) is fetched again.
        let records = fetch(pos, &mut rng);
        let Some(&end) = records.last() else {
            continue;
        };
        pos = end + 1;
        for o in records {
            match tracker.offer(o) {
                RecordOrder::Again => {}
                RecordOrder::ReadFrom(from) => {
                    pos = from;
                    break;
                }
                RecordOrder::Take { skipped: s } => {
                    skipped += s;
                    taken.push(o);
                    // Now and then the reader starts again from a checkpoint taken right
                    // after this record (a restart, a rewind): inside a batch, often.
                    if rng.chance(0.05) {
                        tracker = OffsetTracker::resume(tracker.next());
                        pos = o + 1;
                        break;
                    }
                }
            }
        }
    }
    (taken, present, skipped)
}

/// Offsets: every record the log holds is taken once, in order, whatever the broker skips;
/// what is reported missing is exactly the offsets the log does not hold.
#[test]
fn every_record_is_taken_once_in_order_whatever_the_broker_skips() {
    let mut gaps = 0u64;
    for seed in seeds() {
        let (taken, present, skipped) = offsets_run(seed);
        assert_eq!(taken, present, "seed {seed} (replay with SIM_SEED={seed})");
        let missing = (present.last().unwrap() - present[0] + 1) as u64 - present.len() as u64;
        assert_eq!(skipped, missing, "seed {seed}");
        gaps += missing;
    }
    assert!(gaps > 0);
    eprintln!(
        "offset simulation: {} seeds, {gaps} missing offsets reported, every present record taken once in order",
        seeds().len()
    );
}
