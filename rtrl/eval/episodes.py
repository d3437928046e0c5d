"""Evaluation episodes: a trained agent from a zero state, its recurrent state carried through each
episode (and zeroed at every episode start), on ``training=False`` environments."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rtrl.envs import EVAL_SEED_OFFSET, EnvBatch, EnvSpec, env_seeds, episodes_from
from rtrl.models import Agent
from rtrl.runtime.checkpoints import CheckpointError, check_finite, load_checkpoint, load_weights
from rtrl.runtime.config import TrainConfig, build_agent
from rtrl.settings import SettingError


def load_trained_agent(run_dir: str | Path, env_fn=None) -> tuple[TrainConfig, EnvSpec, Agent, dict]:
    """(config, env spec, agent in eval mode on the CPU, checkpoint) of a run directory. The checkpoint is
    read without running code from it (``load_checkpoint``); one with non-finite weights is refused.
    ``env_fn``: the callable of a run on a ``python:`` env (see ``rtrl.runtime.train.train``)."""
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / "checkpoint.pt"
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir} is not a directory: give the run directory of `rtrl train`")
    if not checkpoint_path.exists():
        raise ValueError(f"{run_dir} has no checkpoint.pt: is it a run directory of `rtrl train`?")
    checkpoint = load_checkpoint(checkpoint_path)
    check_finite(checkpoint, checkpoint_path)
    try:
        cfg = TrainConfig.from_dict(checkpoint["config"])
    except SettingError as error:
        raise CheckpointError(f"{checkpoint_path} holds settings this version of rtrl does not know ({error})") from None
    spec = EnvSpec.probe(cfg.env, cfg.env_options, env_fn)
    try:
        agent = build_agent(cfg, spec)
    except SettingError as error:   # spelled as the checkpoint's setting: no flag of `rtrl eval` set it
        raise CheckpointError(f"{checkpoint_path} holds a bad setting: {error}") from None
    load_weights(agent, checkpoint, checkpoint_path)
    agent.eval()
    return cfg, spec, agent, checkpoint


def run_episodes(cfg: TrainConfig, agent: Agent, episodes: int, greedy: bool, seed: int, num_envs: int = 8,
                 env_id: str | None = None, env_options: dict | None = None, observe=None, env_fn=None) -> list[dict]:
    """Play ``episodes`` full episodes and return them as ``{"return", "length", "success"}`` dicts.

    ``env_id``/``env_options`` override the run's. ``observe(obs)``, if given, sees the (num_envs, ...)
    observations before every action. ``env_fn`` makes a ``python:`` env.
    """
    num_envs = max(1, min(num_envs, episodes))
    envs = EnvBatch(env_id or cfg.env, cfg.env_options if env_options is None else env_options,
                    env_seeds(seed, EVAL_SEED_OFFSET, num_envs), training=False, env_fn=env_fn)
    generator = torch.Generator().manual_seed(seed)
    results: list[dict] = []
    state = agent.initial_step_state(num_envs)   # no sensitivities: nothing is learned here
    obs = torch.as_tensor(envs.obs)
    reward = torch.zeros(num_envs)
    done = torch.ones(num_envs, dtype=torch.bool)
    try:
        with torch.no_grad():
            while len(results) < episodes:
                if observe is not None:
                    observe(obs.numpy())
                out, state = agent(obs[None], reward[None], done[None], state)
                logits = out.policy_logits[0]
                dist = agent.action_dist   # greedy: its mode (a Gaussian's mean)
                action = dist.mode(logits) if greedy else dist.sample(logits, generator)
                obs_np, reward_np, done_np, finished = envs.step(action.numpy())
                results += episodes_from(*finished.T)[:episodes - len(results)]
                obs, reward, done = torch.as_tensor(obs_np).clone(), torch.as_tensor(reward_np), torch.as_tensor(done_np)
    finally:
        envs.close()
    return results


def summarise(results: list[dict]) -> dict:
    """Mean and standard deviation of the returns (and the success rate, where episodes have one)."""
    returns = np.array([r["return"] for r in results], dtype=np.float64)
    summary = {"episodes": len(results), "mean_return": float(returns.mean()), "std_return": float(returns.std()),
               "returns": returns.tolist(), "lengths": [r["length"] for r in results]}
    successes = [r["success"] for r in results if r["success"] is not None]
    if successes:
        summary["success_rate"] = float(np.mean(successes))
    return summary
