"""The training loop: any learner (``cfg.learner``) over its experience source, in a run session.

    source.next() -> experience;  learner.update(experience) -> stats;  source.publish(model)

The learners and their sources are in ``rtrl.runtime.learners``; the run directory, checkpoints, metrics,
Ctrl-C and skipped (non-finite) updates in ``rtrl.runtime.session``.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from rtrl.envs import EnvSpec
from rtrl.envs.registry import parse_env_id
from rtrl.runtime.config import TrainConfig
from rtrl.runtime.learners import LEARNERS
from rtrl.runtime.session import NonFiniteError, RunSession

__all__ = ["train", "NonFiniteError"]

logger = logging.getLogger(__name__)


def train(cfg: TrainConfig, out: str | Path, force: bool = False, backend_factory=None, progress: bool = True,
          env_fn=None, learner_factory=None) -> dict:
    """Train as ``cfg`` says, in the run directory ``out`` (resumed if it holds this run); return a summary.

    ``backend_factory(cfg, spec, model)`` / ``learner_factory(model, cfg)``: the experience source and the
    learner, instead of those of ``cfg.learner`` (``rtrl.runtime.learners.LEARNERS``; the IMPALA learner's
    source is a backend: local processes, inline, or Ray).
    ``env_fn``: an environment registered nowhere, made by ``env_fn(**options)`` (a ``gymnasium.Env``);
    ``cfg.env`` is then ``python:<label>[?key=value...]`` (the options go to ``env_fn``). The local
    backend sends it to its actor processes by pickling: give a class or a function defined at the top
    level of a module (or of the main script, whose training call sits under ``if __name__ ==
    "__main__":``), or a ``functools.partial`` of one; not a lambda or a nested function.
    """
    spec = EnvSpec.probe(cfg.env, cfg.env_options, env_fn)  # first: a bad env leaves no directory behind
    _warn_about_settings(cfg)
    kind = LEARNERS[cfg.learner]
    with RunSession(cfg, out, force, progress, extends=kind.extends) as session:
        model, learner = session.build(spec, learner_factory or kind.make_learner, kind.state_copies(cfg))
        if session.done:   # a finished run: nothing runs, nothing is written (not the forced settings either)
            log = logger.warning if force else logger.info
            log("%s holds a finished run (%d steps of total_steps=%d): nothing was trained%s", out,
                session.progress.steps, cfg.total_steps,
                "; the forced settings were not applied (its config.json is unchanged)" if force else "")
        else:
            # a resumed run's source seeds its environments from the step it goes on from (env_seeds)
            source_cfg = dataclasses.replace(cfg, resumed_at_step=session.progress.steps)
            source = session.attach((backend_factory or kind.make_source)(source_cfg, spec, model))
            while not session.done:
                experience = source.next()
                stats = learner.update(experience, session.progress.steps)
                source.publish(model)
                session.record(experience, stats)
    return session.summary()


def _warn_about_settings(cfg: TrainConfig) -> None:
    id_options = parse_env_id(cfg.env)[2]
    replaced = {k: (id_options[k], v) for k, v in cfg.env_options.items() if k in id_options and id_options[k] != v}
    if replaced:   # env_options win (parse_env_id); the id the user reads in config.json says otherwise
        logger.info("env_options replace the env id's %s", ", ".join(f"{k}={old!r} with {k}={new!r}"
                                                               for k, (old, new) in replaced.items()))
    if cfg.normalize_advantages and {**id_options, **cfg.env_options}.get("previous_action"):
        logger.warning("normalize_advantages with previous_action=true: on the memory suite this pair collapsed "
                       "the policy's entropy (docs/MEMORY_SUITE.md); consider --normalize-advantages false")
    if cfg.update_epochs > 1 and cfg.policy_clip == 0:
        logger.warning("update_epochs=%d without policy_clip: nothing bounds how far the passes move the policy from "
                       "the actors' (4 passes of 4 minibatches diverged on Hopper, docs/MUJOCO.md); consider "
                       "--policy-clip 0.2", cfg.update_epochs)
