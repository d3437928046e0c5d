"""One session of a training run: everything ``train`` does besides learning.

The session owns the run directory (lock, resume, config.json), the model's construction and restore,
the counters a checkpoint carries, metrics.csv's rows and their cadence, the checkpoints and theirs,
the count of skipped (non-finite) updates, the progress bar, and how the session ends: Ctrl-C (a
KeyboardInterrupt) stops it with a checkpoint, and running again resumes. An update with a non-finite
loss or gradient is skipped, counted (``nonfinite_updates``) and logged; ``max_nonfinite`` of them in a
row stop the run with :class:`NonFiniteError`, and checkpoint.pt keeps the last good state (no
checkpoint is written while updates fail, nor one whose weights are not finite). A full disk (an
``OSError``) ends it without a checkpoint: the last one written stays.
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
from rtrl.runtime.checkpoints import estimated_checkpoint_size, nonfinite_tensors, rng_states, transfer_stem
from rtrl.runtime.config import TrainConfig, build_agent, check_sensitivity_memory
from rtrl.runtime.experience import Experience
from rtrl.runtime.run_dir import CHECKPOINT_FORMAT, RunDirectory
from rtrl.runtime.sizes import check_train_env
from rtrl.settings import SettingsMessage, literal

# metrics.csv's columns: the run's, then the learner's own (``Learner.metrics``), then these.
# frames = environment frames (steps × the Atari frame skip or DMLab action repeat, else = steps);
# actor_restarts = actors replaced after a failure since the run started
RUN_COLUMNS = ("step", "frames", "wall_time", "sps", "updates", "episodes", "mean_return", "mean_length",
               "success_rate")
COUNT_COLUMNS = ("nonfinite_updates", "actor_restarts")
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

    def metrics_row(self, sps: float, stats: list[dict], metrics: tuple[str, ...], frames_per_step: int = 1,
                    actor_restarts: int = 0) -> dict:
        """A metrics.csv row: the run's numbers, the mean of each of the learner's ``metrics`` over the
        updates since the last row (``stats``), and the counters."""
        row = {"step": self.steps, "frames": self.steps * frames_per_step, "wall_time": round(self.wall_time(), 3),
               "sps": sps, "updates": self.updates, "episodes": len(self.recent),
               "mean_return": _mean(e["return"] for e in self.recent),
               "mean_length": _mean(e["length"] for e in self.recent),
               "success_rate": _mean(e["success"] for e in self.recent)}
        row.update({key: _mean(s.get(key) for s in stats) for key in metrics})
        row.update(nonfinite_updates=self.nonfinite, actor_restarts=self.restarts_before + actor_restarts)
        return row

    def summary(self, run: RunDirectory, finished: bool) -> dict:
        return {"run": str(run.path), "steps": self.steps, "finished": finished, "episodes_in_window": len(self.recent),
                "mean_return": _mean(e["return"] for e in self.recent),
                "success_rate": _mean(e["success"] for e in self.recent), "nonfinite_updates": self.nonfinite,
                "wall_time": round(self.wall_time(), 3)}   # seconds, every session of the run


class RunSession:
    """``with RunSession(cfg, out) as session``: open (lock, find the checkpoint to resume), ``build`` the
    model and learner (restored), ``attach`` the experience source (config.json, metrics.csv, a first
    checkpoint), ``record`` each update; leaving the block closes the source, writes the last checkpoint
    and releases the directory. A KeyboardInterrupt inside an attached session ends it as a checkpointed
    stop (``summary()["finished"]`` is False), not as an error. ``extends``: the run may resume with a larger
    ``total_steps`` without ``force`` (its learner's ``LearnerKind.extends``)."""

    def __init__(self, cfg: TrainConfig, out: str | Path, force: bool = False, progress: bool = True,
                 extends: bool = False):
        self.cfg, self.force, self.show_progress, self.extends = cfg, force, progress, extends
        self.run = RunDirectory(out)
        self.model = self.learner = self.source = self.log = self.bar = None
        self.interrupted, self.save_at_end, self.in_a_row = False, True, 0

    def __enter__(self) -> "RunSession":
        self.checkpoint = self.run.open(self.cfg, self.force, self.extends)
        self.progress = Progress(self.cfg.stats_window, self.checkpoint)
        self.saved_step = self.progress.steps
        return self

    def build(self, spec: EnvSpec, make_learner, state_copies: int):
        """The agent ``cfg`` describes and ``make_learner(model, cfg)``, both restored from the checkpoint;
        refused before anything large is allocated when ``state_copies`` environment states with RTRL
        sensitivities would not fit, or the disk cannot hold a checkpoint."""
        cfg = self.cfg
        device = cfg.torch_device()
        torch.set_num_threads(cfg.learner_threads)
        check_train_env(cfg, spec, state_copies)   # before the model is allocated: the env's widths counted too
        torch.manual_seed(cfg.seed)
        model = build_agent(cfg, spec)
        check_sensitivity_memory(cfg, model, state_copies)
        if cfg.load_stem:
            transfer_stem(model, cfg.load_stem, cfg.load_fc, cfg.freeze_stem, resuming=self.checkpoint is not None)
        self.model = model.to(device)
        self.learner = make_learner(self.model, cfg)
        if self.checkpoint is not None:
            self.run.restore(self.checkpoint, self.model, self.learner, cfg.learner)
        self.run.check_free_space(estimated_checkpoint_size(self.model, self.learner))
        return self.model, self.learner

    @property
    def done(self) -> bool:
        return self.progress.steps >= self.cfg.total_steps

    def attach(self, source):
        """Start learning from ``source`` (closed with the session): config.json, metrics.csv trimmed to the
        checkpoint, the progress bar, and a first checkpoint of a fresh run (from now on a killed run
        always leaves one to resume)."""
        self.source, cfg = source, self.cfg
        self.metrics = tuple(self.learner.metrics)
        columns = RUN_COLUMNS + self.metrics + COUNT_COLUMNS
        self.run.commit(cfg, self.checkpoint, columns)
        self.log = self.run.metrics_log(self.progress.steps, columns, cfg, resuming=self.checkpoint is not None)
        if self.show_progress:
            from tqdm import tqdm
            self.bar = tqdm(total=cfg.total_steps, initial=self.progress.steps, unit="step", dynamic_ncols=True,
                            smoothing=0.1)
        self.frame_skip = frames_per_step(cfg.env, cfg.env_options)
        self.last_log = self.last_checkpoint = time.monotonic()
        self.steps_at_log, self.stats = self.progress.steps, []
        if self.checkpoint is None:
            self.save()
        return source

    def record(self, experience: Experience, stats: dict) -> None:
        """Count one update on ``experience`` (skipped when ``stats["nonfinite"]`` names terms); write a
        metrics row and a checkpoint when their intervals have passed; stop a run that keeps failing."""
        cfg, progress = self.cfg, self.progress
        progress.steps += experience.steps
        progress.recent.extend(experience.episodes)
        if stats["nonfinite"]:
            progress.nonfinite += 1
            self.in_a_row += 1
            terms = ", ".join(f"{k}={stats[k]}" for k in stats["nonfinite"])
            logger.warning("update skipped at step %d: non-finite %s (%d in a row; the run stops after %d)",
                           progress.steps, terms, self.in_a_row, cfg.max_nonfinite)
        else:
            progress.updates += 1
            self.in_a_row = 0
            self.stats.append(stats)
        stopping = self.in_a_row >= cfg.max_nonfinite
        if self.bar is not None:
            self.bar.update(experience.steps)
        now = time.monotonic()
        if now - self.last_log >= cfg.log_interval or self.done or stopping:
            self._write_row(now)
        if stopping:
            self.save_at_end = False
            if cfg.learner == "stream":   # its step is ObGD's, not the optimizer's learning rate
                hint = "Lower the step size ({stream_lr}) or raise ObGD's overshooting bounds ({kappa_value}, {kappa_policy})"
                values = dict(stream_lr=cfg.stream_lr, kappa_value=cfg.kappa_value, kappa_policy=cfg.kappa_policy)
            else:
                hint, values = "Lower the learning rate ({lr})", dict(lr=cfg.lr)
            raise NonFiniteError(
                "{max_nonfinite:name}=" + literal(
                    f"{cfg.max_nonfinite} updates in a row had a non-finite loss or gradient (the last: {terms} "
                    f"at step {progress.steps}); the run stopped and checkpoint.pt keeps the last good state "
                    f"(step {self.saved_step}). ") + hint + ", or look for NaN or infinite observations and "
                "rewards from the environment", max_nonfinite=cfg.max_nonfinite, **values)
        if now - self.last_checkpoint >= cfg.checkpoint_interval:
            self.save()
            self.last_checkpoint = now

    def _write_row(self, now: float) -> None:
        progress = self.progress
        row = progress.metrics_row((progress.steps - self.steps_at_log) / max(now - self.last_log, 1e-9), self.stats,
                                   self.metrics, self.frame_skip, self.source.actor_restarts)
        self.log.write(row)
        if self.bar is not None:
            self.bar.set_postfix(sps=f"{row['sps']:.0f}", ret=f"{row['mean_return']:.3f}",
                                 **({} if math.isnan(row["success_rate"]) else {"success": f"{row['success_rate']:.2f}"}))
        self.last_log, self.steps_at_log, self.stats = now, progress.steps, []

    def save(self) -> None:
        """checkpoint.pt now, unless the last update failed or the weights are not finite (the last good one stays)."""
        if self.in_a_row:
            return
        broken = nonfinite_tensors(self.model.state_dict())
        if broken:
            logger.warning("checkpoint not written: the weights are not finite (%s); checkpoint.pt keeps step %d",
                           ", ".join(broken[:3]), self.saved_step)
            return
        self.log.flush()   # TensorBoard's events up to the checkpoint are on disk before it is
        progress = self.progress
        self.run.save_checkpoint({
            "format": CHECKPOINT_FORMAT, "config": self.cfg.to_dict(), "model": self.model.state_dict(),
            "learner": self.learner.state_dict(), "steps": progress.steps, "updates": progress.updates,
            "wall_time": progress.wall_time(), "recent_episodes": list(progress.recent),
            "nonfinite_updates": progress.nonfinite, "rng": rng_states(),
            "actor_restarts": progress.restarts_before + self.source.actor_restarts})
        self.saved_step = progress.steps

    def summary(self) -> dict:
        return self.progress.summary(self.run, finished=not self.interrupted)

    def __exit__(self, kind, error, trace) -> bool:
        attached = self.log is not None
        if kind is not None and issubclass(kind, OSError):   # a write failed (a full disk): the last checkpoint stays
            self.save_at_end = False
        self.interrupted = kind is not None and issubclass(kind, KeyboardInterrupt)
        try:
            if self.bar is not None:
                self.bar.close()
            if self.source is not None:
                self.source.close()
            if attached and self.save_at_end:
                self.save()
        finally:
            if attached:
                self.log.close()
            self.run.close()   # a directory this session created and left empty goes again
        return self.interrupted and attached
