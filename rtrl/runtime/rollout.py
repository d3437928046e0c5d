"""The rollout: what an actor writes, a backend moves and the learner reads — one type end to end.

A rollout of E environments holds T+1 steps; step 0 repeats the previous rollout's last step, and
``state`` is the agent's state *before* step 0 (for the RTRL core: c and the sensitivities). The
agent state keeps its own type (``RecurrentState``, ``LSTMState``, ...) inside the rollout: buffers,
collation and device moves map over its tensors (``rtrl.tree.map_tensors``), with no flattening
into named keys and back.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rtrl.envs import EPISODE_FIELDS, EnvSpec, episodes_from
from rtrl.tree import map_tensors


@dataclass
class Rollout:
    """Time-major steps (T+1, E, ...) and the agent state before step 0 (E, ...).

    At index t, ``obs[t]`` is what the agent saw; ``reward[t]`` and ``done[t]`` describe the transition
    that led to it (``done[t]``: obs[t] starts an episode, the state is zeroed before step t);
    ``action[t]`` and ``policy_logits[t]`` are what the actor did at obs[t]: the action (int64 (E,) for a
    Discrete space, float32 (E, D) for a Box, int64 (E, K) for a factored MultiDiscrete) and the parameters
    of the distribution it was drawn from (``EnvSpec.distribution``; a categorical's logits). ``episode_return``,
    ``episode_length`` and ``episode_success`` are NaN except where a true episode ended on arrival
    at step t (success: NaN too for tasks without one). ``version`` (E,) is the version of the weights
    the actor acted with (the learner's updates published before them, counted from the backend's start).
    """

    obs: Tensor
    reward: Tensor
    done: Tensor
    action: Tensor
    policy_logits: Tensor
    episode_return: Tensor
    episode_length: Tensor
    episode_success: Tensor
    version: Tensor
    state: Any

    def to(self, device: torch.device | str) -> "Rollout":
        return map_tensors(lambda t: t.to(device, non_blocking=True), self)

    def select(self, index: Tensor) -> "Rollout":
        """The environments ``index`` of this rollout or batch (``collate``'s layout: steps along dim 1,
        versions and states along dim 0)."""
        steps = {name: getattr(self, name).index_select(1, index) for name in STEP_FIELDS}
        return Rollout(**steps, version=self.version.index_select(0, index),
                       state=map_tensors(lambda t: t.index_select(0, index), self.state))

    def write_episodes(self, t: int, episodes: Tensor) -> None:
        """Store step t's episode record, (E, 3) in the columns of ``rtrl.envs.EPISODE_FIELDS``."""
        for name, column in zip(EPISODE_FIELDS, episodes.unbind(-1)):
            getattr(self, "episode_" + name)[t] = column

    def episodes(self) -> list[dict]:
        """The episodes that ended in steps 1..T (step 0 repeats a step counted in the previous rollout)."""
        return episodes_from(self.episode_return[1:], self.episode_length[1:], self.episode_success[1:])


STEP_FIELDS = tuple(f.name for f in dataclasses.fields(Rollout) if f.name not in ("version", "state"))


def empty_rollout(unroll_length: int, envs: int, spec: EnvSpec, state_template: Any, shared: bool = False) -> Rollout:
    """A zero-filled rollout of ``envs`` environments; the state shaped like ``state_template`` (any
    batch size). ``shared``: in shared memory, so that actor processes can fill it."""
    T1, E = unroll_length + 1, envs
    dist = spec.distribution

    def zeros(shape, dtype):
        tensor = torch.zeros(shape, dtype=dtype)
        return tensor.share_memory_() if shared else tensor

    return Rollout(
        obs=zeros((T1, E) + tuple(spec.obs_shape), spec.obs_dtype),
        reward=zeros((T1, E), torch.float32),
        done=zeros((T1, E), torch.bool),
        action=zeros((T1, E) + tuple(dist.action_shape), dist.action_dtype),
        policy_logits=zeros((T1, E, dist.param_size), torch.float32),
        episode_return=zeros((T1, E), torch.float32),
        episode_length=zeros((T1, E), torch.float32),
        episode_success=zeros((T1, E), torch.float32),
        version=zeros((E,), torch.int64),
        state=map_tensors(lambda t: zeros((E,) + tuple(t.shape[1:]), t.dtype), state_template),
    )


def collate(rollouts: list[Rollout]) -> tuple[Rollout, list[dict]]:
    """One learner batch from several rollouts (steps along dim 1, versions and states along dim 0), and
    the episodes that ended in them."""
    steps = {name: torch.cat([getattr(r, name) for r in rollouts], dim=1) for name in STEP_FIELDS}
    version = torch.cat([r.version for r in rollouts])
    state = map_tensors(lambda *states: torch.cat(states, dim=0), *[r.state for r in rollouts])
    return Rollout(**steps, version=version, state=state), [episode for r in rollouts for episode in r.episodes()]
