"""Actors: step environments with a CPU copy of the agent and fill rollout buffers.

A rollout holds T+1 steps; step 0 repeats the previous rollout's last step, and the buffer also keeps
the agent state *before* step 0. Per step the actor only advances the recurrent state c (no
sensitivities); for the RTRL core it advances the sensitivities once per rollout, with the segment
engine, by replaying the rollout's core inputs from the state before step 0.
"""
from __future__ import annotations

import math
import signal
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
                 stem=cfg.stem, stem_hidden_size=cfg.stem_hidden_size, forget_bias=cfg.forget_bias)


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


def actor_loop(actor_index: int, cfg, spec: EnvSpec, shared_model: Agent, buffers, free_queue, full_queue,
               error_queue) -> None:
    """Process entry point: fill free buffers with rollouts until a None index arrives."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the learner process handles Ctrl-C and stops us
    torch.set_num_threads(1)
    try:
        _run_actor(actor_index, cfg, spec, shared_model, buffers, free_queue, full_queue)
    except Exception:  # report to the learner, which raises it
        error_queue.put((actor_index, traceback.format_exc()))


def _run_actor(actor_index, cfg, spec, shared_model, buffers, free_queue, full_queue) -> None:
    T, E = cfg.unroll_length, cfg.envs_per_actor
    seeds = [cfg.seed * 100_003 + actor_index * E + j for j in range(E)]
    generator = torch.Generator().manual_seed(seeds[0])
    envs = EnvBatch(cfg.env, cfg.env_options, seeds)
    model = make_agent(cfg, spec)
    model.load_state_dict(shared_model.state_dict())
    model.eval()
    recurrent_rtrl = cfg.core == "rtrl-elstm"

    def act(obs, reward, done, state):
        out, new_state = model(torch.as_tensor(obs)[None], reward[None], done[None], state, carry_sensitivity=False)
        logits = out.policy_logits[0]
        action = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
        return action, logits, out.core_input[0], new_state

    with torch.no_grad():
        state_before = model.initial_state(E)            # state before step 0 of the next rollout
        step_state = {"c": state_before["c"]} if recurrent_rtrl else state_before
        last = {"obs": torch.as_tensor(envs.obs).clone(), "reward": torch.zeros(E), "done": torch.ones(E, dtype=torch.bool),
                "episodes": torch.full((E, 3), math.nan)}
        last["action"], last["policy_logits"], last_input, state_after = act(last["obs"], last["reward"], last["done"], step_state)
        core_inputs = torch.zeros(T, E, last_input.shape[-1])
        dones = torch.zeros(T + 1, E, dtype=torch.bool)
        while True:
            index = free_queue.get()
            if index is None:
                break
            model.load_state_dict(shared_model.state_dict())   # the latest published weights
            buf = buffers[index]
            for key, tensor in state_before.items():
                buf["state." + key].copy_(tensor)
            current, state = last, state_after
            core_inputs[0] = last_input
            for t in range(T + 1):
                if t > 0:
                    obs, reward, done, episodes = envs.step(current["action"].numpy())
                    current = {"obs": torch.as_tensor(obs).clone(), "reward": torch.as_tensor(reward),
                               "done": torch.as_tensor(done), "episodes": torch.as_tensor(episodes)}
                    current["action"], current["policy_logits"], core_input, state_next = act(
                        current["obs"], current["reward"], current["done"], state)
                    if t < T:
                        core_inputs[t] = core_input
                    else:
                        last_input, state_before_last = core_input, state
                    state = state_next
                for key in ("obs", "reward", "done", "action", "policy_logits"):
                    buf[key][t] = current[key]
                for j, key in enumerate(EPISODE_KEYS):
                    buf[key][t] = current["episodes"][:, j]
                dones[t] = current["done"]
            last, state_after = current, state
            if recurrent_rtrl:  # sensitivities: one segment pass over steps 0..T-1 from the state before step 0
                state_before = model.advance_core(core_inputs, state_before, dones[:T])
            else:
                state_before = {k: v.clone() for k, v in state_before_last.items()}
            full_queue.put(index)
    envs.close()
