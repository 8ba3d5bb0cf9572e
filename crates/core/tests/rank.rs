//! The global ranker: boards against a naive top-K of the same events, whatever order the
//! partitions' candidate sets arrive in; the idle rule; the board's alert lifecycle; and
//! snapshots that change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;
use trendwatch_core::rank::RankOutput;
use trendwatch_core::{
    AlertType, Board, Candidate, CandidateSet, EngineConfig, EventKind, EventRef, PartitionState,
    Ranker, RankingConfig,
};

const T0: i64 = 1_767_571_200_000;
const SLOT: i64 = 30_000;
const WINDOW: i64 = 300_000;
const LATENESS: i64 = 5_000;

fn engine() -> EngineConfig {
    let mut c = EngineConfig::default();
    let s = Duration::from_secs;
    c.windows.bucket = s(5);
    c.windows.velocity_window = s(30);
    c.windows.trending_slot = s(30);
    c.windows.trending_window = s(300);
    c.windows.allowed_lateness = s(5);
    c.windows.dedup_horizon = s(30);
    c.velocity.warmup = s(120);
    c.trending.warmup = s(180);
    c.trending.baseline_half_life = s(600);
    c.velocity.baseline_half_life = s(300);
    c.validate().unwrap();
    c
}

fn ranking(top_k: u32) -> RankingConfig {
    RankingConfig {
        top_k,
        exit_rank: top_k + 2,
        climb_places: 2,
        clear_after: 2,
        cooldown: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(10),
        max_pending_windows: 1000,
        warmup: Duration::from_secs(60),
    }
}

#[derive(Clone, Debug)]
struct Ev {
    id: u64,
    video: u32,
    kind: EventKind,
    t: i64,
}

fn weight(kind: EventKind) -> i64 {
    let w = engine().trending.weights;
    match kind {
        EventKind::View => i64::from(w.view),
        EventKind::Like => i64::from(w.like),
        EventKind::Unlike => -i64::from(w.like),
        EventKind::Share => i64::from(w.share),
        EventKind::Comment => i64::from(w.comment),
    }
}

fn video_id(v: u32) -> String {
    format!("vid-{v:03}")
}

/// Random partitions: per partition a stream of events on its own videos (video `v`
/// lives in partition `v % partitions`), mostly in order, some jittered within the
/// lateness, a few late, a few re-delivered.
fn streams() -> impl Strategy<Value = Vec<Vec<Ev>>> {
    (2usize..5, any::<u64>(), 4i64..20).prop_map(|(partitions, seed, minutes)| {
        let mut rng = seed | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let span = minutes * 60_000;
        let mut out = vec![Vec::new(); partitions];
        let mut id = 0;
        for v in 0..(partitions as u32 * 6) {
            let p = v as usize % partitions;
            // Popularity from very quiet to busy, with a burst on some videos.
            let per_min = 1 + next() % 40;
            let step = 60_000 / per_min as i64;
            let mut t = (next() % step as u64) as i64;
            let mut evs = Vec::new();
            while t < span {
                let r = next();
                id += 1;
                let kind = match r % 20 {
                    0..=8 => EventKind::Like,
                    9 => EventKind::Unlike,
                    10..=16 => EventKind::View,
                    17 | 18 => EventKind::Share,
                    _ => EventKind::Comment,
                };
                let delay = match (r >> 8) % 100 {
                    0..=84 => 0,
                    85..=97 => ((r >> 16) % 4_000) as i64,
                    _ => 6_000 + ((r >> 16) % 30_000) as i64,
                };
                evs.push((
                    t + delay,
                    r,
                    Ev {
                        id,
                        video: v,
                        kind,
                        t: T0 + t,
                    },
                ));
                let burst = v % 5 == 0 && t > span / 3 && t < span / 2;
                t += if burst { step / 8 + 1 } else { step };
            }
            out[p].extend(evs);
        }
        out.into_iter()
            .map(|mut evs| {
                evs.sort_by_key(|(arrival, r, _)| (*arrival, *r));
                let mut delivered = Vec::new();
                for (_, r, e) in evs {
                    delivered.push(e.clone());
                    if r % 53 == 0 {
                        delivered.push(e);
                    }
                }
                delivered
            })
            .collect()
    })
}

/// What the engine counts: per partition, an event behind (newest seen − lateness) is
/// late, and an id already counted is a duplicate.
fn counted(stream: &[Ev]) -> Vec<Ev> {
    let mut max = i64::MIN;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for e in stream {
        max = max.max(e.t);
        if e.t < max - LATENESS || !seen.insert(e.id) {
            continue;
        }
        out.push(e.clone());
    }
    out
}

/// The naive board of window end `w`: every video's score over `[w - WINDOW, w)`, best
/// first (ties by id), positive scores only, the first `k`. A slot's score is its
/// interactions' weights plus its views' weight for at most `views_per_interaction` views
/// per interaction (likes net of unlikes, shares, comments) of the slot.
fn naive_board(events: &[Ev], w: i64, k: usize) -> Vec<(String, i64)> {
    let slot = engine().windows.trending_slot.as_millis() as i64;
    let per = i64::from(engine().trending.views_per_interaction);
    // (video, slot) -> (views, interactions, interaction weight)
    let mut slots: BTreeMap<(String, i64), (i64, i64, i64)> = BTreeMap::new();
    for e in events.iter().filter(|e| e.t >= w - WINDOW && e.t < w) {
        let tally = slots
            .entry((video_id(e.video), e.t.div_euclid(slot)))
            .or_default();
        match e.kind {
            EventKind::View => tally.0 += 1,
            EventKind::Unlike => tally.1 -= 1,
            _ => tally.1 += 1,
        }
        if e.kind != EventKind::View {
            tally.2 += weight(e.kind);
        }
    }
    let mut scores: BTreeMap<String, i64> = BTreeMap::new();
    for ((video, _), (views, interactions, w)) in slots {
        let capped = views.min(per * interactions.max(0));
        *scores.entry(video).or_default() += w + weight(EventKind::View) * capped;
    }
    let mut all: Vec<(String, i64)> = scores.into_iter().filter(|(_, s)| *s > 0).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

/// Each partition's candidate sets, in the order the engine produced them.
fn candidate_sets(streams: &[Vec<Ev>], k: usize) -> Vec<Vec<CandidateSet>> {
    streams
        .iter()
        .map(|evs| {
            let mut state = PartitionState::new(engine()).unwrap();
            state.propose_candidates(k);
            let mut alerts = Vec::new();
            let mut sets = Vec::new();
            for e in evs {
                let id = format!("e{}", e.id);
                let video = video_id(e.video);
                state.apply(
                    &EventRef {
                        event_id: &id,
                        video_id: &video,
                        creator_id: "c",
                        kind: e.kind,
                        event_time: e.t,
                        user_id: None,
                    },
                    &mut alerts,
                );
            }
            state.finish(&mut alerts);
            state.drain_candidates(&mut sets);
            sets
        })
        .collect()
}

/// Feeds the sets to a ranker, interleaving partitions by `order` (one pick per set).
fn rank(sets: &[Vec<CandidateSet>], order: &[usize], top_k: u32) -> (RankOutput, Ranker) {
    let mut ranker = Ranker::new(ranking(top_k), &engine()).unwrap();
    ranker.set_partitions(sets.len() as u32);
    let mut out = RankOutput::default();
    let mut cursors = vec![0usize; sets.len()];
    let mut picks = order.iter().copied().cycle();
    while cursors.iter().zip(sets).any(|(c, s)| *c < s.len()) {
        let mut p = picks.next().unwrap_or(0) % sets.len();
        while cursors[p] >= sets[p].len() {
            p = (p + 1) % sets.len();
        }
        ranker.offer(p as i32, sets[p][cursors[p]].clone(), 0, &mut out);
        cursors[p] += 1;
    }
    (out, ranker)
}

fn entries(board: &Board) -> Vec<(String, i64)> {
    board
        .entries
        .iter()
        .map(|e| (e.video_id.clone(), e.score))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every published board is the naive top-K of its window, every window with a
    /// non-empty naive board is published, and the arrival order of the sets does not
    /// matter.
    #[test]
    fn boards_equal_the_naive_top_k_whatever_the_arrival_order(
        streams in streams(),
        order in prop::collection::vec(0usize..8, 1..40),
        top_k in 1u32..6,
    ) {
        let exit = (top_k + 2) as usize;
        let sets = candidate_sets(&streams, exit);
        let (out, ranker) = rank(&sets, &order, top_k);
        let (again, _) = rank(&sets, &[0], top_k);
        prop_assert_eq!(&out.boards, &again.boards);
        prop_assert_eq!(&out.alerts, &again.alerts);

        let counted: Vec<Ev> = streams.iter().flat_map(|s| counted(s)).collect();
        let published: BTreeMap<i64, &Board> =
            out.boards.iter().map(|b| (b.window_end, b)).collect();
        prop_assert_eq!(published.len(), out.boards.len(), "a window was published twice");
        prop_assert!(out.boards.iter().any(|b| b.entries.len() == top_k as usize));
        for b in &out.boards {
            prop_assert_eq!(entries(b), naive_board(&counted, b.window_end, top_k as usize));
            prop_assert_eq!(b.window_start, b.window_end - WINDOW);
            for (i, e) in b.entries.iter().enumerate() {
                prop_assert_eq!(e.rank as usize, i + 1);
            }
        }
        let last = ranker.closed_through().unwrap();
        let first = counted.iter().map(|e| e.t).min().unwrap().div_euclid(SLOT) * SLOT;
        let mut w = first + SLOT;
        while w <= last {
            if !naive_board(&counted, w, top_k as usize).is_empty() {
                prop_assert!(published.contains_key(&w), "window {} not published", w - T0);
            }
            w += SLOT;
        }
    }

    /// Restoring a snapshot taken at any point gives the same boards and alerts.
    #[test]
    fn a_snapshot_at_any_point_changes_nothing(streams in streams(), cut in any::<usize>()) {
        let sets = candidate_sets(&streams, 5);
        let flat: Vec<(usize, CandidateSet)> = sets
            .iter()
            .enumerate()
            .flat_map(|(p, s)| s.iter().cloned().map(move |x| (p, x)))
            .collect();
        let cut = cut % (flat.len() + 1);
        let feed = |r: &mut Ranker, part: &[(usize, CandidateSet)], out: &mut RankOutput| {
            for (p, s) in part {
                r.offer(*p as i32, s.clone(), 0, out);
            }
        };
        let mut whole = Ranker::new(ranking(3), &engine()).unwrap();
        whole.set_partitions(sets.len() as u32);
        let mut expected = RankOutput::default();
        feed(&mut whole, &flat, &mut expected);

        let mut first = Ranker::new(ranking(3), &engine()).unwrap();
        first.set_partitions(sets.len() as u32);
        let mut got = RankOutput::default();
        feed(&mut first, &flat[..cut], &mut got);
        let mut second = Ranker::from_bytes(ranking(3), &engine(), &first.to_bytes()).unwrap();
        feed(&mut second, &flat[cut..], &mut got);
        prop_assert_eq!(got.boards, expected.boards);
        prop_assert_eq!(got.alerts, expected.alerts);
    }
}

fn cand(video: &str, score: i64) -> Candidate {
    Candidate {
        video_id: video.into(),
        creator_id: format!("creator-of-{video}"),
        score,
        previous_score: score / 2,
        likes: 6,
        first_seen: T0,
    }
}

fn set(w: i64, candidates: Vec<Candidate>) -> CandidateSet {
    CandidateSet {
        window_start: w - WINDOW,
        window_end: w,
        watermark: w,
        candidates,
    }
}

#[test]
fn a_silent_partition_is_left_out_after_the_idle_timeout_and_rejoins() {
    let mut r = Ranker::new(ranking(2), &engine()).unwrap();
    r.set_partitions(3);
    let mut out = RankOutput::default();
    let w = T0 + WINDOW;
    r.tick(1_000, &mut out);
    r.offer(0, set(w, vec![cand("a", 50)]), 5_000, &mut out);
    r.offer(1, set(w, vec![cand("b", 70)]), 5_000, &mut out);
    assert!(out.boards.is_empty(), "partition 2 has not spoken yet");
    assert_eq!(r.waiting_partitions(), vec![2]);
    r.tick(9_000, &mut out);
    assert!(out.boards.is_empty(), "not silent for the idle timeout yet");
    r.tick(11_001, &mut out);
    assert_eq!(out.boards.len(), 1);
    let b = &out.boards[0];
    assert_eq!(b.left_out, vec![2]);
    assert_eq!(entries(b), vec![("b".into(), 70), ("a".into(), 50)]);
    // Partition 2 speaks again: it is waited for from then on.
    r.offer(2, set(w + SLOT, vec![cand("c", 90)]), 12_000, &mut out);
    assert_eq!(
        out.boards.len(),
        1,
        "partitions 0 and 1 have not closed the next window"
    );
    r.offer(0, set(w + SLOT, vec![]), 12_000, &mut out);
    r.offer(1, set(w + SLOT, vec![cand("b", 60)]), 12_000, &mut out);
    assert_eq!(out.boards.len(), 2);
    let b = &out.boards[1];
    assert!(b.left_out.is_empty());
    assert_eq!(entries(b), vec![("c".into(), 90), ("b".into(), 60)]);
    assert_eq!(b.entries[1].previous_rank, 1);
    assert_eq!(b.entries[0].previous_rank, 0);
    assert!(
        (b.entries[0].likes_per_min - 12.0).abs() < 1e-9,
        "6 likes in 30 s"
    );
}

#[test]
fn a_stale_set_is_dropped_and_a_resent_one_changes_nothing() {
    let mut r = Ranker::new(ranking(2), &engine()).unwrap();
    r.set_partitions(1);
    let mut out = RankOutput::default();
    let w = T0 + WINDOW;
    r.offer(0, set(w, vec![cand("a", 5)]), 0, &mut out);
    r.offer(0, set(w, vec![cand("a", 5)]), 0, &mut out);
    assert_eq!(out.boards.len(), 1);
    assert_eq!(r.stats().stale_sets, 1);
}

#[test]
fn the_board_lifecycle_enters_climbs_and_ends_with_stable_ids() {
    let run = || {
        let config = RankingConfig {
            warmup: Duration::ZERO,
            ..ranking(2)
        };
        let mut r = Ranker::new(config, &engine()).unwrap();
        r.set_partitions(1);
        let mut out = RankOutput::default();
        let windows = [
            vec![cand("a", 100), cand("b", 90), cand("x", 80), cand("y", 70)],
            // x climbs from 3 (not on the board, within exit rank) to 1: it enters.
            vec![cand("x", 200), cand("a", 100), cand("b", 90), cand("y", 70)],
            // y climbs from 4 to 1: enters; b drops to 4 (still within exit rank 4).
            vec![
                cand("y", 300),
                cand("x", 200),
                cand("a", 100),
                cand("b", 90),
            ],
            // b climbs from 4 to 2: a rank change of 2 places.
            vec![
                cand("y", 300),
                cand("b", 250),
                cand("x", 200),
                cand("a", 100),
            ],
            // a drops out of the exit rank for two windows: ended.
            vec![cand("y", 300), cand("b", 250), cand("x", 200)],
            vec![cand("y", 300), cand("b", 250), cand("x", 200)],
        ];
        for (i, c) in windows.into_iter().enumerate() {
            r.offer(0, set(T0 + WINDOW + i as i64 * SLOT, c), 0, &mut out);
        }
        out
    };
    let out = run();
    let summary: Vec<(AlertType, &str, u32, u32)> = out
        .alerts
        .iter()
        .map(|a| (a.alert_type, a.video_id.as_str(), a.rank, a.previous_rank))
        .collect();
    assert_eq!(
        summary,
        vec![
            (AlertType::Trending, "a", 1, 0),
            (AlertType::Trending, "b", 2, 0),
            (AlertType::Trending, "x", 1, 0),
            (AlertType::Trending, "y", 1, 0),
            (AlertType::RankChanged, "b", 2, 4),
            (AlertType::TrendingEnded, "a", 0, 4),
        ]
    );
    let a = &out.alerts[0];
    assert!(a.explanation.contains("top 2 at #1"), "{}", a.explanation);
    assert_eq!(a.window_end - a.window_start, WINDOW);
    let ended = &out.alerts[5];
    assert_eq!(ended.episode_start, a.episode_start);
    let ids: Vec<String> = out.alerts.iter().map(|a| a.alert_id.clone()).collect();
    let again: Vec<String> = run().alerts.iter().map(|a| a.alert_id.clone()).collect();
    assert_eq!(ids, again);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
}

#[test]
fn no_alert_fires_during_warm_up_and_a_video_already_on_the_board_stays_quiet() {
    let mut r = Ranker::new(ranking(1), &engine()).unwrap();
    r.set_partitions(1);
    let mut out = RankOutput::default();
    // Warm-up is 60 s = two windows after the first: "a" is on the board throughout, "b"
    // takes first place only after it.
    for i in 0..4 {
        let mut c = vec![cand("a", 100)];
        if i == 3 {
            c.insert(0, cand("b", 500));
        }
        r.offer(0, set(T0 + WINDOW + i * SLOT, c), 0, &mut out);
    }
    assert_eq!(out.boards.len(), 4, "boards are published during warm-up");
    let fired: Vec<&str> = out.alerts.iter().map(|a| a.video_id.as_str()).collect();
    assert_eq!(fired, vec!["b"]);
}

#[test]
fn an_empty_window_clears_the_board_once() {
    let mut r = Ranker::new(ranking(2), &engine()).unwrap();
    r.set_partitions(1);
    let mut out = RankOutput::default();
    r.offer(0, set(T0 + WINDOW, vec![cand("a", 10)]), 0, &mut out);
    // The partition jumps far ahead with nothing to propose.
    r.offer(0, set(T0 + WINDOW + 100 * SLOT, vec![]), 0, &mut out);
    let shown: Vec<usize> = out.boards.iter().map(|b| b.entries.len()).collect();
    assert_eq!(
        shown,
        vec![1, 0],
        "one board, then one empty board, not 100"
    );
    assert!(
        out.alerts
            .iter()
            .any(|a| a.alert_type == AlertType::TrendingEnded)
    );
}

#[test]
fn too_many_waiting_windows_close_without_the_slow_partition() {
    let mut config = ranking(1);
    config.max_pending_windows = 3;
    let mut r = Ranker::new(config, &engine()).unwrap();
    r.set_partitions(2);
    let mut out = RankOutput::default();
    for i in 0..6 {
        r.offer(
            0,
            set(T0 + WINDOW + i * SLOT, vec![cand("a", 10 + i)]),
            0,
            &mut out,
        );
    }
    assert_eq!(out.boards.len(), 3);
    assert_eq!(r.pending_windows(), 3);
    assert_eq!(r.stats().forced_closes, 3);
}
