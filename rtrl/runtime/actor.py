"""Actors: step environments with a CPU copy of the agent and fill rollouts.

Per step an actor carries only the agent's step state. For the RTRL core that is c without the
sensitivities: once per rollout the actor brings the full state forward by replaying the rollout's core
inputs from the state before step 0 (``Agent.advance``: one pass of the segment engine over the
sensitivities). For the other cores the step state is the full state and no replay is needed. The next
rollout stores that state as its state before step 0.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from rtrl.envs import EPISODE_FIELDS, EnvBatch, EnvSpec, env_seeds
from rtrl.models import Agent
from rtrl.runtime.config import TrainConfig, build_agent
from rtrl.runtime.rollout import Rollout
from rtrl.tree import map_tensors


@dataclass
class Step:
    """One step of E environments: what arrived (obs, reward, done, episode records (E,3)) and, once
    the actor has acted, what it did."""

    obs: Tensor
    reward: Tensor
    done: Tensor
    episodes: Tensor
    action: Tensor | None = None
    policy_logits: Tensor | None = None


class RolloutWorker:
    """One actor's environments, model copy and recurrent state; ``fill(rollout)`` writes one rollout.

    ``actor_index`` picks the environments' seeds (``env_seeds``): a replacement for a failed actor
    takes an index of its own, so that it plays fresh episodes; so does every actor of a resumed run
    (``cfg.resumed_at_step``)."""

    def __init__(self, actor_index: int, cfg: TrainConfig, spec: EnvSpec):
        T, E = cfg.unroll_length, cfg.envs_per_actor
        seeds = env_seeds(cfg.seed, actor_index * E, E, cfg.resumed_at_step)
        self.generator = torch.Generator().manual_seed(seeds[0])
        self.envs = EnvBatch(cfg.env, cfg.env_options, seeds, env_fn=spec.env_fn)
        self.model = build_agent(cfg, spec).eval()
        self.version = 0   # of the weights loaded: learner updates published before them
        with torch.no_grad():
            self.state_before = self.model.initial_state(E)   # full state before step 0 of the next rollout
        self.last = Step(torch.as_tensor(self.envs.obs).clone(), torch.zeros(E), torch.ones(E, dtype=torch.bool),
                         torch.full((E, len(EPISODE_FIELDS)), math.nan))
        # the very first step is acted on in the first fill, with the weights loaded by then
        self.last_input = self.step_state = self.core_inputs = None
        self.dones = torch.zeros(T, E, dtype=torch.bool)

    def load_weights(self, weights: Agent | dict[str, Tensor], version: int = 0) -> None:
        """Act with ``weights`` (an agent or its state dict) from the next rollout on; ``version`` is
        recorded in the rollouts made with them."""
        self.model.load_state_dict(weights if isinstance(weights, dict) else weights.state_dict())
        self.version = version

    def _act(self, step: Step, state):
        """Sample the action at one step (fills ``step.action``, ``step.policy_logits``); returns the core's
        input at that step and the step state after it."""
        out, new_state = self.model(step.obs[None], step.reward[None], step.done[None], state)
        step.policy_logits = out.policy_logits[0]
        step.action = self.model.action_dist.sample(step.policy_logits, self.generator)
        return out.core_input[0], new_state

    @torch.no_grad()
    def fill(self, rollout: Rollout) -> None:
        T = len(self.dones)
        map_tensors(Tensor.copy_, rollout.state, self.state_before)
        rollout.version.fill_(self.version)
        if self.last_input is None:
            self.last_input, self.step_state = self._act(self.last, self.model.step_state(self.state_before))
            self.core_inputs = torch.zeros((len(self.dones),) + self.last_input.shape)
        step, state = self.last, self.step_state
        self.core_inputs[0] = self.last_input
        for t in range(T + 1):
            if t > 0:
                obs, reward, done, episodes = self.envs.step(step.action.numpy())
                step = Step(torch.as_tensor(obs).clone(), torch.as_tensor(reward), torch.as_tensor(done),
                            torch.as_tensor(episodes))
                state_before_step = state
                core_input, state = self._act(step, state)
                if t < T:
                    self.core_inputs[t] = core_input
                else:
                    self.last_input, state_before_last = core_input, state_before_step
            for name in ("obs", "reward", "done", "action", "policy_logits"):
                getattr(rollout, name)[t] = getattr(step, name)
            rollout.write_episodes(t, step.episodes)
            if t < T:
                self.dones[t] = step.done
        self.last, self.step_state = step, state
        # the full state before the next rollout's step 0, i.e. after step T-1
        if self.model.steps_partial_state:
            self.state_before = self.model.advance(self.core_inputs, self.state_before, self.dones)
        else:
            self.state_before = state_before_last

    def close(self) -> None:
        self.envs.close()


def exit_with_parent(learner_pid: int, poll_seconds: float = 1.0) -> None:
    """A daemon thread that ends this process when the learner process is gone (killed, say): an
    orphaned actor would otherwise go on stepping its environments. ``learner_pid`` comes from the learner:
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

