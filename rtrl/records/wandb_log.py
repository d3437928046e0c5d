"""Weights & Biases: the rows of metrics.csv and the run's config, mirrored into one W&B run per run directory.

``wandb`` is optional (``pip install 'rtrl[wandb]'``) and imported only here, when a run asks for it
(``import_wandb``: a :class:`SettingError` naming ``--wandb`` and the install command otherwise).

One run directory is one W&B run, across every session that resumes it: its id is chosen when the
directory first logs to W&B and kept in ``wandb.json`` beside metrics.csv, with the highest step W&B
has been given (updated before each checkpoint and at the end). A resumed session reopens that run
(``resume="allow"``; its config is updated to the session's, runtime settings may differ). W&B's step
is the agent step and must increase: a session resumed from a checkpoint at step S writes its rows
after S again (metrics.csv is trimmed to S), and the rows up to the step ``wandb.json`` records are
skipped here: W&B keeps the killed session's values for them (it would drop the repeats anyway,
with a warning). A row at a step W&B got after the last record (the session was killed between two
checkpoints) is sent again; W&B ignores it, which is not an error. A fresh run (no checkpoint) in the
directory starts a new W&B run.

``WANDB_MODE=offline`` works without a network: the run's records stay in W&B's directory (``wandb/``
in the run directory, or under ``WANDB_DIR`` when that is set) for ``wandb sync``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import string
import secrets
from pathlib import Path

from rtrl.records.files import write_text_atomically
from rtrl.settings import SettingError, literal

__all__ = ["INSTALL", "ID_FILE", "import_wandb", "WandbWriter", "new_run_id", "read_run_record"]

INSTALL = "pip install 'rtrl[wandb]'"
ID_FILE = "wandb.json"
DEFAULT_PROJECT = "rtrl"
log = logging.getLogger(__name__)


def import_wandb():
    """The ``wandb`` module, or a SettingError naming ``--wandb`` and the command that installs it."""
    try:
        import wandb
    except ImportError as error:
        raise SettingError("{wandb} needs the Python package 'wandb', which cannot be imported here " +
                           literal(f"({error}); install it with: {INSTALL}"), wandb=True) from None
    return wandb


def new_run_id() -> str:
    """A W&B run id: 16 lower-case letters and digits (what W&B accepts, unlikely to repeat)."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(16))


def read_run_record(run_dir: str | Path) -> dict | None:
    """``wandb.json`` of ``run_dir`` as {"id": ..., "step": ...}, or None when there is none or it cannot be
    read (a note is logged: the run then starts a new W&B run)."""
    path = Path(run_dir) / ID_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(record, dict) and isinstance(record.get("id"), str) and record["id"]):
            raise ValueError("it holds no run id")
        return {"id": record["id"], "step": record.get("step")}
    except (OSError, ValueError) as error:
        log.warning("%s cannot be read (%s); this session logs to a new W&B run", path, error)
        return None


class WandbWriter:
    """The W&B run of ``run_dir``: ``write`` a metrics row (numbers only, against ``row[step_column]``),
    ``flush`` (records the last step in wandb.json), ``close`` (finishes the run).

    ``resuming``: the session resumes a checkpoint, so the W&B run recorded in the directory (if any) is
    continued; otherwise a new one starts. ``config``: the run's settings, logged as the W&B config.
    """

    def __init__(self, run_dir: str | Path, config: dict, resuming: bool, project: str = "", group: str = "",
                 name: str = "", step_column: str = "step"):
        wandb = import_wandb()
        self.run_dir, self.step_column = Path(run_dir), step_column
        record = read_run_record(self.run_dir) if resuming else None
        self.id = record["id"] if record else new_run_id()
        step = record.get("step") if record else None
        self.last_step = step if isinstance(step, (int, float)) and not isinstance(step, bool) else -math.inf
        self.skipped = 0
        self._save_record()   # before W&B starts: the id is the directory's from now on
        # read here, not once per process as wandb's settings are: each run of a process gets its own
        where = os.environ.get("WANDB_DIR") or str(self.run_dir)
        try:
            self.run = wandb.init(id=self.id, resume="allow", project=project or os.environ.get("WANDB_PROJECT")
                                  or DEFAULT_PROJECT, group=group or None, name=name or self.run_dir.resolve().name,
                                  dir=where, settings=wandb.Settings(console="off"))
            self.run.config.update(config, allow_val_change=True)
        except Exception as error:   # wandb's own (no API key, a server it cannot reach, a bad project name)
            raise SettingError("{wandb} could not start the W&B run " + literal(
                f"{self.id} ({type(error).__name__}: {error}); log in with `wandb login`, or set WANDB_MODE=offline "
                "to keep the run's records on this machine (`wandb sync` uploads them later)"), wandb=True) from None
        if record:
            log.info("logging to W&B run %s again (from %s)", self.id, self.run_dir / ID_FILE)

    def _save_record(self) -> None:
        step = None if self.last_step == -math.inf else self.last_step
        write_text_atomically(self.run_dir / ID_FILE, json.dumps({"id": self.id, "step": step}) + "\n")

    def write(self, row: dict) -> None:
        step = row[self.step_column]
        if step <= self.last_step:   # W&B holds this step already (a resumed session repeats it): skipped
            self.skipped += 1
            return
        numbers = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and math.isfinite(v)}
        self.run.log(numbers, step=int(step))
        self.last_step = step

    def flush(self) -> None:
        self._save_record()

    def close(self) -> None:
        if self.skipped:
            log.info("%d metrics rows at steps W&B run %s already holds were not sent again (metrics.csv has "
                     "them)", self.skipped, self.id)
        self._save_record()
        self.run.finish()
