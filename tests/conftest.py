"""Helpers shared by the tests (import them: ``from conftest import small_config``).

The test tree mirrors the package: tests/cells for rtrl/cells, tests/runtime for rtrl/runtime, ...
Tests that start processes and wait on them carry the ``slow`` marker; they still run in ``make test``
(select the rest with ``-m "not slow"``).

Tests that need an optional package carry its family's marker (``atari``, ``procgen``, ``popgym``, ``minigrid``,
``ray``, ``rliable``, ``wandb``; see ``OPTIONAL``): without the package they are skipped with a reason that names it and
how to install it. ``make test`` sets ``RTRL_REQUIRE_OPTIONAL=1``, which turns each such skip into a failure,
so everything runs there. A module that imports the package at its top calls ``skip_module_without`` first.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rtrl.algos import impala_loss
from rtrl.envs import EnvSpec
from rtrl.models import upgrade_core_alias
from rtrl.runtime.actor import RolloutWorker
from rtrl.runtime.config import TrainConfig, build_agent
from rtrl.runtime.rollout import empty_rollout
from rtrl.tree import map_tensors, tensors_of

pytest_plugins = ["pytester"]   # tests/test_optional_markers.py runs pytest on small test files

REQUIRE_OPTIONAL = "RTRL_REQUIRE_OPTIONAL"
# marker: (the modules its tests import, the pyproject extra that installs them)
OPTIONAL = {
    "atari": (("ale_py",), "envs"),
    "procgen": (("procgen",), "envs"),
    "popgym": (("popgym",), "envs"),
    "minigrid": (("minigrid",), "envs"),
    "ray": (("ray",), "ray"),
    "rliable": (("rliable", "pandas"), "suite"),
    "wandb": (("wandb",), "wandb"),
}


def load_bench_script(name: str):
    """bench/NAME.py (a script, not a package module) loaded as a module, for its tests."""
    path = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def missing_optional(family: str) -> str | None:
    """Why ``family``'s packages cannot be imported here ("needs popgym: pip install 'rtrl[envs]' (No module
    named 'popgym')"), or None when they all import."""
    modules, extra = OPTIONAL[family]
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            return f"needs {module}: pip install 'rtrl[{extra}]' ({error})"
    return None


def skip_or_fail_without(family: str, module_level: bool = False) -> None:
    """Skip the test (the module, at ``module_level``) when ``family``'s packages do not import; with
    RTRL_REQUIRE_OPTIONAL set (``make test``), fail instead, naming the package."""
    reason = missing_optional(family)
    if reason is None:
        return
    if os.environ.get(REQUIRE_OPTIONAL, "") not in ("", "0"):
        pytest.fail(f"{reason}; {REQUIRE_OPTIONAL} is set (as `make test` does), so this is a failure, not a skip",
                    pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


def skip_module_without(family: str) -> None:
    """For a test module that imports ``family``'s package at its top: call it before that import."""
    skip_or_fail_without(family, module_level=True)


@pytest.hookimpl(tryfirst=True)   # before the fixtures: a skipped test starts none of them
def pytest_runtest_setup(item) -> None:
    for family in sorted({mark.name for mark in item.iter_markers()} & OPTIONAL.keys()):
        skip_or_fail_without(family)


MEMORY = "memory:delayed_recall?cues=2&delay=6"
PROCGEN = "procgen:coinrun?distribution_mode=easy&num_levels=10"


def max_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b|: the relative error of ``a`` against the reference ``b``."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def small_config(**overrides) -> TrainConfig:
    """A seconds-long run on delayed recall (delay 6 > unroll 5), stepped inline."""
    values = dict(env=MEMORY, cell="elstm", learning="rtrl", total_steps=640, unroll_length=5, batch_size=4, hidden_size=8,
                  stem="mlp", stem_hidden_size=16, num_actors=0, envs_per_actor=2, log_interval=0.01,
                  checkpoint_interval=1000.0, seed=3)
    values.update(upgrade_core_alias(overrides))   # an old core name replaces cell and learning
    return TrainConfig(**values).validate()


def image_config(**overrides) -> TrainConfig:
    """A few steps on a real ProcGen game with the ResNet stem (image observations)."""
    values = dict(env=PROCGEN, cell="elstm", learning="rtrl", total_steps=8, unroll_length=2, batch_size=2, hidden_size=8,
                  stem="resnet", stem_hidden_size=16, num_actors=0, envs_per_actor=2, log_interval=0.01,
                  checkpoint_interval=1000.0, seed=1, lr=0.05)
    values.update(upgrade_core_alias(overrides))   # an old core name replaces cell and learning
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


def check_rollout_invariants(model, rollouts, core: str) -> None:
    """Consecutive rollouts of one actor (fixed weights ``model``) are one history: step 0 repeats the
    previous rollout's step T, and the stored state is the state before step 0 (replayed from the
    previous rollout's state to 1e-5)."""
    T = rollouts[0].obs.shape[0] - 1
    assert rollouts[0].done[0].all()  # the very first step starts episodes
    for prev, nxt in zip(rollouts, rollouts[1:]):
        for name in ("obs", "reward", "done", "action", "policy_logits"):
            assert torch.equal(getattr(prev, name)[T], getattr(nxt, name)[0]), name
        assert torch.equal(prev.episode_return[T].isnan(), nxt.episode_return[0].isnan())
        with torch.no_grad():
            _, after = model(prev.obs[:T], prev.reward[:T], prev.done[:T],
                             model.step_state(prev.state) if core == "rtrl-elstm" else prev.state)
        expected, stored = tensors_of(after), tensors_of(model.step_state(nxt.state))
        assert len(expected) == len(stored)
        for a, b in zip(expected, stored):
            assert torch.allclose(b, a, atol=1e-5)


def as_double(tree):
    return map_tensors(lambda t: t.double() if t.is_floating_point() else t, tree)


def rollout_loss(out, batch, cfg: TrainConfig):
    """The learner's IMPALA loss of agent outputs ``out`` on ``batch``."""
    return impala_loss(out.policy_logits, out.baseline, batch.action, batch.reward, batch.done,
                       batch.policy_logits, cfg.loss_config())[0]


def learner_gradients(agent, batches, cfg: TrainConfig) -> dict:
    """Σ_k loss(rollout k), each from the state the agent carries from rollout to rollout (as an actor
    does: ``advance`` over steps 0..T-1), gradients accumulated; returns a copy of each."""
    T = cfg.unroll_length
    state = agent.initial_state(cfg.envs_per_actor)
    for batch in batches:
        rollout_loss(agent.outputs(batch.obs, batch.reward, batch.done, state), batch, cfg).backward()
        with torch.no_grad():
            core_input = agent.core_input(batch.obs[:T], batch.reward[:T], batch.done[:T])
        state = agent.advance(core_input, map_tensors(torch.clone, state), batch.done[:T])
    return {name: p.grad.clone() for name, p in agent.named_parameters()}


def bptt_gradients(agent, batches, cfg: TrainConfig, detach_between_rollouts: bool = False) -> dict:
    """Gradients of Σ_k loss(rollout k) by BPTT through consecutive rollouts of one actor: steps 0..T-1
    of each carry the state to the next (one graph through all of them, or cut between rollouts)."""
    T = cfg.unroll_length
    agent.zero_grad()
    state, total = agent.initial_state(batches[0].obs.shape[1]), 0
    for batch in batches:
        if detach_between_rollouts:
            state = map_tensors(torch.Tensor.detach, state)
        out, _ = agent(batch.obs, batch.reward, batch.done, state)
        total = total + rollout_loss(out, batch, cfg)
        _, state = agent(batch.obs[:T], batch.reward[:T], batch.done[:T], state)
    total.backward()
    return {name: p.grad.clone() for name, p in agent.named_parameters()}


class AlwaysRaisingEnv(gym.Env):
    """Resets fine; every step raises (a broken simulator)."""

    observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        raise RuntimeError("this environment always raises")


class FailsOnceEnv(AlwaysRaisingEnv):
    """Episodes of 4 steps; the first instance in a process to reach its 20th step raises there (set
    ``failed = False`` to arm it again)."""

    failed = False

    def __init__(self):
        self.t = 0

    def step(self, action):
        self.t += 1
        if self.t == 20 and not FailsOnceEnv.failed:
            FailsOnceEnv.failed = True
            raise RuntimeError("this environment failed once")
        return np.zeros(3, np.float32), 0.0, self.t % 4 == 0, False, {}


def register_test_envs() -> None:
    """gym:RtrlAlwaysRaises-v0 and gym:RtrlFailsOnce-v0 (in this process; Ray workers run it at start-up)."""
    for name, env in (("RtrlAlwaysRaises-v0", AlwaysRaisingEnv), ("RtrlFailsOnce-v0", FailsOnceEnv)):
        if name not in gym.registry:
            gym.register(name, entry_point=env)


def descendants(pid: int) -> set[int]:
    """``pid``'s children, their children, and so on (from /proc)."""
    found, frontier = set(), [pid]
    while frontier:
        kids = children(frontier.pop())
        found.update(kids)
        frontier.extend(kids)
    return found


def running(pids) -> list[int]:
    """Those of ``pids`` that still run (zombies, already dead, count as gone)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def copy_net(model: str, hidden_size: int, **settings):
    """The copy task's model named the old way (``elstm-rtrl``...) with ``settings`` of ``CopyTaskConfig``."""
    from rtrl.tasks.copy_task import CopyModel, CopyTaskConfig
    return CopyModel(CopyTaskConfig(model=model, hidden_size=hidden_size, **settings).model_config())


# a seconds-long `rtrl train` on delayed recall, inline (the fault tests' runs)
TRAIN_FLAGS = ["--env", MEMORY, "--num-actors", "0", "--envs-per-actor", "2", "--batch-size", "4",
               "--unroll-length", "5", "--hidden-size", "8", "--stem", "identity", "--total-steps", "40",
               "--log-interval", "0.01", "--no-progress", "--no-plot"]


def train_argv(out, *extra) -> list[str]:
    return ["train", "--out", str(out), *TRAIN_FLAGS, *extra]


def run_cli(capsys, argv, unexpected: bool = False) -> tuple[int, str]:
    """Exit code and everything printed by `rtrl ARGV` (argparse's own errors, SystemExit, count as exit
    codes); nothing printed may be a traceback, nor (unless ``unexpected``) an "unexpected" internal error."""
    from rtrl.cli import main
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and (unexpected or "unexpected" not in out + err), out + err
    return code, out + err


def call_loss(y, i):
    """A loss on call i's outputs that reaches every unit and differs from call to call."""
    return (torch.sin(y * (i + 1)) * torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype)).sum() + (y ** 2).sum()


def rtrl_call_grads(stack, xs, resets):
    """Gradients of Σ_i call_loss over consecutive calls, a backward per call (RTRL carries the history)."""
    stack.zero_grad()
    state = stack.initial_state(xs[0].shape[1])
    for i, (x, reset) in enumerate(zip(xs, resets)):
        y, state = stack(x, state, reset=reset)
        call_loss(y, i).backward()
    return {k: p.grad.clone() for k, p in stack.named_parameters()}, state


def bptt_call_grads(stack, xs, resets):
    """Full-history BPTT of the same loss: one graph through every call (a bptt stack's state stays attached)."""
    stack.zero_grad()
    state, total = stack.initial_state(xs[0].shape[1]), 0
    for i, (x, reset) in enumerate(zip(xs, resets)):
        y, state = stack(x, state, reset=reset)
        total = total + call_loss(y, i)
    total.backward()
    return {k: p.grad.clone() for k, p in stack.named_parameters()}, state
