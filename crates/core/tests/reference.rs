//! Property tests: the engine against a naive, obviously-correct model on random streams
//! with out-of-order, late and duplicate events; and batching, ticks and snapshots that
//! must not change what the engine decides.
//!
//! The model keeps every counted event, evaluates every video at every close with plain
//! stepping EWMAs and CUSUMs in f64, tests every like with Poisson tails summed term by
//! term from their logarithms, caps views by recounting each slot, and has no rings, watch
//! lists, lazy catch-up, closed forms, tabulated factorials or pre-checks. Those are
//! exactly the engine's optimisations, so agreement says they change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;
use trendwatch_core::{
    Alert, AlertType, EngineConfig, EventKind, EventRef, PartitionState, Verdict, key_hash,
};

const T0: i64 = 1_767_571_200_000;

/// A small geometry so short random streams exercise every path.
fn config() -> EngineConfig {
    let mut c = EngineConfig::default();
    let s = Duration::from_secs;
    c.windows.bucket = s(5);
    c.windows.velocity_window = s(30);
    c.windows.trending_slot = s(30);
    c.windows.trending_window = s(300);
    c.windows.allowed_lateness = s(5);
    c.windows.dedup_horizon = s(30);
    c.velocity.false_alarms_per_video_day = 0.05;
    // A corroborated rise is tested at ten times the budget: view-heavy videos (below)
    // take the looser thresholds when their viewers are many, the others the plain ones;
    // more than eight extra views per interaction do not corroborate.
    c.velocity.corroborated_budget_factor = 10.0;
    c.velocity.corroborating_views_per_like = 2.0;
    c.velocity.implausible_views_per_like = 8.0;
    c.velocity.corroborated_prior_likes_per_min = 0.5;
    c.velocity.prior_likes_per_min = 2.0;
    c.velocity.z_clear = 1.0;
    c.velocity.tiers = vec![2.0, 4.0, 8.0];
    c.velocity.clear_after = 2;
    c.velocity.cooldown = s(60);
    c.velocity.warmup = s(120);
    c.velocity.baseline_half_life = s(300);
    c.trending.tiers = vec![50.0, 100.0, 200.0];
    c.trending.views_per_interaction = 2;
    c.trending.min_ratio = 1.5;
    c.trending.clear_fraction = 0.5;
    c.trending.clear_after = 2;
    c.trending.cooldown = s(120);
    c.trending.warmup = s(180);
    c.trending.baseline_half_life = s(600);
    c.validate().unwrap();
    c
}

#[derive(Clone, Debug)]
struct Ev {
    id: String,
    video: String,
    kind: EventKind,
    t: i64,
    user: Option<String>,
}

#[derive(Clone, Copy, Default)]
struct Ep {
    active: bool,
    cooling: bool,
    tier: usize,
    calm: u32,
    start: i64,
    cooldown_until: i64,
}

#[derive(Clone, Copy, Default)]
struct Base {
    mean: f64,
    var: f64,
    obs: u32,
}

impl Base {
    /// One observation, kept at the precision the engine documents for a baseline (stored
    /// in `f32`, computed in `f64`): a ratio exactly at a threshold (55 against a running
    /// mean of 220/6, at 1.5×) must fall on the same side in both.
    fn step(&mut self, x: f64, decay: f64) {
        self.obs += 1;
        let diff = x - self.mean;
        let incr = (1.0 - decay) * diff;
        self.mean = f64::from((self.mean + incr) as f32);
        self.var = f64::from((decay * (self.var + diff * incr)) as f32);
    }
    fn warm_decay(&self, decay: f64) -> f64 {
        (1.0 - 1.0 / (f64::from(self.obs) + 1.0)).min(decay)
    }
}

/// What a slot of a video received: views, interactions and their weights.
#[derive(Clone, Copy, Default)]
struct Slot {
    views: i64,
    interactions: i64,
    weight: i64,
}

/// Every viewer hash of each slot, for the distinct-viewer estimate (the engine keeps a
/// sketch; the model keeps them all and builds the sketch when asked).
#[derive(Clone, Default)]
struct Viewers {
    hashes: Vec<u64>,
    /// The sampling level, fixed when the slot became the video's newest.
    level: u32,
}

/// The level of a slot after one with `views` views: the smallest `l` with
/// `views / 2^l <= 24`.
fn level_after(views: i64) -> u32 {
    (0..64).find(|&l| views >> l <= 24).unwrap_or(63)
}

/// Distinct viewers estimated the way the engine documents it: bit `h % 64` of each
/// viewer kept at the level (top `level` bits of `h` zero), linear counting on the bits,
/// scaled by `2^level`.
fn estimated_viewers(v: &Viewers) -> f64 {
    let mut bits = [false; 64];
    for h in &v.hashes {
        if v.level == 0 || h >> (64 - v.level) == 0 {
            bits[(h % 64) as usize] = true;
        }
    }
    let zeros = bits.iter().filter(|b| !**b).count().max(1) as f64;
    -64.0 * (zeros / 64.0).ln() * 2f64.powi(v.level as i32)
}

struct RefVideo {
    id: String,
    likes: BTreeMap<i64, i64>,
    slots: BTreeMap<i64, Slot>,
    viewers: BTreeMap<i64, Viewers>,
    /// The newest slot the video has an event in.
    head_slot: i64,
    events: u32,
    vb: Base,
    tb: Base,
    cusum: f64,
    cusum_since: i64,
    vel: Ep,
    tr: Ep,
}

impl RefVideo {
    /// A slot's score: interaction weights plus views, at most `per` per interaction.
    fn slot_score(&self, s: i64, per: i64, view_weight: i64) -> i64 {
        self.slots.get(&s).map_or(0, |x| {
            x.weight + view_weight * x.views.min(per * x.interactions.max(0))
        })
    }
}

/// `ln P(X >= s)`, X Poisson with mean `e`: the terms summed from their logarithms until
/// they are e^-40 of the first (for s > e they only fall).
fn ln_tail(s: i64, e: f64) -> f64 {
    if s <= 0 || s as f64 <= e {
        return 0.0;
    }
    let mut ln_fact: f64 = (1..=s).map(|i| (i as f64).ln()).sum();
    let first = -e + s as f64 * e.ln() - ln_fact;
    let mut sum = 0.0;
    for j in s.. {
        if j > s {
            ln_fact += (j as f64).ln();
        }
        let term = -e + j as f64 * e.ln() - ln_fact;
        if term < first - 40.0 {
            break;
        }
        sum += (term - first).exp();
    }
    (first + sum.ln()).min(0.0)
}

/// One alert as the comparison sees it.
type Key = (i64, String, AlertType, u32, i64, i64);

struct Reference {
    c: EngineConfig,
    b: i64,
    n: i64,
    s: i64,
    m: i64,
    l: i64,
    started: Option<i64>,
    max: i64,
    wm: i64,
    next_bucket: i64,
    next_slot: i64,
    seen: HashSet<String>,
    videos: Vec<RefVideo>,
    alerts: Vec<Key>,
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

fn lifecycle(
    ep: &mut Ep,
    at: i64,
    cooldown: i64,
    clear_after: u32,
    fire: Option<usize>,
    escalate: Option<usize>,
    calm: bool,
) -> Option<(bool, usize)> {
    if ep.cooling && at >= ep.cooldown_until {
        ep.cooling = false;
    }
    if ep.cooling {
        return None;
    }
    if !ep.active {
        let t = fire?;
        *ep = Ep {
            active: true,
            tier: t,
            start: at,
            ..Ep::default()
        };
        return Some((false, t));
    }
    if let Some(t) = escalate.filter(|&t| t > ep.tier) {
        ep.tier = t;
        ep.calm = 0;
        return Some((false, t));
    }
    ep.calm = if calm { ep.calm + 1 } else { 0 };
    if ep.calm >= clear_after {
        ep.active = false;
        ep.cooling = true;
        ep.cooldown_until = at + cooldown;
        ep.calm = 0;
        return Some((true, ep.tier));
    }
    None
}

impl Reference {
    fn new(c: EngineConfig) -> Self {
        let w = &c.windows;
        Self {
            b: ms(w.bucket),
            n: ms(w.velocity_window) / ms(w.bucket),
            s: ms(w.trending_slot),
            m: ms(w.trending_window) / ms(w.trending_slot),
            l: ms(w.allowed_lateness),
            c,
            started: None,
            max: 0,
            wm: 0,
            next_bucket: 0,
            next_slot: 0,
            seen: HashSet::new(),
            videos: Vec::new(),
            alerts: Vec::new(),
        }
    }

    fn apply(&mut self, e: &Ev) -> Verdict {
        match self.started {
            None => {
                self.started = Some(e.t);
                self.max = e.t;
                self.wm = e.t - self.l;
                self.next_bucket = self.wm.div_euclid(self.b);
                self.next_slot = self.wm.div_euclid(self.s);
            }
            Some(_) if e.t > self.max => {
                self.max = e.t;
                if e.t - self.l > self.wm {
                    self.advance(e.t - self.l);
                }
            }
            Some(_) => {}
        }
        if e.t < self.wm {
            return Verdict::Late;
        }
        if !self.seen.insert(e.id.clone()) {
            return Verdict::Duplicate;
        }
        let pos = match self.videos.iter().position(|v| v.id == e.video) {
            Some(p) => p,
            None => {
                self.videos.push(RefVideo {
                    id: e.video.clone(),
                    likes: BTreeMap::new(),
                    slots: BTreeMap::new(),
                    viewers: BTreeMap::new(),
                    head_slot: e.t.div_euclid(self.s),
                    events: 0,
                    vb: Base::default(),
                    tb: Base::default(),
                    cusum: 0.0,
                    cusum_since: 0,
                    vel: Ep::default(),
                    tr: Ep::default(),
                });
                self.videos.len() - 1
            }
        };
        let wt = &self.c.trending.weights;
        let (like, weight) = match e.kind {
            EventKind::View => (0, wt.view as i64),
            EventKind::Like => (1, wt.like as i64),
            EventKind::Unlike => (-1, -(wt.like as i64)),
            EventKind::Share => (0, wt.share as i64),
            EventKind::Comment => (0, wt.comment as i64),
        };
        let v = &mut self.videos[pos];
        v.events += 1;
        *v.likes.entry(e.t.div_euclid(self.b)).or_default() += like;
        let s = e.t.div_euclid(self.s);
        // A slot that becomes the newest takes its sampling level from the views of the
        // slot before, if that was the newest; the others had no event.
        for opened in (v.head_slot + 1).max(s - 1)..=s {
            let before = if opened - 1 == v.head_slot {
                v.slots.get(&v.head_slot).map_or(0, |x| x.views)
            } else {
                0
            };
            v.viewers.entry(opened).or_default().level = level_after(before);
        }
        v.head_slot = v.head_slot.max(s);
        if e.kind == EventKind::View && s > v.head_slot - 2 {
            let user = e.user.as_deref().filter(|u| !u.is_empty());
            let viewer = key_hash(user.unwrap_or(&e.id));
            v.viewers.entry(s).or_default().hashes.push(viewer);
        }
        let slot = v.slots.entry(s).or_default();
        match e.kind {
            EventKind::View => slot.views += 1,
            EventKind::Unlike => {
                slot.interactions -= 1;
                slot.weight += weight;
            }
            _ => {
                slot.interactions += 1;
                slot.weight += weight;
            }
        }
        if like > 0 {
            self.test_like(pos);
        }
        Verdict::Counted
    }

    fn per_bucket(&self, v: &RefVideo) -> f64 {
        let prior = self.c.velocity.prior_likes_per_min * (self.n * self.b) as f64 / 60_000.0;
        v.vb.mean.max(0.0).max(prior) / self.n as f64
    }

    /// Both velocity tests at a like, on the windows ending with the newest bucket.
    fn test_like(&mut self, pos: usize) {
        let cfg = self.c.velocity.clone();
        let now = self.max.div_euclid(self.b);
        let started = self.started.unwrap();
        if (now + 1) * self.b - started < ms(cfg.warmup) {
            return;
        }
        let v = &self.videos[pos];
        let lambda = self.per_bucket(v);
        let scan = cfg.effective_scan_windows(&self.c.windows);
        let windows = scan.len() as f64;
        let per_day = (86_400_000 / self.b) as f64;
        // Corroboration: the distinct viewers and views of the newest two slots the video
        // keeps tallies for against twice the video's trending-score baseline per slot (at
        // least a view a slot), per interaction of those slots, and the viewers' Poisson
        // tail on the coarser slot's sample against 1 / F.
        let now_slot = self.max.div_euclid(self.s);
        let (mut views, mut interactions, mut viewers, mut level) = (0i64, 0i64, 0.0f64, 0u32);
        for k in now_slot - 1..=now_slot {
            if k > v.head_slot || k <= v.head_slot - 2 {
                continue;
            }
            let slot = v.slots.get(&k).copied().unwrap_or_default();
            views += slot.views;
            interactions += slot.interactions;
            if let Some(x) = v.viewers.get(&k) {
                // No more viewers than views.
                viewers += estimated_viewers(x).min(slot.views as f64);
                level = level.max(x.level);
            }
        }
        let expected_views = (2.0 * v.tb.mean.max(0.0) / self.m as f64).max(2.0);
        let p = 0.5f64.powi(level as i32);
        let corroborated = cfg.corroborating_views_per_like > 0.0
            && interactions > 0
            && viewers - expected_views >= cfg.corroborating_views_per_like * interactions as f64
            && views as f64 - expected_views
                <= cfg.implausible_views_per_like * interactions as f64
            && ln_tail((viewers * p).floor() as i64, expected_views * p)
                <= -cfg.corroborated_budget_factor.ln();
        let budget = if corroborated {
            (cfg.false_alarms_per_video_day * cfg.corroborated_budget_factor).min(per_day)
        } else {
            cfg.false_alarms_per_video_day
        };
        // The scan's expectation: against the corroborated prior when corroborated.
        let scan_lambda = if corroborated {
            let prior = cfg.corroborated_prior_likes_per_min * (self.n * self.b) as f64 / 60_000.0;
            v.vb.mean.max(0.0).max(prior) / self.n as f64
        } else {
            lambda
        };
        let ln_alpha = (budget / 2.0 / (windows * per_day)).ln();
        let h = (2.0 * per_day / budget).ln();
        let rho = cfg.tiers[0];
        let mut best: Option<(usize, i64, f64)> = None;
        for d in &scan {
            // A short window spans its buckets; a long one (beyond the velocity window)
            // whole velocity windows of the bucket clock, the newest open, and is read
            // only while each of them holds -127 to 126 net likes.
            let mut k = ms(*d) / self.b;
            if k > self.n {
                let first = (now.div_euclid(self.n) - k / self.n + 1) * self.n;
                let slot_in_range = (first..=now).step_by(self.n as usize).all(|s| {
                    let x: i64 = v
                        .likes
                        .range(s..(s + self.n).min(now + 1))
                        .map(|(_, x)| *x)
                        .sum();
                    (-127..=126).contains(&x)
                });
                if !slot_in_range {
                    continue;
                }
                k = now - first + 1;
            }
            let count: i64 = v.likes.range(now - k + 1..=now).map(|(_, x)| *x).sum();
            let expected = k as f64 * scan_lambda;
            if (count as f64) < rho * expected || count <= 0 {
                continue;
            }
            let l = ln_tail(count, expected);
            if l > ln_alpha {
                continue;
            }
            let ratio = count as f64 / expected;
            let tier = cfg.tiers.iter().rposition(|&t| ratio >= t).unwrap_or(0);
            if best.is_none_or(|(t, _, bl)| tier > t || (tier == t && l < bl)) {
                best = Some((tier, k, l));
            }
        }
        let mut c = v.cusum;
        for bucket in self.next_bucket..=now {
            let x = v.likes.get(&bucket).copied().unwrap_or(0);
            c = (c + x as f64 * rho.ln() - (rho - 1.0) * lambda).max(0.0);
        }
        let cusum = c >= h;
        if best.is_none() && !cusum {
            return;
        }
        let tier = best.map_or(0, |(t, _, _)| t);
        let k = best.map_or(self.n, |(_, k, _)| k);
        let count: i64 = v.likes.range(now - k + 1..=now).map(|(_, x)| *x).sum();
        let b = self.b;
        let cooldown = ms(cfg.cooldown).div_euclid(b) + i64::from(ms(cfg.cooldown) % b != 0);
        let max = self.max;
        let v = &mut self.videos[pos];
        if let Some((_, t)) = lifecycle(
            &mut v.vel,
            now,
            cooldown,
            cfg.clear_after,
            Some(tier),
            Some(tier),
            false,
        ) {
            self.alerts.push((
                max,
                v.id.clone(),
                AlertType::ViralVelocity,
                t as u32,
                (v.vel.start + 1) * b,
                count,
            ));
        }
    }

    fn advance(&mut self, wm: i64) {
        self.wm = wm;
        loop {
            let be = (self.next_bucket + 1) * self.b;
            let se = (self.next_slot + 1) * self.s;
            if be <= wm && be <= se {
                let c = self.next_bucket;
                self.next_bucket += 1;
                self.close_bucket(c);
            } else if se <= wm {
                let c = self.next_slot;
                self.next_slot += 1;
                self.close_slot(c);
            } else {
                break;
            }
        }
    }

    fn close_bucket(&mut self, c: i64) {
        let cfg = self.c.velocity.clone();
        let decay =
            (-(self.b as f64) / ms(cfg.baseline_half_life) as f64 * std::f64::consts::LN_2).exp();
        let started = self.started.unwrap();
        let warm = (c + 1) * self.b - started >= ms(cfg.warmup);
        let (n, b, wm) = (self.n, self.b, self.wm);
        let rho = cfg.tiers[0];
        let lambdas: Vec<f64> = self.videos.iter().map(|v| self.per_bucket(v)).collect();
        for (v, lambda) in self.videos.iter_mut().zip(lambdas) {
            let sum = |from: i64, to: i64| v.likes.range(from..=to).map(|(_, x)| *x).sum::<i64>();
            let x = sum(c - n + 1, c);
            let sd = v.vb.var.max(0.0).sqrt();
            let mean = v.vb.mean.max(0.0);
            let denom = sd.max(mean.sqrt()).max(cfg.sigma_floor);
            let z = (x as f64 - mean) / denom;
            let cooldown = ms(cfg.cooldown).div_euclid(b) + i64::from(ms(cfg.cooldown) % b != 0);
            if v.vel.active
                && let Some((true, t)) = lifecycle(
                    &mut v.vel,
                    c,
                    cooldown,
                    cfg.clear_after,
                    None,
                    None,
                    z < cfg.z_clear,
                )
            {
                self.alerts.push((
                    wm,
                    v.id.clone(),
                    AlertType::ViralVelocityEnded,
                    t as u32,
                    (v.vel.start + 1) * b,
                    x,
                ));
            }
            let may_fire = !(v.vel.active || (v.vel.cooling && c < v.vel.cooldown_until));
            if warm {
                let bucket_likes = v.likes.get(&c).copied().unwrap_or(0);
                if v.cusum <= 0.0 {
                    v.cusum_since = c;
                }
                v.cusum = if may_fire {
                    (v.cusum + bucket_likes as f64 * rho.ln() - (rho - 1.0) * lambda).max(0.0)
                } else {
                    0.0
                };
                let cap = mean + 6.0 * denom;
                v.vb.step((x as f64).min(cap), decay);
            } else {
                v.cusum = 0.0;
                let d = v.vb.warm_decay(decay);
                v.vb.step(x as f64, d);
            }
        }
    }

    fn close_slot(&mut self, c: i64) {
        let cfg = self.c.trending.clone();
        let decay =
            (-(self.s as f64) / ms(cfg.baseline_half_life) as f64 * std::f64::consts::LN_2).exp();
        let started = self.started.unwrap();
        let warm = (c + 1) * self.s - started >= ms(cfg.warmup);
        let (m, s, wm) = (self.m, self.s, self.wm);
        let per = i64::from(cfg.views_per_interaction);
        let view_weight = i64::from(cfg.weights.view);
        for v in &mut self.videos {
            let x: i64 = (c - m + 1..=c)
                .map(|k| v.slot_score(k, per, view_weight))
                .sum();
            let mean = v.tb.mean.max(0.0);
            let ratio = x as f64 / mean.max(1.0);
            let tier = cfg.tiers.iter().rposition(|&t| x as f64 >= t);
            let above = warm && ratio >= cfg.min_ratio;
            let calm = (x as f64) < cfg.tiers[0] * cfg.clear_fraction
                || ratio < 1.0 + (cfg.min_ratio - 1.0) * cfg.clear_fraction;
            let cooldown = ms(cfg.cooldown).div_euclid(s) + i64::from(ms(cfg.cooldown) % s != 0);
            if let Some((ended, t)) = lifecycle(
                &mut v.tr,
                c,
                cooldown,
                cfg.clear_after,
                if above { tier } else { None },
                if above { tier } else { None },
                calm,
            ) {
                let ty = if ended {
                    AlertType::TrendingEnded
                } else {
                    AlertType::Trending
                };
                self.alerts
                    .push((wm, v.id.clone(), ty, t as u32, (v.tr.start + 1) * s, x));
            }
            let d = if warm { decay } else { v.tb.warm_decay(decay) };
            v.tb.step(x as f64, d);
        }
    }

    fn finish(&mut self) {
        if self.started.is_none() {
            return;
        }
        let span = (2 * self.n + i64::from(self.c.velocity.clear_after) + 2) * self.b
            + (self.m + i64::from(self.c.trending.clear_after) + 2) * self.s;
        let target = self.wm + span;
        while self.wm < target {
            let next = (self.wm + self.b).min(target);
            self.advance(next);
        }
    }
}

fn key(a: &Alert) -> Key {
    (
        a.detected_at,
        a.video_id.clone(),
        a.alert_type,
        a.tier,
        a.episode_start,
        a.count,
    )
}

fn sorted(mut v: Vec<Key>) -> Vec<Key> {
    v.sort();
    v
}

/// Random streams: a handful of videos, each with a base like rate and maybe a burst;
/// delivery jitter (some beyond the lateness), and re-deliveries.
fn stream() -> impl Strategy<Value = Vec<Ev>> {
    let video = (
        0u32..30,
        prop::option::of((0i64..1_200_000, 20_000i64..200_000, 5u32..60)),
        any::<bool>(),
    );
    (prop::collection::vec(video, 1..6), any::<u64>(), 5u32..25).prop_map(
        |(videos, seed, minutes)| {
            let mut rng = seed | 1;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let span = i64::from(minutes) * 60_000;
            let mut evs: Vec<(i64, Ev)> = Vec::new();
            let mut id = 0u64;
            for (vi, (per_min, burst, view_heavy)) in videos.iter().enumerate() {
                let mut push = |t: i64, rnd: u64, evs: &mut Vec<(i64, Ev)>| {
                    id += 1;
                    // Half the videos get about six views per interaction, as genuine
                    // audiences do (their like rises are corroborated); the others
                    // mostly interactions.
                    let kind = match (view_heavy, rnd % 20) {
                        (true, 0 | 1) => EventKind::Like,
                        (true, 2) => EventKind::Share,
                        (true, _) => EventKind::View,
                        (false, 0..=9) => EventKind::Like,
                        (false, 10) => EventKind::Unlike,
                        (false, 11..=16) => EventKind::View,
                        (false, 17 | 18) => EventKind::Share,
                        (false, _) => EventKind::Comment,
                    };
                    evs.push((
                        t,
                        Ev {
                            id: format!("e{id}"),
                            video: format!("v{vi}"),
                            kind,
                            t: T0 + t,
                            // Views anonymous on a third of the videos (no user id or an
                            // empty one), by four viewers watching again and again on a
                            // third, by many on the rest.
                            user: match vi % 3 {
                                0 if vi % 2 == 0 => None,
                                0 => Some(String::new()),
                                1 => Some(format!("u{}", rnd >> 40 & 3)),
                                _ => Some(format!("u{}", rnd >> 40 & 1023)),
                            },
                        },
                    ));
                };
                if *per_min > 0 {
                    let step = 60_000 / i64::from(*per_min);
                    let mut t = (next() % step as u64) as i64;
                    while t < span {
                        let r = next();
                        push(t, r, &mut evs);
                        t += step;
                    }
                }
                if let Some((start, len, per_sec)) = burst {
                    let step = 1_000 / i64::from(*per_sec);
                    let mut t = *start;
                    while t < (*start + *len).min(span) {
                        let r = next();
                        push(t, r, &mut evs);
                        t += step.max(1);
                    }
                }
            }
            // Delivery order: most on time, some jittered within lateness, a few late.
            let mut delivered: Vec<(i64, u64, Ev)> = evs
                .into_iter()
                .map(|(t, e)| {
                    let r = next();
                    let delay = match r % 100 {
                        0..=79 => 0,
                        80..=97 => (r >> 8) as i64 % 4_000,
                        _ => 6_000 + (r >> 8) as i64 % 40_000,
                    };
                    (t + delay, r, e)
                })
                .collect();
            delivered.sort_by_key(|d| (d.0, d.1));
            let mut out: Vec<Ev> = Vec::with_capacity(delivered.len() + 16);
            for (_, r, e) in delivered {
                out.push(e);
                if r % 97 == 0 {
                    // Re-deliver a recent event.
                    let back = (r >> 16) as usize % out.len().min(20);
                    let dup = out[out.len() - 1 - back].clone();
                    out.push(dup);
                }
            }
            out
        },
    )
}

fn run_engine(
    evs: &[Ev],
    cuts: &[usize],
    ticks: bool,
) -> (Vec<Verdict>, Vec<Alert>, PartitionState) {
    let mut state = PartitionState::new(config()).unwrap();
    let mut alerts = Vec::new();
    let mut verdicts = Vec::new();
    let mut wall = 9_000_000_000_000;
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (evs.len() + 1)).collect();
    ends.push(evs.len());
    ends.sort_unstable();
    for end in ends {
        for e in &evs[start..end.max(start)] {
            let r = EventRef {
                event_id: &e.id,
                video_id: &e.video,
                creator_id: "c",
                kind: e.kind,
                event_time: e.t,
                user_id: e.user.as_deref(),
            };
            verdicts.push(state.apply(&r, &mut alerts));
        }
        start = end.max(start);
        if ticks {
            // Ticks a second apart, never idle_timeout without events: they change nothing.
            wall += 1_000;
            state.tick(wall, &mut alerts);
        }
    }
    state.finish(&mut alerts);
    (verdicts, alerts, state)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_naive_model(evs in stream()) {
        let mut model = Reference::new(config());
        let expected_verdicts: Vec<Verdict> = evs.iter().map(|e| model.apply(e)).collect();
        let (verdicts, alerts, state) = run_engine(&evs, &[], false);
        prop_assert_eq!(&verdicts, &expected_verdicts);
        // Window counts at the end of the stream, before the final drain.
        let mut live = PartitionState::new(config()).unwrap();
        let mut sink = Vec::new();
        for e in &evs {
            live.apply(&EventRef { event_id: &e.id, video_id: &e.video, creator_id: "c", kind: e.kind, event_time: e.t, user_id: e.user.as_deref() }, &mut sink);
        }
        for v in &model.videos {
            let counts = live.video_counts(&v.id).unwrap();
            prop_assert_eq!(counts.events, v.events);
            let c = model.next_bucket - 1;
            let likes: i64 = v.likes.range(c - model.n + 1..=c).map(|(_, x)| *x).sum();
            prop_assert_eq!(counts.window_likes, likes, "likes window of {}", v.id);
            let s = model.next_slot - 1;
            let per = i64::from(model.c.trending.views_per_interaction);
            let view_weight = i64::from(model.c.trending.weights.view);
            let score: i64 = (s - model.m + 1..=s).map(|k| v.slot_score(k, per, view_weight)).sum();
            prop_assert_eq!(counts.window_score, score, "score window of {}", v.id);
        }
        model.finish();
        if std::env::var_os("TW_DEBUG").is_some() {
            let corroborated = alerts.iter().filter(|a| a.explanation.contains("corroborated")).count();
            eprintln!("events={} alerts={} corroborated={corroborated} late={} dups={}", evs.len(), alerts.len(), state.stats().late, state.stats().duplicates);
        }
        let got = sorted(alerts.iter().map(key).collect());
        prop_assert_eq!(got, sorted(model.alerts.clone()));
        let stats = state.stats();
        prop_assert_eq!(stats.late as usize, expected_verdicts.iter().filter(|v| **v == Verdict::Late).count());
        prop_assert_eq!(stats.duplicates as usize, expected_verdicts.iter().filter(|v| **v == Verdict::Duplicate).count());
    }

    #[test]
    fn batching_ticks_and_snapshots_change_nothing(evs in stream(), cuts in prop::collection::vec(any::<usize>(), 0..20), snap_at in any::<usize>()) {
        let (v1, a1, s1) = run_engine(&evs, &[], false);
        let (v2, a2, s2) = run_engine(&evs, &cuts, true);
        prop_assert_eq!(&v1, &v2);
        prop_assert_eq!(&a1, &a2);
        prop_assert_eq!(s1.video_totals(), s2.video_totals());

        // Stop at any point, snapshot, restore, continue: same outcome.
        let cut = snap_at % (evs.len() + 1);
        let mut state = PartitionState::new(config()).unwrap();
        let mut alerts = Vec::new();
        let apply = |state: &mut PartitionState, alerts: &mut Vec<Alert>, e: &Ev| {
            state.apply(&EventRef { event_id: &e.id, video_id: &e.video, creator_id: "c", kind: e.kind, event_time: e.t, user_id: e.user.as_deref() }, alerts)
        };
        for e in &evs[..cut] {
            apply(&mut state, &mut alerts, e);
        }
        let mut restored = PartitionState::from_bytes(config(), &state.to_bytes()).unwrap();
        for e in &evs[cut..] {
            apply(&mut restored, &mut alerts, e);
        }
        restored.finish(&mut alerts);
        prop_assert_eq!(&alerts, &a1);
    }
}
