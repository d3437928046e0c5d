"""The run's settings: presets hold the paper's numbers, flags override them, and the help lists every
setting with its default."""
import argparse
import re

import pytest

from rtrl.cli import main
from rtrl.cli.train import register
from rtrl.cli.flags import given
from rtrl.models.config import with_options
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


def test_a_setting_from_a_config_file_is_named_with_the_file_not_as_a_flag(tmp_path):
    """The CLI spells settings as flags; one the user wrote in a file (and no flag overrode) is named as written
    there, with the file, in the library's message and the command line's alike."""
    from rtrl.cli.flags import render_error
    config = tmp_path / "c.toml"
    config.write_text('unroll_length = 0\nlearner = "impala"\nseed = 3\n')
    with pytest.raises(SettingError) as caught:
        resolve_config(None, config, {"hidden_size": 8})
    assert str(caught.value) == f"bad unroll_length=0 (in {config}); accepted: a positive integer"
    assert render_error(caught.value) == str(caught.value)
    with pytest.raises(SettingError) as caught:   # the same value from a flag is the flag's
        resolve_config(None, config, {"unroll_length": -1})
    assert render_error(caught.value) == "bad --unroll-length=-1; accepted: a positive integer"
    config.write_text('learner = "stream"\nunroll_length = 5\n')
    with pytest.raises(SettingError) as caught:   # two settings from the file, one advice naming a setting alone
        resolve_config(None, config)
    assert render_error(caught.value).startswith(
        f"unroll_length=5 (in {config}) is a setting of the impala learner; learner='stream' (in {config}) does "
        "not read it: leave it out, or give learner impala")
    config.write_text('resumed_at_step = 5\n')
    with pytest.raises(SettingError, match=f"resumed_at_step \\(in {config}\\) is set by the run session, not by users"):
        resolve_config(None, config)
    config.write_text('resumed_at_step = 0\nseed = 4\n')   # as a run's config.json holds it: nothing to refuse
    assert resolve_config(None, config).seed == 4
    config.write_text('bogus = 1\n')
    with pytest.raises(SettingError, match=f"unknown settings \\['bogus'\\] in {config}; accepted: .*batch_size"):
        resolve_config(None, config)


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


def test_a_stream_budget_below_one_step_of_the_streams_says_what_is_accepted():
    with pytest.raises(SettingError, match=r"total_steps=200 is less than one step of num_envs=1000 streams; "
                                           r"accepted: at least 1000"):
        TrainConfig(learner="stream", num_envs=1000, total_steps=200).validate()


def test_the_stream_learner_runs_with_a_preset_that_has_passes_over_batches():
    """A preset's passes (mujoco's 4 x 4, clipped) are not the user's: the stream learner runs with that preset, as it
    does with the preset's learning rate. It was refused whether the flags were given (as the impala learner's) or
    not (as values the stream learner has none of): no command line could run it."""
    cfg = parse_train(["--preset", "mujoco", "--learner", "stream"])
    assert (cfg.learner, cfg.update_epochs, cfg.minibatches, cfg.policy_clip, cfg.lr) == ("stream", 1, 1, 0.0, 3e-4)
    assert cfg.env == "mujoco:Hopper-v5?observe=position" and cfg.obs_norm
    assert parse_train(["--preset", "mujoco"]).update_epochs == 4
    with pytest.raises(SettingError, match="minibatches=2 is a setting of the impala learner"):
        parse_train(["--preset", "mujoco", "--learner", "stream", "--minibatches", "2"])


@pytest.mark.parametrize("argv, flag, deciders, fix", [
    (["--cell", "rtu", "--forget-bias", "5"], "--forget-bias", "--cell='rtu'", ["--cell", "elstm"]),
    (["--cell", "clru", "--init-std", "0.5"], "--init-std", "--cell='clru'", ["--cell", "elstm"]),
    (["--cell", "indrnn", "--chrono-max", "100"], "--chrono-max", "--cell='indrnn'", ["--cell", "lstm", "--learning", "tbptt"]),
    (["--cell", "elstm", "--rtu-variant", "nonlinear"], "--rtu-variant", "--cell='elstm'", ["--cell", "rtu"]),
    (["--cell", "lru", "--phase", "direct"], "--phase", "--cell='lru'", ["--cell", "clru"]),
    (["--cell", "lstm", "--learning", "tbptt", "--forget-bias", "1"], "--forget-bias", "--cell='lstm'", ["--cell", "elstm", "--learning", "rtrl"]),
    (["--cell", "ff", "--learning", "tbptt", "--chrono-max", "50"], "--chrono-max", "--cell='ff'", ["--cell", "elstm", "--learning", "rtrl"]),
    (["--multilayer", "per-layer"], "--multilayer", "--learning='rtrl', --num-layers=1", ["--num-layers", "2"]),
    (["--num-layers", "2", "--learning", "tbptt", "--multilayer", "per-layer"], "--multilayer",
     "--learning='tbptt', --num-layers=2", ["--learning", "rtrl"]),
    (["--stem", "identity", "--stem-hidden-size", "128"], "--stem-hidden-size", "--stem='identity'", ["--stem", "mlp"]),
])
def test_a_model_setting_the_model_does_not_read_is_refused_by_name(argv, flag, deciders, fix):
    """Given with a value it would not otherwise have, a setting the chosen model does not read would be silently
    ignored (--cell rtu --forget-bias 5 trained with the RTU's own init; --multilayer per-layer one layer):
    refused, naming the setting and the settings that rule it out. With what reads it, the same flag is taken."""
    name = flag[2:].replace("-", "_")   # resolve_config names settings; the CLI spells them as flags

    def as_names(text):
        return re.sub(r"--([a-z-]+)", lambda m: m.group(1).replace("-", "_"), text)
    with pytest.raises(SettingError, match=f"{name}=.* is read by .* only; with {re.escape(as_names(deciders))} it "
                                           "would be ignored"):
        parse_train(argv)
    cfg = parse_train(argv + fix)   # a later flag wins
    assert getattr(cfg, name) == type(getattr(TrainConfig, name))(argv[argv.index(flag) + 1])


def test_model_settings_a_preset_or_a_copied_config_holds_pass():
    """A preset's eLSTM init stays in place when only --cell changes (memory-suite's chrono_max and init_std with
    --cell rtu), and a settings file copied from a run (every setting at its value) passes."""
    cfg = parse_train(["--preset", "memory-suite", "--cell", "rtu"])
    assert (cfg.cell, cfg.chrono_max, cfg.init_std) == ("rtu", 300.0, 0.5)
    assert parse_train(["--preset", "atari", "--stem", "identity"]).stem_hidden_size == 256
    assert resolve_config(None, overrides={"cell": "rtu", "forget_bias": TrainConfig.forget_bias,
                                           "multilayer": "exact", "stem_hidden_size": 256}).cell == "rtu"


def test_model_options_refuse_a_setting_the_model_does_not_read():
    """The library's ``with_options`` (the API's way to set a model) applies the same rule."""
    with pytest.raises(SettingError, match="forget_bias=2.0 is read by the elstm cell only; with cell='lru'"):
        with_options(cell="lru", forget_bias=2.0)
    with pytest.raises(SettingError, match="multilayer='per-layer' is read by .* only; with learning='rtrl', "
                                           "num_layers=1"):
        with_options(multilayer="per-layer")
    assert with_options(cell="elstm", forget_bias=2.0).forget_bias == 2.0
    assert with_options(with_options(cell="elstm", forget_bias=2.0), cell="lru").cell == "lru"
