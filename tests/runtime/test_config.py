"""The run's settings: presets hold the paper's numbers, flags override them, and the help lists every
setting with its default."""
import argparse

import pytest

from rtrl.cli import main
from rtrl.cli.train import register
from rtrl.cli.flags import given
from rtrl.runtime.config import TrainConfig, resolve_config
from rtrl.settings import SettingError


def parse_train(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "--out", "x"] + argv)
    return resolve_config(args.preset, args.config, given(args, TrainConfig))


@pytest.mark.parametrize("preset, env, T, N, steps", [
    ("atari", "atari:Pong", 50, 256, 200_000_000),
    ("procgen", "procgen:chaser?distribution_mode=hard&num_levels=500", 50, 256, 200_000_000),
    ("dmlab", "dmlab:rooms_watermaze", 100, 512, 100_000_000),
])
def test_presets_hold_the_papers_numbers(preset, env, T, N, steps):
    cfg = parse_train(["--preset", preset])
    assert (cfg.env, cfg.unroll_length, cfg.hidden_size, cfg.total_steps) == (env, T, N, steps)
    assert (cfg.cell, cfg.learning, cfg.batch_size, cfg.stem, cfg.stem_hidden_size, cfg.forget_bias) == (
        "elstm", "rtrl", 32, "resnet", 256, 0.0)
    assert (cfg.lr, cfg.entropy_cost, cfg.baseline_cost, cfg.discounting) == (6e-4, 0.01, 0.5, 0.99)
    assert (cfg.rmsprop_alpha, cfg.rmsprop_eps, cfg.grad_norm_clip, cfg.reward_clip) == (0.99, 0.01, 40.0, True)
    assert cfg.batch_size % cfg.envs_per_actor == 0
    flagged = parse_train(["--preset", preset, "--env", "atari:Breakout", "--hidden-size", "64", "--num-actors", "0"])
    assert (flagged.env, flagged.hidden_size, flagged.num_actors, flagged.unroll_length) == ("atari:Breakout", 64, 0, T)


def test_atari_cpu_preset_is_the_documented_pong_recipe():
    cfg = parse_train(["--preset", "atari-cpu"])
    assert (cfg.env, cfg.stem, cfg.feature_norm, cfg.unroll_length, cfg.batch_size, cfg.envs_per_actor) == (
        "atari:Pong", "nature", True, 20, 4, 4)
    assert (cfg.label, cfg.lr, cfg.rmsprop_eps, cfg.total_steps) == ("rtrl-elstm", 6e-4, 0.01, 4_000_000)
    assert cfg.batch_size % cfg.envs_per_actor == 0


def test_train_help_renders(capsys):
    """Flag help comes from the config's comments; a '%' in one must not break argparse."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--load-stem CKPT" in out and "--freeze-stem [BOOL]" in out and "--preset {atari,atari-cpu,dmlab,memory,memory-suite,memory-suite-clru,memory-suite-rtu,mujoco,procgen,stream}" in out and "--feature-norm [BOOL]" in out


@pytest.mark.parametrize("argv, envs_per_actor", [
    (["--batch-size", "4"], 4),                          # the default 16 does not divide 4
    (["--batch-size", "12"], 12),
    (["--batch-size", "40"], 10),                        # the largest divisor of 40 up to 16
    (["--batch-size", "48"], 16),                        # 16 divides 48: the default stays
    (["--preset", "memory", "--batch-size", "8"], 8),    # a preset's value was not set by the user either
])
def test_an_unset_envs_per_actor_adapts_to_the_batch_size(argv, envs_per_actor, caplog):
    with caplog.at_level("INFO", logger="rtrl"):
        cfg = parse_train(argv)
    assert cfg.envs_per_actor == envs_per_actor and cfg.batch_size % cfg.envs_per_actor == 0
    notes = [r.getMessage() for r in caplog.records if "envs_per_actor" in r.getMessage()]
    assert notes == ([] if envs_per_actor == 16 else
                     [f"envs_per_actor={envs_per_actor} chosen: batch_size={cfg.batch_size} is not a multiple of "
                      "envs_per_actor=16, which was not set (a batch is made of whole actor rollouts); set "
                      "envs_per_actor to choose another"])


def test_a_set_envs_per_actor_is_never_changed(tmp_path):
    with pytest.raises(SettingError, match="batch_size=4 must be a multiple of envs_per_actor=16"):
        parse_train(["--batch-size", "4", "--envs-per-actor", "16"])
    (tmp_path / "c.toml").write_text("envs_per_actor = 16\n")
    with pytest.raises(SettingError, match="batch_size=4 must be a multiple of envs_per_actor=16"):
        resolve_config(None, tmp_path / "c.toml", {"batch_size": 4})
    (tmp_path / "b.toml").write_text("batch_size = 6\n")
    assert resolve_config(None, tmp_path / "b.toml").envs_per_actor == 6   # a batch size from a file counts as set


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "4", "--envs-per-actor", "2", "--minibatches", "5"],
     "minibatches=5 is more than the batch_size=4 rollouts a batch holds; accepted: 1 to 4"),
    (["--minibatches", "0"], "minibatches"),
    (["--update-epochs", "0"], "update_epochs"),
    (["--policy-clip", "1.5"], "policy_clip=1.5.*accepted: 0 \\(off\\) or a number in \\(0, 1\\)"),
    (["--preset", "stream", "--update-epochs", "2"], "update_epochs=2 is a setting of the impala learner"),
])
def test_bad_epochs_and_minibatches_are_refused_by_name(argv, message):
    with pytest.raises(SettingError, match=message):
        parse_train(argv)
    assert parse_train(["--update-epochs", "4", "--minibatches", "8"]).minibatches == 8
    # built in code, where no flag says what the user set, the values themselves are checked
    with pytest.raises(SettingError, match="update_epochs=2, minibatches=1 and policy_clip=0.0 shape the impala"):
        TrainConfig(learner="stream", update_epochs=2, num_envs=1, total_steps=10).validate()
