"""Actors stepped in the learner's own process, one after another (``num_actors=0``)."""
from __future__ import annotations

import traceback

from rtrl.envs import EnvSpec
from rtrl.models import Agent
from rtrl.runtime.actor import RolloutWorker
from rtrl.runtime.backends.base import RolloutBackend
from rtrl.runtime.config import TrainConfig
from rtrl.runtime.rollout import Rollout, collate, empty_rollout


class InlineBackend(RolloutBackend):
    """Deterministic for a given seed; meant for debugging, tests, and machines where processes cost
    more than they give. Holds ``envs_per_actor`` × (batch_size / envs_per_actor) environments. A
    worker whose environment raises is replaced like a failed actor process."""

    def __init__(self, cfg: TrainConfig, spec: EnvSpec, model: Agent):
        super().__init__(cfg, cfg.batch_size // cfg.envs_per_actor)
        self.spec = spec
        self.workers = [RolloutWorker(i, cfg, spec) for i in range(self.rollouts_per_batch)]
        for worker in self.workers:
            worker.load_weights(model)
        template = self.workers[0].model.initial_state(1)
        self.rollouts = [empty_rollout(cfg.unroll_length, cfg.envs_per_actor, spec, template) for _ in self.workers]

    @staticmethod
    def state_copies(cfg: TrainConfig) -> int:
        """The workers' own states, the rollouts' and the learner's batch: each one per environment."""
        return 3 * cfg.batch_size

    def next_batch(self) -> tuple[Rollout, list[dict]]:
        for slot, rollout in enumerate(self.rollouts):
            while True:
                try:
                    self.workers[slot].fill(rollout)
                    break
                except Exception:
                    self._replace(slot, traceback.format_exc())
            self.failures.delivered(slot)
        return collate(self.rollouts)

    def _replace(self, slot: int, report: str) -> None:
        old = self.workers[slot]
        try:
            old.close()
        except Exception:  # its environments are broken already
            pass
        while True:
            stream = self.failures.failed(slot, report)   # raises ActorError when no restart is left
            try:
                new = RolloutWorker(stream, self.cfg, self.spec)
                break
            except Exception:  # its environments could not be made
                report = traceback.format_exc()
        new.load_weights(old.model, old.version)
        self.workers[slot] = new

    def broadcast(self, model: Agent, version: int) -> None:
        for worker in self.workers:
            worker.load_weights(model, version)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
