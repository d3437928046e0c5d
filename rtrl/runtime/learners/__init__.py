"""Learning algorithms behind one seam (``rtrl.runtime.experience.Learner``), each paired with the source of
its experience. ``TrainConfig.learner`` picks one; ``rtrl.runtime.train`` runs any of them unchanged.

* ``impala`` — R2AC (docs/DESIGN.md §5): actors (a backend: local, inline or Ray) fill rollouts, the
  learner takes V-trace steps on each batch of them (``ImpalaLearner``: one by default, or ``update_epochs``
  passes of ``minibatches`` steps).
* ``stream`` — streaming actor-critic (Stream AC(λ) with ObGD): ``num_envs`` streams stepped in the
  learner's process, an update at every step, eligibility traces of all parameters, the recurrent ones'
  gradients through the carried RTRL sensitivities (``StreamLearner``, ``StreamSource``).

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
from rtrl.runtime.learners.stream import StreamLearner, StreamSource

__all__ = ["LearnerKind", "LEARNERS", "ImpalaLearner", "StreamLearner", "StreamSource", "Experience",
           "ExperienceSource", "Learner"]


@dataclass(frozen=True)
class LearnerKind:
    """A learner and its experience: ``make_learner(model, cfg)``, ``make_source(cfg, spec, model)``,
    ``state_copies(cfg)``: the environment states with RTRL sensitivities the two hold at once, and
    ``extends``: whether a run resumed with a larger ``total_steps`` is the same run continued (nothing the
    learner does follows the budget), so that it needs no ``--force``."""

    make_learner: Callable[..., Learner]
    make_source: Callable[..., ExperienceSource]
    state_copies: Callable[[TrainConfig], int]
    extends: bool = False


LEARNERS: dict[str, LearnerKind] = {
    # its learning rate decays to 0 over total_steps: another budget changes the run from its first update
    "impala": LearnerKind(ImpalaLearner, make_backend, lambda cfg: backend_class(cfg).state_copies(cfg)),
    # the state the source carries, and the new one a step makes before the old one is let go (twice: a separate
    # critic's too)
    "stream": LearnerKind(StreamLearner, StreamSource, lambda cfg: (4 if cfg.critic == "separate" else 2) * cfg.num_envs,
                          extends=True),
}
