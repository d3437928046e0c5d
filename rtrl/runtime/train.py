"""The R2AC training loop: actors (a backend) feed rollouts to the learner, the run directory keeps the rest.

    run = RunDirectory(out); checkpoint = run.open(cfg, force)  # lock; resume if the directory holds a run
    backend = make_backend(cfg, spec, model)
    while steps < total_steps:
        batch, episodes = backend.next_batch()                  # Rollout (T+1,B,...) + the actors' state
        learner.update(batch.to(device), steps)                 # V-trace loss, RTRL gradients, RMSprop
        backend.publish(model)
        ... metrics.csv every log_interval s, checkpoint.pt every checkpoint_interval s

Ctrl-C (a KeyboardInterrupt) stops the run with a checkpoint; running again resumes it. An update with a
non-finite loss or gradient is skipped, counted (``nonfinite_updates``) and logged; ``max_nonfinite`` of
them in a row stop the run with :class:`NonFiniteError`, and checkpoint.pt keeps the last good state
(no checkpoint is written while updates fail, nor one whose weights are not finite).
"""
from __future__ import annotations

import logging
import math
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from rtrl.envs import EnvSpec, frames_per_step
from rtrl.envs.registry import parse_env_id
from rtrl.runtime.backends import make_backend
from rtrl.runtime.checkpoints import estimated_checkpoint_size, nonfinite_tensors, rng_states, transfer_stem
from rtrl.runtime.config import TrainConfig, build_agent, check_sensitivity_memory
from rtrl.runtime.learner import Learner
from rtrl.runtime.run_dir import RunDirectory
from rtrl.settings import SettingsMessage, literal

LOSS_COLUMNS = ("total_loss", "pg_loss", "baseline_loss", "entropy_loss", "grad_norm", "lr")
logger = logging.getLogger(__name__)


class NonFiniteError(SettingsMessage, RuntimeError):
    """``max_nonfinite`` updates in a row had a non-finite loss or gradient; the run stopped."""


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else math.nan


class Progress:
    """Step counters, wall time and the recent episodes of a run: what a checkpoint carries besides weights."""

    def __init__(self, window: int, checkpoint: dict | None = None):
        checkpoint = checkpoint or {}
        self.steps, self.updates = checkpoint.get("steps", 0), checkpoint.get("updates", 0)
        self.nonfinite = checkpoint.get("nonfinite_updates", 0)   # skipped updates, over the whole run
        self.wall_before = checkpoint.get("wall_time", 0.0)   # seconds spent in earlier sessions
        self.recent = deque(checkpoint.get("recent_episodes", []), maxlen=window)
        self.restarts_before = checkpoint.get("actor_restarts", 0)   # actors replaced in earlier sessions
        self.start = time.monotonic()

    def wall_time(self) -> float:
        return self.wall_before + time.monotonic() - self.start

    def metrics_row(self, sps: float, losses: list[dict], frames_per_step: int = 1, actor_restarts: int = 0) -> dict:
        row = {"step": self.steps, "frames": self.steps * frames_per_step, "wall_time": round(self.wall_time(), 3),
               "sps": sps, "updates": self.updates, "episodes": len(self.recent),
               "mean_return": _mean(e["return"] for e in self.recent),
               "mean_length": _mean(e["length"] for e in self.recent),
               "success_rate": _mean(e["success"] for e in self.recent), "nonfinite_updates": self.nonfinite}
        row.update({key: _mean(s.get(key) for s in losses) for key in LOSS_COLUMNS + ("policy_lag",)})
        row["actor_restarts"] = self.restarts_before + actor_restarts
        return row

    def summary(self, run: RunDirectory, finished: bool) -> dict:
        return {"run": str(run.path), "steps": self.steps, "finished": finished, "episodes_in_window": len(self.recent),
                "mean_return": _mean(e["return"] for e in self.recent),
                "success_rate": _mean(e["success"] for e in self.recent), "nonfinite_updates": self.nonfinite,
                "wall_time": round(self.wall_time(), 3)}   # seconds, every session of the run


def train(cfg: TrainConfig, out: str | Path, force: bool = False, backend_factory=make_backend,
          progress: bool = True, env_fn=None) -> dict:
    """Train R2AC (or a baseline core) as ``cfg`` says, in the run directory ``out``; return a summary.

    ``backend_factory(cfg, spec, model)`` provides the actors (default: local processes, or inline).
    ``env_fn``: an environment registered nowhere, made by ``env_fn(**options)`` (a ``gymnasium.Env``);
    ``cfg.env`` is then ``python:<label>[?key=value...]`` (the options go to ``env_fn``). The local
    backend sends it to its actor processes by pickling: give a class or a function defined at the top
    level of a module (or of the main script, whose training call sits under ``if __name__ ==
    "__main__":``), or a ``functools.partial`` of one; not a lambda or a nested function.
    """
    spec = EnvSpec.probe(cfg.env, cfg.env_options, env_fn)  # first: a bad env leaves no directory behind
    if cfg.normalize_advantages and parse_env_id(cfg.env, cfg.env_options)[2].get("previous_action"):
        logger.warning("normalize_advantages with previous_action=true: on the memory suite this pair collapsed "
                       "the policy's entropy (docs/MEMORY_SUITE.md); consider --normalize-advantages false")
    run = RunDirectory(out)
    checkpoint = run.open(cfg, force)
    try:
        device, model, learner, counters = _start(cfg, spec, run, checkpoint)
        if counters.steps >= cfg.total_steps:
            run.close()
            return counters.summary(run, finished=True)
        backend = backend_factory(cfg, spec, model)
    except BaseException:
        run.close()   # a directory this call created goes again
        raise
    try:
        run.commit(cfg, checkpoint)
        log = run.metrics_log(counters.steps)
    except BaseException:   # a full disk, say: no actor outlives the error
        backend.close()
        run.close()
        raise
    in_a_row, saved_step = 0, counters.steps

    def save() -> None:
        nonlocal saved_step
        if in_a_row:   # the weights produced a non-finite loss: keep the last good checkpoint
            return
        broken = nonfinite_tensors(model.state_dict())
        if broken:
            logger.warning("checkpoint not written: the weights are not finite (%s); checkpoint.pt keeps step %d",
                           ", ".join(broken[:3]), saved_step)
            return
        log.flush()   # TensorBoard's events up to the checkpoint are on disk before it is
        run.save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict(),
                             "optimizer": learner.optimizer.state_dict(), "steps": counters.steps,
                             "updates": counters.updates, "wall_time": counters.wall_time(),
                             "recent_episodes": list(counters.recent), "nonfinite_updates": counters.nonfinite,
                             "rng": rng_states(), "actor_restarts": counters.restarts_before + backend.actor_restarts})
        saved_step = counters.steps

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.total_steps, initial=counters.steps, unit="step", dynamic_ncols=True, smoothing=0.1)
    frame_skip = frames_per_step(cfg.env, cfg.env_options)
    last_log = last_checkpoint = time.monotonic()
    steps_at_log, losses, interrupted, save_at_end = counters.steps, [], False, True
    try:
        if checkpoint is None:
            save()   # from now on a killed run always leaves a checkpoint to resume
        while counters.steps < cfg.total_steps:
            batch, episodes = backend.next_batch()
            policy_lag = backend.version - batch.version.double().mean().item()
            stats = {**learner.update(batch.to(device), counters.steps), "policy_lag": policy_lag}
            backend.publish(model)
            counters.steps += cfg.steps_per_update
            counters.recent.extend(episodes)
            if stats["nonfinite"]:
                counters.nonfinite += 1
                in_a_row += 1
                terms = ", ".join(f"{k}={stats[k]}" for k in stats["nonfinite"])
                logger.warning("update skipped at step %d: non-finite %s (%d in a row; the run stops after %d)",
                               counters.steps, terms, in_a_row, cfg.max_nonfinite)
            else:
                counters.updates += 1
                in_a_row = 0
                losses.append(stats)
            stopping = in_a_row >= cfg.max_nonfinite
            if bar is not None:
                bar.update(cfg.steps_per_update)
            now = time.monotonic()
            if now - last_log >= cfg.log_interval or counters.steps >= cfg.total_steps or stopping:
                row = counters.metrics_row((counters.steps - steps_at_log) / (now - last_log), losses, frame_skip,
                                           backend.actor_restarts)
                log.write(row)
                if bar is not None:
                    bar.set_postfix(sps=f"{row['sps']:.0f}", ret=f"{row['mean_return']:.3f}",
                                    **({} if math.isnan(row["success_rate"]) else
                                       {"success": f"{row['success_rate']:.2f}"}))
                last_log, steps_at_log, losses = now, counters.steps, []
            if stopping:
                save_at_end = False
                raise NonFiniteError(
                    "{max_nonfinite:name}=" + literal(
                        f"{cfg.max_nonfinite} updates in a row had a non-finite loss or gradient (the last: {terms} "
                        f"at step {counters.steps}); the run stopped and checkpoint.pt keeps the last good state "
                        f"(step {saved_step}). ") + "Lower the learning rate ({lr}), or look for NaN or infinite "
                    "observations and rewards from the environment", max_nonfinite=cfg.max_nonfinite, lr=cfg.lr)
            if now - last_checkpoint >= cfg.checkpoint_interval:
                save()
                last_checkpoint = now
    except KeyboardInterrupt:
        interrupted = True
    except OSError:   # a write failed (a full disk): the last checkpoint that was written stays
        save_at_end = False
        raise
    finally:
        if bar is not None:
            bar.close()
        try:
            backend.close()
            if save_at_end:
                save()
        finally:
            log.close()
            run.close()
    return counters.summary(run, finished=not interrupted)


def _start(cfg: TrainConfig, spec: EnvSpec, run: RunDirectory, checkpoint: dict | None):
    """The learner's side of a run: (device, model, learner, counters), restored from ``checkpoint``."""
    device = cfg.torch_device()
    torch.set_num_threads(cfg.learner_threads)
    torch.manual_seed(cfg.seed)
    model = build_agent(cfg, spec)
    check_sensitivity_memory(cfg, model)
    if cfg.load_stem:
        transfer_stem(model, cfg.load_stem, cfg.load_fc, cfg.freeze_stem, resuming=checkpoint is not None)
    model.to(device)
    learner = Learner(model, cfg)
    if checkpoint is not None:
        run.restore(checkpoint, model, learner.optimizer)
    run.check_free_space(estimated_checkpoint_size(model))
    return device, model, learner, Progress(cfg.stats_window, checkpoint)
