"""The continuous-control benchmark of docs/MUJOCO.md: R2AC with the RTRL eLSTM vs TBPTT vs feed-forward on
MuJoCo tasks with part of the observation masked (and one fully observed reference), with the `mujoco` preset.
Task names follow Ni et al. 2022: "-p" observes the positions only (the velocities masked), "-v" the
velocities only (the positions masked).

One run at a time, each at the lowest priority (nice 19), resumable: a finished run leaves a small JSON
record in docs/mujoco/BUDGET/ (final return, curve; BUDGET as 300k or 1M) and is skipped next time; an
unfinished run directory is resumed by `rtrl train`. `--report` (or the end of the runs) writes the budget's
section of docs/MUJOCO.md (a table between its own markers) and docs/mujoco/BUDGET/mujoco.png.

    python bench/mujoco_suite.py                                  # every seed x task x core at --total-steps
    python bench/mujoco_suite.py --tasks hopper-v --seeds 0       # a subset
    python bench/mujoco_suite.py --report                         # the table from the records so far
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtrl.bench.child import check_child, script_main  # noqa: E402
from rtrl.records.files import write_atomically  # noqa: E402
from rtrl.records.metrics import read_metrics  # noqa: E402
from rtrl.records.plots import Panel, Series, plot_panels  # noqa: E402
from rtrl.records.reports import machine_description  # noqa: E402

TASKS = {"hopper-v": "mujoco:Hopper-v5?observe=velocity", "halfcheetah-v": "mujoco:HalfCheetah-v5?observe=velocity",
         "hopper": "mujoco:Hopper-v5", "hopper-p": "mujoco:Hopper-v5?observe=position",
         "halfcheetah-p": "mujoco:HalfCheetah-v5?observe=position"}
CORES = {"rtrl": ["--cell", "elstm", "--learning", "rtrl"], "tbptt": ["--cell", "elstm", "--learning", "tbptt"],
         "ff": ["--cell", "ff", "--learning", "tbptt"]}
T95 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}   # two-sided 95% t quantiles by sample size (n-1 dof)
RECORDS = ROOT / "docs" / "mujoco"
# the learner's update of the preset: a record (and its run directory) made with other values is not skipped or
# resumed for it; the records of the one-pass configuration the table first had are in docs/mujoco/one-pass-300k/
UPDATE = ("update_epochs", "minibatches", "policy_clip", "critic", "vtrace_lambda")
# the settings added to UPDATE later, at the value every record made before them had
LATER = {"critic": "shared", "vtrace_lambda": 1.0}


def preset_update() -> dict:
    from rtrl.runtime.config import PRESETS, TrainConfig
    return {k: PRESETS["mujoco"].get(k, getattr(TrainConfig, k)) for k in UPDATE}


def update_label(update: dict) -> str:
    """e4-m4-clip0.2, then each later setting not at its old value: -critic-separate, -lambda0.95."""
    label = "e{update_epochs}-m{minibatches}-clip{policy_clip:g}".format(**update)
    short = {"critic": "critic-{}", "vtrace_lambda": "lambda{:g}"}
    return label + "".join(f"-{short[k].format(update[k])}" for k, old in LATER.items() if update.get(k, old) != old)


def update_parts(update: dict) -> list[str]:
    """What the parts of ``update_label`` stand for, in its order."""
    later = {"critic": "critic", "vtrace_lambda": "V-trace lambda"}
    return ["update epochs", "minibatches", "surrogate clip"] + [
        later[k] for k, old in LATER.items() if update.get(k, old) != old]


def record_update(record: dict) -> dict | None:
    """The update a record was made with (a setting added to UPDATE after it was made: at its value then)."""
    return None if record.get("update") is None else {**LATER, **record["update"]}


def budget_label(total_steps: int) -> str:
    """300k, 1M, 2.5M, 12345: the name of a budget's folder of records and its section of the doc."""
    if total_steps % 100_000 == 0 and total_steps >= 1_000_000:
        return f"{total_steps / 1_000_000:g}M"
    return f"{total_steps // 1000}k" if total_steps % 1000 == 0 else str(total_steps)


def section_label(total_steps: int, update: dict | None = None) -> str:
    """The name of a table's records folder and doc section: the budget (300k, 1M), and for an update other than
    the preset's (``--update-epochs``, ``--minibatches``, ``--policy-clip``) its label too: 1M-e1-m4-clip0.2."""
    update = update or preset_update()
    return budget_label(total_steps) + ("" if update == preset_update() else f"-{update_label(update)}")


def record_path(task: str, core: str, seed: int, total_steps: int, update: dict | None = None) -> Path:
    """Records are kept per budget and update (a run of 1M steps never stands in for, or replaces, one of 300k,
    nor a run of another update for the preset's)."""
    return RECORDS / section_label(total_steps, update) / f"{task}-{core}-seed{seed}.json"


def run_one(task: str, core: str, seed: int, total_steps: int, runs: Path, update: dict | None = None) -> None:
    update = update or preset_update()
    out = runs / task / f"{core}-seed{seed}-{total_steps}-{update_label(update)}"
    preset = preset_update()
    changed = [f for k, v in update.items() if v != preset[k]
               for f in (f"--{k.replace('_', '-')}", v if isinstance(v, str) else f"{v:g}")]
    cmd = ["nice", "-n", "19", sys.executable, "-m", "rtrl", "train", "--preset", "mujoco", "--env", TASKS[task],
           *CORES[core], *changed, "--seed", str(seed), "--total-steps", str(total_steps), "--out", str(out),
           "--no-progress", "--no-plot"]
    start = time.monotonic()
    check_child(cmd, cwd=ROOT)
    columns = read_metrics(out)
    steps, returns = columns["step"], columns["mean_return"]
    every = max(1, len(steps) // 100)
    curve = [[int(s), r] for s, r in list(zip(steps, returns))[::every] if not math.isnan(r)]
    record = {"task": task, "env": TASKS[task], "core": core, "seed": seed, "total_steps": total_steps, "update": update,
              "steps": int(steps[-1]), "final_return": returns[-1],
              "final_return_is": "mean training return of the last 200 episodes (the run's stats_window)",
              "curve": curve, "minutes_this_session": round((time.monotonic() - start) / 60, 1),
              "machine": machine_description(load=False), "date": time.strftime("%Y-%m-%d", time.gmtime()),
              "command": " ".join(["python"] + cmd[4:]).replace(str(ROOT) + "/", "")}
    path = record_path(task, core, seed, total_steps, update)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))


def load_records(total_steps: int, update: dict | None = None) -> list[dict]:
    """The records of the budget and the update (the preset's by default; older records, without ``update``, were
    made with one pass)."""
    update = update or preset_update()
    folder = RECORDS / section_label(total_steps, update)
    return [r for r in (json.loads(p.read_text()) for p in sorted(folder.glob("*.json")))
            if record_update(r) == update and r["total_steps"] == total_steps]


def machines_of(records: list[dict]) -> str:
    """The machines the records were made on, as the records say (the report's text then changes only when the
    records do)."""
    machines = sorted({r.get("machine", "a machine not recorded") for r in records})
    return "; ".join(machines) if machines else "no machine yet (no records)"


def late_mean(record: dict, share: float = 0.2) -> float:
    """The mean of the run's training curve over its last ``share`` of steps: the final return is a snapshot of
    the last 200 episodes (20-40k steps on Hopper), and a run's return swings by hundreds within 100k steps."""
    start = (1 - share) * record["total_steps"]
    values = [r for step, r in record["curve"] if step >= start]
    return statistics.mean(values) if values else record["final_return"]


def mean_ci(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.0f} (1 seed)" if values else "—"
    half = T95.get(len(values), 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    mean = statistics.mean(values)
    return f"{mean:.0f} ± {half:.0f} [{mean - half:.0f}, {mean + half:.0f}] ({len(values)} seeds)"


def report(doc: Path, total_steps: int, update: dict | None = None) -> None:
    """The section of ``doc`` of the budget and update (its own markers: other sections stay) and its curves."""
    update = update or preset_update()
    records, label = load_records(total_steps, update), section_label(total_steps, update)
    rows, panels = [], []
    for task in [task for task in TASKS if any(r["task"] == task for r in records)]:   # tasks this budget ran
        series = []
        for colour, core in zip(("tab:blue", "tab:orange", "tab:green"), CORES):   # a colour per core, a dash per seed
            done = [r for r in records if r["task"] == task and r["core"] == core]   # the budget's: load_records
            per_seed = ", ".join(f"{r['final_return']:.0f}" for r in done)
            late = [late_mean(r) for r in done]
            rows.append(f"| {TASKS[task]} | {core} | {mean_ci([r['final_return'] for r in done])} | {per_seed} | "
                        f"{mean_ci(late)} | {', '.join(f'{v:.0f}' for v in late)} |")
            for r in done:
                series.append(Series(f"{core} seed {r['seed']}", [p[0] for p in r["curve"]], [p[1] for p in r["curve"]],
                                     color=colour, linestyle=("-", "--", ":", "-.")[r["seed"] % 4]))
        if series:
            panels.append(Panel(series, "agent steps", "mean training return", title=TASKS[task]))
    plot = RECORDS / label / "mujoco.png"
    if panels:
        plot_panels(panels, plot)
    table = "\n".join(["| task | core | final return: mean ± 95% CI half-width [CI] | per seed | mean return over "
                       "the last 20% of steps: mean ± 95% CI | per seed |", "|---|---|---|---|---|---|", *rows])
    text = doc.read_text() if doc.exists() else ""
    begin, end = f"<!-- mujoco-table {label} -->", f"<!-- /mujoco-table {label} -->"
    link = plot.relative_to(doc.parent) if plot.is_relative_to(doc.parent) else plot
    preset = "the `mujoco` preset" + ("" if update == preset_update() else " with its update changed")
    body = (f"{begin}\nBudget: {total_steps:,} agent steps per run, {preset} ({update_label(update)}: "
            f"{', '.join(update_parts(update))}), one run at a time at nice 19 on "
            f"{machines_of(records)}. "
            f"CI: Student t over the seeds finished.\n\n{table}\n\n![curves]({link.as_posix()})\n{end}")
    if begin in text:
        text = text[:text.index(begin)] + body + text[text.index(end) + len(end):]
    elif "<!-- /mujoco-table " in text:   # a new budget: after the other budgets' sections
        at = text.index("-->", text.rindex("<!-- /mujoco-table ")) + len("-->")
        text = text[:at] + "\n\n" + body + text[at:]
    else:
        text = text + "\n" + body + "\n"
    write_atomically(doc, lambda tmp: Path(tmp).write_text(text))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["hopper-p", "halfcheetah-p", "hopper"], choices=list(TASKS),
                        help="default: the issue's tasks, velocities masked, and the fully observed reference")
    parser.add_argument("--cores", nargs="+", default=list(CORES), choices=list(CORES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--total-steps", type=int, default=300_000)
    parser.add_argument("--runs", default=str(ROOT / "runs" / "mujoco"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "MUJOCO.md"))
    parser.add_argument("--report", action="store_true", help="only write the table from the records")
    preset = preset_update()   # another update: its records, run directories and table are its own
    parser.add_argument("--update-epochs", type=int, default=preset["update_epochs"], help="default: the preset's")
    parser.add_argument("--minibatches", type=int, default=preset["minibatches"], help="default: the preset's")
    parser.add_argument("--policy-clip", type=float, default=preset["policy_clip"], help="default: the preset's")
    parser.add_argument("--critic", choices=("shared", "separate"), default=preset["critic"],
                        help="separate: the value's own stem and core (default: the preset's)")
    parser.add_argument("--vtrace-lambda", type=float, default=preset["vtrace_lambda"], help="default: the preset's")
    args = parser.parse_args()
    update = {k: type(preset[k])(getattr(args, k)) for k in UPDATE}
    if not args.report:   # seed by seed: every task and core gets a first seed before any gets a third
        for seed in args.seeds:
            for task in args.tasks:
                for core in args.cores:
                    path = record_path(task, core, seed, args.total_steps, update)
                    if path.exists() and record_update(json.loads(path.read_text())) == update:
                        continue
                    run_one(task, core, seed, args.total_steps, Path(args.runs), update)
                    report(Path(args.doc), args.total_steps, update)
    report(Path(args.doc), args.total_steps, update)
    return 0


if __name__ == "__main__":
    raise SystemExit(script_main(main))
