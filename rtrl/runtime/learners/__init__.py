"""Learning algorithms behind one seam (``rtrl.runtime.experience.Learner``), each paired with the source of
its experience. ``TrainConfig.learner`` picks one; ``rtrl.runtime.train`` runs any of them unchanged.

* ``impala`` — R2AC (docs/DESIGN.md §5): actors (a backend: local, inline or Ray) fill rollouts, the
  learner takes one V-trace step per batch of them (``ImpalaLearner``).

A new learner (one that updates at every environment step, say) is a module here with a class of the
``Learner`` protocol, a source of the ``ExperienceSource`` protocol (its own, stepping the environments
in the learner's process, or a backend), and one entry in ``LEARNERS`` (docs/ARCHITECTURE.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rtrl.runtime.backends import backend_class, make_backend
from rtrl.runtime.config import TrainConfig
from rtrl.runtime.experience import Experience, ExperienceSource, Learner
from rtrl.runtime.learners.impala import ImpalaLearner

__all__ = ["LearnerKind", "LEARNERS", "ImpalaLearner", "Experience", "ExperienceSource", "Learner"]


@dataclass(frozen=True)
class LearnerKind:
    """A learner and its experience: ``make_learner(model, cfg)``, ``make_source(cfg, spec, model)``, and
    ``state_copies(cfg)``: the environment states with RTRL sensitivities the two hold at once."""

    make_learner: Callable[..., Learner]
    make_source: Callable[..., ExperienceSource]
    state_copies: Callable[[TrainConfig], int]


LEARNERS: dict[str, LearnerKind] = {
    "impala": LearnerKind(ImpalaLearner, make_backend, lambda cfg: backend_class(cfg).state_copies(cfg)),
}
