"""A step's latencies second by second, to see when they rise (ramp, turn changes,
hang-ups): `python -m bench.timeline var/bench/run-…/n200`."""

import argparse
import collections
from pathlib import Path

import orjson

from bench.stats import fmt, percentile

FRAME_S = 0.02
FRAME_BYTES = 160


def load(step_dir: Path) -> tuple[list[dict], list[dict], list[dict]]:
    sessions = orjson.loads((step_dir / "realtime.json").read_bytes())["sessions"]
    results = [orjson.loads(p.read_bytes()) for p in sorted(step_dir.glob("callers-[0-9].json"))]
    calls = [c for r in results for c in r["calls"]]
    return calls, sessions, results


def inbound_latencies(call: dict, sessions: list[dict]) -> list[tuple[float, float]]:
    """(when, ms) for sampled caller frames: sent by the fake Twilio (on its 20 ms
    schedule, so at most its loop lag late) → received by the fake OpenAI."""
    if not call["stamps"] or call["start_sent_at"] is None:
        return []
    session = sessions[call["stamps"][0][0]]
    return [
        (at, (at - (call["start_sent_at"] + received // FRAME_BYTES * FRAME_S)) * 1000)
        for at, received in session["appends"]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("step_dir", type=Path)
    args = parser.parse_args()
    calls, sessions, results = load(args.step_dir)
    t0 = min(c["stream_connected_at"] for c in calls if c["stream_connected_at"])
    forward, inbound, lag = (collections.defaultdict(list) for _ in range(3))
    sent = [s["delta_sent_at"] for s in sessions]
    live = collections.Counter()
    for c in calls:
        for session, number, received_at in c["stamps"]:
            at = sent[session][number]
            forward[int(at - t0)].append((received_at - at) * 1000)
        for at, ms in inbound_latencies(c, sessions):
            inbound[int(at - t0)].append(ms)
        if c["stream_connected_at"]:
            for second in range(int(c["stream_connected_at"] - t0), int(c["hung_up_at"] - t0) + 1):
                live[second] += 1
    for r in results:
        for at, ms in r["loop_lag"]["spikes"]:
            lag[int(at - t0)].append(ms)
    print("second | live calls | out chunks | out p50 | out p99 | in p50 | in p99 | caller lag max")
    for second in sorted(set(forward) | set(inbound)):
        out, into = forward.get(second, []), inbound.get(second, [])
        print(
            f"{second:6d} | {live[second]:10d} | {len(out):10d} | {fmt(percentile(out, 50)):>7} "
            f"| {fmt(percentile(out, 99)):>7} | {fmt(percentile(into, 50)):>6} "
            f"| {fmt(percentile(into, 99)):>6} | {fmt(max(lag.get(second, [0])))}"
        )


if __name__ == "__main__":
    main()
