"""Streaming RTRL vs streaming TBPTT(1) vs R2AC on the delay sweep: docs/STREAMING.md.

The sweep is the analogue of Farr et al. (2026)'s memory-chain diagnostic: delayed recall with 2 cues and a
delay D between the cue and the query, for D in 2, 4, ..., 128 (``memory:delayed_recall?cues=2&delay=D``;
chance is 0.5). Each agent trains for the same number of environment steps:

    stream-rtrl    rtrl train --preset stream                       (one stream, an update at every step)
    stream-tbptt   rtrl train --preset stream --learning tbptt      (the same, gradient cut at every step)
    impala-rtrl    rtrl train --preset memory                       (R2AC: rollouts of 10 steps, batch 32)

then is evaluated greedily from a zero state (500 episodes). Every finished run is kept as a small record in
docs/streaming/ (its result and its thinned training curve with wall time), so the report is rewritten from
the records on any machine and a stopped sweep goes on where it stopped (a run directory resumes).

    python bench/streaming.py --delays 2 4 8 --steps 20000 --seeds 0      # a piece of the sweep
    python bench/streaming.py --report-only                              # the report from the records
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtrl.records.files import write_text_atomically  # noqa: E402
from rtrl.records.reports import machine_description  # noqa: E402

AGENTS = {"stream-rtrl": ["--preset", "stream"], "stream-tbptt": ["--preset", "stream", "--learning", "tbptt"],
          "impala-rtrl": ["--preset", "memory"]}
DELAYS = (2, 4, 8, 16, 32, 64, 128)
CURVE_POINTS = 200


class ChildFailed(Exception):
    """An `rtrl` child failed; its own message is on stderr already."""


def rtrl(*args: str) -> None:
    code = subprocess.run([sys.executable, "-m", "rtrl", *args], cwd=ROOT).returncode
    if code:
        raise ChildFailed(code)


def curve(run: Path) -> dict:
    """step, wall_time and training success_rate of the run's metrics.csv, thinned to CURVE_POINTS rows."""
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keep = rows[::max(1, len(rows) // CURVE_POINTS)] + rows[-1:]
    return {name: [float(r[name]) if r[name] else None for r in keep] for name in ("step", "wall_time", "success_rate")}


def run_one(agent: str, delay: int, seed: int, steps: int, runs: Path, records: Path, episodes: int) -> dict:
    record = records / f"delay{delay}" / f"{agent}-seed{seed}-{steps}.json"
    if record.exists():
        return json.loads(record.read_text())
    out = runs / f"delay{delay}" / f"{agent}-seed{seed}-{steps}"
    env = f"memory:delayed_recall?cues=2&delay={delay}"
    start = time.monotonic()
    rtrl("train", *AGENTS[agent], "--env", env, "--seed", str(seed), "--total-steps", str(steps), "--out", str(out),
         "--no-progress", "--no-plot")
    rtrl("eval", str(out), "--episodes", str(episodes), "--seed", "123")
    evaluation = json.loads((out / "eval.json").read_text())
    trained = curve(out)
    result = {"agent": agent, "delay": delay, "seed": seed, "steps": steps, "env": env, "episodes": episodes,
              "greedy_success": evaluation["success_rate"], "wall_time": trained["wall_time"][-1],
              "steps_per_s": steps / max(trained["wall_time"][-1], 1e-9), "session_minutes": (time.monotonic() - start) / 60,
              "curve": trained}
    record.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(record, json.dumps(result) + "\n")
    return result


def success_at_wall_time(result: dict, seconds: float) -> float | None:
    """The training success rate of the last metrics row written by ``seconds`` of training."""
    best = None
    for wall, success in zip(result["curve"]["wall_time"], result["curve"]["success_rate"]):
        if wall is not None and wall <= seconds and success is not None:
            best = success
    return best


def report(records: Path, doc: Path, command: str) -> None:
    results = [json.loads(p.read_text()) for p in sorted(records.glob("delay*/*.json"))]
    if not results:
        print(f"no records in {records}: {doc} left as it is")
        return
    lines = [f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", f"- machine: {machine_description()}",
             f"- command: `{command}`", "",
             f"Greedy success ({'/'.join(str(e) for e in sorted({r['episodes'] for r in results}))} episodes per run, "
             "from a zero state; chance 0.5) at equal environment steps, the training "
             "success each agent had reached at the wall time of the fastest run of that delay and budget, and the "
             "training throughput. Medians over seeds.", "",
             "| delay | steps | agent | seeds | greedy success | training success at equal wall time (s) | steps/s |",
             "|---:|---:|---|---:|---:|---:|---:|"]
    groups: dict = {}
    for r in results:
        groups.setdefault((r["delay"], r["steps"]), {}).setdefault(r["agent"], []).append(r)
    for (delay, steps), by_agent in sorted(groups.items()):
        fastest = min(min(r["wall_time"] for r in runs) for runs in by_agent.values())
        for agent in AGENTS:
            runs = by_agent.get(agent)
            if not runs:
                continue
            at_wall = [s for s in (success_at_wall_time(r, fastest) for r in runs) if s is not None]
            lines.append(f"| {delay} | {steps:,} | {agent} | {len(runs)} | "
                         f"{statistics.median(r['greedy_success'] for r in runs):.3f} | "
                         f"{statistics.median(at_wall):.3f} ({fastest:.0f})" if at_wall else
                         f"| {delay} | {steps:,} | {agent} | {len(runs)} | "
                         f"{statistics.median(r['greedy_success'] for r in runs):.3f} | – ({fastest:.0f})")
            lines[-1] += f" | {statistics.median(r['steps_per_s'] for r in runs):.0f} |"
    begin, end = "<!-- begin bench/streaming.py -->", "<!-- end bench/streaming.py -->"
    section = "\n".join([begin, "## The delay sweep", ""] + lines + [end])
    text = doc.read_text() if doc.exists() else ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = (text.rstrip() + "\n\n" if text else "") + section + "\n"
    write_text_atomically(doc, text)
    print(f"wrote {doc}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", choices=list(AGENTS), default=list(AGENTS))
    parser.add_argument("--delays", nargs="+", type=int, default=list(DELAYS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200_000, help="environment steps per run (every agent)")
    parser.add_argument("--episodes", type=int, default=500, help="greedy evaluation episodes per run")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "streaming"))
    parser.add_argument("--records", default=str(ROOT / "docs" / "streaming"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "STREAMING.md"))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    bad = [d for d in args.delays if d < 1]
    if bad or args.steps < 1 or args.episodes < 1:
        parser.error(f"bad --delays {bad} / --steps {args.steps} / --episodes {args.episodes}; accepted: positive integers")
    records = Path(args.records)
    if not args.report_only:
        for seed in args.seeds:
            for delay in args.delays:
                for agent in args.agents:
                    try:
                        result = run_one(agent, delay, seed, args.steps, Path(args.runs), records, args.episodes)
                    except ChildFailed as failed:   # the child said why; the records so far are kept
                        report(records, Path(args.doc), "python bench/streaming.py " + " ".join(sys.argv[1:]))
                        return failed.args[0]
                    print(f"delay {delay} {agent} seed {seed}: greedy {result['greedy_success']:.3f}, "
                          f"{result['steps_per_s']:.0f} steps/s", flush=True)
    report(records, Path(args.doc), "python bench/streaming.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
