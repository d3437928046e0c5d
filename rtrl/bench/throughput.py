"""`rtrl bench throughput`: steady-state steps/s (and frames/s) of `rtrl train` for each core.

Each core trains in a fresh `rtrl train` process for ``--total-steps``; the rate is measured from the
run's metrics.csv between its first and last rows, so process start-up and the first batch (actor
spawn, env creation) are excluded.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rtrl.bench import command_line, record_section
from rtrl.models import CORES


def steady_rate(metrics_csv: Path) -> tuple[float, float]:
    """(steps/s between the first and the last metrics row, median of the per-row steps/s)."""
    with metrics_csv.open() as f:
        rows = [(float(r["step"]), float(r["wall_time"]), float(r["sps"])) for r in csv.DictReader(f)]
    if len(rows) < 2:
        raise RuntimeError(f"{metrics_csv} has {len(rows)} rows; train longer (--total-steps) to measure a rate")
    (s0, w0, _), (s1, w1, _) = rows[0], rows[-1]
    return (s1 - s0) / (w1 - w0), statistics.median(r[2] for r in rows[1:])


def run(args) -> int:
    rows = []
    header = ("| core | steps/s | frames/s | median row steps/s | wall s |\n"
              "|---|---:|---:|---:|---:|")
    print(f"env {args.env}, preset {args.preset}, {args.total_steps} steps per core, extra: {args.train_args}")
    print(header)
    for core in args.cores:
        with tempfile.TemporaryDirectory(prefix="rtrl-throughput-") as tmp:
            cmd = [sys.executable, "-m", "rtrl", "train", "--env", args.env, "--core", core,
                   "--total-steps", str(args.total_steps), "--out", tmp, "--no-progress", "--no-plot",
                   "--log-interval", str(args.log_interval)]
            if args.preset:
                cmd += ["--preset", args.preset]
            cmd += args.train_args
            start = time.monotonic()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            wall = time.monotonic() - start
            rate, median_rate = steady_rate(Path(tmp) / "metrics.csv")
        row = (f"| {core} | {rate:.0f} | {rate * args.frames_per_step:.0f} | {median_rate:.0f} | {wall:.0f} |")
        rows.append((core, rate, row))
        print(row, flush=True)
    by_core = {core: rate for core, rate, _ in rows}
    ratio = ""
    if "rtrl-elstm" in by_core and "tbptt-elstm" in by_core:
        ratio = f"rtrl-elstm / tbptt-elstm = {by_core['rtrl-elstm'] / by_core['tbptt-elstm']:.2f} (target >= 0.8)"
        print(ratio)
    if args.record:
        body = (f"Steady-state throughput of `rtrl train` on `{args.env}` (preset `{args.preset}`, extra flags "
                f"`{' '.join(args.train_args) or '-'}`), {args.total_steps} agent steps per core, measured from "
                f"metrics.csv between its first and last rows; frames = {args.frames_per_step} x steps.\n\n"
                + header + "\n" + "\n".join(r for _, _, r in rows) + "\n\n" + ratio + "\n")
        record_section(Path(args.record), f"rtrl bench throughput: {args.env}", body, command_line())
        print(f"recorded in {args.record}")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("throughput", help="steps/s of rtrl train for each core",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--env", default="memory:delayed_recall?cues=2&delay=30", help="environment id")
    p.add_argument("--cores", nargs="+", choices=CORES, default=list(CORES), help="cores to measure")
    p.add_argument("--preset", default="memory", help="preset of rtrl train ('' for none)")
    p.add_argument("--total-steps", type=int, default=300_000, help="agent steps per core")
    p.add_argument("--log-interval", type=float, default=2.0, help="seconds between metrics rows")
    p.add_argument("--frames-per-step", type=int, default=1, help="frames per agent step (4 for Atari)")
    p.add_argument("--record", metavar="FILE", default=None, help="also write the table into this markdown file")
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="further flags for rtrl train (after --)")
    p.set_defaults(func=lambda args: run(_strip_separator(args)))


def _strip_separator(args):
    if args.train_args and args.train_args[0] == "--":
        args.train_args = args.train_args[1:]
    return args
