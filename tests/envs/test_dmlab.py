"""dmlab: the adapter against a small fake ``deepmind_lab`` module (the real one needs a Bazel build)."""
import sys
import types

import numpy as np
import pytest
from gymnasium import spaces

from rtrl.envs import make_env

# IMPALA's 9 actions as (look_left_right, look_down_up, strafe_left_right, move_back_forward,
# fire, jump, crouch), written out independently of the adapter
EXPECTED_ACTIONS = [
    (0, 0, 0, 1, 0, 0, 0), (0, 0, 0, -1, 0, 0, 0), (0, 0, -1, 0, 0, 0, 0), (0, 0, 1, 0, 0, 0, 0),
    (-20, 0, 0, 0, 0, 0, 0), (20, 0, 0, 0, 0, 0, 0), (-20, 0, 0, 1, 0, 0, 0), (20, 0, 0, 1, 0, 0, 0),
    (0, 0, 0, 0, 1, 0, 0),
]
EPISODE_FRAMES = 20  # the fake's episodes last 20 frames = 5 agent steps at action repeat 4


class FakeLab:
    """Mimics deepmind_lab.Lab: each frame pays 0.25; the image encodes (channel, frame count)."""

    instances = []

    def __init__(self, level, observations, config=None, renderer="software"):
        self.level, self.observation_names, self.config = level, observations, dict(config or {})
        self.height, self.width = int(self.config["height"]), int(self.config["width"])
        self.calls, self.frames, self.running = [], 0, False
        FakeLab.instances.append(self)

    def action_spec(self):
        names = ["LOOK_LEFT_RIGHT_PIXELS_PER_FRAME", "LOOK_DOWN_UP_PIXELS_PER_FRAME", "STRAFE_LEFT_RIGHT",
                 "MOVE_BACK_FORWARD", "FIRE", "JUMP", "CROUCH"]
        return [{"name": name, "min": -1024, "max": 1024} for name in names]

    def reset(self, episode=-1, seed=None):
        self.calls.append(("reset", seed))
        self.frames, self.running = 0, True

    def observations(self):
        assert self.running, "DeepMind Lab has no observations after the episode ended"
        rgb = np.zeros((self.height, self.width, 3), np.uint8)
        rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, self.frames  # channel tags + frame counter
        return {"RGB_INTERLEAVED": rgb}

    def step(self, action, num_steps=1):
        assert self.running
        assert isinstance(action, np.ndarray) and action.dtype == np.intc and action.shape == (7,)
        self.calls.append(("step", tuple(int(a) for a in action), num_steps))
        taken = min(num_steps, EPISODE_FRAMES - self.frames)
        self.frames += taken
        self.running = self.frames < EPISODE_FRAMES
        return 0.25 * taken

    def is_running(self):
        return self.running

    def close(self):
        self.calls.append(("close",))


@pytest.fixture
def fake_lab(monkeypatch):
    module = types.ModuleType("deepmind_lab")
    module.Lab = FakeLab
    monkeypatch.setitem(sys.modules, "deepmind_lab", module)
    FakeLab.instances = []
    return FakeLab


def test_missing_deepmind_lab_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepmind_lab", None)  # makes `import deepmind_lab` fail
    with pytest.raises(ImportError) as error:
        make_env("dmlab:rooms_watermaze")
    message = str(error.value)
    assert "dmlab: environments need the Python package 'deepmind_lab'" in message and "not on PyPI" in message
    assert "github.com/deepmind/lab" in message and "Bazel" in message and "pip install" in message


def test_unknown_level_lists_the_dmlab30_levels():
    with pytest.raises(ValueError) as error:
        make_env("dmlab:rooms_watermaz")
    assert "'rooms_watermaz'" in str(error.value)
    for level in ("rooms_watermaze", "explore_goal_locations_small", "psychlab_visual_search"):
        assert level in str(error.value)


def test_level_config_observation_and_actions(fake_lab):
    env = make_env("dmlab:rooms_watermaze", seed=0)
    lab = fake_lab.instances[-1]
    assert lab.level == "contributed/dmlab30/rooms_watermaze"
    assert lab.observation_names == ["RGB_INTERLEAVED"]
    assert lab.config["width"] == "96" and lab.config["height"] == "72"
    assert "allowHoldOutLevels" not in lab.config
    assert env.observation_space == spaces.Box(0, 255, (3, 72, 96), np.uint8)
    assert env.action_space == spaces.Discrete(9)
    observation, _ = env.reset()
    assert observation.shape == (3, 72, 96) and observation.dtype == np.uint8
    assert (observation[0] == 10).all() and (observation[1] == 20).all()  # channel-first RGB
    assert lab.calls[0][0] == "reset" and isinstance(lab.calls[0][1], int)
    for action, expected in enumerate(EXPECTED_ACTIONS[:4]):
        observation, reward, terminated, truncated, info = env.step(action)
        assert lab.calls[-1] == ("step", expected, 4)  # repeated 4 frames by DeepMind Lab
        assert reward == 1.0  # 4 frames x 0.25, summed
        assert (observation[2] == 4 * (action + 1)).all() and not terminated
    observation, reward, terminated, truncated, info = env.step(8)
    assert lab.calls[-1] == ("step", EXPECTED_ACTIONS[8], 4)
    assert terminated and not truncated and observation.shape == (3, 72, 96)
    assert info["episode"] == {"return": 5.0, "length": 5}
    # reset starts a new episode with a fresh seed drawn from the env's generator
    env.reset()
    resets = [call for call in lab.calls if call[0] == "reset"]
    assert len(resets) == 2 and resets[0][1] != resets[1][1]
    for action in range(4, 8):
        env.step(action)
        assert lab.calls[-1] == ("step", EXPECTED_ACTIONS[action], 4)


def test_seeded_episodes_and_evaluation_levels(fake_lab):
    seeds = []
    for _ in range(2):
        make_env("dmlab:explore_goal_locations_small", seed=3).reset()
        seeds.append(fake_lab.instances[-1].calls[0][1])
    assert seeds[0] == seeds[1]
    make_env("dmlab:rooms_collect_good_objects_train", training=False)
    lab = fake_lab.instances[-1]
    assert lab.level == "contributed/dmlab30/rooms_collect_good_objects_test"
    assert lab.config["allowHoldOutLevels"] == "true" and int(lab.config["mixerSeed"]) == 0x600D5EED
    env = make_env("dmlab:rooms_watermaze?action_repeat=8&dataset_path=/data/brady")
    env.reset()
    env.step(0)
    lab = fake_lab.instances[-1]
    assert lab.config["datasetPath"] == "/data/brady"
    assert lab.calls[-1] == ("step", EXPECTED_ACTIONS[0], 8)
