"""The memory suite's report (docs/MEMORY_SUITE.md): per-task scores with bootstrap CIs over seeds, rliable
aggregates of chance-normalised scores, training curves, and what has not run yet. Each tier has its own
section of the file, between markers; the rest of the file (task notes, published numbers) is kept.

Statistics come from rliable (Agarwal et al. 2021): per task, the mean over seeds with a percentile
bootstrap CI; over tasks, the interquartile mean (IQM) and the mean of normalised scores with
stratified-bootstrap CIs (runs resampled within each task). A core enters the aggregates with the seeds
it has finished on every task; until those are all its seeds, its rows say "interim". Besides the final
greedy scores, the area under each run's training curve (normalised, per unit of budget) is aggregated the
same way: it measures how soon a core learns, which final scores at a generous budget hide.
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from rtrl.bench.suite import TIERS, SuiteConfig, load_result, plan, slug, train_command, variant_parts
from rtrl.bench.suite_tasks import TASKS, chance_levels, normalise
from rtrl.records.reports import machine_description, utc_stamp, write_section
from rtrl.records.plots import Panel, Series, plot_panels, smooth_series
from rtrl.runtime.config import resolve_config

BOOTSTRAP_REPS = 2000

# Published scores of the POPGym tasks (mean return, maximum 1), each (mean or median, spread over runs), as printed.
# POPGym: Morad et al., "POPGym: Benchmarking Partially Observable Reinforcement Learning", ICLR 2023
# (arXiv 2303.01859), Appendix B, Table 3: MMER, the maximum over training epochs of the mean episodic
# return, mean and standard deviation over 3 trials; PPO (RLlib), 15M environment steps, recurrent state 256.
# RTRRL: Lemmel & Grosu, "Real-Time Recurrent Reinforcement Learning", AAAI 2025, appendix Table 3 (in their
# code repository FranzKnut/RTRRL-AAAI25): best validation reward during training, median and standard
# deviation over 5 runs; 32 neurons, up to 50M steps, the popjym port, difficulty not stated.
PUBLISHED_SOURCES = ("POPGym GRU", "POPGym LSTM", "POPGym MLP", "RTRRL LRU", "RTRRL RFLO")
PUBLISHED = {   # as printed: (score, spread)
    "RepeatPreviousEasy": {"POPGym GRU": ("1.000", "0.000"), "POPGym LSTM": ("1.000", "0.000"),
                           "POPGym MLP": ("-0.320", "0.007"), "RTRRL LRU": ("1.00", "0.00"),
                           "RTRRL RFLO": ("0.54", "0.23")},
    "AutoencodeEasy": {"POPGym GRU": ("-0.283", "0.029"), "POPGym LSTM": ("-0.312", "0.008"),
                       "POPGym MLP": ("-0.470", "0.004")},
    "StatelessCartPoleEasy": {"POPGym GRU": ("1.000", "0.000"), "POPGym LSTM": ("1.000", "0.000"),
                              "POPGym MLP": ("0.722", "0.001"), "RTRRL LRU": ("1.00", "0.00"),
                              "RTRRL RFLO": ("1.00", "0.00")},
    "NoisyStatelessCartPoleEasy": {"POPGym GRU": ("0.995", "0.000"), "POPGym LSTM": ("0.987", "0.006"),
                                   "POPGym MLP": ("0.515", "0.003"), "RTRRL LRU": ("0.93", "0.04"),
                                   "RTRRL RFLO": ("0.99", "0.01")},
}


def _rliable():
    try:
        from rliable import library, metrics
    except ImportError:
        raise ImportError("the suite's statistics need rliable: pip install 'rliable==1.2.0' "
                          "(or pip install 'rtrl[suite]')") from None
    return library, metrics


def interval(samples: dict[str, np.ndarray], func, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """rliable's point estimates and 95% stratified-bootstrap CIs of ``func`` for each (runs × tasks) array:
    {key: (estimates (K,), CIs (2, K))}. The same arrays give the same CIs: rliable 1.2 draws its resamples
    from numpy's global generator (its ``random_state`` goes unused), so each key's bootstrap runs with that
    generator seeded by ``seed``, and the caller's generator state is put back afterwards."""
    library, _ = _rliable()
    result = {}
    state = np.random.get_state()
    try:
        for key, array in samples.items():
            np.random.seed(seed)
            with warnings.catch_warnings():   # rliable 1.2 passes arch a RandomState, which arch 7 warns about
                warnings.simplefilter("ignore", FutureWarning)
                points, cis = library.get_interval_estimates({key: array}, func, reps=BOOTSTRAP_REPS,
                                                             random_state=np.random.RandomState(seed))
            result[key] = (np.atleast_1d(points[key]), np.asarray(cis[key]).reshape(2, -1))
    finally:
        np.random.set_state(state)
    return result


def aggregates(normalised: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """IQM and mean of normalised scores over (runs × tasks) with their CIs, for each core."""
    _, metrics = _rliable()
    return interval(normalised, lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)]))


def collect(cfg: SuiteConfig, train_overrides: dict | None = None) -> dict[tuple[str, str], dict]:
    """{(task, core): {"seeds": planned seeds, "scores": finished scores, "results": finished runs' results
    (with their training curves), "finished": the finished runs' seeds}}."""
    table: dict[tuple[str, str], dict] = {}
    for job in plan(cfg, train_overrides):
        entry = table.setdefault((job.task, job.core), {"seeds": [], "scores": [], "results": [], "finished": []})
        entry["seeds"].append(job.seed)
        result = load_result(job)
        if result is not None:
            entry["scores"].append(result["score"])
            entry["results"].append(result)
            entry["finished"].append(job.seed)
    return table


def _cores(cfg: SuiteConfig) -> list[str]:
    return [core for core, _ in TIERS[cfg.tier].cores]


def _cell(scores: list[float], planned: int, ci: tuple[float, float] | None) -> str:
    if not scores:
        return "not run"
    text = f"{np.mean(scores):.3f}"
    if ci is not None and len(scores) > 1:
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    missing = planned - len(scores)
    return text + f" (n={len(scores)}" + (f", {missing} missing)" if missing else ")")


def task_table(cfg: SuiteConfig, table: dict, chance: dict) -> tuple[list[str], dict[str, np.ndarray], dict[str, str]]:
    """Markdown rows of raw scores per task and core; each core's normalised (seeds × tasks) array over the
    seeds finished on every task; and, for the cores where those are not yet all the planned seeds, a label
    saying which seeds the (interim) array holds."""
    tasks = [t for t in TASKS if t.name in cfg.task_names()]
    cores = _cores(cfg)
    rows = ["| task | score | chance | " + " | ".join(cores) + " |", "|---|---|---:|" + "---:|" * len(cores)]
    for task in tasks:
        cells = []
        for core in cores:
            entry = table[(task.name, core)]
            scores = entry["scores"]
            ci = None
            if len(scores) > 1:
                _, cis = interval({"x": np.asarray(scores)[:, None]}, lambda x: np.array([x.mean()]))["x"]
                ci = (cis[0, 0], cis[1, 0])
            cells.append(_cell(scores, len(entry["seeds"]), ci))
        rows.append(f"| {task.name} | {task.score.replace('_', ' ')} | {chance[task.name]['chance']:.3f} | "
                    + " | ".join(cells) + " |")
    arrays, interim = seed_arrays(cfg, table, chance, lambda task, entry, i: entry["scores"][i])
    return rows, arrays, interim


def seed_arrays(cfg: SuiteConfig, table: dict, chance: dict, value) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """For each core, the normalised (seeds × tasks) array of ``value(task, entry, i)`` (the i-th finished run
    of the task's entry) over the seeds finished on every task; and a label for the cores where those are not yet
    all the planned seeds (interim). A core is left out while a value is None (e.g. no metrics)."""
    tasks = [t for t in TASKS if t.name in cfg.task_names()]
    arrays, interim = {}, {}
    for core in _cores(cfg):
        entries = [table[(task.name, core)] for task in tasks]
        if not entries:
            continue
        common = [seed for seed in entries[0]["seeds"] if all(seed in e["finished"] for e in entries)]
        values = [[value(task, e, e["finished"].index(seed)) for seed in common] for task, e in zip(tasks, entries)]
        if not common or any(v is None for column in values for v in column):
            continue
        arrays[core] = np.array([[normalise(v, chance[task.name]["chance"], task.maximum) for v in column]
                                 for task, column in zip(tasks, values)]).T
        if len(common) < len(entries[0]["seeds"]):
            interim[core] = (f"{len(common)} of {len(entries[0]['seeds'])} (seed{'s' if len(common) > 1 else ''} "
                             f"{', '.join(map(str, common))}; interim)")
    return arrays, interim


def _column(curve: dict, name: str) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in curve[name]], dtype=float)


def training_mean(curve: dict | None, score: str, budget: int, points: int = 200) -> float | None:
    """A run's training score (its ``training_curve``: recent-episode window, sampled actions) averaged over
    the budget: the area under the training curve divided by the budget, the curve read at ``points``
    evenly spaced steps (linear between logged rows; before the first row, its value)."""
    if not curve or score not in curve:
        return None
    steps, values = _column(curve, "step"), _column(curve, score)
    known = np.isfinite(values)
    if not known.any():
        return None
    grid = np.linspace(0, budget, points + 1)[1:]
    return float(np.interp(grid, steps[known], values[known]).mean())


def normalised_rows(cfg: SuiteConfig, arrays: dict[str, np.ndarray], interim: dict[str, str]) -> list[str]:
    tasks = [t.name for t in TASKS if t.name in cfg.task_names()]
    rows = ["| core | runs per task | " + " | ".join(tasks) + " |", "|---|---:|" + "---:|" * len(tasks)]
    for core, array in arrays.items():
        rows.append(f"| {core} | {interim.get(core, array.shape[0])} | "
                    + " | ".join(f"{v:.2f}" for v in array.mean(axis=0)) + " |")
    return rows


def aggregate_rows(arrays: dict[str, np.ndarray], interim: dict[str, str]) -> list[str]:
    rows = ["| core | runs per task | IQM [95% CI] | mean [95% CI] |", "|---|---:|---:|---:|"]
    for core, (points, cis) in aggregates(arrays).items():
        rows.append(f"| {core} | {interim.get(core, arrays[core].shape[0])} | "
                    f"{points[0]:.3f} [{cis[0, 0]:.3f}, {cis[1, 0]:.3f}] | "
                    f"{points[1]:.3f} [{cis[0, 1]:.3f}, {cis[1, 1]:.3f}] |")
    return rows


def best_training_return(curve: dict | None) -> float | None:
    """A run's largest training mean return over a full window of recent episodes (rows before the
    window first fills are left out): the counterpart of POPGym's MMER."""
    if not curve or "mean_return" not in curve:
        return None
    episodes, returns = _column(curve, "episodes"), _column(curve, "mean_return")
    full = (episodes == episodes.max()) & np.isfinite(returns)
    return float(returns[full].max()) if full.any() else None


def published_rows(cfg: SuiteConfig, table: dict) -> list[str]:
    """Ours (best training mean return, mean ± std over seeds) beside the published scores, per POPGym task."""
    tasks = [t.name for t in TASKS if t.name in cfg.task_names() and t.name in PUBLISHED]
    cores = _cores(cfg)
    rows = ["| task | " + " | ".join(f"{core} (ours)" for core in cores) + " | " + " | ".join(PUBLISHED_SOURCES)
            + " |", "|---|" + "---:|" * (len(cores) + len(PUBLISHED_SOURCES))]
    for task in tasks:
        cells = []
        for core in cores:
            best = [b for b in (best_training_return(r.get("curve")) for r in table[(task, core)]["results"])
                    if b is not None]
            spread = f" ± {np.std(best):.3f}" if len(best) > 1 else ""   # one seed has no spread
            cells.append(f"{np.mean(best):.3f}{spread} (n={len(best)})" if best else "not run")
        cells += [" ± ".join(PUBLISHED[task][src]) if src in PUBLISHED[task] else "–" for src in PUBLISHED_SOURCES]
        rows.append(f"| {task} | " + " | ".join(cells) + " |")
    return rows if tasks else []


def curves(cfg: SuiteConfig, table: dict, out: Path) -> list[Path]:
    """Training curves (the run's recent-episode score against steps), one panel per task, 4 panels a PNG."""
    tasks = [t for t in TASKS if t.name in cfg.task_names()]
    paths = []
    for part in range(0, len(tasks), 4):
        panels = []
        for task in tasks[part:part + 4]:
            series = []
            for core in _cores(cfg):
                for result in table[(task.name, core)]["results"]:
                    curve = result.get("curve")
                    if curve and task.score in curve:
                        series.append(Series(f"{core}-seed{result['seed']}", curve["step"],
                                             smooth_series(list(_column(curve, task.score)), 3)))
            panels.append(Panel(series, "agent steps", task.score.replace("_", " ") + " (training)", task.name))
        if any(p.series for p in panels):
            paths.append(plot_panels(panels, out.with_name(f"{out.stem}_{part // 4 + 1}.png"), panel_size=(4.5, 3.5)))
    return paths


def section_name(cfg: SuiteConfig, train_overrides: dict | None = None) -> str:
    """The report section of a tier run with a preset and training settings: ``quick``, ``quick, preset memory``."""
    parts = variant_parts(cfg, train_overrides)
    at = len(parts) - len(train_overrides or {})   # the seeds and tasks chosen go before the training settings
    extra = ([f"seeds {cfg.seeds}"] if cfg.seeds.strip() else []) + ([f"tasks {cfg.tasks}"] if cfg.tasks.strip() else [])
    return ", ".join(parts[:at] + extra + parts[at:])


def _presets(cfg: SuiteConfig, jobs: list) -> str:
    """``preset `memory-suite``` and, for the cell families with their own, which labels train with which."""
    own = {}
    for job in jobs:
        if job.preset != cfg.preset:
            own.setdefault(job.preset, []).append(job.core)
    return f"preset `{cfg.preset}`" + "".join(f"; `{preset}` for {', '.join(dict.fromkeys(labels))}"
                                             for preset, labels in own.items())


def write_report(cfg: SuiteConfig, command: str, doc_text: str = "", train_overrides: dict | None = None) -> str:
    """Write the section of this tier, preset and settings in ``cfg.doc`` (and its curve PNGs beside it) from
    the finished runs; return the section's markdown. The report covers every core of the tier, also when
    ``cfg.cores`` ran only some."""
    cfg = dataclasses.replace(cfg, cores="")
    tasks = [t for t in TASKS if t.name in cfg.task_names()]
    chance = chance_levels(cfg.results or cfg.runs, tasks)
    table = collect(cfg, train_overrides)
    rows, arrays, interim = task_table(cfg, table, chance)
    jobs = plan(cfg, train_overrides)
    name = section_name(cfg, train_overrides)
    finished = [j for j in jobs if load_result(j) is not None]
    lines = [f"## Tier `{name}`: {len(finished)} of {len(jobs)} runs finished", "",
             f"- date: {utc_stamp()}", f"- machine: {machine_description()}", f"- command: `{command}`",
             f"- budget of every run: {cfg.steps():,} agent steps, {_presets(cfg, jobs)}, inline actors, one torch "
             f"thread; greedy evaluation over {cfg.episodes()} episodes from a zero state (seed 123)",
             f"- one run, exactly: `{train_command(jobs[0].preset, jobs[0])}`" if jobs else "", "",
             "Scores (mean over seeds [95% percentile-bootstrap CI over seeds], n = seeds finished):", "", *rows, ""]
    if arrays:
        lines += ["Normalised scores, (score − chance) / (max − chance), mean over the seeds finished on every task"
                  + ("; an interim row covers only those seeds, and can change as the others finish"
                     if interim else "") + ":", "",
                  *normalised_rows(cfg, arrays, interim), "",
                  "Aggregates over the tasks (rliable; stratified bootstrap, 95% CIs"
                  + ("; with one run per task the bootstrap has nothing to resample and the CI is the point"
                     if any(array.shape[0] == 1 for array in arrays.values()) else "") + "):", "",
                  *aggregate_rows(arrays, interim), ""]
    auc, auc_interim = seed_arrays(cfg, table, chance, lambda task, entry, i: training_mean(
        entry["results"][i].get("curve"), task.score, cfg.steps()))
    if auc:
        lines += ["How soon the cores learn: the normalised training score (sampled actions, recent-episode window) "
                  "averaged over the whole budget, i.e. the area under the training curve per step; 1 would be "
                  "the best score from the first step (rliable aggregates as above):", "",
                  *aggregate_rows(auc, auc_interim), ""]
    published = published_rows(cfg, table)
    if published:
        lines += ["Beside the published scores (POPGym tasks; ours: the best training mean return over a "
                  f"window of {resolve_config(cfg.preset, overrides=train_overrides).stats_window} episodes, sampled actions, mean ± std over the finished seeds, "
                  "as POPGym's MMER; POPGym: MMER, mean ± std over 3 trials, PPO, 15M steps; RTRRL: best "
                  "validation reward, median ± std over 5 runs, up to 50M steps; sources in "
                  "`rtrl.bench.suite_report.PUBLISHED`):", "", *published, ""]
    missing = [j for j in jobs if load_result(j) is None]
    if missing:
        lines += [f"Not run yet ({len(missing)}): " + ", ".join(f"{j.task}/{j.core}-seed{j.seed}" for j in missing[:12])
                  + (" ..." if len(missing) > 12 else ""), ""]
    if cfg.doc:
        doc = Path(cfg.doc)
        for path in curves(cfg, table, doc.with_name(f"{doc.stem.lower()}_{slug(name)}")):
            lines.append(f"![training curves]({path.name})")
        lines.append("")
    section = "\n".join(lines)
    if cfg.doc:
        write_section(Path(cfg.doc), f"tier {name}", section, doc_text)
    return section


__all__ = ["write_report", "aggregates", "interval", "collect", "best_training_return", "PUBLISHED"]
