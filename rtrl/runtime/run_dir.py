"""The run directory of `rtrl train`:

    config.json       the full resolved settings
    metrics.csv       one row per log interval (``rtrl.runtime.session``: the run's columns and the learner's)
    tensorboard/      TensorBoard event files of the same numbers
    wandb.json        with --wandb: the id of the run's W&B run and the last step it got (``rtrl.records.wandb_log``)
    wandb/            with --wandb: W&B's own files (offline runs for `wandb sync`), unless WANDB_DIR is set
    checkpoint.pt     model, learner state (optimizer...), step counters, recent episodes, RNG states (written
                      atomically; ``CHECKPOINT_FORMAT``)
    curve.png         the learning curve, drawn at the end by the command line
    run.lock          while a run writes here: its pid, start time and command
    run.json          the kind of run the directory holds (``rtrl.records.run_guard``: other commands refuse it)

Running again on the same directory resumes it: same settings, or different ones with ``force``; the
runtime settings (``config.RUNTIME_SETTINGS``: backend, actors, device, ...) may differ without it, and so
may a larger ``total_steps`` when the learner's steps do not follow the budget (``extends``: the streaming
learner's; the IMPALA learner's learning rate decays over it). One
run at a time: a second one is refused with the first one's pid; the lock of a killed run does not
block (the kernel drops it with the process). A SIGKILL at any moment leaves the last complete
checkpoint.pt and config.json (both are replaced atomically); the rerun trims metrics.csv after the
checkpoint's step (and rows cut short), hides TensorBoard's events after it and removes half-written
temporary files. Nothing in the directory changes until the new run has checked what it found there.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from rtrl.records.files import remove_stale_temporaries, write_bytes_atomically, write_text_atomically
from rtrl.records.run_guard import RunDirectoryError, RunGuard
from rtrl.records.metrics import MetricsError, MetricsLog, complete_rows, keep_rows_up_to
from rtrl.runtime.checkpoints import (CheckpointError, check_finite, checkpoint_bytes, load_checkpoint, load_weights,
                                      set_rng_states)
from rtrl.models import upgrade_core_alias
from rtrl.runtime.config import RUNTIME_SETTINGS, TrainConfig
from rtrl.settings import literal

# settings under which a checkpoint's weights load (the same shapes) but mean other weights: refused even with force
WEIGHT_MEANING_SETTINGS = ("phase",)

# The checkpoint format this version writes. 1 (no "format" key): the learner's state was the
# optimizer's, under "optimizer" (and the oldest held numpy's RNG state as an array); 2: under "learner",
# the state dict of whichever learner trains the run. Both resume.
CHECKPOINT_FORMAT = 2

log = logging.getLogger(__name__)


class RunDirectory:
    """Creates, checks, locks and resumes a run directory: ``open``, then ``commit``, then ``close``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.metrics_path = self.path / "metrics.csv"
        self.guard = RunGuard(path, "train")   # as given: '' is refused, not taken for "."
        self.lock = self.guard.lock

    @property
    def created(self) -> bool:
        return self.guard.created

    def _error(self, text: str, alternative: str = "") -> RunDirectoryError:
        """``text``; use another run directory (``out``)[, or ``alternative``]."""
        return self.guard.error(text, alternative)

    def open(self, cfg: TrainConfig, force: bool, extends: bool = False) -> dict | None:
        """Take the directory for a run of ``cfg``: create it, lock it, check what it holds (another kind of
        run is refused: ``rtrl.records.run_guard``). Returns the checkpoint to resume from (None for a fresh
        run). Writes nothing but the lock file. ``extends``: a larger ``total_steps`` than the run's
        continues it without ``force``."""
        self.guard.acquire()
        try:
            return self._resumable_checkpoint(cfg, force, extends)
        except BaseException:
            self.close()
            raise

    def _resumable_checkpoint(self, cfg: TrainConfig, force: bool, extends: bool) -> dict | None:
        if self.metrics_path.exists():   # the run trims it when it starts: refuse a file it cannot read now
            try:
                complete_rows(self.metrics_path)
            except MetricsError as error:
                raise self._error(f"{error}; it was left as it is", "move metrics.csv out of it") from None
        old = self._existing_config(force)
        checkpoint = None
        if self.checkpoint_path.exists():
            try:
                checkpoint = load_checkpoint(self.checkpoint_path)
                check_finite(checkpoint, self.checkpoint_path)
            except CheckpointError as error:
                raise self._error(f"{error}; it was left as it is",
                                  "move checkpoint.pt out of it to start this directory over from step 0") from None
            if old is None:
                old = checkpoint["config"]
        if old is None or (force and checkpoint is None):   # forced, only weights' meaning is checked
            return checkpoint
        # settings added since take their defaults; an old core name is spelled as cell and learning
        old, new = {**TrainConfig().to_dict(), **upgrade_core_alias(old)}, cfg.to_dict()
        if force:
            self._refuse_reinterpreted_weights(old, new)
        else:
            differing = sorted(k for k in (set(old) | set(new)) - RUNTIME_SETTINGS if old.get(k) != new.get(k))
            longer = extends and new["total_steps"] > old["total_steps"]   # a longer budget: the same run, continued
            if set(differing) - ({"total_steps"} if longer else set()):
                details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differing)
                why = "" if differing != ["total_steps"] else (
                    "; it continues only to a larger total_steps" if extends else
                    "; this learner's steps follow total_steps (the IMPALA learner's learning rate decays to 0 over "
                    "it), so another budget changes the run from its start")
                raise RunDirectoryError(literal(f"{self.path} holds a run with a different config ({details}){why}") +
                                        "; use the same settings to resume it, another run directory ({out:name}) "
                                        "for a new run, or {force} to resume it with the new settings",
                                        force=True, out=str(self.path))
        return checkpoint

    def _refuse_reinterpreted_weights(self, old: dict, new: dict) -> None:
        """Even forced, a setting under which the checkpoint's weights load (the same shapes) but mean other weights
        is refused: under another ``phase`` the stored angles p = log θ would be read as θ itself, or back. ``old``,
        ``new``: the run's settings and these, every one spelled out."""
        for name in WEIGHT_MEANING_SETTINGS:
            if old.get(name) != new.get(name) and old.get("cell") == new.get("cell"):
                raise self._error(f"{self.checkpoint_path} holds weights trained with {name}={old.get(name)!r}: under "
                                  f"{name}={new.get(name)!r} the same numbers would be read as other weights, so not "
                                  "even a forced resume changes it", f"resume it with {name}={old.get(name)!r}")

    def _existing_config(self, force: bool) -> dict | None:
        if not self.config_path.exists():
            return None
        try:
            config = json.loads(self.config_path.read_text())
            if not isinstance(config, dict):
                raise ValueError(f"it holds a {type(config).__name__}, not a table of settings")
            return config
        except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            if force:
                log.warning("%s cannot be read (%s); forced: it is replaced by these settings", self.config_path, error)
                return None
            raise RunDirectoryError(literal(f"{self.config_path} cannot be read ({error}); it was left as it is. "
                                            "Resume the run with these settings with ") + "{force} (config.json is "
                                    "then rewritten), or use another run directory ({out:name})",
                                    force=True, out=str(self.path)) from None

    def restore(self, checkpoint: dict, model, learner, learner_name: str | None = None) -> None:
        """The checkpoint's weights, learner state and random-number states into this run's objects;
        ``learner_name``: this run's learner (impala, stream), refused when the checkpoint's is another."""
        saved = (checkpoint.get("config") or {}).get("learner", "impala")
        if learner_name is not None and saved != learner_name:
            raise self._error(f"{self.checkpoint_path} holds the state of the {saved} learner (its optimizer or its "
                              f"streams' traces), which the {learner_name} learner cannot take up",
                              f"resume it under its own learner ({saved})")
        try:
            load_weights(model, checkpoint, self.checkpoint_path)
            try:   # format 1 held the IMPALA learner's one piece of state, its optimizer's, at the top
                learner.load_state_dict(checkpoint["learner"] if "learner" in checkpoint
                                        else {"optimizer": checkpoint["optimizer"]})
                set_rng_states(checkpoint["rng"])
            except (KeyError, TypeError, ValueError, RuntimeError) as error:
                raise CheckpointError(f"the learner's or random-number state in {self.checkpoint_path} does not "
                                      f"fit these settings ({error})") from None
        except CheckpointError as error:
            raise self._error(f"{error}; a checkpoint resumes only under settings that keep the model's shape and "
                              "its trained parameters (core, sizes, stem, critic, freeze_stem)") from None

    def check_free_space(self, checkpoint_size: int) -> None:
        """Refuse to start when the disk cannot hold a new checkpoint beside the old one (and some metrics)."""
        free = shutil.disk_usage(self.path).free
        needed = 2 * checkpoint_size + 10_000_000
        if free < needed:
            raise self._error(f"only {free / 1e6:.1f} MB are free on the file system of {self.path}; a checkpoint of "
                              f"this model takes about {checkpoint_size / 1e6:.1f} MB and replacing it needs room for "
                              f"two plus the metrics ({needed / 1e6:.1f} MB): free some space")

    def commit(self, cfg: TrainConfig, checkpoint: dict | None, columns: tuple[str, ...]) -> None:
        """The run has started: write config.json, trim metrics.csv to the checkpoint (its header becomes
        ``columns``), drop stale temporaries."""
        for stale in remove_stale_temporaries(self.path, ("checkpoint.pt", "config.json", "metrics.csv")):
            log.info("removed %s, left by a run that was killed while writing it", stale)
        write_text_atomically(self.config_path, json.dumps(cfg.to_dict(), indent=2) + "\n")
        self.guard.record()
        keep_rows_up_to(self.metrics_path, columns, checkpoint["steps"] if checkpoint else 0)

    def save_checkpoint(self, checkpoint: dict) -> None:
        try:
            write_bytes_atomically(self.checkpoint_path, checkpoint_bytes(checkpoint))
        except OSError as error:
            raise OSError(error.errno, f"{error.strerror}; the previous checkpoint.pt is kept",
                          str(self.checkpoint_path)) from error

    def metrics_log(self, steps: int, columns: tuple[str, ...], cfg: TrainConfig | None = None,
                    resuming: bool = False) -> MetricsLog:
        """The metrics writer of a run resuming at ``steps`` (TensorBoard hides older sessions' later events);
        with ``cfg.wandb`` it mirrors the rows to the directory's W&B run too (continued when ``resuming``)."""
        wandb = None
        if cfg is not None and cfg.wandb:
            from rtrl.records.wandb_log import WandbWriter
            wandb = WandbWriter(self.path, cfg.to_dict(), resuming, project=cfg.wandb_project, group=cfg.wandb_group,
                                name=cfg.wandb_name)
        try:
            return MetricsLog(self.metrics_path, columns, tensorboard=self.path / "tensorboard",
                              purge_step=steps + 1, wandb=wandb)
        except BaseException:
            if wandb is not None:
                wandb.close()
            raise

    def close(self) -> None:
        """Release the lock; a directory this run created and left empty (it failed at start-up) goes too."""
        self.guard.release()
