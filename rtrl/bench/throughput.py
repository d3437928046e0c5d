"""`rtrl bench throughput`: steady-state steps/s (and frames/s) of `rtrl train` for each core.

Each core trains in a fresh `rtrl train` process for ``--total-steps``; the rate is measured from the
run's metrics.csv between its first and last rows, so process start-up and the first batch (actor
spawn, env creation) are excluded.
"""
from __future__ import annotations

import csv
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rtrl.bench import run_rtrl
from rtrl.models import CORES
from rtrl.records.reports import command_line, record_section
from rtrl.settings import POSITIVE, POSITIVE_INT, setting

S = setting


@dataclass
class ThroughputBenchConfig:
    env: str = S("memory:delayed_recall?cues=2&delay=30", "environment id")
    cores: list[str] = S(list(CORES), "cores to measure", flag={"choices": CORES})
    preset: str = S("memory", "preset of rtrl train ('' for none)")
    total_steps: int = S(300_000, "agent steps per core", check=POSITIVE_INT)
    log_interval: float = S(2.0, "seconds between metrics rows", check=POSITIVE)
    frames_per_step: int = S(1, "frames per agent step (4 for Atari)", check=POSITIVE_INT)
    record: str | None = S(None, "also write the table into this markdown file", flag={"metavar": "FILE"})


def steady_rate(metrics_csv: Path) -> tuple[float, float]:
    """(steps/s between the first and the last metrics row, median of the per-row steps/s)."""
    with metrics_csv.open() as f:
        rows = [(float(r["step"]), float(r["wall_time"]), float(r["sps"])) for r in csv.DictReader(f)]
    if len(rows) < 2:
        raise RuntimeError(f"{metrics_csv} has {len(rows)} rows; train longer (total_steps) to measure a rate")
    (s0, w0, _), (s1, w1, _) = rows[0], rows[-1]
    return (s1 - s0) / (w1 - w0), statistics.median(r[2] for r in rows[1:])


def run(args: ThroughputBenchConfig, train_args: list[str] = ()) -> dict[str, float]:
    """Train each core for ``total_steps`` (extra ``rtrl train`` flags: ``train_args``); print and
    optionally record the table; return the steady steps/s of each core."""
    rows = []
    header = ("| core | steps/s | frames/s | median row steps/s | wall s |\n"
              "|---|---:|---:|---:|---:|")
    train_args = list(train_args)
    print(f"env {args.env}, preset {args.preset}, {args.total_steps} steps per core, extra: {train_args}")
    print(header)
    for core in args.cores:
        with tempfile.TemporaryDirectory(prefix="rtrl-throughput-") as tmp:
            cmd = ["train", "--env", args.env, "--core", core,
                   "--total-steps", str(args.total_steps), "--out", tmp, "--no-progress", "--no-plot",
                   "--log-interval", str(args.log_interval)]
            if args.preset:
                cmd += ["--preset", args.preset]
            cmd += train_args
            start = time.monotonic()
            run_rtrl(cmd, capture=False)
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
                f"`{' '.join(train_args) or '-'}`), {args.total_steps} agent steps per core, measured from "
                f"metrics.csv between its first and last rows; frames = {args.frames_per_step} x steps.\n\n"
                + header + "\n" + "\n".join(r for _, _, r in rows) + "\n\n" + ratio + "\n")
        record_section(Path(args.record), f"rtrl bench throughput: {args.env}", body, command_line())
        print(f"recorded in {args.record}")
    return by_core
