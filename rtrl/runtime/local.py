"""The local backend: actor processes on this machine, shared-memory rollout buffers, queues of indices.

A backend is what the learner talks to; any other backend (Ray, ...) provides the same three calls:

    batch, state, episodes = backend.next_batch()   # (T+1,B,...) tensors, (B,...) state, finished episodes
    backend.publish(model)                          # new weights for the actors
    backend.close()
"""
from __future__ import annotations

import math
import os
import queue
import time

import torch
import torch.multiprocessing as mp

from rtrl.runtime.actor import (EPISODE_KEYS, EnvSpec, RolloutWorker, actor_loop, allocate_buffers, make_agent,
                                rollout_specs)


class ActorError(RuntimeError):
    pass


def collate(slots: list[dict[str, torch.Tensor]]) -> tuple[dict, dict, list[dict]]:
    """Concatenate buffer slots into one learner batch; collect the episodes that ended in steps 1..T.

    Step 0 repeats the previous rollout's last step, so its episode entries were counted before.
    """
    batch = {k: torch.cat([s[k] for s in slots], dim=1) for k in slots[0] if not k.startswith("state.")}
    state = {k[len("state."):]: torch.cat([s[k] for s in slots], dim=0) for k in slots[0] if k.startswith("state.")}
    ended = ~torch.isnan(batch["episode_return"][1:])
    episodes = [
        {"return": r, "length": n, "success": (None if math.isnan(s) else s)}
        for r, n, s in zip(*(batch[k][1:][ended].tolist() for k in EPISODE_KEYS))
    ]
    for key in EPISODE_KEYS:
        del batch[key]
    return batch, state, episodes


class LocalBackend:
    def __init__(self, cfg, spec: EnvSpec, model):
        self.cfg = cfg
        self.ctx = mp.get_context("spawn")
        self.shared_model = make_agent(cfg, spec)
        self.shared_model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
        self.shared_model.share_memory()
        specs = rollout_specs(cfg, spec, self.shared_model.initial_state(1))
        self.buffers = allocate_buffers(specs, cfg.buffers)
        self.free_queue = self.ctx.SimpleQueue()
        self.full_queue = self.ctx.Queue()
        self.error_queue = self.ctx.Queue()
        self.actors = [
            self.ctx.Process(target=actor_loop, daemon=True, name=f"rtrl-actor-{i}",
                             args=(i, cfg, spec, self.shared_model, self.buffers, self.free_queue,
                                   self.full_queue, self.error_queue, os.getpid()))
            for i in range(cfg.num_actors)
        ]
        for actor in self.actors:
            actor.start()
        for index in range(len(self.buffers)):
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

    def next_batch(self):
        needed = self.cfg.batch_size // self.cfg.envs_per_actor
        indices = []
        self._check_actors()  # also when the other actors keep the queue full: a dead one must end the run
        while len(indices) < needed:
            try:
                indices.append(self.full_queue.get(timeout=1.0))
            except queue.Empty:
                self._check_actors()
        out = collate([self.buffers[i] for i in indices])
        for i in indices:
            self.free_queue.put(i)
        return out

    def publish(self, model) -> None:
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


class InlineBackend:
    """Actors stepped in the learner's own process, one after another (``--num-actors 0``).

    Deterministic for a given seed; meant for debugging, tests, and machines where processes cost more
    than they give. Holds ``envs_per_actor`` × (batch_size / envs_per_actor) environments.
    """

    def __init__(self, cfg, spec: EnvSpec, model):
        self.cfg = cfg
        self.workers = [RolloutWorker(i, cfg, spec) for i in range(cfg.batch_size // cfg.envs_per_actor)]
        self.publish(model)
        specs = rollout_specs(cfg, spec, self.workers[0].model.initial_state(1))
        self.buffers = [{k: torch.zeros(shape, dtype=dtype) for k, (shape, dtype) in specs.items()}
                        for _ in self.workers]

    def next_batch(self):
        for worker, buf in zip(self.workers, self.buffers):
            worker.fill(buf)
        return collate(self.buffers)

    def publish(self, model) -> None:
        for worker in self.workers:
            worker.load_weights(model)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


def make_backend(cfg, spec: EnvSpec, model):
    """The local multiprocess backend, or the inline one for ``num_actors == 0``."""
    return (InlineBackend if cfg.num_actors == 0 else LocalBackend)(cfg, spec, model)
