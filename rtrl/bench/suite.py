"""`rtrl bench suite`: the memory suite — cores × tasks × seeds at a fixed step budget, resumable.

Each run trains with its cell family's preset (``memory-suite``, or ``memory-suite-rtu`` ...: only the agent, the
task and the seed change; ``rtrl.bench.suite_labels``), inline
in one process with one torch thread, then is evaluated greedily from a zero state; its score goes to
``RUNS/TIER/TASK/CORE-seedK/result.json``. A run with a ``result.json`` is finished and never run again;
a run that was stopped resumes from its last checkpoint, so a stopped piece loses at most the run in
progress. Each finished run is also kept as a small record (its result and its training curve, thinned) in
``RESULTS/VARIANT/TASK/CORE-seedK.json`` (``docs/memory_suite`` by default, beside the report): committed
with the report, the records let a tier go on, and its report be rewritten, on a machine that does not
have the run directories. ``docs/MEMORY_SUITE.md`` is then written from whatever results exist
(``rtrl.bench.suite_report``).

    rtrl bench suite --tier quick                 # 1 seed, rtrl-elstm and tbptt-elstm
    rtrl bench suite --tier full --jobs 2 --max-minutes 75   # a < 2 h piece of the full tier; run it again
    rtrl bench suite --tier full --cells rtu,clru --jobs 2 --max-minutes 75   # the paired cells' runs alone
    rtrl bench suite --tier full --report-only    # the report from the runs that exist
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import re
import shlex
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rtrl.bench.suite_labels import cell_of, label_preset, label_settings
from rtrl.bench.suite_records import read_result, training_curve
from rtrl.bench.suite_tasks import TASK_NAMES, TASKS
from rtrl.eval.evaluation import EvalConfig, evaluate
from rtrl.records.files import write_text_atomically
from rtrl.records.reports import check_report_path, utc_stamp
from rtrl.runtime.config import PRESETS, resolve_config
from rtrl.runtime.train import train
from rtrl.settings import NON_NEGATIVE, POSITIVE_INT, SettingError, literal, optional, setting, validate

EVAL_SEED = 123
SET_PER_RUN = ("env", "core", "cell", "learning", "num_layers", "multilayer", "seed", "total_steps")   # what the suite sets for each run


@dataclass(frozen=True)
class Tier:
    cores: tuple[tuple[str, tuple[int, ...]], ...]   # (label, seeds): suite_labels.AGENTS
    total_steps: int
    eval_episodes: int


TIERS = {
    "quick": Tier((("rtrl-elstm", (0,)), ("tbptt-elstm", (0,))), 2_000_000, 200),
    # issue 23: the paired cells (3 seeds) and the 2-layer exact eLSTM (1 seed) beside the first four
    "full": Tier((("rtrl-elstm", (0, 1, 2)), ("tbptt-elstm", (0, 1, 2)), ("lstm", (0,)), ("ff", (0,)),
                  ("rtrl-rtu", (0, 1, 2)), ("rtrl-clru", (0, 1, 2)), ("2x-exact-rtrl-elstm", (0,))),
                 15_000_000, 500),
}


@dataclass
class SuiteConfig:
    tier: str = setting("quick", "quick: 1 seed of rtrl-elstm and tbptt-elstm, 2M steps per run; full: 3 seeds "
                        "of rtrl-elstm, tbptt-elstm, rtrl-rtu and rtrl-clru and 1 of lstm, ff and 2x-exact-rtrl-elstm, "
                        "15M steps per run (POPGym's budget)", choices=tuple(TIERS))
    runs: str = setting("runs/suite", "directory of the runs (RUNS/TIER/TASK/CORE-seedK)", flag={"metavar": "DIR"})
    results: str = setting("docs/memory_suite", "directory of the finished runs' records (score and thinned "
                           "training curve; RESULTS/VARIANT/TASK/CORE-seedK.json): kept with the report, they count "
                           "as finished runs on a machine without the run directories ('' for none)",
                           flag={"metavar": "DIR"})
    doc: str = setting("docs/MEMORY_SUITE.md", "the report to write ('' for none)", flag={"metavar": "PATH"})
    preset: str = setting("memory-suite", "the training preset of the runs (only agent, task and seed change); "
                          "a cell family with a preset PRESET-CELL (memory-suite-rtu, memory-suite-clru) trains with "
                          "that one")
    tasks: str = setting("", "comma-separated task names to run (empty: all): " + ", ".join(TASK_NAMES))
    total_steps: int | None = setting(None, "agent steps per run (none: the tier's)", check=optional(POSITIVE_INT))
    eval_episodes: int | None = setting(None, "greedy evaluation episodes per run (none: the tier's 200 / 500)",
                                        check=optional(POSITIVE_INT))
    seeds: str = setting("", "comma-separated seeds for every core of the tier (empty: the tier's)")
    cores: str = setting("", "comma-separated agent labels of the tier to run (empty: all of the tier's); the "
                         "others keep their runs and stay in the report")
    cells: str = setting("", "comma-separated cells: run the tier's labels of these cells (e.g. rtu,clru; with "
                         "--cores, the labels both name; empty: every cell)")
    jobs: int = setting(1, "runs at once, each one process with one torch thread", check=POSITIVE_INT)
    max_minutes: float = setting(0.0, "start no run after this many minutes (0: no limit); a piece of a tier",
                                 check=NON_NEGATIVE)
    report_only: bool = setting(False, "run nothing: write the report from the finished runs")
    previous_action: bool = setting(False, "every task's observation ends with the previous action's one-hot "
                                    "(the env option previous_action=true); with the memory-suite preset, add "
                                    "-- --normalize-advantages false (docs/MEMORY_SUITE.md)")

    def check_together(self) -> None:
        unknown = [t for t in self.task_names() if t not in TASK_NAMES]
        if unknown:
            raise SettingError("unknown task in {tasks}; accepted: " + ", ".join(TASK_NAMES), tasks=self.tasks)
        if not all(part.strip().isdigit() for part in self.seeds.split(",")) and self.seeds.strip():
            raise SettingError("bad {seeds}; accepted: comma-separated integers >= 0, e.g. 0,1,2", seeds=self.seeds)
        tier_cores = [core for core, _ in TIERS[self.tier].cores]
        unknown = [c for c in self.core_names() if c not in tier_cores]
        if unknown:
            raise SettingError("{cores} names a core not in the " + literal(self.tier) + " tier; accepted: "
                               + ", ".join(tier_cores), cores=self.cores)
        tier_cells = list(dict.fromkeys(cell_of(core) for core in tier_cores))
        unknown = [c for c in self.cell_names() if c not in tier_cells]
        if unknown:
            raise SettingError("{cells} names a cell with no agent in the " + literal(self.tier) + " tier; "
                               "accepted: " + ", ".join(tier_cells), cells=self.cells)
        if self.preset not in PRESETS:
            raise SettingError("unknown {preset}; accepted: " + ", ".join(sorted(PRESETS)), preset=self.preset)
        try:
            check_report_path(self.doc)   # before hours of runs: the report can be written at the end
        except ValueError as error:
            raise SettingError("{doc:name}: " + literal(str(error)), doc=self.doc) from None

    def validate(self) -> "SuiteConfig":
        return validate(self)

    def task_names(self) -> list[str]:
        return list(dict.fromkeys(t.strip() for t in self.tasks.split(",") if t.strip())) or list(TASK_NAMES)

    def core_names(self) -> list[str]:
        """The cores ``cores`` names (empty: none chosen, every core of the tier runs)."""
        return [c.strip() for c in self.cores.split(",") if c.strip()]

    def cell_names(self) -> list[str]:
        """The cells ``cells`` names (empty: none chosen)."""
        return [c.strip() for c in self.cells.split(",") if c.strip()]

    def chosen(self, label: str) -> bool:
        """Whether the tier's ``label`` runs: named by ``cores`` and ``cells`` (or they are empty)."""
        return ((not self.core_names() or label in self.core_names())
                and (not self.cell_names() or cell_of(label) in self.cell_names()))

    def steps(self) -> int:
        return self.total_steps or TIERS[self.tier].total_steps

    def episodes(self) -> int:
        return self.eval_episodes or TIERS[self.tier].eval_episodes


@dataclass(frozen=True)
class Job:
    task: str
    core: str
    seed: int
    out: str
    settings: dict   # the training settings besides the preset's
    record: str | None = None   # where the finished run's record is kept (None: nowhere but the run directory)
    preset: str = "memory-suite"   # the training preset (its cell family's: suite_labels.label_preset)


def variant_parts(cfg: SuiteConfig, train_overrides: dict | None = None) -> list[str]:
    """What makes runs of a tier comparable: the tier, and any other preset, observation, budget or
    training settings (not the seeds or tasks chosen)."""
    parts = [cfg.tier] + ([] if cfg.preset == "memory-suite" else [f"preset {cfg.preset}"])
    parts += ["previous action"] if cfg.previous_action else []
    parts += [f"{cfg.total_steps:,} steps"] if cfg.total_steps else []
    return parts + [f"{key}={value}" for key, value in sorted((train_overrides or {}).items())]


def slug(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_")


def plan(cfg: SuiteConfig, train_overrides: dict | None = None) -> list[Job]:
    """Every run of the tier, seed by seed (seed 0 of every task and core first)."""
    variant = slug("_".join(variant_parts(cfg, train_overrides)))
    tier, tasks = TIERS[cfg.tier], {t.name: t for t in TASKS}
    cores = tier.cores
    if cfg.seeds.strip():
        chosen = tuple(sorted({int(part) for part in cfg.seeds.split(",")}))
        cores = tuple((core, chosen) for core, _ in cores)
    cores = tuple((core, seeds) for core, seeds in cores if cfg.chosen(core))
    seeds = sorted({s for _, core_seeds in cores for s in core_seeds})
    jobs = []
    for seed in seeds:
        for name in cfg.task_names():
            for core, core_seeds in cores:
                if seed in core_seeds:
                    env = tasks[name].env
                    if cfg.previous_action:
                        env += ("&" if "?" in env else "?") + "previous_action=true"
                    settings = dict(train_overrides or {}, env=env, **label_settings(core), seed=seed,
                                    total_steps=cfg.steps(), num_actors=0, learner_threads=1)
                    # under the variant, as the records are: an ablation's runs never meet the tier's own
                    out = Path(cfg.runs) / variant / name / f"{core}-seed{seed}"
                    record = (str(Path(cfg.results) / variant / name / f"{core}-seed{seed}.json")
                              if cfg.results else None)
                    jobs.append(Job(name, core, seed, str(out), settings, record, label_preset(core, cfg.preset)))
    return jobs


def load_result(job: Job, preset: str | None = None) -> dict | None:
    """The finished run's result: its record if kept, else its run directory's result.json (with the training
    curve read from its metrics); None while the run has neither. With ``preset``, a result of another
    preset or settings is an error (give the suite another directory) rather than a finished run."""
    record, path = (Path(job.record) if job.record else None), Path(job.out) / "result.json"
    if record is not None and record.exists():
        result, where = read_result(record), record
    elif path.exists():
        result, where = read_result(path), path
        if "curve" not in result:
            result["curve"] = training_curve(job.out, result["score_name"])
    else:
        return None
    if preset is not None and (result["preset"], result.get("settings", job.settings)) != (preset, job.settings):
        raise SettingError(literal(f"{where} holds a run of preset {result['preset']!r} with settings "
                                   f"{result.get('settings')}, not ") + "{preset} with "
                           + literal(f"{job.settings}") + "; accepted: another runs or results directory",
                           preset=preset)
    return result


def is_finished(job: Job, preset: str | None = None) -> bool:
    """True when the run has its record or its result.json (see :func:`load_result` for ``preset``)."""
    return load_result(job, preset) is not None


def keep_record(job: Job) -> bool:
    """Write the record of a run finished in its run directory if it has none yet; True when written."""
    if job.record is None or Path(job.record).exists() or not (Path(job.out) / "result.json").exists():
        return False
    result = load_result(job)
    Path(job.record).parent.mkdir(parents=True, exist_ok=True)
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in result.items()]   # a key a line
    write_text_atomically(Path(job.record), "{\n" + ",\n".join(lines) + "\n}\n")
    return True


def train_command(preset: str, job: Job) -> str:
    """The `rtrl train` command line that makes the same run."""
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in job.settings.items()]
    return shlex.join(["rtrl", "train", "--preset", preset, *flags, "--out", job.out])


def run_job(preset: str, job: Job, episodes: int) -> dict:
    """Train (or resume) one run, evaluate it greedily from a zero state, write and return its result."""
    torch.set_num_threads(1)
    task = {t.name: t for t in TASKS}[job.task]
    summary = train(resolve_config(preset, overrides=job.settings), job.out, progress=False)
    if not summary["finished"]:   # stopped (Ctrl-C, SIGTERM) with a checkpoint: the next call resumes it
        raise KeyboardInterrupt
    minutes = summary["wall_time"] / 60   # every piece of a resumed run
    summary = evaluate(job.out, EvalConfig(episodes=episodes, seed=EVAL_SEED))
    result = {"task": job.task, "env": task.env, "core": job.core, "seed": job.seed, "preset": preset,
              "settings": job.settings, "total_steps": job.settings["total_steps"], "score_name": task.score,
              "score": summary[task.score],
              "eval_episodes": summary["episodes"], "train_minutes": round(minutes, 2), "date": utc_stamp(),
              "command": train_command(preset, job)}
    write_text_atomically(Path(job.out) / "result.json", json.dumps(result, indent=2) + "\n")
    return result


def run(cfg: SuiteConfig, train_overrides: dict | None = None, say=print) -> list[dict]:
    """Run every unfinished run of the tier (``cfg.jobs`` at a time, none started after ``cfg.max_minutes``);
    return the results of all finished runs. Settings are checked before anything runs."""
    fixed = sorted(set(train_overrides or {}) & set(SET_PER_RUN))
    if fixed:
        raise SettingError(f"{{{fixed[0]}}} is set by the suite for each run; accepted: other training "
                           "settings", **{fixed[0]: (train_overrides or {})[fixed[0]]})
    jobs = plan(cfg, train_overrides)
    for job in {j.core: j for j in reversed(jobs)}.values():   # the first run of each label
        resolve_config(job.preset, overrides=job.settings)   # bad training settings: an error before any run
    unfinished = [j for j in jobs if not is_finished(j, j.preset)]
    kept = sum(keep_record(j) for j in jobs)
    todo = [] if cfg.report_only else unfinished
    if kept:
        say(f"kept the records of {kept} finished runs in {cfg.results}")
    say(f"suite {cfg.tier}: {len(jobs)} runs of {cfg.steps():,} steps, {len(jobs) - len(unfinished)} finished, "
        f"{len(todo)} to run")
    deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes else None
    if cfg.jobs == 1:
        for job in todo:
            if deadline is not None and time.monotonic() > deadline:
                say(f"stopping after {cfg.max_minutes} minutes; run the command again to go on")
                break
            _report(say, run_job(job.preset, job, cfg.episodes()), job)
    elif todo:
        _run_parallel(cfg, todo, deadline, say)
    return [result for result in map(load_result, jobs) if result is not None]


def _run_parallel(cfg: SuiteConfig, todo: list[Job], deadline: float | None, say) -> None:
    context = multiprocessing.get_context("spawn")   # fresh processes: no torch threads or locks inherited
    with concurrent.futures.ProcessPoolExecutor(cfg.jobs, mp_context=context, initializer=_start_pool_process,
                                                initargs=(os.getpid(),)) as pool:
        pending, queue, jobs = set(), list(todo), {}
        try:
            while queue or pending:
                while queue and len(pending) < cfg.jobs and (deadline is None or time.monotonic() < deadline):
                    job = queue.pop(0)
                    future = pool.submit(_run_job_in_worker, job.preset, job, cfg.episodes())
                    pending.add(future)
                    jobs[future] = job
                if not pending:
                    say(f"stopping after {cfg.max_minutes} minutes; run the command again to go on")
                    break
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    _report(say, future.result(), jobs.pop(future))
        except KeyboardInterrupt:
            # SIGTERM (or Ctrl-C) reached this process, or a run was stopped: the pool's processes are told
            # too (a SIGTERM sent to this process alone would not reach them), each run in progress writes
            # its checkpoint, and the piece ends; without this the pool would wait for the runs to finish
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGINT)
            for future in concurrent.futures.as_completed(pending):
                if future.exception() is None:   # a run that finished as the stop came
                    _report(say, future.result(), jobs.pop(future))
            say(f"stopped; the runs in progress keep their checkpoints in {cfg.runs}: run the command again "
                "to go on")
            raise


_SUITE_PID: int | None = None            # in a pool process: the suite's process that started it
_RUN_IN_PROGRESS = threading.Event()     # in a pool process: a run is going on
ORPHAN_GRACE_SECONDS = 300.0             # at most this long for an orphaned run to write its checkpoint


def _start_pool_process(suite_pid: int) -> None:
    """A pool process between runs ignores SIGINT (Ctrl-C reaches every process of a terminal's group): the
    stop is for the runs in progress, and a pool process that died of it would break the pool. SIGTERM
    keeps its default, so the pool can still end its processes. And it ends with the suite's process: a suite
    killed outright (SIGKILL, the OOM killer) cannot tell its pool, whose processes would go on training with
    nobody to collect their results. A thread watches for that: a run in progress is stopped with a checkpoint
    (SIGINT, as the suite itself does on SIGTERM) and the process ends once it has stopped; an idle one ends at
    once."""
    global _SUITE_PID
    _SUITE_PID = suite_pid
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while os.getppid() == suite_pid:
            time.sleep(1.0)
        if _RUN_IN_PROGRESS.is_set():
            os.kill(os.getpid(), signal.SIGINT)   # _run_job_in_worker's handler: a checkpointed stop, then exit
            time.sleep(ORPHAN_GRACE_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="rtrl-suite-watch").start()


def _run_job_in_worker(preset: str, job: Job, episodes: int) -> dict:
    """:func:`run_job` in a pool process, where the first SIGINT or SIGTERM stops the run with a checkpoint
    (as Ctrl-C does in a terminal) and later ones are ignored, so they cannot cut the checkpoint short. A pool
    process whose suite has died ends as soon as its run has stopped."""
    stopped = []

    def stop(signum, frame):
        if not stopped:
            stopped.append(signum)
            raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    _RUN_IN_PROGRESS.set()
    try:
        return run_job(preset, job, episodes)
    finally:
        _RUN_IN_PROGRESS.clear()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if _SUITE_PID is not None and os.getppid() != _SUITE_PID:   # orphaned: nobody takes the result
            os._exit(1)


def _report(say, result: dict, job: Job) -> None:
    keep_record(job)
    say(f"{result['task']} {result['core']} seed {result['seed']}: {result['score_name']} "
        f"{result['score']:.3f} ({result['train_minutes']:.1f} min)")

