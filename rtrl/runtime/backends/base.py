"""What every backend shares: the weight version and broadcast rule, the failed-actor rule, the batch
arithmetic, and the experience it hands the learner."""
from __future__ import annotations

from rtrl.runtime.backends.errors import ActorFailures
from rtrl.runtime.config import TrainConfig
from rtrl.runtime.experience import Experience
from rtrl.runtime.rollout import Rollout


class RolloutBackend:
    """Base of the backends. A subclass makes ``failures`` (one slot per actor) and provides
    ``next_batch() -> (Rollout, episodes)`` (``rollouts_per_batch`` rollouts, collated), ``broadcast(model,
    version)`` (send the weights to its actors), ``close()`` and ``state_copies(cfg)``."""

    def __init__(self, cfg: TrainConfig, slots: int):
        self.cfg = cfg
        self.version = 0   # publish calls so far: the version of the learner's weights
        self.rollouts_per_batch = cfg.batch_size // cfg.envs_per_actor
        self.failures = ActorFailures(slots, cfg.max_actor_restarts)

    @property
    def actor_restarts(self) -> int:
        """Actors replaced after a failure, this session."""
        return self.failures.restarts

    def next(self) -> Experience:
        """The next batch as the learner's experience, with ``policy_lag``: the learner's weight version
        minus the mean version the batch's rollouts were made with."""
        batch, episodes = self.next_batch()
        lag = self.version - batch.version.double().mean().item()
        return Experience(batch, self.cfg.steps_per_update, episodes, {"policy_lag": lag})

    def next_batch(self) -> tuple[Rollout, list[dict]]:
        raise NotImplementedError

    def publish(self, model) -> None:
        """One more learner update: the actors get its weights after every ``broadcast_interval``-th."""
        self.version += 1
        if self.version % self.cfg.broadcast_interval == 0:
            self.broadcast(model, self.version)

    def broadcast(self, model, version: int) -> None:
        raise NotImplementedError

    @staticmethod
    def state_copies(cfg: TrainConfig) -> int:
        """Environment states with RTRL sensitivities the run holds at once with this backend: its
        actors', its rollout buffers' and the learner's batch."""
        raise NotImplementedError
