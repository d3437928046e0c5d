"""`rtrl bench ...`: benchmarks that print tables and can record them in docs/ (not timed tests)."""
from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from rtrl.files import write_text_atomically


def machine_description() -> str:
    """One line naming the machine: CPU model, cores, OS, Python, torch and its thread count."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads")


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


def record_section(path: Path, name: str, body: str, command: str) -> None:
    """Write ``body`` as the section ``name`` of the markdown file ``path``, replacing an older one.

    The section carries the date, the machine and the command that produced it.
    """
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"{begin}\n## {name}\n\n- date: {stamp}\n- machine: {machine_description()}\n"
               f"- command: `{command}`\n\n{body.rstrip()}\n{end}\n")
    text = path.read_text() if path.exists() else "# Benchmarks\n\nEach section is written by the command it names.\n\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, text)


def command_line() -> str:
    return "rtrl " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("rtrl") else " ".join(
        [Path(sys.executable).name, "-m", "rtrl"] + sys.argv[1:])


def add_parser(subparsers) -> None:
    from rtrl.bench import cells, throughput

    parser = subparsers.add_parser("bench", help="run a benchmark and print (and optionally record) its table")
    bench_sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    bench_sub.required = True
    cells.add_parser(bench_sub)
    throughput.add_parser(bench_sub)


def run_in_subprocess(args: list[str]) -> str:
    """Run ``python -m rtrl ...`` in a fresh process (fresh peak-memory counters); return stdout."""
    out = subprocess.run([sys.executable, "-m", "rtrl"] + args, check=True, capture_output=True, text=True)
    return out.stdout
