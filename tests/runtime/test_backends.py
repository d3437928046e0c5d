"""What every backend shares: the restart rule for failed actors, the weight versions and policy lag,
settings that may change when a run resumes, and the error when Ray is missing."""
import argparse
import csv
import re
import shlex
import sys
import traceback
from pathlib import Path

import pytest
import yaml

from conftest import FailsOnceEnv, register_test_envs, small_config
from rtrl.cli import main
from rtrl.cli.flags import given
from rtrl.cli.train import register
from rtrl.runtime.backends import ActorError, ActorFailures, make_backend
from rtrl.runtime.checkpoints import load_checkpoint
from rtrl.runtime.config import TrainConfig, resolve_config
from rtrl.runtime.run_dir import RunDirectory
from rtrl.runtime.train import train
from rtrl.settings import SettingError


def test_actor_failures_restart_a_slot_up_to_k_times_in_a_row():
    failures = ActorFailures(slots=2, max_restarts=2)
    assert failures.failed(0, "boom") == 2          # replacements take new environment streams: 2, 3, ...
    assert failures.failed(1, "boom") == 3
    assert failures.failed(0, "boom") == 4          # slot 0: 2 in a row, still allowed
    failures.delivered(0)                           # a rollout resets the count
    assert failures.failed(0, "boom") == 5 and failures.failed(0, "boom") == 6
    with pytest.raises(ActorError, match="actor 0 failed 3 times in a row, more than max_actor_restarts=2 allows; "
                                         "its last failure: ValueError: last words$") as error:
        failures.failed(0, "Traceback (most recent call last):\n  ...\nValueError: last words\n")
    assert error.value.trace.startswith("Traceback") and error.value.trace.endswith("last words\n")
    assert failures.restarts == 5
    with pytest.raises(ActorError, match="actor 1 failed once, more than max_actor_restarts=0 allows"):
        ActorFailures(slots=2, max_restarts=0).failed(1, "boom")


def test_an_actors_failure_is_named_by_its_whole_message():
    """An exception whose message spans lines (gymnasium's check of an action, with an array's repr) was named by its
    last line alone: "its last failure:  [2 2]])". The message is the exception's type and all its lines."""
    import numpy as np
    from gymnasium import spaces
    try:
        raise ValueError(f"action {np.array([[0, 1], [1, 1]])!r} not in {spaces.MultiDiscrete([[2, 3], [2, 2]])}")
    except ValueError:
        report = traceback.format_exc()
    with pytest.raises(ActorError, match=r"its last failure: ValueError: action array\(\[\[0, 1\], \[1, 1\]\]\) "
                                         r"not in MultiDiscrete\(\[\[2 3\] \[2 2\]\]\)$"):
        ActorFailures(slots=1, max_restarts=0).failed(0, report)
    with pytest.raises(ActorError, match="its last failure: its process 7 died without a report$"):
        ActorFailures(slots=1, max_restarts=0).failed(0, "its process 7 died without a report")


def test_inline_backend_replaces_a_worker_whose_env_raised_and_the_run_goes_on(tmp_path):
    register_test_envs()
    FailsOnceEnv.failed = False
    cfg = small_config(env="gym:RtrlFailsOnce-v0", total_steps=200, max_actor_restarts=1)
    summary = train(cfg, tmp_path, progress=False)
    assert summary["finished"] and summary["steps"] == 200
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["actor_restarts"] == "1"
    assert {float(r["policy_lag"]) for r in rows} == {0.0}   # inline: every rollout uses the newest weights
    assert load_checkpoint(tmp_path / "checkpoint.pt")["actor_restarts"] == 1


def test_an_env_that_always_raises_ends_an_inline_run_with_a_checkpoint(tmp_path):
    register_test_envs()
    cfg = small_config(env="gym:RtrlAlwaysRaises-v0", total_steps=200, max_actor_restarts=2)
    with pytest.raises(ActorError, match=r"actor 0 failed 3 times in a row.*: RuntimeError: this environment always raises$") as error:
        train(cfg, tmp_path, progress=False)
    assert "Traceback" in error.value.trace and "this environment always raises" in error.value.trace
    assert load_checkpoint(tmp_path / "checkpoint.pt")["steps"] == 0


@pytest.mark.parametrize("interval", [1, 3])
def test_broadcast_interval_sets_the_versions_actors_act_with(tmp_path, interval):
    cfg = small_config(total_steps=200, broadcast_interval=interval, log_interval=1000.0)
    lags = []

    def recording_backend(*args):
        backend = make_backend(*args)
        real = backend.next_batch

        def next_batch():
            batch, episodes = real()
            assert batch.version.unique().numel() == 1
            lags.append(backend.version - int(batch.version[0]))
            assert int(batch.version[0]) % interval == 0
            return batch, episodes

        backend.next_batch = next_batch
        return backend

    train(cfg, tmp_path, backend_factory=recording_backend, progress=False)
    assert lags == [u % interval for u in range(10)]   # 10 updates
    with open(tmp_path / "metrics.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["policy_lag"]) == pytest.approx(sum(lags) / len(lags))


def test_runtime_settings_may_change_when_a_run_resumes(tmp_path):
    def resume(cfg):
        run = RunDirectory(tmp_path)
        try:
            run.open(cfg, force=False)
            run.commit(cfg, None, ("step",))
        finally:
            run.close()

    resume(small_config())
    moved = small_config(backend="ray", ray_address="auto", actor_cpus=0.5, num_actors=4, rollouts_in_flight=1,
                         max_actor_restarts=0, learner_threads=2, log_interval=1.0)
    resume(moved)   # no error: where and how it runs, not what it learns
    with pytest.raises(SettingError, match="hidden_size: 8 -> 16"):
        resume(small_config(hidden_size=16))
    with pytest.raises(SettingError, match="broadcast_interval: 1 -> 2"):   # changes the policy lag it learns from
        resume(small_config(broadcast_interval=2))


def test_ray_settings_are_checked():
    with pytest.raises(SettingError, match="backend='ray' needs actors: give num_actors=0 >= 1"):
        small_config(backend="ray", num_actors=0)
    with pytest.raises(SettingError, match=r"num_actors=1 x rollouts_in_flight=1 requests in flight cannot fill a "
                                           r"batch of 2 rollouts \(batch_size=4 / envs_per_actor=2\)"):
        small_config(backend="ray", num_actors=1, rollouts_in_flight=1)
    with pytest.raises(SettingError, match="bad backend='slurm'; accepted: local, ray"):
        TrainConfig(backend="slurm").validate()


def test_without_ray_the_ray_backend_names_the_extra_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)   # `import ray` now raises ImportError
    code = main(["train", "--backend", "ray", "--num-actors", "1", "--batch-size", "2", "--envs-per-actor", "2",
                 "--total-steps", "20", "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 2
    assert "rtrl train: error: --backend='ray' needs Ray, which is not installed here: pip install 'rtrl[ray]'" in (
        capsys.readouterr().err)


DOCS = Path(__file__).resolve().parents[2] / "docs"


def documented_train_commands(text: str) -> list[list[str]]:
    """The arguments of every `rtrl train` command in a markdown text (continued lines joined)."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        match = re.search(r"(?:^|\s|/)rtrl train (.*)$", line)
        if match:
            commands.append(shlex.split(match.group(1).split(" # ")[0]))
    return commands


def test_the_cluster_docs_commands_are_valid_settings():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    commands = documented_train_commands((DOCS / "CLUSTER.md").read_text())
    assert len(commands) >= 3
    for argv in commands:
        args = parser.parse_args(["train"] + argv)
        cfg = resolve_config(args.preset, args.config, given(args, TrainConfig))
        assert cfg.backend == "ray"
    paper = [c for c in commands if "dmlab" in c]
    assert paper, "the paper's DMLab command"
    args = parser.parse_args(["train"] + paper[0])
    cfg = resolve_config(args.preset, args.config, given(args, TrainConfig))
    assert (cfg.num_actors, cfg.unroll_length, cfg.hidden_size, cfg.batch_size, cfg.ray_address, cfg.device) == (
        48, 100, 512, 32, "auto", "cuda")


def test_the_cluster_launcher_yaml_has_a_gpu_head_and_cpu_workers_for_48_actors():
    config = yaml.safe_load((DOCS / "ray-cluster.yaml").read_text())
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0, "GPU": 1}
    (workers,) = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert workers["min_workers"] * workers["resources"]["CPU"] == 48 and "GPU" not in workers["resources"]
    assert any("ray start --head" in c for c in config["head_start_ray_commands"])
    assert any("ray start --address=$RAY_HEAD_IP:6379" in c for c in config["worker_start_ray_commands"])
