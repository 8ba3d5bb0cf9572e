//! `trendwatch leaderboard`: the ranker's current board, live in a terminal (redrawn in
//! place at every new window, optionally with the latest alerts under it) or once, as
//! JSON, for scripts.

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use trendwatch_config::Config;
use trendwatch_proto::LeaderboardRecord;

use crate::client::{partition_count, reader_config};
use crate::error::{Result, RuntimeError};
use crate::tail::{decode_alert, readable_time, table_line};

/// The live view redraws at most this often.
const REDRAW_EVERY: Duration = Duration::from_millis(250);

/// How long the topic must stay silent, once at its reported end, before the board in
/// hand is the current one.
const CATCH_UP_QUIET: Duration = Duration::from_millis(700);

/// What to show and how.
#[derive(Clone, Debug)]
pub struct BoardOptions {
    /// Leaderboard topic.
    pub topic: String,
    /// Print the current board once and return.
    pub once: bool,
    /// JSON (the contract's form), one board per line, instead of a table.
    pub json: bool,
    /// Redraw in place (a terminal) instead of appending each board.
    pub redraw: bool,
    /// Colour the table.
    pub color: bool,
    /// With `once`: how long to wait for a first board when the topic has none yet.
    pub wait: Duration,
    /// Also follow the alert topic: the live view shows this many latest alerts under
    /// the board (appended as they come when not redrawing). Not with `once` or `json`.
    pub alerts: Option<usize>,
}

/// The board as a table: a header naming the window, then one line per place with its
/// rank change, video, creator, score, change since the last window and likes per minute.
pub fn board_table(r: &LeaderboardRecord, color: bool) -> String {
    let b = &r.board;
    let mut s = format!(
        "{} top {} · window {} – {} · {} partition(s){} · emitted {}\n",
        r.scope,
        b.top_k,
        readable_time(b.window_start),
        readable_time(b.window_end),
        b.partitions,
        if b.left_out.is_empty() {
            String::new()
        } else {
            format!(" (left out as idle: {:?})", b.left_out)
        },
        readable_time(r.emitted_at),
    );
    s.push_str(&format!(
        "{:>4}  {:<6} {:<24} {:<16} {:>10} {:>9} {:>10}\n",
        "rank", "change", "video", "creator", "score", "Δ window", "likes/min"
    ));
    if b.entries.is_empty() {
        s.push_str("  (empty: nothing scored in this window)\n");
    }
    for e in &b.entries {
        let (change, code) = match e.previous_rank {
            0 => ("new".to_string(), "1;33"),
            p if p > e.rank => (format!("▲{}", p - e.rank), "1;32"),
            p if p < e.rank => (format!("▼{}", e.rank - p), "1;31"),
            _ => ("=".to_string(), "2"),
        };
        let change = format!("{change:<6}");
        let change = if color {
            format!("\x1b[{code}m{change}\x1b[0m")
        } else {
            change
        };
        s.push_str(&format!(
            "{:>4}  {change} {:<24} {:<16} {:>10} {:>+9} {:>10.1}\n",
            e.rank,
            e.video_id,
            e.creator_id,
            e.score,
            e.score - e.previous_score,
            e.likes_per_min
        ));
    }
    s
}

/// The alerts shown under the board in the live view.
struct RecentAlerts {
    consumer: BaseConsumer,
    lines: VecDeque<String>,
    keep: usize,
}

impl RecentAlerts {
    /// Follows the alert topic from its end.
    fn open(config: &Config, keep: usize) -> Result<Self> {
        let topic = &config.topics.alerts;
        let consumer: BaseConsumer = reader_config(config, "leaderboard-alerts")
            .create()
            .map_err(|e| RuntimeError::kafka("creating the alert reader", e))?;
        let partitions = partition_count(&consumer, topic)?
            .ok_or_else(|| RuntimeError::Config(format!("alert topic {topic} does not exist")))?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::End)
                .map_err(|e| RuntimeError::kafka("assigning the alert topic", e))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| RuntimeError::kafka("assigning the alert topic", e))?;
        Ok(Self {
            consumer,
            lines: VecDeque::new(),
            keep,
        })
    }

    /// The next alert as a table line, if one arrives within `timeout`.
    fn next_line(&mut self, timeout: Duration, color: bool) -> Option<String> {
        let message = self.consumer.poll(timeout)?.ok()?;
        let record = decode_alert(message.payload().unwrap_or_default())?;
        let line = table_line(&record, color);
        if self.lines.len() == self.keep {
            self.lines.pop_front();
        }
        self.lines.push_back(line.clone());
        Some(line)
    }
}

fn write_board(
    out: &mut dyn Write,
    r: &LeaderboardRecord,
    options: &BoardOptions,
    alerts: Option<&RecentAlerts>,
) -> std::io::Result<()> {
    if options.json {
        writeln!(out, "{}", r.to_json())?;
    } else {
        if options.redraw {
            // Home and clear: the board replaces the previous one in place.
            write!(out, "\x1b[H\x1b[2J")?;
        }
        writeln!(out, "{}", board_table(r, options.color))?;
        if let Some(a) = alerts.filter(|_| options.redraw) {
            writeln!(out, "latest alerts (trendwatch alerts tail):")?;
            for line in &a.lines {
                writeln!(out, "{line}")?;
            }
        }
    }
    out.flush()
}

/// Shows the leaderboard topic's boards: the current one (the newest window), then each
/// new one as it arrives, until `shutdown`; with `once`, only the current one. Returns
/// the last board shown.
pub fn watch(
    config: &Config,
    options: &BoardOptions,
    out: &mut dyn Write,
    shutdown: &CancellationToken,
) -> Result<Option<LeaderboardRecord>> {
    let consumer: BaseConsumer = reader_config(config, "leaderboard")
        .create()
        .map_err(|e| RuntimeError::kafka("creating the leaderboard reader", e))?;
    let partitions = partition_count(&consumer, &options.topic)?.ok_or_else(|| {
        RuntimeError::Config(format!(
            "leaderboard topic {} does not exist (is the ranker running?)",
            options.topic
        ))
    })?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for p in 0..partitions {
        tpl.add_partition_offset(&options.topic, p, Offset::Beginning)
            .map_err(|e| RuntimeError::kafka("assigning the leaderboard topic", e))?;
        let (_, high) = consumer
            .fetch_watermarks(&options.topic, p, Duration::from_secs(10))
            .map_err(|e| RuntimeError::kafka("reading the leaderboard's end", e))?;
        ends.push(high);
    }
    consumer
        .assign(&tpl)
        .map_err(|e| RuntimeError::kafka("assigning the leaderboard topic", e))?;
    let mut alerts = match options.alerts {
        Some(keep) if keep > 0 && !options.once && !options.json => {
            Some(RecentAlerts::open(config, keep)?)
        }
        _ => None,
    };
    let io = |e: std::io::Error| RuntimeError::Io {
        context: "writing the leaderboard".into(),
        source: e,
    };
    // Catch up to the end as it was at start, keeping the newest window's board. Some
    // brokers (tansu 0.6.0) report a high watermark at the last batch's first offset, so
    // "caught up" also needs a short silence.
    let mut current: Option<LeaderboardRecord> = None;
    let mut read_to: Vec<i64> = vec![0; ends.len()];
    let started = Instant::now();
    let mut last_message = Instant::now();
    // `--once` must print the newest board, so it also waits for the silence; the live
    // view shows what it has at the reported end and redraws as newer boards come.
    let caught_up = |read_to: &[i64], last: Instant| {
        read_to.iter().zip(&ends).all(|(r, e)| r >= e)
            && (!options.once || last.elapsed() >= CATCH_UP_QUIET)
    };
    let mut shown_current = false;
    // The live view redraws at most this often, however fast boards and alerts come.
    let mut dirty = false;
    let mut drawn = Instant::now();
    let poll_wait = if alerts.is_some() {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(100)
    };
    while !shutdown.is_cancelled() {
        if !shown_current && caught_up(&read_to, last_message) {
            if let Some(r) = &current {
                write_board(out, r, options, alerts.as_ref()).map_err(io)?;
                shown_current = true;
                drawn = Instant::now();
                if options.once {
                    break;
                }
            } else if options.once && started.elapsed() >= options.wait {
                break;
            }
        }
        if let Some(a) = alerts.as_mut()
            && let Some(line) = a.next_line(poll_wait, options.color)
        {
            if options.redraw {
                dirty = true;
            } else {
                writeln!(out, "{line}").map_err(io)?;
            }
        }
        if dirty
            && shown_current
            && drawn.elapsed() >= REDRAW_EVERY
            && let Some(r) = &current
        {
            write_board(out, r, options, alerts.as_ref()).map_err(io)?;
            drawn = Instant::now();
            dirty = false;
        }
        let Some(polled) = consumer.poll(poll_wait) else {
            continue;
        };
        let message = polled.map_err(|e| RuntimeError::kafka("reading the leaderboard", e))?;
        last_message = Instant::now();
        if let Some(r) = read_to.get_mut(message.partition() as usize) {
            *r = (*r).max(message.offset() + 1);
        }
        let Ok(record) = LeaderboardRecord::decode_any(message.payload().unwrap_or_default())
        else {
            tracing::warn!(
                partition = message.partition(),
                offset = message.offset(),
                "not a leaderboard record; skipped"
            );
            continue;
        };
        let newer = current
            .as_ref()
            .is_none_or(|c| record.board.window_end >= c.board.window_end);
        if newer {
            current = Some(record);
            if shown_current {
                if options.redraw {
                    dirty = true;
                } else if let Some(r) = &current {
                    write_board(out, r, options, alerts.as_ref()).map_err(io)?;
                }
            }
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use trendwatch_core::{Board, BoardEntry};

    use super::*;

    #[test]
    fn the_table_shows_rank_changes_and_the_window() {
        let entry = |rank, video: &str, previous_rank| BoardEntry {
            rank,
            video_id: video.into(),
            creator_id: "c1".into(),
            score: 900,
            previous_score: 1000,
            likes_per_min: 3.5,
            previous_rank,
        };
        let r = LeaderboardRecord {
            scope: "global".into(),
            board: Board {
                window_start: 1_767_570_300_000,
                window_end: 1_767_571_200_000,
                top_k: 3,
                partitions: 4,
                left_out: vec![2],
                entries: vec![entry(1, "up", 3), entry(2, "down", 1), entry(3, "fresh", 0)],
            },
            emitted_at: 1_767_571_201_000,
        };
        let t = board_table(&r, false);
        assert!(
            t.contains("global top 3 · window 2026-01-04T23:45:00Z – 2026-01-05T00:00:00Z"),
            "{t}"
        );
        assert!(t.contains("left out as idle: [2]"), "{t}");
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[2].contains("▲2") && lines[2].contains("up") && lines[2].contains("-100"));
        assert!(lines[3].contains("▼1") && lines[3].contains("down"));
        assert!(lines[4].contains("new") && lines[4].contains("3.5"));
    }
}
