"""Actors: step environments with a CPU copy of the agent and fill rollout buffers.

A rollout holds T+1 steps; step 0 repeats the previous rollout's last step, and the buffer also keeps
the agent state *before* step 0. Per step the actor only advances the recurrent state c (no
sensitivities); for the RTRL core it advances the sensitivities once per rollout, with the segment
engine, by replaying the rollout's core inputs from the state before step 0.
"""
from __future__ import annotations

import math
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rtrl.envs import make_env
from rtrl.models import Agent


@dataclass
class EnvSpec:
    """What the learner and the buffers need to know of the environment."""

    obs_shape: tuple[int, ...]
    obs_dtype: torch.dtype
    num_actions: int

    @classmethod
    def probe(cls, env_id: str, env_options: dict) -> "EnvSpec":
        env = make_env(env_id, seed=0, **env_options)
        try:
            space = env.observation_space
            dtype = torch.uint8 if space.dtype == np.uint8 else torch.float32
            return cls(tuple(space.shape), dtype, int(env.action_space.n))
        finally:
            env.close()


def make_agent(cfg, spec: EnvSpec) -> Agent:
    return Agent(spec.obs_shape, spec.obs_dtype, spec.num_actions, core=cfg.core, hidden_size=cfg.hidden_size,
                 stem=cfg.stem, stem_hidden_size=cfg.stem_hidden_size, forget_bias=cfg.forget_bias,
                 feature_norm=cfg.feature_norm)


EPISODE_KEYS = ("episode_return", "episode_length", "episode_success")


def rollout_specs(cfg, spec: EnvSpec, state_template: dict[str, Tensor]) -> dict[str, tuple[tuple, torch.dtype]]:
    """Shapes and dtypes of one buffer slot: one actor's rollout of ``envs_per_actor`` environments."""
    T1, E = cfg.unroll_length + 1, cfg.envs_per_actor
    specs = {
        "obs": ((T1, E) + spec.obs_shape, spec.obs_dtype),
        "reward": ((T1, E), torch.float32),
        "done": ((T1, E), torch.bool),
        "action": ((T1, E), torch.int64),
        "policy_logits": ((T1, E, spec.num_actions), torch.float32),
    }
    for key in EPISODE_KEYS:  # NaN except where a true episode ended on arrival at that step
        specs[key] = ((T1, E), torch.float32)
    for key, tensor in state_template.items():
        specs["state." + key] = ((E,) + tuple(tensor.shape[1:]), tensor.dtype)
    return specs


def allocate_buffers(specs, count: int) -> list[dict[str, Tensor]]:
    return [{k: torch.zeros(shape, dtype=dtype).share_memory_() for k, (shape, dtype) in specs.items()}
            for _ in range(count)]


def sample_actions(logits: Tensor, generator: torch.Generator) -> Tensor:
    """One action per row of ``logits`` (B,A), drawn from the softmax policy with ``generator``."""
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)


class EnvBatch:
    """``envs_per_actor`` environments stepped together; auto-reset; episode statistics from info."""

    def __init__(self, env_id: str, env_options: dict, seeds: list[int], training: bool = True):
        self.envs = [make_env(env_id, seed=s, training=training, **env_options) for s in seeds]
        self.seeds = seeds
        first = [env.reset(seed=s)[0] for env, s in zip(self.envs, seeds)]
        self.obs = np.stack(first)

    def step(self, actions: np.ndarray):
        """Returns obs (E,...), reward (E,), done (E,) (obs starts a new episode), episodes (E,3) NaN-filled."""
        E = len(self.envs)
        rewards = np.zeros(E, np.float32)
        dones = np.zeros(E, bool)
        episodes = np.full((E, 3), np.nan, np.float32)
        for i, env in enumerate(self.envs):
            obs, reward, terminated, truncated, info = env.step(int(actions[i]))
            rewards[i] = reward
            if "episode" in info:
                ep = info["episode"]
                episodes[i] = (ep["return"], ep["length"], ep.get("success", math.nan))
            if terminated or truncated:
                dones[i] = True
                obs, _ = env.reset()
            self.obs[i] = obs
        return self.obs, rewards, dones, episodes

    def close(self):
        for env in self.envs:
            env.close()


class RolloutWorker:
    """One actor's environments, model copy and recurrent state; ``fill(buffer)`` writes one rollout."""

    def __init__(self, actor_index: int, cfg, spec: EnvSpec):
        self.cfg = cfg
        T, E = cfg.unroll_length, cfg.envs_per_actor
        seeds = [cfg.seed * 100_003 + actor_index * E + j for j in range(E)]
        self.generator = torch.Generator().manual_seed(seeds[0])
        self.envs = EnvBatch(cfg.env, cfg.env_options, seeds)
        self.model = make_agent(cfg, spec)
        self.model.eval()
        self.rtrl_core = cfg.core == "rtrl-elstm"
        with torch.no_grad():
            self.state_before = self.model.initial_state(E)   # state before step 0 of the next rollout
            step_state = {"c": self.state_before["c"]} if self.rtrl_core else self.state_before
            self.last = {"obs": torch.as_tensor(self.envs.obs).clone(), "reward": torch.zeros(E),
                         "done": torch.ones(E, dtype=torch.bool), "episodes": torch.full((E, 3), math.nan)}
            self.last_input, self.state_after = self._act(self.last, step_state)
        self.core_inputs = torch.zeros(T, E, self.last_input.shape[-1])
        self.dones = torch.zeros(T + 1, E, dtype=torch.bool)

    def load_weights(self, model) -> None:
        self.model.load_state_dict(model.state_dict())

    def _act(self, step: dict, state):
        """Sample the action at one step; fills step["action"], step["policy_logits"]; returns (core input, state)."""
        out, new_state = self.model(step["obs"][None], step["reward"][None], step["done"][None], state,
                                    carry_sensitivity=False)
        logits = out.policy_logits[0]
        step["policy_logits"] = logits
        step["action"] = sample_actions(logits, self.generator)
        return out.core_input[0], new_state

    @torch.no_grad()
    def fill(self, buf: dict[str, Tensor]) -> None:
        T = self.cfg.unroll_length
        for key, tensor in self.state_before.items():
            buf["state." + key].copy_(tensor)
        current, state = self.last, self.state_after
        self.core_inputs[0] = self.last_input
        for t in range(T + 1):
            if t > 0:
                obs, reward, done, episodes = self.envs.step(current["action"].numpy())
                current = {"obs": torch.as_tensor(obs).clone(), "reward": torch.as_tensor(reward),
                           "done": torch.as_tensor(done), "episodes": torch.as_tensor(episodes)}
                core_input, state_next = self._act(current, state)
                if t < T:
                    self.core_inputs[t] = core_input
                else:
                    self.last_input, state_before_last = core_input, state
                state = state_next
            for key in ("obs", "reward", "done", "action", "policy_logits"):
                buf[key][t] = current[key]
            for j, key in enumerate(EPISODE_KEYS):
                buf[key][t] = current["episodes"][:, j]
            self.dones[t] = current["done"]
        self.last, self.state_after = current, state
        if self.rtrl_core:  # sensitivities: one segment pass over steps 0..T-1 from the state before step 0
            self.state_before = self.model.advance_core(self.core_inputs, self.state_before, self.dones[:T])
        else:
            self.state_before = {k: v.clone() for k, v in state_before_last.items()}

    def close(self) -> None:
        self.envs.close()


def _exit_with_parent(learner_pid: int, poll_seconds: float = 1.0) -> None:
    """A daemon thread that ends this process when the learner process is gone (killed, say): an
    orphaned actor would otherwise wait on its queue forever. ``learner_pid`` comes from the learner:
    an actor still starting up when the learner died has already been re-parented, so its own
    ``getppid()`` at this point would name the wrong process."""
    if os.getppid() != learner_pid:
        os._exit(1)

    def watch():
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != learner_pid:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="rtrl-parent-watch").start()


def actor_loop(actor_index: int, cfg, spec: EnvSpec, shared_model: Agent, buffers, free_queue, full_queue,
               error_queue, learner_pid: int) -> None:
    """Process entry point: fill free buffers with rollouts until a None index arrives."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the learner process handles Ctrl-C and stops us
    torch.set_num_threads(1)
    _exit_with_parent(learner_pid)
    try:
        worker = RolloutWorker(actor_index, cfg, spec)
        while (index := free_queue.get()) is not None:
            worker.load_weights(shared_model)  # the latest published weights, fixed for the rollout
            worker.fill(buffers[index])
            full_queue.put(index)
        worker.close()
    except Exception:  # report to the learner, which raises it
        error_queue.put((actor_index, traceback.format_exc()))
