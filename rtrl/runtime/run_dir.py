"""The run directory of `rtrl train`:

    config.json       the full resolved settings
    metrics.csv       one row per log interval (``METRIC_COLUMNS``)
    tensorboard/      TensorBoard event files of the same numbers
    checkpoint.pt     model, optimizer, step counters, recent episodes, RNG states (written atomically)
    curve.png         the learning curve, drawn at the end by the command line

Running again on the same directory resumes it: same settings, or different ones with ``force``; the
runtime settings (``config.RUNTIME_SETTINGS``: backend, actors, device, ...) may differ without it.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from rtrl.records.files import write_atomically, write_text_atomically
from rtrl.records.metrics import MetricsLog, keep_rows_up_to
from rtrl.runtime.checkpoints import load_checkpoint
from rtrl.runtime.config import RUNTIME_SETTINGS, TrainConfig
from rtrl.settings import SettingError, literal

# frames = environment frames (steps × the Atari frame skip or DMLab action repeat, else = steps);
# policy_lag = learner weight version minus the version the batch's rollouts were made with (mean);
# actor_restarts = actors replaced after a failure since the run started
METRIC_COLUMNS = ("step", "frames", "wall_time", "sps", "updates", "episodes", "mean_return", "mean_length",
                  "success_rate", "total_loss", "pg_loss", "baseline_loss", "entropy_loss", "grad_norm", "lr",
                  "policy_lag", "actor_restarts")


class RunDirectory:
    """Creates, checks and resumes a run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.metrics_path = self.path / "metrics.csv"

    def existing_config(self) -> dict | None:
        return json.loads(self.config_path.read_text()) if self.config_path.exists() else None

    def prepare(self, cfg: TrainConfig, force: bool) -> dict | None:
        """Write config.json; return the checkpoint to resume from (or None for a fresh run)."""
        self.path.mkdir(parents=True, exist_ok=True)
        old = self.existing_config()
        new = cfg.to_dict()
        if old is not None:  # settings added to rtrl since the run started take their defaults
            old = {**TrainConfig().to_dict(), **old}
            differing = sorted(k for k in (set(old) | set(new)) - RUNTIME_SETTINGS if old.get(k) != new.get(k))
            if differing and not force:
                details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differing)
                raise SettingError(literal(f"{self.path} holds a run with a different config ({details})") + "; use the same "
                                   "settings to resume it, another run directory for a new run, or {force} to "
                                   "resume it with the new settings", force=True)
        write_text_atomically(self.config_path, json.dumps(new, indent=2) + "\n")
        checkpoint = load_checkpoint(self.checkpoint_path) if self.checkpoint_path.exists() else None
        keep_rows_up_to(self.metrics_path, METRIC_COLUMNS, checkpoint["steps"] if checkpoint else 0)
        return checkpoint

    def save_checkpoint(self, checkpoint: dict) -> None:
        write_atomically(self.checkpoint_path, lambda tmp: torch.save(checkpoint, tmp))

    def metrics_log(self) -> MetricsLog:
        return MetricsLog(self.metrics_path, METRIC_COLUMNS, tensorboard=self.path / "tensorboard")
