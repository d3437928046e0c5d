"""The paper's evaluation protocols, their published score tables, and `rtrl eval` playing them."""
import argparse
import json

import gymnasium as gym
import numpy as np
import pytest

from conftest import image_config, make_run
from rtrl.cli import main
from rtrl.cli.evaluate import register
from rtrl.cli.flags import given
from rtrl.envs import EnvSpec
from rtrl.eval import evaluation as evaluate_module
from rtrl.eval import episodes as episodes_module
from rtrl.eval import scores
from rtrl.eval.episodes import summarise
from rtrl.eval.evaluation import EvalConfig
from rtrl.eval.protocols import aggregate, plan
from rtrl.eval.scores import human_normalized
from rtrl.runtime.config import build_agent
from rtrl.settings import from_dict


def test_protocol_plans_have_the_papers_counts():
    atari = plan("atari", "atari:Pong")
    assert [(s.name, s.seed, s.episodes) for s in atari] == [(f"run{i}", i, 30) for i in range(5)]
    assert all(s.env_options == {"max_episode_steps": 27_000} for s in atari)
    # a cap the run already has is kept; counts can be reduced
    capped = plan("atari", "atari:Pong?max_episode_steps=500", seed=10, episodes=2, runs=2)
    assert [(s.seed, s.episodes, s.env_options) for s in capped] == [(10, 2, {}), (11, 2, {})]
    dmlab = plan("dmlab", "dmlab:rooms_watermaze")
    assert [(s.seed, s.episodes) for s in dmlab] == [(0, 100), (1, 100), (2, 100)]
    procgen = plan("procgen", "procgen:chaser?distribution_mode=hard&num_levels=500", {"start_level": 5})
    assert [(s.name, s.episodes, s.env_options["start_level"], s.env_options["num_levels"]) for s in procgen] == [
        ("train", 200, 5, 500), ("levels_1000_1199", 200, 1000, 200), ("levels_1200_1399", 200, 1200, 200),
        ("levels_1400_1599", 200, 1400, 200)]
    assert [(s.episodes, s.env_options) for s in plan("none", "gym:CartPole-v1")] == [(100, {})]
    assert plan("none", "atari:Breakout", episodes=3)[0].env_options == {"max_episode_steps": 27_000}


@pytest.mark.parametrize("args, message", [
    (("atri", "atari:Pong"), "bad protocol='atri'; accepted: none, atari, procgen, dmlab"),
    (("atari", "procgen:chaser"), "protocol='atari' evaluates atari: environments; this run trained on 'procgen:chaser'"),
    (("dmlab", "atari:Pong"), "protocol='dmlab'"),
])
def test_protocol_errors(args, message):
    with pytest.raises(ValueError, match=message):
        plan(*args)
    with pytest.raises(ValueError, match="protocol='procgen' has no runs to count; use episodes"):
        plan("procgen", "procgen:chaser", runs=2)
    with pytest.raises(ValueError, match="episodes=0"):
        plan("atari", "atari:Pong", episodes=0)


def test_human_normalised_scores_against_hand_computed_values():
    assert human_normalized("atari", "Pong", 14.6) == pytest.approx(100.0)
    assert human_normalized("atari", "Pong", -20.7) == pytest.approx(0.0)
    assert human_normalized("atari", "Pong", 0.0) == pytest.approx(100 * 20.7 / 35.3)
    assert human_normalized("atari", "Breakout", 16.1) == pytest.approx(50.0)                 # (16.1-1.7)/(30.5-1.7)
    assert human_normalized("atari", "space_invaders", 908.35) == pytest.approx(50.0)         # (148+1668.7)/2
    assert human_normalized("atari", "SpaceInvaders", 908.35) == pytest.approx(50.0)
    assert human_normalized("dmlab", "rooms_watermaze", 29.0325) == pytest.approx(50.0)       # (4.065+54)/2
    assert len(scores.ATARI_SCORES) == 57 and len(scores.DMLAB_SCORES) == 30
    for game in ("pong", "breakout", "qbert", "spaceinvaders", "seaquest", "beamrider", "mspacman"):
        assert game in scores.ATARI_SCORES
    from rtrl.envs.dmlab import LEVELS
    assert set(scores.DMLAB_SCORES) == set(LEVELS)
    with pytest.raises(ValueError, match="no published random/human scores for atari 'Adventure'"):
        human_normalized("atari", "Adventure", 0.0)
    with pytest.raises(ValueError, match="dmlab 'rooms_nowhere'"):
        human_normalized("dmlab", "rooms_nowhere", 0.0)
    with pytest.raises(ValueError, match="no human scores for 'procgen'"):
        human_normalized("procgen", "chaser", 0.0)


@pytest.fixture
def fake_episodes(monkeypatch):
    """run_episodes replaced by one that records its calls; episode returns = 10·seed + index."""
    calls = []

    def run_episodes(cfg, agent, episodes, greedy, seed, num_envs=8, env_id=None, env_options=None, observe=None, env_fn=None):
        calls.append(dict(episodes=episodes, seed=seed, env_options=env_options, greedy=greedy))
        return [{"return": 10.0 * seed + i, "length": 5, "success": None} for i in range(episodes)]

    monkeypatch.setattr(evaluate_module, "run_episodes", run_episodes)
    return calls


@pytest.mark.atari
def test_atari_protocol_writes_runs_and_human_normalised_scores(tmp_path, fake_episodes, capsys):
    make_run(tmp_path, env="atari:Pong", envs_per_actor=2)
    assert main(["eval", str(tmp_path), "--protocol", "atari"]) == 0
    assert [(c["seed"], c["episodes"], c["env_options"]["max_episode_steps"]) for c in fake_episodes] == [
        (s, 30, 27_000) for s in range(5)]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["protocol"] == "atari" and result["runs"] == 5 and result["episodes_per_run"] == 30
    run_means = [10.0 * s + 14.5 for s in range(5)]                       # mean of 10s + 0..29
    assert [e["mean_return"] for e in result["sets"]] == pytest.approx(run_means)
    assert result["mean_return"] == pytest.approx(34.5)
    assert result["std_of_run_means"] == pytest.approx(np.std(run_means))
    assert result["sets"][0]["human_normalized_percent"] == pytest.approx(100 * (14.5 + 20.7) / 35.3)
    assert result["human_normalized_percent"] == pytest.approx(100 * (34.5 + 20.7) / 35.3)
    assert "Agent57" in result["score_source"] and result["max_episode_steps"] == 27_000
    assert "human-normalised" in capsys.readouterr().out
    # reduced counts
    fake_episodes.clear()
    assert main(["eval", str(tmp_path), "--protocol", "atari", "--runs", "2", "--episodes", "3"]) == 0
    assert [(c["seed"], c["episodes"]) for c in fake_episodes] == [(0, 3), (1, 3)]


@pytest.mark.procgen
def test_procgen_protocol_and_unknown_game_scores(tmp_path, fake_episodes):
    make_run(tmp_path)
    assert main(["eval", str(tmp_path), "--protocol", "procgen", "--episodes", "4"]) == 0
    assert [(c["env_options"]["start_level"], c["env_options"]["num_levels"], c["episodes"]) for c in fake_episodes] == [
        (0, 10, 4), (1000, 200, 4), (1200, 200, 4), (1400, 200, 4)]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert [s["name"] for s in result["sets"]] == ["train", "levels_1000_1199", "levels_1200_1399", "levels_1400_1599"]
    assert result["held_out_mean_return"] == pytest.approx(1.5) and result["held_out_overlaps_train"] is False
    # an Atari game without published scores still gets its returns, with a note instead of a score
    sets = plan("atari", "atari:Adventure", episodes=2, runs=1)
    out = aggregate("atari", "atari:Adventure", sets, [summarise(
        [{"return": 1.0, "length": 3, "success": None}] * 2)])
    assert out["mean_return"] == 1.0 and out["human_normalized_percent"] is None and "Adventure" in out["note"]
    # DMLab: runs of the level's evaluation variant, normalised by the IMPALA table
    sets = plan("dmlab", "dmlab:rooms_collect_good_objects_train", episodes=2)
    out = aggregate("dmlab", "dmlab:rooms_collect_good_objects_train", sets, [summarise(
        [{"return": float(r), "length": 3, "success": None}] * 2) for r in (1, 2, 3)])
    assert out["runs"] == 3 and out["mean_return"] == 2.0 and "IMPALA" in out["score_source"]
    assert out["human_normalized_percent"] == pytest.approx(100 * (2.0 - 0.073) / (10.0 - 0.073))


@pytest.mark.procgen
def test_bad_protocol_for_the_run_is_a_clear_cli_error(tmp_path, capsys):
    make_run(tmp_path)
    assert main(["eval", str(tmp_path), "--protocol", "atari"]) == 2
    assert "this run trained on 'procgen:coinrun" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path), "--protocol", "mujoco"])


@pytest.mark.procgen
def test_procgen_level_sets_reach_the_real_environment(monkeypatch):
    """Each planned level set's first levels lie in that set (real procgen, one step per set)."""
    import rtrl.envs.batch as batch_module
    level_seeds = []

    class RecordLevel(gym.Wrapper):
        def reset(self, **kwargs):
            obs, info = self.env.reset(**kwargs)
            level_seeds[-1].append(info["level_seed"])
            return obs, info

    real_make_env = batch_module.make_env
    monkeypatch.setattr(batch_module, "make_env", lambda *a, **k: RecordLevel(real_make_env(*a, **k)))

    class Stop(Exception):
        pass

    def stop(obs):
        raise Stop

    cfg = image_config(env="procgen:coinrun?distribution_mode=easy&num_levels=500")
    agent = build_agent(cfg, EnvSpec.probe(cfg.env, cfg.env_options)).eval()
    sets = plan("procgen", cfg.env, cfg.env_options)
    for s in sets:
        level_seeds.append([])
        with pytest.raises(Stop):
            episodes_module.run_episodes(cfg, agent, 3, True, 0, 3, env_options=s.env_options, observe=stop)
    for s, seeds in zip(sets, level_seeds):
        start, count = s.env_options["start_level"], s.env_options["num_levels"]
        assert len(seeds) == 3 and all(start <= seed < start + count for seed in seeds), (s.name, seeds)
    assert level_seeds[1] != level_seeds[2]


def test_eval_greedy_is_the_default_and_help_says_so(capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    def settings(argv):
        return from_dict(EvalConfig, given(parser.parse_args(["eval", "d"] + argv), EvalConfig))

    assert settings([]).greedy is True
    assert settings(["--sample"]).greedy is False and settings(["--greedy", "false"]).greedy is False
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "take the most probable action (false: sample from the policy, as --sample) (default: True)" in help_text
    assert help_text.endswith("--sample sample actions from the policy instead of taking the most probable one")
