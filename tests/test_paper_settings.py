"""The paper's settings: presets, evaluation protocols and human-normalised scores, a pre-trained
frozen stem, frames in metrics.csv, and evaluation videos."""
import argparse
import csv
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from PIL import Image

from rtrl.cli import main
from rtrl.runtime import evaluate as evaluate_module
from rtrl.runtime import protocols
from rtrl.runtime.actor import EnvSpec, make_agent
from rtrl.runtime.config import TrainConfig, resolve_config
from rtrl.runtime.protocols import aggregate, frames_per_step, human_normalized, plan
from rtrl.runtime.train import _metrics_row, load_checkpoint, load_stem, train
from rtrl.runtime.video import record_video

PROCGEN = "procgen:coinrun?distribution_mode=easy&num_levels=10"


def tiny_config(**overrides) -> TrainConfig:
    values = dict(env=PROCGEN, core="rtrl-elstm", total_steps=8, unroll_length=2, batch_size=2, hidden_size=8,
                  stem="resnet", stem_hidden_size=16, num_actors=0, envs_per_actor=2, log_interval=0.01,
                  checkpoint_interval=1000.0, seed=1, lr=0.05)
    values.update(overrides)
    return TrainConfig(**values).validate()


def make_run(path, **overrides) -> TrainConfig:
    """A run directory with an untrained agent's checkpoint (no training: fast)."""
    cfg = tiny_config(**overrides)
    torch.manual_seed(cfg.seed)
    model = make_agent(cfg, EnvSpec.probe(cfg.env, cfg.env_options))
    path.mkdir(parents=True, exist_ok=True)
    torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "steps": 0}, path / "checkpoint.pt")
    return cfg


def parse_train(argv):
    from rtrl.runtime.train import add_parser
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return resolve_config(parser.parse_args(["train", "--out", "x"] + argv))


# ---- presets -------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset, env, T, N, steps", [
    ("atari", "atari:Pong", 50, 256, 200_000_000),
    ("procgen", "procgen:chaser?distribution_mode=hard&num_levels=500", 50, 256, 200_000_000),
    ("dmlab", "dmlab:rooms_watermaze", 100, 512, 100_000_000),
])
def test_presets_hold_the_papers_numbers(preset, env, T, N, steps):
    cfg = parse_train(["--preset", preset])
    assert (cfg.env, cfg.unroll_length, cfg.hidden_size, cfg.total_steps) == (env, T, N, steps)
    assert (cfg.core, cfg.batch_size, cfg.stem, cfg.stem_hidden_size, cfg.forget_bias) == ("rtrl-elstm", 32, "resnet", 256, 0.0)
    assert (cfg.lr, cfg.entropy_cost, cfg.baseline_cost, cfg.discounting) == (6e-4, 0.01, 0.5, 0.99)
    assert (cfg.rmsprop_alpha, cfg.rmsprop_eps, cfg.grad_norm_clip, cfg.reward_clip) == (0.99, 0.01, 40.0, True)
    assert cfg.batch_size % cfg.envs_per_actor == 0
    flagged = parse_train(["--preset", preset, "--env", "atari:Breakout", "--hidden-size", "64", "--num-actors", "0"])
    assert (flagged.env, flagged.hidden_size, flagged.num_actors, flagged.unroll_length) == ("atari:Breakout", 64, 0, T)


def test_atari_cpu_preset_is_the_documented_pong_recipe():
    cfg = parse_train(["--preset", "atari-cpu"])
    assert (cfg.env, cfg.stem, cfg.feature_norm, cfg.unroll_length, cfg.batch_size, cfg.envs_per_actor) == (
        "atari:Pong", "nature", True, 20, 4, 4)
    assert (cfg.core, cfg.lr, cfg.rmsprop_eps, cfg.total_steps) == ("rtrl-elstm", 6e-4, 0.01, 4_000_000)
    assert cfg.batch_size % cfg.envs_per_actor == 0


def test_frames_are_steps_times_the_frame_skip():
    assert frames_per_step("atari:Pong") == 4
    assert frames_per_step("atari:Pong?frame_skip=3") == 3
    assert frames_per_step("atari:Pong", {"frame_skip": 2}) == 2
    assert frames_per_step("dmlab:rooms_watermaze") == 4
    assert frames_per_step(PROCGEN) == 1 and frames_per_step("gym:CartPole-v1") == 1
    row = _metrics_row(1600, 1.0, 10.0, 1, [], [{k: 0.0 for k in ("total_loss", "pg_loss", "baseline_loss",
                                                                   "entropy_loss", "grad_norm", "lr")}], 4)
    assert (row["step"], row["frames"]) == (1600, 6400)


# ---- evaluation protocols ------------------------------------------------------------------------

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
    (("atri", "atari:Pong"), "unknown evaluation protocol 'atri'; accepted: none, atari, procgen, dmlab"),
    (("atari", "procgen:chaser"), "this run trained on 'procgen:chaser'"),
    (("dmlab", "atari:Pong"), "protocol 'dmlab'"),
])
def test_protocol_errors(args, message):
    with pytest.raises(ValueError, match=message):
        plan(*args)
    with pytest.raises(ValueError, match="no runs"):
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
    assert len(protocols.ATARI_SCORES) == 57 and len(protocols.DMLAB_SCORES) == 30
    for game in ("pong", "breakout", "qbert", "spaceinvaders", "seaquest", "beamrider", "mspacman"):
        assert game in protocols.ATARI_SCORES
    from rtrl.envs.dmlab import LEVELS
    assert set(protocols.DMLAB_SCORES) == set(LEVELS)
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

    def run_episodes(cfg, agent, episodes, greedy, seed, num_envs=8, env_id=None, env_options=None, observe=None):
        calls.append(dict(episodes=episodes, seed=seed, env_options=env_options, greedy=greedy))
        return [{"return": 10.0 * seed + i, "length": 5, "success": None} for i in range(episodes)]

    monkeypatch.setattr(evaluate_module, "run_episodes", run_episodes)
    return calls


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
    out = aggregate("atari", "atari:Adventure", sets, [evaluate_module.summarise(
        [{"return": 1.0, "length": 3, "success": None}] * 2)])
    assert out["mean_return"] == 1.0 and out["human_normalized_percent"] is None and "Adventure" in out["note"]
    # DMLab: runs of the level's evaluation variant, normalised by the IMPALA table
    sets = plan("dmlab", "dmlab:rooms_collect_good_objects_train", episodes=2)
    out = aggregate("dmlab", "dmlab:rooms_collect_good_objects_train", sets, [evaluate_module.summarise(
        [{"return": float(r), "length": 3, "success": None}] * 2) for r in (1, 2, 3)])
    assert out["runs"] == 3 and out["mean_return"] == 2.0 and "IMPALA" in out["score_source"]
    assert out["human_normalized_percent"] == pytest.approx(100 * (2.0 - 0.073) / (10.0 - 0.073))


def test_bad_protocol_for_the_run_is_a_clear_cli_error(tmp_path, capsys):
    make_run(tmp_path)
    assert main(["eval", str(tmp_path), "--protocol", "atari"]) == 2
    assert "this run trained on 'procgen:coinrun" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path), "--protocol", "mujoco"])


def test_procgen_level_sets_reach_the_real_environment(monkeypatch):
    """Each planned level set's first levels lie in that set (real procgen, one step per set)."""
    import rtrl.runtime.actor as actor_module
    level_seeds = []

    class RecordLevel(gym.Wrapper):
        def reset(self, **kwargs):
            obs, info = self.env.reset(**kwargs)
            level_seeds[-1].append(info["level_seed"])
            return obs, info

    real_make_env = actor_module.make_env
    monkeypatch.setattr(actor_module, "make_env", lambda *a, **k: RecordLevel(real_make_env(*a, **k)))

    class Stop(Exception):
        pass

    def stop(obs):
        raise Stop

    cfg = tiny_config(env="procgen:coinrun?distribution_mode=easy&num_levels=500")
    agent = make_agent(cfg, EnvSpec.probe(cfg.env, cfg.env_options)).eval()
    sets = plan("procgen", cfg.env, cfg.env_options)
    for s in sets:
        level_seeds.append([])
        with pytest.raises(Stop):
            evaluate_module.run_episodes(cfg, agent, 3, True, 0, 3, env_options=s.env_options, observe=stop)
    for s, seeds in zip(sets, level_seeds):
        start, count = s.env_options["start_level"], s.env_options["num_levels"]
        assert len(seeds) == 3 and all(start <= seed < start + count for seed in seeds), (s.name, seeds)
    assert level_seeds[1] != level_seeds[2]


# ---- pre-trained, frozen stem --------------------------------------------------------------------

def stem_tensors(state: dict, part: str) -> dict:
    return {k: v.clone() for k, v in state.items() if k.startswith(part)}


def test_load_and_freeze_stem(tmp_path):
    source = tmp_path / "source"
    make_run(source, seed=7)
    src = load_checkpoint(source / "checkpoint.pt")["model"]
    # loading copies the conv part (and the fc only with include_fc)
    cfg = tiny_config(seed=2)
    model = make_agent(cfg, EnvSpec.probe(cfg.env, cfg.env_options))
    before_fc = stem_tensors(model.state_dict(), "stem.fc.")
    names = load_stem(model, source, include_fc=False)
    assert names and all(n.startswith("stem.convs.") for n in names)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in stem_tensors(src, "stem.convs.").items())
    assert all(torch.equal(state[k], v) for k, v in before_fc.items())
    load_stem(model, source / "checkpoint.pt", include_fc=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in stem_tensors(src, "stem.fc.").items())
    # a frozen, loaded stem stays equal to the source through training (and is saved); the rest trains
    out = tmp_path / "frozen"
    code = main(["train", "--out", str(out), "--env", PROCGEN, "--total-steps", "8", "--unroll-length", "2",
                 "--batch-size", "2", "--envs-per-actor", "2", "--num-actors", "0", "--hidden-size", "8",
                 "--stem", "resnet", "--stem-hidden-size", "16", "--lr", "0.05", "--seed", "2", "--no-progress",
                 "--no-plot", "--load-stem", str(source), "--load-fc", "--freeze-stem"])
    assert code == 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["config"]["load_stem"] == str(source) and ckpt["config"]["freeze_stem"] is True
    assert all(torch.equal(ckpt["model"][k], v) for k, v in stem_tensors(src, "stem.").items())
    torch.manual_seed(2)  # the initial weights of that run
    initial = make_agent(tiny_config(seed=2), EnvSpec.probe(PROCGEN, {})).state_dict()
    assert not torch.equal(ckpt["model"]["policy.weight"], initial["policy.weight"])
    trained_params = sum(len(group["params"]) for group in ckpt["optimizer"]["param_groups"])
    assert trained_params == len([k for k in ckpt["model"] if not k.startswith("stem.")])
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["frames"] == rows[-1]["step"] == "8"
    # resume: the frozen stem stays frozen without reading the source again
    (source / "checkpoint.pt").unlink()
    summary = train(TrainConfig.from_dict(dict(ckpt["config"], total_steps=12)), out, force=True, progress=False)
    assert summary["steps"] == 12
    assert all(torch.equal(load_checkpoint(out / "checkpoint.pt")["model"][k], v)
               for k, v in stem_tensors(src, "stem.").items())


def test_stem_mismatch_and_missing_checkpoint_errors(tmp_path, capsys):
    source = tmp_path / "source"
    make_run(source, stem_hidden_size=32)
    cfg = tiny_config()
    model = make_agent(cfg, EnvSpec.probe(cfg.env, cfg.env_options))
    load_stem(model, source, include_fc=False)  # the conv part matches
    with pytest.raises(ValueError, match=r"stem.fc.weight is \(32, 2048\) there, \(16, 2048\) here"):
        load_stem(model, source, include_fc=True)
    vector = tmp_path / "vector"
    make_run(vector, env="gym:CartPole-v1", stem="mlp")
    with pytest.raises(ValueError, match="does not match this run's stem: it has no stem.convs.0.weight"):
        load_stem(model, vector, include_fc=False)
    with pytest.raises(ValueError, match="no such checkpoint file"):
        load_stem(model, tmp_path / "nowhere.pt", include_fc=False)
    code = main(["train", "--out", str(tmp_path / "run"), "--env", PROCGEN, "--num-actors", "0",
                 "--freeze-stem"])
    assert code == 2 and "give --load-stem too" in capsys.readouterr().out


# ---- video ---------------------------------------------------------------------------------------

def test_video_is_a_valid_gif(tmp_path, capsys):
    cfg = make_run(tmp_path)
    agent = make_agent(cfg, EnvSpec.probe(cfg.env, cfg.env_options)).eval()
    path = record_video(cfg, agent, tmp_path / "clip.gif", greedy=False, seed=0, max_frames=12)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 12 and gif.size == (256, 256)
    # Atari: the latest gray frame of the stack
    from rtrl.runtime.video import observation_to_image
    stack = np.zeros((4, 84, 84), np.uint8)
    stack[-1, 0, 0] = 200
    image = observation_to_image(stack)
    assert image.shape == (336, 336) and image[0, 0] == 200 and image[-1, -1] == 0
    # vector observations: a clear error before any episode is played
    vector = tmp_path / "vector"
    make_run(vector, env="gym:CartPole-v1", stem="mlp")
    assert main(["eval", str(vector), "--episodes", "1", "--video"]) == 2
    assert "--video needs image observations" in capsys.readouterr().out
    assert main(["eval", str(tmp_path), "--episodes", "1", "--video", str(tmp_path / "clip.mp4")]) == 2
    assert "ending in .gif" in capsys.readouterr().out


def test_train_help_renders(capsys):
    """Flag help comes from the config's comments; a '%' in one must not break argparse."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--load-stem CKPT" in out and "--freeze-stem [BOOL]" in out and "--preset {atari,atari-cpu,dmlab,memory,procgen}" in out and "--feature-norm [BOOL]" in out


@pytest.mark.parametrize("kind, obs_shape", [("resnet", (4, 84, 84)), ("nature", (4, 84, 84)), ("nature", (3, 64, 64))])
def test_image_stems_shape_and_gradient(kind, obs_shape):
    from rtrl.models import make_stem
    torch.manual_seed(0)
    stem = make_stem(kind, obs_shape, torch.uint8, 32)
    obs = torch.randint(0, 256, (5, 3, *obs_shape), dtype=torch.uint8)
    features = stem(obs)
    assert features.shape == (5, 3, 32) and features.dtype == torch.float32 and (features >= 0).all()
    features.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in stem.parameters())
    # frames are independent: changing one frame changes only its features
    other = obs.clone()
    other[0, 0] = 255 - other[0, 0]
    changed = (stem(other) - features).abs().sum(-1) > 0
    assert changed[0, 0] and changed.sum() == 1


def test_nature_stem_errors():
    from rtrl.models import make_stem
    with pytest.raises(ValueError, match=r"the nature stem needs \(C, H, W\) image observations, got shape \(8,\)"):
        make_stem("nature", (8,), torch.float32, 16)
    with pytest.raises(ValueError, match="at least 36×36"):
        make_stem("nature", (1, 20, 20), torch.uint8, 16)


def test_nature_stem_initialisation_is_orthogonal_with_relu_gain():
    from rtrl.models import NatureCNNStem
    stem = NatureCNNStem((4, 84, 84), 64)
    gain2 = torch.nn.init.calculate_gain("relu") ** 2
    for layer in (*stem.convs[::2], stem.fc):
        w = layer.weight.detach().flatten(1)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        torch.testing.assert_close(gram, gain2 * torch.eye(gram.shape[0]), atol=1e-4, rtol=0)
        assert not layer.bias.any()


def test_eval_greedy_is_the_default_and_help_says_so(capsys):
    parser = argparse.ArgumentParser()
    evaluate_module.add_parser(parser.add_subparsers())
    assert parser.parse_args(["eval", "d"]).greedy is True
    assert parser.parse_args(["eval", "d", "--sample"]).greedy is False
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "take the most probable action (default: True)" in help_text
    assert "sample actions from the policy instead of --greedy --seed" in help_text     # no "(default: True)"
