"""The local backend: actor processes on this machine, shared-memory rollouts, queues of slot indices.

The learner owns ``buffer_count`` rollouts in shared memory. A free slot's index goes to the free
queue; an actor takes it, fills the rollout with the latest published weights and puts the index on
the full queue; the learner collates ``batch_size / envs_per_actor`` full slots into a batch and
frees them. Weights are published into a shared-memory copy of the agent.
"""
from __future__ import annotations

import os
import pickle
import queue
import sys
import time

import torch
import torch.multiprocessing as mp

from rtrl.envs import EnvSpec
from rtrl.models import Agent
from rtrl.runtime.actor import actor_process
from rtrl.runtime.backends.errors import ActorError
from rtrl.runtime.config import TrainConfig, build_agent
from rtrl.runtime.rollout import Rollout, collate, empty_rollout
from rtrl.settings import SettingError, literal


def check_sendable(env_fn) -> None:
    """A ``SettingError`` if the spawned actors could not receive ``env_fn`` (they unpickle it by name)."""
    try:
        pickle.dumps(env_fn)
        problem = None
    except Exception as error:  # pickle raises PicklingError, AttributeError or TypeError, by object
        problem = f"it cannot be pickled: {error}"
    else:
        main = sys.modules.get("__main__")
        if getattr(env_fn, "__module__", None) == "__main__" and not getattr(main, "__file__", None):
            problem = "it is defined in an interactive session, which the actor processes cannot import"
    if problem:
        raise SettingError(literal(f"env_fn {env_fn!r} cannot be sent to the actor processes ({problem}); they are "
                                   "spawned and receive it by pickling: give a class or a function defined at the "
                                   "top level of a module or script (or a functools.partial of one), not a lambda "
                                   "or a nested function; or set ") + "{num_actors:name} to 0 to step the "
                           "environments in this process", num_actors=True)


class LocalBackend:
    def __init__(self, cfg: TrainConfig, spec: EnvSpec, model: Agent):
        if spec.env_fn is not None:
            check_sendable(spec.env_fn)
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
        cause = [line for line in trace.splitlines() if line.strip()][-1]   # "ValueError: ..."
        raise ActorError(f"actor {index} failed: {cause}", trace)

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
