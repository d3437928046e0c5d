"""Actors stepped in the learner's own process, one after another (``num_actors=0``)."""
from __future__ import annotations

from rtrl.envs import EnvSpec
from rtrl.models import Agent
from rtrl.runtime.actor import RolloutWorker
from rtrl.runtime.config import TrainConfig
from rtrl.runtime.rollout import Rollout, collate, empty_rollout


class InlineBackend:
    """Deterministic for a given seed; meant for debugging, tests, and machines where processes cost
    more than they give. Holds ``envs_per_actor`` × (batch_size / envs_per_actor) environments."""

    def __init__(self, cfg: TrainConfig, spec: EnvSpec, model: Agent):
        self.workers = [RolloutWorker(i, cfg, spec) for i in range(cfg.batch_size // cfg.envs_per_actor)]
        self.publish(model)
        template = self.workers[0].model.initial_state(1)
        self.rollouts = [empty_rollout(cfg.unroll_length, cfg.envs_per_actor, spec, template) for _ in self.workers]

    def next_batch(self) -> tuple[Rollout, list[dict]]:
        for worker, rollout in zip(self.workers, self.rollouts):
            worker.fill(rollout)
        return collate(self.rollouts)

    def publish(self, model: Agent) -> None:
        for worker in self.workers:
            worker.load_weights(model)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
