"""Published scores that evaluation results are normalised by: random and human scores of Atari-57 and
DMLab-30, each table with its source."""
from __future__ import annotations

from rtrl.envs.atari import normalise_game_name

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


def human_normalized(family: str, name: str, score: float) -> float:
    """100 · (score − random) / (human − random) for an Atari game or a DMLab-30 level, in percent.

    ``family`` is ``atari`` (``name`` as in the env id, any case: Pong, space_invaders, SpaceInvaders)
    or ``dmlab`` (a DMLab-30 level name). Raises ValueError for a game or level with no published scores.
    """
    if family == "atari":
        table, key = ATARI_SCORES, normalise_game_name(name)
    elif family == "dmlab":
        table, key = DMLAB_SCORES, name
    else:
        raise ValueError(f"no human scores for {family!r}; accepted: atari, dmlab")
    if key not in table:
        raise ValueError(f"no published random/human scores for {family} {name!r}; known: {', '.join(sorted(table))}")
    random, human = table[key]
    return 100.0 * (score - random) / (human - random)
