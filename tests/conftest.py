"""Helpers shared by the tests (import them: ``from conftest import small_config``).

The test tree mirrors the package: tests/cells for rtrl/cells, tests/runtime for rtrl/runtime, ...
Tests that start processes and wait on them carry the ``slow`` marker; they still run in ``make test``
(select the rest with ``-m "not slow"``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from rtrl.envs import EnvSpec
from rtrl.runtime.actor import RolloutWorker
from rtrl.runtime.config import TrainConfig, build_agent
from rtrl.runtime.rollout import empty_rollout

MEMORY = "memory:delayed_recall?cues=2&delay=6"
PROCGEN = "procgen:coinrun?distribution_mode=easy&num_levels=10"


def max_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b|: the relative error of ``a`` against the reference ``b``."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def small_config(**overrides) -> TrainConfig:
    """A seconds-long run on delayed recall (delay 6 > unroll 5), stepped inline."""
    values = dict(env=MEMORY, core="rtrl-elstm", total_steps=640, unroll_length=5, batch_size=4, hidden_size=8,
                  stem="mlp", stem_hidden_size=16, num_actors=0, envs_per_actor=2, log_interval=0.01,
                  checkpoint_interval=1000.0, seed=3)
    values.update(overrides)
    return TrainConfig(**values).validate()


def image_config(**overrides) -> TrainConfig:
    """A few steps on a real ProcGen game with the ResNet stem (image observations)."""
    values = dict(env=PROCGEN, core="rtrl-elstm", total_steps=8, unroll_length=2, batch_size=2, hidden_size=8,
                  stem="resnet", stem_hidden_size=16, num_actors=0, envs_per_actor=2, log_interval=0.01,
                  checkpoint_interval=1000.0, seed=1, lr=0.05)
    values.update(overrides)
    return TrainConfig(**values).validate()


def make_run(path: Path, **overrides) -> TrainConfig:
    """A run directory holding an untrained agent's checkpoint (no training: fast); ``image_config``."""
    cfg = image_config(**overrides)
    torch.manual_seed(cfg.seed)
    model = build_agent(cfg, EnvSpec.probe(cfg.env, cfg.env_options))
    path.mkdir(parents=True, exist_ok=True)
    torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "steps": 0}, path / "checkpoint.pt")
    return cfg


def collect_rollouts(cfg: TrainConfig, count: int):
    """``count`` consecutive rollouts of one worker (weights fixed): (spec, worker, rollouts)."""
    torch.manual_seed(cfg.seed)  # the worker's model init
    spec = EnvSpec.probe(cfg.env, cfg.env_options)
    worker = RolloutWorker(0, cfg, spec)
    rollouts = []
    for _ in range(count):
        rollout = empty_rollout(cfg.unroll_length, cfg.envs_per_actor, spec, worker.model.initial_state(1))
        worker.fill(rollout)
        rollouts.append(rollout)
    return spec, worker, rollouts


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids
