"""The local backend: actor processes on this machine, shared-memory rollouts, queues of slot indices.

The learner owns ``buffer_count`` rollouts in shared memory. A free slot's index goes to the free
queue; an actor takes it, fills the rollout with the latest published weights and puts the index on
the full queue; the learner collates ``batch_size / envs_per_actor`` full slots into a batch and
frees them. Weights are published into a shared-memory copy of the agent.
"""
from __future__ import annotations

import os
import queue
import time

import torch
import torch.multiprocessing as mp

from rtrl.envs import EnvSpec
from rtrl.models import Agent
from rtrl.runtime.actor import actor_process
from rtrl.runtime.backends.errors import ActorError
from rtrl.runtime.config import TrainConfig, build_agent
from rtrl.runtime.rollout import Rollout, collate, empty_rollout


class LocalBackend:
    def __init__(self, cfg: TrainConfig, spec: EnvSpec, model: Agent):
        self.slots_per_batch = cfg.batch_size // cfg.envs_per_actor
        self.ctx = mp.get_context("spawn")
        self.shared_model = build_agent(cfg, spec)
        self.shared_model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
        self.shared_model.share_memory()
        template = self.shared_model.initial_state(1)
        self.rollouts = [empty_rollout(cfg.unroll_length, cfg.envs_per_actor, spec, template, shared=True)
                         for _ in range(cfg.buffer_count)]
        self.free_queue = self.ctx.SimpleQueue()
        self.full_queue = self.ctx.Queue()
        self.error_queue = self.ctx.Queue()
        self.actors = [
            self.ctx.Process(target=actor_process, daemon=True, name=f"rtrl-actor-{i}",
                             args=(i, cfg, spec, self.shared_model, self.rollouts, self.free_queue,
                                   self.full_queue, self.error_queue, os.getpid()))
            for i in range(cfg.num_actors)
        ]
        for actor in self.actors:
            actor.start()
        for index in range(len(self.rollouts)):
            self.free_queue.put(index)

    def _check_actors(self) -> None:
        try:
            index, trace = self.error_queue.get_nowait()
        except queue.Empty:
            dead = [a.name for a in self.actors if not a.is_alive()]
            if dead:
                raise ActorError(f"actor process(es) {dead} died without a report")
            return
        raise ActorError(f"actor {index} failed:\n{trace}")

    def next_batch(self) -> tuple[Rollout, list[dict]]:
        indices = []
        self._check_actors()  # also when the other actors keep the queue full: a dead one must end the run
        while len(indices) < self.slots_per_batch:
            try:
                indices.append(self.full_queue.get(timeout=1.0))
            except queue.Empty:
                self._check_actors()
        out = collate([self.rollouts[i] for i in indices])  # copies: the slots can be refilled at once
        for i in indices:
            self.free_queue.put(i)
        return out

    def publish(self, model: Agent) -> None:
        with torch.no_grad():
            for shared, new in zip(self.shared_model.state_dict().values(), model.state_dict().values()):
                shared.copy_(new)

    def close(self, timeout: float = 10.0) -> None:
        for _ in self.actors:
            self.free_queue.put(None)
        deadline = time.monotonic() + timeout
        for actor in self.actors:
            actor.join(max(0.0, deadline - time.monotonic()))
            if actor.is_alive():
                actor.terminate()
                actor.join(1.0)
