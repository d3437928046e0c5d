"""``dmlab:<level>`` — the DMLab-30 levels (``contributed/dmlab30/<level>``) of DeepMind Lab.

Observation uint8 (3, 72, 96) (RGB_INTERLEAVED, made channel-first); each agent action is repeated
4 frames by DeepMind Lab itself (``step(action, num_steps=4)``, rewards summed); Discrete(9) actions
from the IMPALA action set below. ``training=False`` evaluates as IMPALA did: the held-out
``*_test`` variants of the two ``*_train`` levels, with ``allowHoldOutLevels`` and the evaluation
``mixerSeed``. Every ``reset()`` starts a new episode with a seed drawn from the env's generator.
Options: ``action_repeat`` (4), ``width`` (96), ``height`` (72), ``dataset_path`` ('' = none; some
psychlab levels need the Brady et al. image dataset).

``deepmind_lab`` is imported lazily; it cannot be pip-installed from PyPI (see INSTALL_HINT).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rtrl.envs.packages import MissingPackage
from rtrl.envs.wrappers import RecordEpisode

OPTIONS = {"action_repeat": 4, "width": 96, "height": 72, "dataset_path": ""}
FRAMES_PER_STEP = "action_repeat"   # emulator frames per agent step

LEVELS = (
    "rooms_collect_good_objects_train", "rooms_exploit_deferred_effects_train",
    "rooms_select_nonmatching_object", "rooms_watermaze", "rooms_keys_doors_puzzle",
    "language_select_described_object", "language_select_located_object",
    "language_execute_random_task", "language_answer_quantitative_question",
    "lasertag_one_opponent_small", "lasertag_three_opponents_small",
    "lasertag_one_opponent_large", "lasertag_three_opponents_large",
    "natlab_fixed_large_map", "natlab_varying_map_regrowth", "natlab_varying_map_randomized",
    "skymaze_irreversible_path_hard", "skymaze_irreversible_path_varied",
    "psychlab_arbitrary_visuomotor_mapping", "psychlab_continuous_recognition",
    "psychlab_sequential_comparison", "psychlab_visual_search",
    "explore_object_locations_small", "explore_object_locations_large",
    "explore_obstructed_goals_small", "explore_obstructed_goals_large",
    "explore_goal_locations_small", "explore_goal_locations_large",
    "explore_object_rewards_few", "explore_object_rewards_many",
)
# evaluation uses the held-out variants of these (IMPALA's dmlab30.LEVEL_MAPPING)
TEST_LEVELS = {
    "rooms_collect_good_objects_train": "rooms_collect_good_objects_test",
    "rooms_exploit_deferred_effects_train": "rooms_exploit_deferred_effects_test",
}
EVAL_MIXER_SEED = 0x600D5EED  # DeepMind Lab's documented seed for evaluation episodes

# The 9 actions of IMPALA (Espeholt et al. 2018, appendix on DMLab; DEFAULT_ACTION_SET in
# github.com/deepmind/scalable_agent/blob/master/environments.py), as DeepMind Lab's 7-int vectors
# (LOOK_LEFT_RIGHT_PIXELS_PER_FRAME, LOOK_DOWN_UP_PIXELS_PER_FRAME, STRAFE_LEFT_RIGHT,
#  MOVE_BACK_FORWARD, FIRE, JUMP, CROUCH).
ACTION_SET = np.array(
    [
        [0, 0, 0, 1, 0, 0, 0],  # forward
        [0, 0, 0, -1, 0, 0, 0],  # backward
        [0, 0, -1, 0, 0, 0, 0],  # strafe left
        [0, 0, 1, 0, 0, 0, 0],  # strafe right
        [-20, 0, 0, 0, 0, 0, 0],  # look left
        [20, 0, 0, 0, 0, 0, 0],  # look right
        [-20, 0, 0, 1, 0, 0, 0],  # look left + forward
        [20, 0, 0, 1, 0, 0, 0],  # look right + forward
        [0, 0, 0, 0, 1, 0, 0],  # fire
    ],
    dtype=np.intc,
)

INSTALL_HINT = (
    "DeepMind Lab is not on PyPI: build it from "
    "https://github.com/deepmind/lab with Bazel (see docs/users/build.md there; "
    "`bazel build -c opt //python/pip_package:build_pip_package`, then "
    "`./bazel-bin/python/pip_package/build_pip_package /tmp/dmlab_pkg`) and pip-install the "
    "built wheel (`pip install /tmp/dmlab_pkg/deepmind_lab-*.whl`) into this environment."
)


def import_deepmind_lab():
    try:
        import deepmind_lab
    except ImportError as error:
        raise MissingPackage("dmlab", "deepmind_lab", error, install=INSTALL_HINT) from None
    return deepmind_lab


class DMLabEnv(gym.Env):
    """One DeepMind Lab level; observation uint8 (3, height, width), Discrete(9) actions."""

    def __init__(self, level: str, training: bool = True, action_repeat: int = 4, width: int = 96,
                 height: int = 72, dataset_path: str = ""):
        deepmind_lab = import_deepmind_lab()
        config = {"width": str(width), "height": str(height), "logLevel": "WARN"}
        if dataset_path:
            config["datasetPath"] = dataset_path
        if not training:
            level = TEST_LEVELS.get(level, level)
            config.update(allowHoldOutLevels="true", mixerSeed=str(EVAL_MIXER_SEED))
        self.level = level
        self.action_repeat = action_repeat
        self._lab = deepmind_lab.Lab(f"contributed/dmlab30/{level}", ["RGB_INTERLEAVED"], config=config)
        if len(self._lab.action_spec()) != ACTION_SET.shape[1]:
            raise RuntimeError(f"expected a {ACTION_SET.shape[1]}-int DeepMind Lab action spec, "
                               f"got {self._lab.action_spec()}")
        self.observation_space = spaces.Box(0, 255, (3, height, width), np.uint8)
        self.action_space = spaces.Discrete(len(ACTION_SET))
        self._last_frame = np.zeros(self.observation_space.shape, np.uint8)

    def _frame(self) -> np.ndarray:
        rgb = self._lab.observations()["RGB_INTERLEAVED"]  # (H, W, 3)
        self._last_frame = np.ascontiguousarray(np.transpose(rgb, (2, 0, 1)), dtype=np.uint8)
        return self._last_frame

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._lab.reset(seed=int(self.np_random.integers(2**31 - 1)))
        return self._frame(), {}

    def step(self, action):
        reward = float(self._lab.step(ACTION_SET[int(action)], num_steps=self.action_repeat))
        episode_ended = not self._lab.is_running()
        # after the episode ends DeepMind Lab has no observation: repeat the last frame
        frame = self._last_frame if episode_ended else self._frame()
        return frame, reward, episode_ended, False, {}

    def close(self):
        self._lab.close()


def make(name: str, *, env_id: str, seed: int | None, training: bool, action_repeat: int,
         width: int, height: int, dataset_path: str) -> gym.Env:
    if name not in LEVELS:
        raise ValueError(f"unknown DMLab-30 level {name!r} in {env_id!r}; known: {', '.join(LEVELS)}")
    return RecordEpisode(DMLabEnv(name, training, action_repeat, width, height, dataset_path))
