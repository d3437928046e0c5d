"""Streaming RTRL vs streaming TBPTT(1) vs R2AC on the delay sweep: docs/STREAMING.md.

The sweep is the analogue of Farr et al. (2026)'s memory-chain diagnostic: delayed recall with 2 cues and a
delay D between the cue and the query, for D in 2, 4, ..., 128 (``memory:delayed_recall?cues=2&delay=D``;
chance is 0.5). Each agent trains for the same number of environment steps:

    stream-rtrl    rtrl train --preset stream                       (one stream, an update at every step)
    stream-tbptt   rtrl train --preset stream --learning tbptt      (the same, gradient cut at every step)
    impala-rtrl    rtrl train --preset memory                       (R2AC: rollouts of 10 steps, batch 32)

and, when ``--agents`` names them:

    stream-rtrl-trace, stream-tbptt-trace  --entropy-step trace: Stream AC(λ)'s entropy term, in the actor's trace
    stream-rtrl-critic-trace               --critic separate --entropy-step trace: the critic a network of its own
    stream-rtrl-rtu                        --cell rtu: the linear RTU (Farr et al.'s streaming cell) for the eLSTM
    stream-rtrl-rtu-trace, ...tbptt-rtu-trace  the same with --entropy-step trace
    stream-rtrl-ent0.05-trace, ...tbptt-   --entropy-cost 0.05 --entropy-step trace: five times the bonus, in the
      ent0.05-trace                        trace
    stream-rtrl-chrono, stream-tbptt-chrono  --chrono-max 256: the eLSTM's forget gates at the chrono init, time
                                           scales up to 256 steps, for the long delays
    stream-rtrl-rtu-rb, stream-rtrl-rb     --obgd-bound recurrence (with --cell rtu; with the eLSTM): the cells'
                                           recurrence parameters take ObGD steps bounded by their own traces

(The records of the agents made before the preset's entropy step became direct on 2026-12-07 were renamed with
it: stream-rtrl then is stream-rtrl-trace now, stream-rtrl-direct then is stream-rtrl now; their settings,
kept in each record, say which is which.)

Each run is then evaluated greedily from a zero state (500 episodes). Every finished run is kept as a small record in
docs/streaming/ (its result, its thinned training curve with wall time, and the settings it learned with), so
the report is rewritten from the records on any machine and a stopped sweep goes on where it stopped (a run
directory resumes). A record whose settings differ from what the presets give now is made again.

``--tasks`` runs the POPGym tasks of the comparison instead (``--tasks popgym`` for all five): the same three
agents, except that R2AC takes the memory suite's preset (``memory-suite``, the configuration that learns
POPGym in docs/MEMORY_SUITE.md); scored by the greedy mean return and by the best training mean return over
the stats window (POPGym's MMER counterpart, as the memory suite reports it).

    python bench/streaming.py --delays 2 4 8 --steps 20000 --seeds 0      # a piece of the sweep
    python bench/streaming.py --tasks popgym --steps 300000 --seeds 0     # the POPGym tasks
    python bench/streaming.py --report-only                              # the report from the records
    python bench/streaming.py --delays 128 --steps 6000000 --seeds 1 --agents stream-rtrl --extend-from 3000000

The last continues the finished 3M-step run (a copy of its directory) to 6M: a streaming learner's step sizes do
not follow its budget, so that is the run a 6M budget makes, and each stage of a long run leaves its record.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtrl.bench.child import check_child, script_main  # noqa: E402
from rtrl.bench.suite_report import PUBLISHED  # noqa: E402
from rtrl.records.files import write_text_atomically  # noqa: E402
from rtrl.records.reports import machine_description  # noqa: E402

AGENTS = {"stream-rtrl": ["--preset", "stream"], "stream-tbptt": ["--preset", "stream", "--learning", "tbptt"],
          "impala-rtrl": ["--preset", "memory"],
          # the rest run only when --agents names them. Stream AC(λ)'s own entropy term (β·sign(δ)·∇H in the actor's
          # trace), the preset's until 2026-12-07: its policy went deterministic at delays 16 and 64 (STREAMING.md)
          "stream-rtrl-trace": ["--preset", "stream", "--entropy-step", "trace"],
          "stream-tbptt-trace": ["--preset", "stream", "--entropy-step", "trace", "--learning", "tbptt"],
          # the critic as a network of its own, as Stream AC(λ) has (run with the trace's entropy term)
          "stream-rtrl-critic-trace": ["--preset", "stream", "--critic", "separate", "--entropy-step", "trace"],
          # the same with the preset's direct entropy step: does a critic of its own keep a value burst (delay 128,
          # seed 1's fall at 5.07M, STREAMING.md) from moving the actor's core?
          "stream-rtrl-critic": ["--preset", "stream", "--critic", "separate"],
          # the RTU (Farr et al. 2026's cell) for the eLSTM, with either entropy term
          "stream-rtrl-rtu": ["--preset", "stream", "--cell", "rtu"],
          "stream-rtrl-rtu-trace": ["--preset", "stream", "--cell", "rtu", "--entropy-step", "trace"],
          "stream-tbptt-rtu-trace": ["--preset", "stream", "--cell", "rtu", "--entropy-step", "trace", "--learning",
                                     "tbptt"],
          # five times the preset's entropy bonus, in the trace (it held delay 64's entropy up 4x longer, not for good)
          "stream-rtrl-ent0.05-trace": ["--preset", "stream", "--entropy-cost", "0.05", "--entropy-step", "trace"],
          "stream-tbptt-ent0.05-trace": ["--preset", "stream", "--entropy-cost", "0.05", "--entropy-step", "trace",
                                         "--learning", "tbptt"],
          # the eLSTM's forget gates at the chrono init (time scales spread up to 256 steps) for the preset's forget
          # bias 3 (σ(3)^64 = 0.04: a cue fades over delay 64)
          "stream-rtrl-chrono": ["--preset", "stream", "--chrono-max", "256"],
          "stream-tbptt-chrono": ["--preset", "stream", "--chrono-max", "256", "--learning", "tbptt"],
          # forget bias 5: σ(5) = 0.993 keeps 13x more of the cue at delay 128 than σ(3) (bench/cue_signal.py)
          "stream-rtrl-fb5": ["--preset", "stream", "--forget-bias", "5"],
          # the recurrence's parameters bounded apart by ObGD: the RTU's ν, θ traces grow with its memory and, under
          # one bound, shrink every step (docs/STREAMING.md)
          "stream-rtrl-rtu-rb": ["--preset", "stream", "--cell", "rtu", "--obgd-bound", "recurrence"],
          # the same with θ itself as the parameter: under exp(log θ) that run's phases grew until its values were NaN
          "stream-rtrl-rtu-rb-direct": ["--preset", "stream", "--cell", "rtu", "--obgd-bound", "recurrence", "--phase",
                                        "direct"],
          "stream-rtrl-rb": ["--preset", "stream", "--obgd-bound", "recurrence"]}
DEFAULT_AGENTS = ("stream-rtrl", "stream-tbptt", "impala-rtrl")
DELAYS = (2, 4, 8, 16, 32, 64, 128)
# the POPGym tasks of the comparison (issue: AutoencodeEasy, HigherLowerEasy, ConcentrationEasy,
# RepeatPreviousEasy, StatelessCartPoleEasy; the last is PositionOnlyCartPole in popgym 1.0.7)
POPGYM = {"AutoencodeEasy": "popgym:AutoencodeEasy", "HigherLowerEasy": "popgym:HigherLowerEasy",
          "ConcentrationEasy": "popgym:ConcentrationEasy", "RepeatPreviousEasy": "popgym:RepeatPreviousEasy",
          "StatelessCartPoleEasy": "popgym:PositionOnlyCartPoleEasy"}
# R2AC's configuration on POPGym: the memory suite's
POPGYM_FLAGS = {"impala-rtrl": ["--preset", "memory-suite"]}
CURVE_POINTS = 200


def rtrl(*args: str) -> None:
    check_child([sys.executable, "-m", "rtrl", *args], cwd=ROOT)


def curve(run: Path) -> dict:
    """step, wall_time and training success_rate of the run's metrics.csv, thinned to CURVE_POINTS rows."""
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keep = rows[::max(1, len(rows) // CURVE_POINTS)] + rows[-1:]
    return {name: [float(r[name]) if r[name] else None for r in keep]
            for name in ("step", "wall_time", "success_rate", "mean_return")}


def best_training_mean(result: dict) -> float | None:
    """The best training mean return of the run's curve (over the stats window: POPGym's MMER counterpart)."""
    values = [v for v in result["curve"].get("mean_return", []) if _known(v)]
    return max(values) if values else None


def _known(value) -> bool:
    """A curve value that says something: rows written before the first episode ended hold nan (an empty cell is
    None), and max() or a median of a list with a nan in it is nan."""
    return value is not None and math.isfinite(value)


def task_delay(task: str) -> int | None:
    """D of a sweep task ``delayD``; None for a POPGym task."""
    return int(task[len("delay"):]) if task.startswith("delay") else None


def train_args(agent: str, task: str, seed: int, steps: int) -> list[str]:
    """The `rtrl train` arguments (without --out) of one run of ``agent`` on ``task``."""
    delay = task_delay(task)
    env = f"memory:delayed_recall?cues=2&delay={delay}" if delay is not None else POPGYM[task]
    flags = AGENTS[agent] if delay is not None else POPGYM_FLAGS.get(agent, AGENTS[agent])
    return [*flags, "--env", env, "--seed", str(seed), "--total-steps", str(steps)]


def learned_settings(args: list[str]) -> dict:
    """What a run of `rtrl train ARGS` learns with: its resolved settings (preset, flags, defaults), without
    those that only say where it runs (``RUNTIME_SETTINGS``). A record keeps them: if a preset or a default
    changes, the record (made with the old ones) is not taken for the new configuration's."""
    from rtrl.cli import build_parser
    from rtrl.cli.flags import given
    from rtrl.runtime.config import TrainConfig, resolve_config
    parsed = build_parser().parse_args(["train", *args, "--out", "unused"])
    return _settings_of(resolve_config(parsed.preset, parsed.config, given(parsed, TrainConfig)))


def _settings_of(cfg) -> dict:
    """``cfg``'s settings as JSON values, without those that only say where a run executes (``RUNTIME_SETTINGS``)."""
    from rtrl.runtime.config import RUNTIME_SETTINGS
    return {k: v for k, v in json.loads(json.dumps(dataclasses.asdict(cfg))).items() if k not in RUNTIME_SETTINGS}


def settings_changed(old: dict | None, new: dict) -> list[str]:
    """The settings in which ``old`` (a record's; None: it has none) differs from ``new``. A setting the record
    lacks counts as its default: a setting added to rtrl later defaults to what runs did before it existed."""
    if old is None:
        return ["(no settings recorded)"]
    from rtrl.runtime.config import TrainConfig
    defaults = json.loads(json.dumps(dataclasses.asdict(TrainConfig())))
    return sorted(k for k in set(old) | set(new) if old.get(k, defaults.get(k)) != new.get(k, defaults.get(k)))


class ExtendError(ValueError):
    """``--extend-from`` cannot continue a run: the message says which and why."""


def run_directory(runs: Path, task: str, agent: str, seed: int, steps: int, settings: dict) -> Path:
    """Where the run of these ``settings`` lives: ``runs/TASK/AGENT-seedK-STEPS``, unless that directory holds a run
    of other settings (a preset changed since), then beside it with a digest of the settings."""
    legacy = runs / task / f"{agent}-seed{seed}-{steps}"
    if not (legacy / "config.json").exists() or not settings_changed(_run_settings(legacy), settings):
        return legacy
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return legacy.with_name(f"{legacy.name}-{digest}")


def extension_source(agent: str, task: str, seed: int, steps: int, shorter: int, runs: Path, records: Path) -> Path:
    """The finished run of ``agent`` at ``shorter`` steps that a run of ``steps`` continues (``--extend-from``): a
    streaming run, whose step sizes do not follow its budget, given more steps is the run the longer budget makes."""
    settings = learned_settings(train_args(agent, task, seed, shorter))
    if settings["learner"] != "stream":
        raise ExtendError(f"--extend-from continues streaming runs; {agent} is R2AC, whose learning rate decays to 0 "
                          "over its budget: a longer run of it is another run from its first update")
    if not shorter < steps:
        raise ExtendError(f"--extend-from {shorter} is not below --steps {steps}")
    record = records / task / f"{agent}-seed{seed}-{shorter}.json"
    source = run_directory(runs, task, agent, seed, shorter, settings)
    if not record.exists() or settings_changed(json.loads(record.read_text()).get("settings"), settings):
        raise ExtendError(f"no finished run of {agent} on {task}, seed {seed}, at {shorter} steps with today's "
                          f"settings to continue ({record} is missing or of other settings); run it first, or leave "
                          "out --extend-from")
    if not (source / "checkpoint.pt").exists():
        raise ExtendError(f"{source} holds no checkpoint to continue (the record {record} is there, its run directory "
                          "is not: made on another machine?); leave out --extend-from to run from step 0")
    return source


def run_one(agent: str, task: str, seed: int, steps: int, runs: Path, records: Path, episodes: int,
            extend_from: int | None = None) -> dict:
    """One run of ``agent`` on ``task`` (``delayN`` or a POPGym name), resumed if stopped, as a record. A record
    made with other settings (a preset changed since) is not reused: the run is made again beside it (its run
    directory is named by a digest of the settings) and the new record replaces the old one. ``extend_from``: a
    run not started yet begins as a copy of the finished run at that many steps (``extension_source``), continued."""
    record = records / task / f"{agent}-seed{seed}-{steps}.json"
    args = train_args(agent, task, seed, steps)
    settings = learned_settings(args)
    if record.exists():
        old = json.loads(record.read_text())
        changed = settings_changed(old.get("settings"), settings)
        if not changed:
            return old
        print(f"{record}: made with other settings ({', '.join(changed[:6])}); running it again")
    out = run_directory(runs, task, agent, seed, steps, settings)
    if extend_from is not None and not out.exists():
        source = extension_source(agent, task, seed, steps, extend_from, runs, records)
        partial = out.with_name(out.name + ".partial")   # a copy cut short is never taken for the run
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial)
        partial.rename(out)
        print(f"{out}: a copy of {source}, continued to {steps} steps", flush=True)
    delay = task_delay(task)
    env, flags = args[args.index("--env") + 1], args[:args.index("--env")]
    start = time.monotonic()
    rtrl("train", *args, "--out", str(out), "--no-progress", "--no-plot")
    # the sampled policy too: mid-learning it can use the cue where the argmax does not yet
    sampled = sampled_success(out, episodes) if delay is not None else None
    rtrl("eval", str(out), "--episodes", str(episodes), "--seed", "123")   # eval.json ends as the greedy one's
    evaluation = json.loads((out / "eval.json").read_text())
    trained = curve(out)
    result = {"agent": agent, "task": task, "delay": delay, "seed": seed, "steps": steps, "env": env,
              "flags": flags, "settings": settings, "episodes": episodes,
              "greedy_success": evaluation.get("success_rate"),
              "greedy_return": evaluation.get("mean_return"), "sampled_success": sampled,
              "wall_time": trained["wall_time"][-1],
              "steps_per_s": steps / max(trained["wall_time"][-1], 1e-9),
              "session_minutes": (time.monotonic() - start) / 60, "curve": trained}
    record.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(record, json.dumps(result) + "\n")
    return result


def sampled_success(run: Path, episodes: int) -> float | None:
    """The success rate of the run's final policy over ``episodes`` episodes with sampled actions (``rtrl eval
    --sample``, seed 123); the run's eval.json is put back as it was."""
    before = (run / "eval.json").read_bytes() if (run / "eval.json").exists() else None
    try:
        rtrl("eval", str(run), "--episodes", str(episodes), "--seed", "123", "--sample")
        return json.loads((run / "eval.json").read_text()).get("success_rate")
    finally:
        if before is not None:
            write_text_atomically(run / "eval.json", before.decode())


def add_sampled(record: Path, runs: Path, episodes: int) -> str:
    """Give a delay-sweep record made before runs were also evaluated with sampled actions its ``sampled_success``:
    its run directory's final policy played ``episodes`` episodes with sampled actions (``sampled_success``, as new
    runs are). Returns what was done, for the log."""
    result = json.loads(record.read_text())
    if result.get("delay") is None or result.get("sampled_success") is not None:
        return f"{record}: nothing to add"
    settings = result.get("settings") or {}
    names = [result["agent"]] + ([result["renamed_from"]] if result.get("renamed_from") else [])   # a renamed agent's
    task = result.get("task") or f"delay{result['delay']}"   # the first records named only the delay
    dirs = [run_directory(runs, task, name, result["seed"], result["steps"], settings) for name in names]
    out = next((d for d in dirs if (d / "checkpoint.pt").exists()), dirs[0])   # run keeps its old name
    if not (out / "checkpoint.pt").exists() or settings_changed(_run_settings(out), settings):
        return f"{record}: its run directory {out} is not on this machine; left without a sampled score"
    result["sampled_success"] = sampled_success(out, episodes)
    write_text_atomically(record, json.dumps(result) + "\n")
    return f"{record}: sampled success {result['sampled_success']:.3f}"


def _run_settings(run: Path) -> dict | None:
    """The learned settings of the run in directory ``run`` (its config.json), as ``learned_settings`` gives them."""
    from rtrl.runtime.config import TrainConfig
    try:
        return _settings_of(TrainConfig.from_dict(json.loads((run / "config.json").read_text())))
    except (OSError, ValueError):
        return None


def success_at_wall_time(result: dict, seconds: float, column: str = "success_rate") -> float | None:
    """The training success rate (or ``column``) of the last metrics row written by ``seconds`` of training."""
    best = None
    for wall, value in zip(result["curve"]["wall_time"], result["curve"].get(column, [])):
        if wall is not None and wall <= seconds and _known(value):
            best = value
    return best


def _median(values) -> str:
    values = [v for v in values if _known(v)]
    return f"{statistics.median(values):.3f}" if values else "–"


def _table(results: list[dict], key: str, popgym: bool) -> list[str]:
    """Rows per (task, steps) and agent: medians over seeds; at equal wall time = the fastest run's wall time."""
    if popgym:
        lines = ["| task | steps | agent | seeds | greedy return | per seed | best training mean | training return at "
                 "equal wall time (s) | steps/s |", "|---|---:|---|---:|---:|---|---:|---:|---:|"]
    else:
        lines = ["| delay | steps | agent | seeds | greedy success | per seed | sampled success | training success at "
                 "equal wall time (s) | steps/s |", "|---:|---:|---|---:|---:|---|---:|---:|---:|"]
    groups: dict = {}
    for r in results:
        groups.setdefault((r[key], r["steps"]), {}).setdefault(r["agent"], []).append(r)
    for (task, steps), by_agent in sorted(groups.items()):
        fastest = min(min(r["wall_time"] for r in runs) for runs in by_agent.values())
        # AGENTS' order, then agents it does not name (records of a newer or older agent table): none dropped
        for agent in [a for a in AGENTS if a in by_agent] + sorted(a for a in by_agent if a not in AGENTS):
            runs = by_agent[agent]
            column = "mean_return" if popgym else "success_rate"
            at_wall = _median(success_at_wall_time(r, fastest, column) for r in runs)
            greedy = "greedy_return" if popgym else "greedy_success"
            per_seed = ", ".join(f"{r['seed']}: {r[greedy]:.3f}" for r in sorted(runs, key=lambda r: r["seed"])
                                 if r.get(greedy) is not None)
            scores = [_median(r.get(greedy) for r in runs), per_seed]
            scores.append(_median(best_training_mean(r) for r in runs) if popgym
                          else _median(r.get("sampled_success") for r in runs))
            lines.append(f"| {task} | {steps:,} | {agent} | {len(runs)} | " + " | ".join(scores)
                         + f" | {at_wall} ({fastest:.0f}) | {statistics.median(r['steps_per_s'] for r in runs):.0f} |")
    return lines


def sweep_figures(delays: list[dict], directory: Path) -> list[Path]:
    """Training success against environment steps, one panel per delay (four to a figure), one line per run of
    the default agents (colour: agent; line style: seed), each (agent, seed) at its longest recorded budget:
    ``directory/sweep_K.png``. Returns the figures written."""
    from rtrl.records.plots import Panel, Series, plot_panels
    longest: dict = {}
    for r in delays:
        key = (r["delay"], r["agent"], r["seed"])
        if r["agent"] in DEFAULT_AGENTS and (key not in longest or r["steps"] > longest[key]["steps"]):
            longest[key] = r
    panels = []
    for delay in sorted({d for d, _, _ in longest}):
        series = []
        for (d, agent, seed), r in sorted(longest.items(), key=lambda kv: (DEFAULT_AGENTS.index(kv[0][1]), kv[0][2])):
            if d == delay:
                first = min(s for dd, a, s in longest if dd == d and a == agent)
                points = [(x, y) for x, y in zip(r["curve"]["step"], r["curve"]["success_rate"]) if y is not None]
                series.append(Series(agent if seed == first else "_" + agent, [x for x, _ in points],
                                     [y for _, y in points], color=f"C{DEFAULT_AGENTS.index(agent)}",
                                     linestyle=("-", "--", ":", "-.")[seed % 4]))
        panels.append(Panel(series, "environment steps", "training success", f"delay {delay}", ylim=(0.0, 1.05),
                            legend_loc="lower right"))
    written = []
    for k in range(0, len(panels), 4):
        written.append(plot_panels(panels[k:k + 4], directory / f"sweep_{k // 4 + 1}.png", panel_size=(5.0, 3.6)))
    return written


def report(records: Path, doc: Path, command: str) -> None:
    results = [json.loads(p.read_text()) for p in sorted(records.glob("*/*.json"))]
    if not results:
        print(f"no records in {records}: {doc} left as it is")
        return
    delays = [r for r in results if r.get("delay") is not None]
    popgym = [r for r in results if r.get("delay") is None]
    lines = [f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", f"- machine: {machine_description()}",
             f"- command: `{command}`", ""]
    if delays:
        lines += ["### The delay sweep", "", f"Greedy success ({'/'.join(str(e) for e in sorted({r['episodes'] for r in delays}))} episodes per "
                  "run, from a zero state; chance 0.5) at equal environment steps, the success of the same policy "
                  "with sampled actions (records since 2026-12-07; – before), the training "
                  "success each agent had reached at the wall time of the fastest run of that delay and budget, and "
                  "the training throughput. Medians over seeds.", ""] + _table(delays, "delay", False)
        figures = sweep_figures(delays, doc.parent / "streaming")
        lines += ["", "Training success over each run (streaming RTRL blue, streaming TBPTT(1) orange, R2AC green; "
                  "seed 0 solid, 1 dashed, 2 dotted; each at its longest budget; training success is the mean of the "
                  "last 200 episodes, with sampled actions):", ""]
        lines += [f"![the delay sweep's training curves, part {i + 1}](streaming/{f.name})" for i, f in enumerate(figures)]
    if popgym:
        lines += ["", "### POPGym", "",
                  "Greedy mean return (from a zero state), the best training mean return over the stats window "
                  "(sampled actions: POPGym's MMER counterpart), the training mean return at the wall time of the "
                  "fastest run of that task and budget, and the throughput. Medians over seeds. R2AC runs the "
                  "memory suite's preset here.", ""] + _table(popgym, "task", True)
        anchors = [f"{task} {' ± '.join(PUBLISHED[task]['POPGym GRU'])}" for task in POPGYM if task in PUBLISHED]
        lines += ["", "Published anchors (POPGym paper, PPO with a GRU, MMER over 3 trials at 15M steps; "
                  "`rtrl.bench.suite_report.PUBLISHED`): " + "; ".join(anchors) + ". Not transcribed here: "
                  + ", ".join(task for task in POPGYM if task not in PUBLISHED) + "."]
    begin, end = "<!-- begin bench/streaming.py -->", "<!-- end bench/streaming.py -->"
    section = "\n".join([begin, "## What the records hold", ""] + lines + [end])
    text = doc.read_text() if doc.exists() else ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = (text.rstrip() + "\n\n" if text else "") + section + "\n"
    write_text_atomically(doc, text)
    print(f"wrote {doc}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", choices=list(AGENTS), default=list(DEFAULT_AGENTS))
    parser.add_argument("--delays", nargs="+", type=int, default=list(DELAYS))
    parser.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                        help=f"POPGym tasks instead of the delays: {', '.join(POPGYM)}, or popgym for all five")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200_000, help="environment steps per run (every agent)")
    parser.add_argument("--episodes", type=int, default=500, help="greedy evaluation episodes per run")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "streaming"))
    parser.add_argument("--records", default=str(ROOT / "docs" / "streaming"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "STREAMING.md"))
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--add-sampled", action="store_true",
                        help="run nothing new: give the delay records of --delays, --agents, --seeds and --steps that "
                             "lack a sampled score one, from their run directories on this machine")
    parser.add_argument("--extend-from", type=int, default=None, metavar="STEPS",
                        help="streaming agents: start each run not started yet from a copy of its finished run at "
                             "STEPS steps (its record and run directory), continued to --steps")
    args = parser.parse_args()
    bad = [d for d in args.delays if d < 1]
    if bad or args.steps < 1 or args.episodes < 1:
        parser.error(f"bad --delays {bad} / --steps {args.steps} / --episodes {args.episodes}; accepted: positive integers")
    if args.extend_from is not None and not 0 < args.extend_from < args.steps:
        parser.error(f"bad --extend-from {args.extend_from}; accepted: a number of steps between 0 and --steps "
                     f"{args.steps}, both excluded")
    tasks = [f"delay{d}" for d in args.delays]
    if args.tasks is not None:
        tasks = list(POPGYM) if args.tasks == ["popgym"] else args.tasks
        unknown = [t for t in tasks if t not in POPGYM]
        if unknown:
            parser.error(f"unknown --tasks {unknown}; accepted: {', '.join(POPGYM)}, or popgym for all five")
    records, command = Path(args.records), "python bench/streaming.py " + " ".join(sys.argv[1:])
    if args.add_sampled:
        for seed in args.seeds:
            for task in tasks:
                for agent in args.agents:
                    record = records / task / f"{agent}-seed{seed}-{args.steps}.json"
                    if record.exists():
                        print(add_sampled(record, Path(args.runs), args.episodes), flush=True)
    elif not args.report_only:
        for seed in args.seeds:
            for task in tasks:
                for agent in args.agents:
                    try:
                        result = run_one(agent, task, seed, args.steps, Path(args.runs), records, args.episodes,
                                         args.extend_from)
                    except subprocess.CalledProcessError:   # the child said why; the records so far are kept
                        report(records, Path(args.doc), command)
                        raise   # script_main names the command and exits with its code
                    except ExtendError as error:
                        report(records, Path(args.doc), command)
                        parser.error(str(error))
                    score = (f"greedy success {result['greedy_success']:.3f}" if result.get("delay") is not None
                             else f"greedy return {result['greedy_return']:.3f}")
                    print(f"{task} {agent} seed {seed}: {score}, {result['steps_per_s']:.0f} steps/s", flush=True)
    report(records, Path(args.doc), command)
    return 0


if __name__ == "__main__":
    sys.exit(script_main(main))
