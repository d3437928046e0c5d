"""The seam between where experience comes from and the learner that learns from it.

    source = make_source(cfg, spec, model)    # an ExperienceSource: backends (actors' rollouts), ...
    experience = source.next()                 # an Experience: the learner's data, its steps, ended episodes
    stats = learner.update(experience, steps)  # a Learner (rtrl.runtime.learners): one update
    source.publish(model)                      # the new weights, for whoever acts

``rtrl.runtime.train`` is that loop and nothing else; ``rtrl.runtime.learners.LEARNERS`` pairs each
learner with its source (docs/ARCHITECTURE.md, "Where new things go").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Experience:
    """What a source hands its learner at once.

    ``data``: what the learner reads (the IMPALA learner: a collated ``Rollout``, (T+1,B,...), with the
    actors' state before step 0); ``steps``: the agent steps it holds (they count toward ``total_steps``);
    ``episodes``: the episodes that ended in it (dicts of return, length, success); ``stats``: the source's
    own numbers for metrics.csv (the backends: ``policy_lag``)."""

    data: Any
    steps: int
    episodes: list[dict] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)


class ExperienceSource(Protocol):
    actor_restarts: int   # actors (or env workers) replaced after a failure, this session

    def next(self) -> Experience:
        """The next piece of experience for the learner (blocks until it is there)."""

    def publish(self, model) -> None:
        """The learner's weights after one more update."""

    def close(self) -> None:
        """Stop whatever steps the environments and release it."""


class Learner(Protocol):
    """One learning algorithm. ``metrics``: the metrics.csv columns its update's stats (and its source's
    ``Experience.stats``) fill, in order; ``update`` returns them by name, plus ``"nonfinite"``: the names of
    the terms that were NaN or infinite (then it must not have changed the weights or its own state; the
    run counts and reports the skipped update). ``state_dict``/``load_state_dict``: everything besides the
    model's weights that a checkpoint must carry for the run to resume (an optimizer's state, traces...)."""

    metrics: tuple[str, ...]

    def update(self, experience: Experience, steps_done: int) -> dict: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...
