"""`rtrl bench throughput`: steady-state steps/s (and frames/s) of `rtrl train` for each core and backend.

Each (backend, core) trains in a fresh `rtrl train` process for ``--total-steps``; the rate is measured
from the run's metrics.csv between its first and last rows, so process start-up, Ray's start and the
first batch (actor spawn, env creation) are excluded. With ``--repeats R`` the runs are interleaved
(every backend and core once, R times) and the table reports medians, so that a busy machine's load
weighs on all of them alike; backend ratios are taken between medians of the same run of the command.

``--learners impala stream`` adds the streaming learner (``rtrl train --learner stream`` with its own preset,
``--stream-preset``, on the same env and core): one process stepping its streams, an update per step. Its row
is "stream learner" and its ratio is to the first backend's R2AC on the same core. A flag after ``--`` that only
one learner reads (``--unroll-length``, ``--stream-lr``...) goes to that learner's runs alone; the others go to all.
"""
from __future__ import annotations

import csv
import math
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rtrl.bench import run_rtrl
from rtrl.bench.suite_labels import AGENTS, label_settings
from rtrl.envs import parse_env_id
from rtrl.models import CORE_ALIASES, CORES
from rtrl.records.reports import check_report_path, command_line, record_section
from rtrl.runtime.config import BACKENDS, LEARNER_SETTINGS, LEARNERS, PRESETS, resolve_config
from rtrl.settings import POSITIVE, POSITIVE_INT, Check, SettingError, literal, setting

S = setting
PRESET = Check("'' (none) or " + ", ".join(sorted(PRESETS)), lambda v: v == "" or v in PRESETS)


@dataclass
class ThroughputBenchConfig:
    env: str = S("memory:delayed_recall?cues=2&delay=30", "environment id")
    cores: list[str] = S(list(CORES), "cores to measure, by label: the old core names or the memory suite's labels "
                         "(rtrl-rtu, tbptt-clru, 2x-exact-rtrl-elstm...)", flag={"choices": list(AGENTS)})
    backends: list[str] = S(["local"], "backends of rtrl train to measure", flag={"choices": BACKENDS})
    repeats: int = S(1, "runs of each backend and core, interleaved; the table shows medians", check=POSITIVE_INT)
    preset: str = S("memory", "preset of rtrl train ('' for none)", check=PRESET)
    learners: list[str] = S(["impala"], "learners to measure: impala (R2AC, on each backend) and/or stream (the "
                            "streaming learner, in its own process)", flag={"choices": LEARNERS})
    stream_preset: str = S("stream", "preset of the streaming learner's runs ('' for none)", check=PRESET)
    total_steps: int = S(300_000, "agent steps per run", check=POSITIVE_INT)
    log_interval: float = S(2.0, "seconds between metrics rows", check=POSITIVE)
    frames_per_step: int = S(1, "frames per agent step (4 for Atari)", check=POSITIVE_INT)
    record: str | None = S(None, "also write the table into this markdown file", flag={"metavar": "FILE"})

    def check_together(self) -> None:
        # a core, backend or learner named twice is measured once (twice, each run would count as a repeat of its own)
        self.cores, self.backends, self.learners = (list(dict.fromkeys(names))
                                                    for names in (self.cores, self.backends, self.learners))
        try:
            parse_env_id(self.env)
        except ValueError as error:
            raise SettingError("bad {env}: " + literal(str(error)), env=self.env) from None
        check_report_path(self.record)


class ChildFailed(RuntimeError):
    """A child ``rtrl train`` failed; its own message went to stderr. ``code``: its exit code."""

    def __init__(self, code: int, command: list[str]):
        self.code = code
        super().__init__(f"the rtrl train run ({' '.join(command)}) failed with exit code {code}; its message is above")


STREAM = "stream learner"   # the streaming learner's row, beside the backends' R2AC rows


def modes(args: "ThroughputBenchConfig") -> list[str]:
    """What is measured per core: R2AC on each backend, then the streaming learner."""
    return (list(args.backends) if "impala" in args.learners else []) + ([STREAM] if "stream" in args.learners else [])


# what a row's label sets: given again after ``--`` they would train another core than the row names
LABEL_SETTINGS = ("core", "cell", "learning", "num_layers", "multilayer")
ROW_SETTINGS = {"learner": "learners", "backend": "backends"}   # the same for a row's learner and backend


def learner_of(mode: str) -> str:
    return "stream" if mode == STREAM else "impala"


def _read_by_another_learner(name: str, learner: str) -> bool:
    return any(name in names for other, names in LEARNER_SETTINGS.items() if other != learner)


def check_train_args(args: "ThroughputBenchConfig", train_overrides: dict) -> None:
    """Every run's settings, checked before the first child starts (a SettingError names the flag). A setting
    only another learner reads is not among a run's (``args_for``)."""
    relabel = [name for name in LABEL_SETTINGS if name in train_overrides]
    if relabel:
        raise SettingError(literal(f"{', '.join(relabel)} after -- would train another core than its row names; "
                                   "accepted: the core's label in ") + "{cores}", cores=args.cores)
    for name, chooser in ROW_SETTINGS.items():
        if name in train_overrides:
            raise SettingError(literal(f"{name} after -- would run another {name} than its row names; accepted: ")
                               + f"{{{chooser}:name}}", **{chooser: getattr(args, chooser)})
    learners = {learner_of(mode) for mode in modes(args)}
    unread = [name for name in train_overrides if all(_read_by_another_learner(name, lr) for lr in learners)]
    if unread:   # e.g. --stream-lr with --learners impala: no run would read it
        raise SettingError(literal(f"{', '.join(unread)} after -- is read by none of the learners measured ") +
                           "({learners}); accepted: a flag of one of them, or add its learner to {learners:name}",
                           learners=sorted(learners))
    for core in args.cores:
        for mode in modes(args):
            preset, extra = ((args.stream_preset, dict(learner="stream")) if mode == STREAM
                             else (args.preset, dict(backend=mode)))
            mine = {name: value for name, value in train_overrides.items()
                    if not _read_by_another_learner(name, learner_of(mode))}
            resolve_config(preset or None, overrides=dict(mine, env=args.env, **label_settings(core),
                                                          total_steps=args.total_steps,
                                                          log_interval=args.log_interval, **extra))


def flag_setting(flag: str) -> str:
    """The setting a flag token names: ``--stream-lr=0.5`` -> ``stream_lr``."""
    return flag[2:].split("=", 1)[0].replace("-", "_")


def args_for(mode: str, train_args: list[str]) -> list[str]:
    """The flags after ``--`` that a run of ``mode`` takes: all but those (each with its values) that only another
    learner reads."""
    kept, keep = [], True
    for token in train_args:
        if token.startswith("--"):
            keep = not _read_by_another_learner(flag_setting(token), learner_of(mode))
        if keep:
            kept.append(token)
    return kept


def label_flags(label: str) -> list[str]:
    """The `rtrl train` flags of a core's label: ``--cell``, ``--learning`` (an old core name in today's spelling,
    which spares each run the old name's notice), and a stack's ``--num-layers``, ``--multilayer``."""
    settings = label_settings(label)
    if "core" in settings:
        cell, learning = CORE_ALIASES[settings.pop("core")]
        settings = dict(cell=cell, learning=learning)
    return [arg for name, value in settings.items() for arg in (f"--{name.replace('_', '-')}", str(value))]


def read_run(metrics_csv: Path, total_steps: int = 0, log_interval: float = 0.0) -> tuple[float, float, float]:
    """(steps/s between the first and the last metrics row, median of the per-row steps/s, mean policy lag
    over the rows after the first)."""
    with metrics_csv.open() as f:
        rows = list(csv.DictReader(f))
    if len(rows) < 2:
        raise SettingError(literal(f"{metrics_csv} has {len(rows)} rows: no rate can be measured; ") +
                           "accepted: a {total_steps} (or a shorter {log_interval}) that gives at least two metrics "
                           "rows", total_steps=total_steps, log_interval=log_interval)
    (s0, w0), (s1, w1) = ((float(r["step"]), float(r["wall_time"])) for r in (rows[0], rows[-1]))
    lags = [float(r["policy_lag"]) for r in rows[1:] if r.get("policy_lag")]
    return ((s1 - s0) / (w1 - w0), statistics.median(float(r["sps"]) for r in rows[1:]),
            statistics.fmean(lags) if lags else math.nan)


def measure(args: ThroughputBenchConfig, backend: str, core: str, train_args: list[str]) -> dict:
    """One `rtrl train` run: its steady rate, median row rate, mean policy lag and wall time."""
    with tempfile.TemporaryDirectory(prefix="rtrl-throughput-") as tmp:
        cmd = ["train", "--env", args.env, *label_flags(core), "--total-steps", str(args.total_steps), "--out", tmp,
               "--no-progress", "--no-plot", "--log-interval", str(args.log_interval)]
        if backend == STREAM:
            cmd += ["--learner", "stream"] + (["--preset", args.stream_preset] if args.stream_preset else [])
        else:
            cmd += ["--backend", backend] + (["--preset", args.preset] if args.preset else [])
        start = time.monotonic()
        try:
            run_rtrl(cmd + train_args, capture=False)   # its stderr is the user's: its own error reaches them
        except subprocess.CalledProcessError as error:
            raise ChildFailed(error.returncode, ["rtrl"] + cmd + train_args) from None
        wall = time.monotonic() - start
        rate, median_row, lag = read_run(Path(tmp) / "metrics.csv", args.total_steps, args.log_interval)
    return {"rate": rate, "median_row": median_row, "lag": lag, "wall": wall}


def _extra(args: ThroughputBenchConfig, train_args: list[str]) -> str:
    """The extra flags, per learner where they differ."""
    each = {learner_of(mode): " ".join(args_for(mode, train_args)) or "-" for mode in modes(args)}
    if len(set(each.values())) == 1:
        return f"`{next(iter(each.values()))}`"
    return ", ".join(f"`{flags}` ({learner})" for learner, flags in each.items())


def _lag(lag: float) -> str:
    return "–" if math.isnan(lag) else f"{lag:.2f}"   # the streaming learner has no policy lag


def run(args: ThroughputBenchConfig, train_args: list[str] = ()) -> dict[tuple[str, str], float]:
    """Train each backend and core ``repeats`` times for ``total_steps`` (extra ``rtrl train`` flags:
    ``train_args``); print and optionally record the table; return the median steady steps/s of each
    (backend, core)."""
    train_args = list(train_args)
    print(f"env {args.env}, preset {args.preset}, {args.total_steps} steps per run, {args.repeats} run(s) each, "
          f"extra: {_extra(args, train_args)}")
    runs: dict[tuple[str, str], list[dict]] = {(b, c): [] for b in modes(args) for c in args.cores}
    for repeat in range(args.repeats):
        for core in args.cores:
            for backend in modes(args):
                result = measure(args, backend, core, args_for(backend, train_args))
                runs[backend, core].append(result)
                print(f"  run {repeat + 1}: {backend} {core}: {result['rate']:.0f} steps/s, policy lag "
                      f"{result['lag']:.2f}, {result['wall']:.0f} s", flush=True)
    header = ("| backend | core | steps/s (median) | frames/s | each run's steps/s | policy lag | wall s |\n"
              "|---|---|---:|---:|---|---:|---:|")
    table, rates = [], {}
    for (backend, core), results in runs.items():
        rate = statistics.median(r["rate"] for r in results)
        rates[f"{backend}/{core}"] = rate
        each = ", ".join(f"{r['rate']:.0f}" for r in results)
        table.append(f"| {backend} | {core} | {rate:.0f} | {rate * args.frames_per_step:.0f} | {each} | "
                     f"{_lag(statistics.median(r['lag'] for r in results))} | "
                     f"{statistics.median(r['wall'] for r in results):.0f} |")
    ratios = []
    first = modes(args)[0]
    for backend in modes(args)[1:]:
        for core in args.cores:
            ratios.append(f"{backend} / {first} ({core}) = {rates[f'{backend}/{core}'] / rates[f'{first}/{core}']:.2f}"
                          + (" (target >= 0.8)" if (first, backend) == ("local", "ray") else ""))
    if "rtrl-elstm" in args.cores and "tbptt-elstm" in args.cores:
        for backend in modes(args):
            ratios.append(f"{backend}: rtrl-elstm / tbptt-elstm = "
                          f"{rates[f'{backend}/rtrl-elstm'] / rates[f'{backend}/tbptt-elstm']:.2f} (target >= 0.8)")
    print(header + "\n" + "\n".join(table) + "\n\n" + "\n".join(ratios))
    if args.record:
        body = (f"Steady-state throughput of `rtrl train` on `{args.env}` (preset `{args.preset}`, extra flags "
                f"{_extra(args, train_args)}), {args.total_steps} agent steps per run, measured from metrics.csv "
                f"between its first and last rows (start-up excluded); {args.repeats} interleaved run(s) of each "
                f"backend and core, medians shown; frames = {args.frames_per_step} x steps; policy lag = learner "
                f"weight version minus the rollouts' version, mean over the run."
                + (f" The {STREAM} is `rtrl train --learner stream` (preset `{args.stream_preset}`) on the same env "
                   "and core: one process, an update at every step of each stream." if STREAM in modes(args) else "")
                + "\n\n"
                + header + "\n" + "\n".join(table) + "\n\n" + "\n".join(f"- {r}" for r in ratios) + "\n")
        name = f"rtrl bench throughput: {args.env}" + ("" if modes(args) == ["local"] else
                                                       f" ({', '.join(modes(args))})")
        record_section(Path(args.record), name, body, command_line())
        print(f"recorded in {args.record}")
    return {(backend, core): rates[f"{backend}/{core}"] for backend, core in runs}
