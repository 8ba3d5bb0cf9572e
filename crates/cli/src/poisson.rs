//! The yardstick: the per-minute "point-by-point Poisson" trend model of Gnip/Twitter
//! (Hendrickson, Kolb, Lehman, Montague, *Trend Detection in Social Data*, 2015, §3.1),
//! run offline beside the engine so every quality figure has a reference.
//!
//! - **Series.** Per video, net likes (LIKE − UNLIKE) per event-time minute (minutes
//!   aligned to the epoch). The model has perfect information: it sees every event the
//!   replay accepted, in event-time order, duplicates (same `event_id`) dropped, late
//!   events counted — nothing is ever late for it.
//! - **Test.** The expected count of minute *i* is the previous minute's, ν = c₍ᵢ₋₁₎
//!   (negative net counts are taken as 0). Minute *i* triggers when
//!   `c_i ≥ ν + η · CI(α, ν)` and `c_i ≥ c_min`, where `CI(α, ν)` is the width of the
//!   central α-interval of a Poisson(ν) count (upper minus lower quantile, the form the
//!   authors' code uses) — with η = 3, α = 0.99 and c_min = 10 by default. For ν = 0 the
//!   interval is empty (width 0) and c_min alone guards the test; the authors' code
//!   returns η = 0 there instead, which would make the model blind to a cold video's first
//!   busy minute — we take the paper's inequality, with c_min as the guard it needs.
//!   The stream's first minute (of any video) is not tested: it has no previous minute.
//! - **Alert episodes.** A run of consecutive triggering minutes on a video is one alert
//!   episode; it starts at the start of its first minute and is detected at that minute's
//!   end (the earliest instant a per-minute model can know the minute's count).
//!
//! Written from the paper's definitions, not from the authors' code.

use std::collections::{BTreeMap, HashMap, HashSet};

use trendwatch_core::{EventKind, EventRef};

use crate::backtest::AlertEpisode;

const MINUTE_MS: i64 = 60_000;

/// Parameters of the point-by-point Poisson model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoissonParams {
    /// Trigger level, in widths of the confidence interval above the expected count.
    pub eta: f64,
    /// Confidence level of the interval.
    pub alpha: f64,
    /// A minute with fewer net likes never triggers.
    pub c_min: i64,
}

impl Default for PoissonParams {
    /// η = 3, α = 0.99, c_min = 10: the yardstick's parameters in the product brief.
    fn default() -> Self {
        Self {
            eta: 3.0,
            alpha: 0.99,
            c_min: 10,
        }
    }
}

/// Natural log of k!.
fn ln_factorial(k: u64) -> f64 {
    if k < 20 {
        return (2..=k).map(|i| (i as f64).ln()).sum();
    }
    // Stirling's series: exact to well below 1e-10 from 20 on.
    let n = k as f64 + 1.0;
    (n - 0.5) * n.ln() - n + 0.5 * (2.0 * std::f64::consts::PI).ln() + 1.0 / (12.0 * n)
        - 1.0 / (360.0 * n.powi(3))
}

/// The `q` quantile of a Poisson(`mean`) count: the smallest k with P(X ≤ k) ≥ q.
fn poisson_quantile(q: f64, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    // Start far enough below the mean that the mass left out is negligible (< 1e-25).
    let k0 = (mean - 12.0 * mean.sqrt() - 12.0).max(0.0).floor() as u64;
    let mut k = k0;
    let mut pmf = (k as f64 * mean.ln() - mean - ln_factorial(k)).exp();
    let mut cdf = pmf;
    while cdf < q {
        k += 1;
        pmf *= mean / k as f64;
        cdf += pmf;
        if pmf == 0.0 && k as f64 > mean {
            break; // only rounding is left: q is as good as reached
        }
    }
    k
}

/// Width of the central `alpha` interval of a Poisson(`mean`) count.
pub fn interval_width(alpha: f64, mean: f64) -> f64 {
    let lo = poisson_quantile((1.0 - alpha) / 2.0, mean);
    let hi = poisson_quantile((1.0 + alpha) / 2.0, mean);
    hi.saturating_sub(lo) as f64
}

/// The model fed event by event: net likes per video and minute, de-duplicated.
#[derive(Debug, Default)]
pub struct PoissonBaseline {
    params: PoissonParams,
    seen: HashSet<String>,
    minutes: HashMap<String, BTreeMap<i64, i64>>,
    /// The first minute of the stream: it has no previous minute to test against.
    first_minute: Option<i64>,
    widths: HashMap<i64, f64>,
}

impl PoissonBaseline {
    /// An empty model with `params`.
    pub fn new(params: PoissonParams) -> Self {
        Self {
            params,
            ..Self::default()
        }
    }

    /// Takes one accepted event (any order; re-deliveries of an `event_id` are ignored).
    pub fn observe(&mut self, e: &EventRef<'_>) {
        let minute = e.event_time.div_euclid(MINUTE_MS);
        self.first_minute = Some(self.first_minute.map_or(minute, |m| m.min(minute)));
        let delta = match e.kind {
            EventKind::Like => 1,
            EventKind::Unlike => -1,
            _ => return,
        };
        if !self.seen.insert(e.event_id.to_owned()) {
            return;
        }
        let series = match self.minutes.get_mut(e.video_id) {
            Some(s) => s,
            None => self.minutes.entry(e.video_id.to_owned()).or_default(),
        };
        *series.entry(minute).or_default() += delta;
    }

    fn triggers(&mut self, count: i64, previous: i64) -> bool {
        if count < self.params.c_min {
            return false;
        }
        let nu = previous.max(0);
        let alpha = self.params.alpha;
        let width = *self
            .widths
            .entry(nu)
            .or_insert_with(|| interval_width(alpha, nu as f64));
        count as f64 >= nu as f64 + self.params.eta * width
    }

    /// The alert episodes of every video, by video then time.
    pub fn alert_episodes(mut self) -> Vec<AlertEpisode> {
        let mut minutes: Vec<(String, BTreeMap<i64, i64>)> =
            std::mem::take(&mut self.minutes).into_iter().collect();
        minutes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::new();
        for (video, series) in minutes {
            // The last triggering minute, to merge consecutive ones.
            let mut last: Option<i64> = None;
            for (&m, &c) in &series {
                if Some(m) <= self.first_minute {
                    continue; // the stream's first minute: nothing to compare it with
                }
                // A minute absent from the series had no likes.
                let previous = series.get(&(m - 1)).copied().unwrap_or(0);
                if !self.triggers(c, previous) {
                    continue;
                }
                if last != Some(m - 1) {
                    out.push(AlertEpisode {
                        video_id: video.clone(),
                        start_ms: m * MINUTE_MS,
                        detected_at: (m + 1) * MINUTE_MS,
                    });
                }
                last = Some(m);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model whose stream began (with a view) at minute 0.
    fn started() -> PoissonBaseline {
        let mut model = PoissonBaseline::new(PoissonParams::default());
        model.observe(&EventRef {
            event_id: "start",
            video_id: "w",
            creator_id: "c",
            kind: EventKind::View,
            event_time: 0,
            user_id: None,
        });
        model
    }

    /// Feeds per-minute net like counts (minute i from t = i min) to a model.
    fn run(series: &[i64]) -> Vec<AlertEpisode> {
        let mut model = started();
        let mut id = 0;
        for (m, &c) in series.iter().enumerate() {
            for k in 0..c.max(0) {
                id += 1;
                let event_id = format!("e{id}");
                model.observe(&EventRef {
                    event_id: &event_id,
                    video_id: "v",
                    creator_id: "c",
                    kind: EventKind::Like,
                    event_time: m as i64 * MINUTE_MS + k * 100,
                    user_id: None,
                });
            }
        }
        model.alert_episodes()
    }

    #[test]
    fn poisson_intervals_match_tables() {
        // scipy.stats.poisson.interval(0.99, ν): (0, 4), (3, 19), (10, 32), (75, 127).
        assert_eq!(interval_width(0.99, 1.0), 4.0);
        assert_eq!(interval_width(0.99, 10.0), 16.0);
        assert_eq!(interval_width(0.99, 20.0), 22.0);
        assert_eq!(interval_width(0.99, 100.0), 52.0);
        assert_eq!(interval_width(0.99, 0.0), 0.0);
        // Large means: about 2 × 2.576 σ.
        let w = interval_width(0.99, 1e6);
        assert!((w - 2.0 * 2.576 * 1e3).abs() < 5.0, "{w}");
    }

    #[test]
    fn fires_on_a_jump_at_the_end_of_its_first_minute() {
        // 10 likes a minute, then 70 (10 + 3 × 16 = 58 is the bar), held, then back.
        let mut s = vec![10; 20];
        s.extend([70, 75, 80, 72]);
        s.extend([10; 5]);
        let eps = run(&s);
        assert_eq!(eps.len(), 1, "{eps:?}");
        assert_eq!(eps[0].start_ms, 20 * MINUTE_MS);
        assert_eq!(eps[0].detected_at, 21 * MINUTE_MS);
        // Just below the bar: nothing.
        let mut s = vec![10; 20];
        s.push(57);
        assert!(run(&s).is_empty());
    }

    #[test]
    fn consecutive_triggering_minutes_are_one_episode() {
        // 0 → 10 → 70 → 300: each minute clears the bar over the one before.
        let eps = run(&[0, 0, 10, 70, 300, 0, 0, 0, 30]);
        assert_eq!(eps.len(), 2, "{eps:?}");
        assert_eq!(eps[0].detected_at, 3 * MINUTE_MS);
        assert_eq!(eps[1].start_ms, 8 * MINUTE_MS);
    }

    #[test]
    fn the_first_minute_of_the_stream_is_not_tested() {
        // A popular video already busy when the stream begins is not a trend.
        let mut model = PoissonBaseline::new(PoissonParams::default());
        for k in 0..50 {
            let id = format!("e{k}");
            model.observe(&EventRef {
                event_id: &id,
                video_id: "v",
                creator_id: "c",
                kind: EventKind::Like,
                event_time: k * 1_000,
                user_id: None,
            });
        }
        assert!(model.alert_episodes().is_empty());
    }

    #[test]
    fn never_fires_below_c_min_or_on_a_steady_series() {
        // A cold video: 9 likes out of nothing stays below c_min; 10 would not.
        assert!(run(&[0, 0, 9, 0, 0, 9]).is_empty());
        assert_eq!(run(&[0, 0, 10]).len(), 1);
        // A steady series with Poisson-like wobble around 30 (its bar is about 30 + 78).
        let steady: Vec<i64> = (0..300).map(|i| 30 + (i * 7 % 13) - 6).collect();
        assert!(run(&steady).is_empty());
        // Unlikes make net counts negative: taken as an expected 0, not below.
        let mut model = started();
        for k in 0..5 {
            let id = format!("u{k}");
            model.observe(&EventRef {
                event_id: &id,
                video_id: "v",
                creator_id: "c",
                kind: EventKind::Unlike,
                event_time: k,
                user_id: None,
            });
        }
        assert!(model.alert_episodes().is_empty());
    }

    #[test]
    fn duplicates_count_once_and_order_does_not_matter() {
        let mut model = started();
        // 12 likes in minute 5, delivered backwards and each twice.
        for k in (0..12).rev() {
            let id = format!("e{k}");
            for _ in 0..2 {
                model.observe(&EventRef {
                    event_id: &id,
                    video_id: "v",
                    creator_id: "c",
                    kind: EventKind::Like,
                    event_time: 5 * MINUTE_MS + k,
                    user_id: None,
                });
            }
        }
        assert_eq!(model.alert_episodes().len(), 1);
        // 6 distinct likes delivered twice are 6, below c_min (12 if copies counted).
        let mut half = started();
        for k in 0..6 {
            let id = format!("e{k}");
            for _ in 0..2 {
                half.observe(&EventRef {
                    event_id: &id,
                    video_id: "v",
                    creator_id: "c",
                    kind: EventKind::Like,
                    event_time: 5 * MINUTE_MS + k,
                    user_id: None,
                });
            }
        }
        assert!(half.alert_episodes().is_empty());
    }
}
