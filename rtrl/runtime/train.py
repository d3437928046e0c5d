"""The R2AC training loop: actors (a backend) feed rollouts to the learner, the run directory keeps the rest.

    run = RunDirectory(out); checkpoint = run.prepare(cfg)      # resume if the directory holds a run
    backend = make_backend(cfg, spec, model)
    while steps < total_steps:
        batch, episodes = backend.next_batch()                  # Rollout (T+1,B,...) + the actors' state
        learner.update(batch.to(device), steps)                 # V-trace loss, RTRL gradients, RMSprop
        backend.publish(model)
        ... metrics.csv every log_interval s, checkpoint.pt every checkpoint_interval s

Ctrl-C (a KeyboardInterrupt) stops the run with a checkpoint; running again resumes it.
"""
from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from rtrl.envs import EnvSpec, frames_per_step
from rtrl.runtime.backends import make_backend
from rtrl.runtime.checkpoints import rng_states, set_rng_states, transfer_stem
from rtrl.runtime.config import TrainConfig, build_agent
from rtrl.runtime.learner import Learner
from rtrl.runtime.run_dir import RunDirectory

LOSS_COLUMNS = ("total_loss", "pg_loss", "baseline_loss", "entropy_loss", "grad_norm", "lr")


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else math.nan


class Progress:
    """Step counters, wall time and the recent episodes of a run: what a checkpoint carries besides weights."""

    def __init__(self, window: int, checkpoint: dict | None = None):
        checkpoint = checkpoint or {}
        self.steps, self.updates = checkpoint.get("steps", 0), checkpoint.get("updates", 0)
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
               "success_rate": _mean(e["success"] for e in self.recent)}
        row.update({key: _mean(s.get(key) for s in losses) for key in LOSS_COLUMNS + ("policy_lag",)})
        row["actor_restarts"] = self.restarts_before + actor_restarts
        return row

    def summary(self, run: RunDirectory, finished: bool) -> dict:
        return {"run": str(run.path), "steps": self.steps, "finished": finished, "episodes_in_window": len(self.recent),
                "mean_return": _mean(e["return"] for e in self.recent),
                "success_rate": _mean(e["success"] for e in self.recent)}


def train(cfg: TrainConfig, out: str | Path, force: bool = False, backend_factory=make_backend,
          progress: bool = True) -> dict:
    """Train R2AC (or a baseline core) as ``cfg`` says, in the run directory ``out``; return a summary.

    ``backend_factory(cfg, spec, model)`` provides the actors (default: local processes, or inline).
    """
    run = RunDirectory(out)
    checkpoint = run.prepare(cfg, force)
    device = cfg.torch_device()
    torch.set_num_threads(cfg.learner_threads)
    torch.manual_seed(cfg.seed)
    spec = EnvSpec.probe(cfg.env, cfg.env_options)
    model = build_agent(cfg, spec)
    if cfg.load_stem:
        transfer_stem(model, cfg.load_stem, cfg.load_fc, cfg.freeze_stem, resuming=checkpoint is not None)
    model.to(device)
    learner = Learner(model, cfg)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        learner.optimizer.load_state_dict(checkpoint["optimizer"])
        set_rng_states(checkpoint["rng"])
    counters = Progress(cfg.stats_window, checkpoint)
    if counters.steps >= cfg.total_steps:
        return counters.summary(run, finished=True)

    def save() -> None:
        run.save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict(),
                             "optimizer": learner.optimizer.state_dict(), "steps": counters.steps,
                             "updates": counters.updates, "wall_time": counters.wall_time(),
                             "recent_episodes": list(counters.recent), "rng": rng_states(),
                             "actor_restarts": counters.restarts_before + backend.actor_restarts})

    backend = backend_factory(cfg, spec, model)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.total_steps, initial=counters.steps, unit="step", dynamic_ncols=True, smoothing=0.1)
    frame_skip = frames_per_step(cfg.env, cfg.env_options)
    last_log = last_checkpoint = time.monotonic()
    steps_at_log, losses, interrupted = counters.steps, [], False
    log = run.metrics_log()
    try:
        while counters.steps < cfg.total_steps:
            batch, episodes = backend.next_batch()
            policy_lag = backend.version - batch.version.double().mean().item()
            losses.append({**learner.update(batch.to(device), counters.steps), "policy_lag": policy_lag})
            backend.publish(model)
            counters.steps += cfg.steps_per_update
            counters.updates += 1
            counters.recent.extend(episodes)
            if bar is not None:
                bar.update(cfg.steps_per_update)
            now = time.monotonic()
            if now - last_log >= cfg.log_interval or counters.steps >= cfg.total_steps:
                row = counters.metrics_row((counters.steps - steps_at_log) / (now - last_log), losses, frame_skip,
                                           backend.actor_restarts)
                log.write(row)
                if bar is not None:
                    bar.set_postfix(sps=f"{row['sps']:.0f}", ret=f"{row['mean_return']:.3f}",
                                    **({} if math.isnan(row["success_rate"]) else
                                       {"success": f"{row['success_rate']:.2f}"}))
                last_log, steps_at_log, losses = now, counters.steps, []
            if now - last_checkpoint >= cfg.checkpoint_interval:
                save()
                last_checkpoint = now
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
        backend.close()
        save()
        log.close()
    return counters.summary(run, finished=not interrupted)
