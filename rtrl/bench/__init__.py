"""Benchmarks behind `rtrl bench`: they print tables and can record them in docs/ (not timed tests).

    cells       the RTRL engine (per-step, segment, in place) against this machine's floor and autograd BPTT
    layers      exact multi-layer RTRL vs per-layer RTRL vs BPTT of stacked eLSTMs, beside the formulas
    throughput  steady-state steps/s of `rtrl train` for each core and backend (local vs ray)
    suite       the memory suite: cores x tasks x seeds at a fixed budget, resumable (docs/MEMORY_SUITE.md)
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_rtrl(args: list[str], capture: bool = True) -> str:
    """Run ``python -m rtrl ...`` in a fresh process (fresh peak-memory counters); return its stdout. The
    process stops (SIGINT: with a checkpoint) if this one is killed."""
    from rtrl.bench.child import stop_with_parent
    out = subprocess.run([sys.executable, "-m", "rtrl"] + args, check=True, text=True,
                         stdout=subprocess.PIPE if capture else subprocess.DEVNULL, preexec_fn=stop_with_parent())
    return out.stdout or ""
