"""The paper's evaluation protocols (docs/DESIGN.md §5); the published scores they are normalised by are in
``rtrl.eval.scores``.

Every protocol plays greedy (unless told otherwise) episodes from a zero agent state, the recurrent
state carried through each episode, on ``training=False`` environments:

    none     ``episodes`` episodes (default 100) on the training environment (Atari: capped as below)
    atari    5 runs × 30 episodes (run seeds seed..seed+4), each episode capped at 27,000 agent steps
             (108,000 frames: a greedy policy may never end a game); per-run and overall mean return
             and human-normalised score
    procgen  200 episodes on the training level set and on each held-out set of 200 levels starting
             at 1000, 1200 and 1400 (``start_level``/``num_levels`` passed as env options)
    dmlab    3 runs × 100 episodes (run seeds seed..seed+2) on the evaluation variant of the level
             (held-out ``*_test`` levels, evaluation mixer seed); per-run and overall mean return
             and human-normalised score

``plan`` says which episodes to play; ``aggregate`` turns their summaries (``rtrl.eval.episodes.summarise``) into
eval.json's content; ``summary_lines`` into lines for a person.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rtrl.envs import parse_env_id
from rtrl.eval.scores import ATARI_SOURCE, DMLAB_SOURCE, human_normalized
from rtrl.settings import SettingError, literal

PROTOCOLS = ("none", "atari", "procgen", "dmlab")
ATARI_MAX_EPISODE_STEPS = 27_000           # agent steps = 108k frames (30 minutes of play at 60 Hz)
PROCGEN_HELD_OUT_STARTS = (1000, 1200, 1400)
PROCGEN_HELD_OUT_LEVELS = 200
DEFAULTS = {  # protocol -> (runs, episodes per run or level set)
    "none": (1, 100), "atari": (5, 30), "procgen": (1, 200), "dmlab": (3, 100),
}

@dataclass(frozen=True)
class EvalSet:
    """One group of evaluation episodes: a run of a protocol, or one ProcGen level set."""

    name: str
    seed: int
    episodes: int
    env_options: dict = field(default_factory=dict)   # run_episodes' env options (override the id's)


def plan(protocol: str, env_id: str, env_options: dict | None = None, seed: int = 0,
         episodes: int | None = None, runs: int | None = None) -> list[EvalSet]:
    """The episode groups ``protocol`` plays for a run trained on ``env_id``.

    ``episodes`` (per run or level set) and ``runs`` override the protocol's counts, e.g. for a
    quick check; ``runs`` does not apply to ``none`` and ``procgen`` (whose level sets are fixed).
    """
    if protocol not in PROTOCOLS:
        raise SettingError(f"bad {{protocol}}; accepted: {', '.join(PROTOCOLS)}", protocol=protocol)
    prefix, _, id_options = parse_env_id(env_id)
    if protocol != "none" and prefix != protocol:
        raise SettingError(f"{{protocol}} evaluates {protocol}: environments; this run trained on "
                           f"{literal(repr(env_id))}", protocol=protocol)
    default_runs, default_episodes = DEFAULTS[protocol]
    if runs is not None and protocol in ("none", "procgen"):
        raise SettingError("{protocol} has no {runs:name} to count; use {episodes:name}", protocol=protocol,
                           runs=runs, episodes=episodes)
    runs = default_runs if runs is None else runs
    episodes = default_episodes if episodes is None else episodes
    if runs < 1 or episodes < 1:
        raise SettingError("{runs} and {episodes} must be >= 1", runs=runs, episodes=episodes)
    base = dict(env_options or {})
    merged = {**id_options, **base}
    if prefix == "atari" and merged.get("max_episode_steps") is None:
        base["max_episode_steps"] = ATARI_MAX_EPISODE_STEPS
    if protocol == "none":
        return [EvalSet("all", seed, episodes, base)]
    if protocol == "procgen":
        train = dict(base, start_level=merged.get("start_level", 0), num_levels=merged.get("num_levels", 0))
        held_out = [EvalSet(f"levels_{start}_{start + PROCGEN_HELD_OUT_LEVELS - 1}", seed, episodes,
                            dict(base, start_level=start, num_levels=PROCGEN_HELD_OUT_LEVELS))
                    for start in PROCGEN_HELD_OUT_STARTS]
        return [EvalSet("train", seed, episodes, train)] + held_out
    return [EvalSet(f"run{i}", seed + i, episodes, dict(base)) for i in range(runs)]


def aggregate(protocol: str, env_id: str, sets: list[EvalSet], summaries: list[dict]) -> dict:
    """eval.json's content from one summary (``rtrl.eval.episodes.summarise``) per planned set.

    ``none``: the single summary as it is. ``atari``/``dmlab``: the runs, the mean and standard
    deviation of the per-run means, and human-normalised scores (per run and of the overall mean;
    ``null`` with a note for a game without published scores). ``procgen``: one entry per level set,
    plus the mean over the held-out sets' episodes.
    """
    if protocol == "none":
        return dict(summaries[0])
    prefix, name, options = parse_env_id(env_id)
    entries = [dict(summary, name=s.name, seed=s.seed, env_options=s.env_options) for s, summary in zip(sets, summaries)]
    result = {"protocol": protocol, "sets": entries}
    if protocol == "procgen":
        held_out = [r for e in entries[1:] for r in e["returns"]]
        result["train_mean_return"] = entries[0]["mean_return"]
        result["held_out_mean_return"] = float(np.mean(held_out))
        successes = [e["success_rate"] for e in entries[1:] if "success_rate" in e]
        if successes:  # equal episode counts per set: the mean of the rates is the pooled rate
            result["held_out_success_rate"] = float(np.mean(successes))
        train = sets[0].env_options
        result["train_levels"] = {"start_level": train["start_level"], "num_levels": train["num_levels"]}
        result["held_out_overlaps_train"] = train["num_levels"] == 0 or (
            train["start_level"] + train["num_levels"] > PROCGEN_HELD_OUT_STARTS[0]
            and train["start_level"] < PROCGEN_HELD_OUT_STARTS[-1] + PROCGEN_HELD_OUT_LEVELS)
        return result
    run_means = np.array([e["mean_return"] for e in entries], dtype=np.float64)
    result.update(runs=len(entries), episodes_per_run=sets[0].episodes, mean_return=float(run_means.mean()),
                  std_of_run_means=float(run_means.std()))
    try:
        for entry in entries:
            entry["human_normalized_percent"] = human_normalized(prefix, name, entry["mean_return"])
        result["human_normalized_percent"] = human_normalized(prefix, name, result["mean_return"])
        result["score_source"] = ATARI_SOURCE if prefix == "atari" else DMLAB_SOURCE
    except ValueError as error:  # the returns still count; say why there is no normalised score
        result["human_normalized_percent"] = None
        result["note"] = str(error)
    if protocol == "atari":
        cap = sets[0].env_options.get("max_episode_steps", options.get("max_episode_steps"))
        result["max_episode_steps"] = cap
        result["episodes_at_cap"] = sum(length >= cap for e in entries for length in e["lengths"]) if cap else 0
    return result


def summary_lines(result: dict) -> list[str]:
    """Human-readable lines for a protocol's result (not for ``none``)."""
    lines = []
    for entry in result["sets"]:
        line = f"{entry['name']:>16}: {entry['episodes']} episodes, mean return {entry['mean_return']:.3f} ± {entry['std_return']:.3f}"
        if "success_rate" in entry:
            line += f", success rate {entry['success_rate']:.3f}"
        if entry.get("human_normalized_percent") is not None:
            line += f", human-normalised {entry['human_normalized_percent']:.1f}%"
        lines.append(line)
    if result["protocol"] == "procgen":
        lines.append(f"train levels mean return {result['train_mean_return']:.3f}; "
                     f"held-out mean return {result['held_out_mean_return']:.3f}")
    else:
        line = (f"overall: mean return {result['mean_return']:.3f} (std of run means "
                f"{result['std_of_run_means']:.3f})")
        hns = result.get("human_normalized_percent")
        line += f", human-normalised {hns:.1f}%" if hns is not None else f" ({result.get('note', '')})"
        lines.append(line)
    return lines
