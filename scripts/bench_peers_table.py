#!/usr/bin/env python3
"""The side-by-side table (docs/BENCHMARKS.md, "Side by side"; issue 15) from
scripts/bench-peers.sh's result lines.

Usage: bench_peers_table.py [--json] RESULTS.jsonl

RESULTS.jsonl has one object per contender and run (name, workload, run, status, records,
expected_records, records_per_s, cpu_s_per_million, peak_rss_mib, alerts, alerts_file,
truth_file). Prints the table, or with --json one object per contender and run, and exits 1
if a contender failed or read fewer records than the topic holds.

Alerts are compared on VIRAL_VELOCITY alerts only (the one detector every contender has):
with the counter at-least-once of the same workload and run (same videos flagged; of those,
which fired first in event time), and with the load generator's ground truth (episodes whose
video was flagged between the episode's start and its end + 5 min; flagged videos that had
no episode; the median delay from the episode's start to the first alert).

The event time of a decision: the counter's `detected_at`; a peer's window end + the 30 s
lateness, the earliest event time at which its window can close. (The peers' own
`detected_at`, the stream time or watermark when the result came out, lags further behind
in a replay at full speed: Kafka Streams looks for closed windows and Flink emits watermarks
on wall-clock intervals, during which minutes of event time go by.)
"""

import json
import statistics
import sys


LATENESS_MS = 30_000


def decided_at(alert, peer):
    """The event time of the decision (see the module's doc)."""
    if peer:
        return int(alert["window_end"]) + LATENESS_MS
    return int(alert["detected_at"])


def all_viral(path, peer):
    """video -> the decision times of its VIRAL_VELOCITY alerts in the JSON-lines file."""
    out = {}
    if not path:
        return out
    with open(path) as f:
        for line in f:
            if line.strip():
                a = json.loads(line)
                if a.get("type") == "VIRAL_VELOCITY":
                    out.setdefault(a["video_id"], []).append(decided_at(a, peer))
    return out


def first_viral(path, peer):
    """video -> its first decision time."""
    return {v: min(ts) for v, ts in all_viral(path, peer).items()}


def is_peer(name):
    return name.startswith(("streams", "flink"))


def against_truth(alerts_file, truth_file, peer):
    if not alerts_file or not truth_file:
        return None
    with open(truth_file) as f:
        truth = json.load(f)
    fired = all_viral(alerts_file, peer)
    episodes = truth.get("episodes", [])
    found, delays = 0, []
    for e in episodes:
        times = [t for t in fired.get(e["video_id"], [])
                 if e["start_ms"] <= t <= e["end_ms"] + 300_000]
        if times:
            found += 1
            delays.append((min(times) - e["start_ms"]) / 1000)
    episode_videos = {e["video_id"] for e in episodes}
    return {
        "episodes": len(episodes),
        "episodes_found": found,
        "videos_without_episode": sum(v not in episode_videos for v in fired),
        "median_delay_s": round(statistics.median(delays), 1) if delays else None,
    }


def main(argv):
    as_json = "--json" in argv
    paths = [a for a in argv if a != "--json"]
    with open(paths[0]) as f:
        rows = [json.loads(line) for line in f if line.strip()]

    for r in rows:
        r["vs_counter"] = None
        r["vs_truth"] = against_truth(r.get("alerts_file"), r.get("truth_file"), is_peer(r["name"]))
        ours = next((o for o in rows if o["name"] == "counter-alos"
                     and o["workload"] == r["workload"] and o["run"] == r["run"]), None)
        if ours is None or r["name"] in ("bare", "counter-alos") or not r.get("alerts_file"):
            continue
        a = first_viral(r["alerts_file"], is_peer(r["name"]))
        b = first_viral(ours["alerts_file"], False)
        both = set(a) & set(b)
        lead = [b[v] - a[v] for v in both]  # > 0: the peer fired first
        r["vs_counter"] = {
            "videos_flagged": len(a),
            "counter_videos_flagged": len(b),
            "same_videos": len(both),
            "peer_first": sum(d > 0 for d in lead),
            "counter_first": sum(d < 0 for d in lead),
            "same_time": sum(d == 0 for d in lead),
            "median_counter_lead_s": round(-statistics.median(lead) / 1000, 1) if lead else None,
        }

    failed = [r for r in rows
              if r["status"] != "ok" or r["records"] < r["expected_records"]]
    if as_json:
        for r in rows:
            print(json.dumps({k: v for k, v in r.items()
                              if k not in ("alerts_file", "truth_file")}))
    else:
        print_table(rows)
    for r in failed:
        print(f"FAILED: {r['workload']} {r['name']} run {r['run']}: {r['records']} of "
              f"{r['expected_records']} records ({r['status']})", file=sys.stderr)
    return 1 if failed else 0


def spread(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    m = statistics.median(values)
    if len(values) == 1:
        return fmt(m)
    return f"{fmt(m)} ({fmt(min(values))}–{fmt(max(values))})"


def print_table(rows):
    order = []
    for r in rows:
        if (r["workload"], r["name"]) not in order:
            order.append((r["workload"], r["name"]))
    print(f"| workload | contender | records | records/s | CPU s per M records | peak RSS MiB "
          f"| alerts (viral) | viral videos: flagged / ours / same | fired first: peer / ours (ours ahead by, median) "
          f"| episodes found | flagged w/o episode | median delay s |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for wl, name in order:
        rs = [r for r in rows if (r["workload"], r["name"]) == (wl, name)]
        r0 = rs[0]
        vs, tr = r0["vs_counter"], r0["vs_truth"]
        flagged = f"{vs['videos_flagged']} / {vs['counter_videos_flagged']} / {vs['same_videos']}" if vs else ""
        first = ""
        if vs:
            first = f"{vs['peer_first']} / {vs['counter_first']}"
            if vs["median_counter_lead_s"] is not None:
                first += f" ({vs['median_counter_lead_s']:+.0f} s)"
        found = f"{tr['episodes_found']} / {tr['episodes']}" if tr and name != "bare" else ""
        fp = str(tr["videos_without_episode"]) if tr and name != "bare" else ""
        delay = "" if not tr or name == "bare" or tr["median_delay_s"] is None else str(tr["median_delay_s"])
        status = "" if all(r["status"] == "ok" for r in rs) else " FAILED"
        print(f"| {wl} | {name}{status} | {r0['records']} "
              f"| {spread([r['records_per_s'] for r in rs], lambda v: f'{v:,.0f}')} "
              f"| {spread([r['cpu_s_per_million'] for r in rs], lambda v: f'{v:.2f}')} "
              f"| {spread([r['peak_rss_mib'] for r in rs], lambda v: f'{v:.0f}')} "
              f"| {r0['alerts']} ({r0.get('viral_velocity_alerts', 0)}) | {flagged} | {first} "
              f"| {found} | {fp} | {delay} |")
    if len({r["run"] for r in rows}) > 1:
        print(f"\nFigures: median over {len({r['run'] for r in rows})} runs (min–max); "
              "alert columns from run 1.")
    # Issue 15's goal: records per CPU-second, the counter against each peer.
    for wl in dict.fromkeys(r["workload"] for r in rows):
        if wl == "smoke":
            # A few seconds of records: start-up dominates, the rates mean nothing.
            print("- smoke: a check that every contender runs, not a measurement")
            continue

        def med(name):
            v = [r["cpu_s_per_million"] for r in rows
                 if r["workload"] == wl and r["name"] == name and r["cpu_s_per_million"]]
            return statistics.median(v) if v else None
        for ours in ("counter-alos", "counter-eos"):
            for peer in ("streams-alos", "streams-eos", "flink-alos", "flink-eos"):
                if med(ours) and med(peer):
                    print(f"- {wl}: {ours} does {med(peer) / med(ours):.1f}x the records per "
                          f"CPU-second of {peer}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
