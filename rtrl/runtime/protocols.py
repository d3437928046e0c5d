"""The paper's evaluation protocols (DESIGN.md §5) and the published scores they are normalised by.

Every protocol plays greedy (unless told otherwise) episodes from a zero agent state, the recurrent
state carried through each episode, on ``training=False`` environments:

    none     ``--episodes`` episodes (default 100) on the training environment (Atari: capped as below)
    atari    5 runs × 30 episodes (run seeds seed..seed+4), each episode capped at 27,000 agent steps
             (108,000 frames: a greedy policy may never end a game); per-run and overall mean return
             and human-normalised score
    procgen  200 episodes on the training level set and on each held-out set of 200 levels starting
             at 1000, 1200 and 1400 (``start_level``/``num_levels`` passed as env options)
    dmlab    3 runs × 100 episodes (run seeds seed..seed+2) on the evaluation variant of the level
             (held-out ``*_test`` levels, evaluation mixer seed); per-run and overall mean return
             and human-normalised score

``plan`` says which episodes to play; ``aggregate`` turns their summaries into eval.json's content.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rtrl.envs import parse_env_id

PROTOCOLS = ("none", "atari", "procgen", "dmlab")
ATARI_MAX_EPISODE_STEPS = 27_000           # agent steps = 108k frames (30 minutes of play at 60 Hz)
PROCGEN_HELD_OUT_STARTS = (1000, 1200, 1400)
PROCGEN_HELD_OUT_LEVELS = 200
DEFAULTS = {  # protocol -> (runs, episodes per run or level set)
    "none": (1, 100), "atari": (5, 30), "procgen": (1, 200), "dmlab": (3, 100),
}

# Atari-57 (random, human) scores: the "Random" and "Average Human" columns of Badia et al. 2020,
# "Agent57: Outperforming the Atari Human Benchmark", appendix score tables (the same numbers are in
# DeepMind's dqn_zoo, atari_data.py). Human = a professional game tester; both averaged over episodes
# started with up to 30 no-ops and capped at 108k frames. Note that Mnih et al. 2015 (Extended Data
# Table 2) has other human scores for some games (e.g. Pong 9.3, Breakout 31.8, Boxing 4.3); we use
# the later table, which covers all 57 games. Keys: the ALE name lower-cased without separators.
ATARI_SCORES: dict[str, tuple[float, float]] = {
    "alien": (227.8, 7127.7), "amidar": (5.8, 1719.5), "assault": (222.4, 742.0),
    "asterix": (210.0, 8503.3), "asteroids": (719.1, 47388.7), "atlantis": (12850.0, 29028.1),
    "bankheist": (14.2, 753.1), "battlezone": (2360.0, 37187.5), "beamrider": (363.9, 16926.5),
    "berzerk": (123.7, 2630.4), "bowling": (23.1, 160.7), "boxing": (0.1, 12.1),
    "breakout": (1.7, 30.5), "centipede": (2090.9, 12017.0), "choppercommand": (811.0, 7387.8),
    "crazyclimber": (10780.5, 35829.4), "defender": (2874.5, 18688.9), "demonattack": (152.1, 1971.0),
    "doubledunk": (-18.6, -16.4), "enduro": (0.0, 860.5), "fishingderby": (-91.7, -38.7),
    "freeway": (0.0, 29.6), "frostbite": (65.2, 4334.7), "gopher": (257.6, 2412.5),
    "gravitar": (173.0, 3351.4), "hero": (1027.0, 30826.4), "icehockey": (-11.2, 0.9),
    "jamesbond": (29.0, 302.8), "kangaroo": (52.0, 3035.0), "krull": (1598.0, 2665.5),
    "kungfumaster": (258.5, 22736.3), "montezumarevenge": (0.0, 4753.3), "mspacman": (307.3, 6951.6),
    "namethisgame": (2292.3, 8049.0), "phoenix": (761.4, 7242.6), "pitfall": (-229.4, 6463.7),
    "pong": (-20.7, 14.6), "privateeye": (24.9, 69571.3), "qbert": (163.9, 13455.0),
    "riverraid": (1338.5, 17118.0), "roadrunner": (11.5, 7845.0), "robotank": (2.2, 11.9),
    "seaquest": (68.4, 42054.7), "skiing": (-17098.1, -4336.9), "solaris": (1236.3, 12326.7),
    "spaceinvaders": (148.0, 1668.7), "stargunner": (664.0, 10250.0), "surround": (-10.0, 6.5),
    "tennis": (-23.8, -8.3), "timepilot": (3568.0, 5229.2), "tutankham": (11.4, 167.6),
    "upndown": (533.4, 11693.2), "venture": (0.0, 1187.5), "videopinball": (16256.9, 17667.9),
    "wizardofwor": (563.5, 4756.5), "yarsrevenge": (3092.9, 54576.9), "zaxxon": (32.5, 9173.3),
}
ATARI_SOURCE = "Badia et al. 2020 (Agent57), appendix: random and average-human scores of Atari-57"

# DMLab-30 (random, human) scores: Espeholt et al. 2018, "IMPALA", appendix (DMLab-30 per-level
# scores), as released with the paper (github.com/deepmind/scalable_agent, dmlab30.py). For the two
# *_train levels the numbers are those of their *_test variants, which is what evaluation plays.
DMLAB_SCORES: dict[str, tuple[float, float]] = {
    "rooms_collect_good_objects_train": (0.073, 10.0),
    "rooms_exploit_deferred_effects_train": (8.501, 85.65),
    "rooms_select_nonmatching_object": (0.312, 65.9),
    "rooms_watermaze": (4.065, 54.0),
    "rooms_keys_doors_puzzle": (4.135, 53.8),
    "language_select_described_object": (-0.07, 389.5),
    "language_select_located_object": (1.929, 280.7),
    "language_execute_random_task": (-5.913, 254.05),
    "language_answer_quantitative_question": (-0.33, 184.5),
    "lasertag_one_opponent_small": (-0.224, 12.65),
    "lasertag_three_opponents_small": (-0.214, 18.55),
    "lasertag_one_opponent_large": (-0.083, 18.6),
    "lasertag_three_opponents_large": (-0.102, 31.5),
    "natlab_fixed_large_map": (2.173, 36.9),
    "natlab_varying_map_regrowth": (2.989, 24.45),
    "natlab_varying_map_randomized": (7.346, 42.35),
    "skymaze_irreversible_path_hard": (0.1, 100.0),
    "skymaze_irreversible_path_varied": (14.4, 100.0),
    "psychlab_arbitrary_visuomotor_mapping": (0.163, 58.75),
    "psychlab_continuous_recognition": (0.224, 58.3),
    "psychlab_sequential_comparison": (0.129, 39.5),
    "psychlab_visual_search": (0.085, 78.5),
    "explore_object_locations_small": (3.575, 74.45),
    "explore_object_locations_large": (4.673, 65.65),
    "explore_obstructed_goals_small": (6.76, 206.0),
    "explore_obstructed_goals_large": (2.61, 119.5),
    "explore_goal_locations_small": (7.66, 267.5),
    "explore_goal_locations_large": (3.14, 194.5),
    "explore_object_rewards_few": (2.073, 77.7),
    "explore_object_rewards_many": (2.438, 106.7),
}
DMLAB_SOURCE = "Espeholt et al. 2018 (IMPALA), appendix: DMLab-30 random and human scores (scalable_agent/dmlab30.py)"


def _atari_key(game: str) -> str:
    return game.lower().replace("_", "").replace("-", "").replace(" ", "")


def human_normalized(family: str, name: str, score: float) -> float:
    """100 · (score − random) / (human − random) for an Atari game or a DMLab-30 level, in percent.

    ``family`` is ``atari`` (``name`` as in the env id, any case: Pong, space_invaders, SpaceInvaders)
    or ``dmlab`` (a DMLab-30 level name). Raises ValueError for a game or level with no published scores.
    """
    if family == "atari":
        table, key = ATARI_SCORES, _atari_key(name)
    elif family == "dmlab":
        table, key = DMLAB_SCORES, name
    else:
        raise ValueError(f"no human scores for {family!r}; accepted: atari, dmlab")
    if key not in table:
        raise ValueError(f"no published random/human scores for {family} {name!r}; known: {', '.join(sorted(table))}")
    random, human = table[key]
    return 100.0 * (score - random) / (human - random)


def frames_per_step(env_id: str, env_options: dict | None = None) -> int:
    """Environment frames per agent step: the Atari frame skip, DMLab's action repeat, else 1."""
    import importlib

    prefix, _, options = parse_env_id(env_id)
    options.update(env_options or {})
    key = {"atari": "frame_skip", "dmlab": "action_repeat"}.get(prefix)
    if key is None:
        return 1
    return int(options.get(key, importlib.import_module(f"rtrl.envs.{prefix}").OPTIONS[key]))


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
        raise ValueError(f"unknown evaluation protocol {protocol!r}; accepted: {', '.join(PROTOCOLS)}")
    prefix, _, id_options = parse_env_id(env_id)
    if protocol != "none" and prefix != protocol:
        raise ValueError(f"protocol {protocol!r} evaluates {protocol}: environments; this run trained on {env_id!r}")
    default_runs, default_episodes = DEFAULTS[protocol]
    if runs is not None and protocol in ("none", "procgen"):
        raise ValueError(f"protocol {protocol!r} has no runs to count; use --episodes")
    runs = default_runs if runs is None else runs
    episodes = default_episodes if episodes is None else episodes
    if runs < 1 or episodes < 1:
        raise ValueError(f"runs and episodes must be >= 1, got runs={runs}, episodes={episodes}")
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
    """eval.json's content from one summary (``evaluate.summarise``) per planned set.

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
