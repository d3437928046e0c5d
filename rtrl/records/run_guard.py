"""One guard for every directory a command writes a run into (train, copy-task, the suite's runs, eval).

``claim(path, kind)`` checks the path (not a file, not under one, creatable, writable), takes the
directory's ``run.lock`` (one writer at a time; the holder's pid is named to the next one) and refuses a
directory that holds another kind of run, naming what is there. The kind of run a directory holds is
recorded in ``run.json`` (``record_kind``); directories written before that file existed are recognised
by their files (``metrics.csv``'s header, config.json, results.json).

    lock = claim(out, "copy-task")   # RunDirectoryError (a ValueError: exit 2) for every refusal
    record_kind(out, "copy-task")
    ...
    lock.release()
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from rtrl.records.files import file_in_the_way, write_text_atomically
from rtrl.records.lock import DirectoryLock, LockedError
from rtrl.settings import SettingError, literal

KIND_FILE = "run.json"
KINDS = {"train": "a training run (`rtrl train`)", "copy-task": "a copy-task run (`rtrl copy-task`)"}
# the first columns of each kind's metrics.csv (before run.json existed, the header told the kinds apart)
_METRICS_HEADS = {("step", "frames"): "train", ("step", "sequences"): "copy-task"}
# files a run replaces that another program's directory may hold too: a run writes run.json (a training run also
# config.json) before them, so in a directory without it (held_kind: no run) they are the user's. (A copy-task
# directory holding only a metrics.csv with the copy task's header is an older copy-task run's, killed early:
# held_kind knows it by that header, and it is started anew.)
_SHARED_FILES = {"train": ("metrics.csv", "checkpoint.pt", "curve.png"), "copy-task": ("metrics.csv", "checkpoint.pt")}
# files only one kind of run writes
_OWN_FILES = {"config.json": "train", "tensorboard": "train", "results.json": "copy-task",
              "learning_curve.png": "copy-task"}


class RunDirectoryError(SettingError):
    """A run directory that cannot be used as asked; the message says why and the ways out (settings and
    ``out``, the directory, are named as in :class:`rtrl.settings.SettingError`)."""


def directory_error(path: str | Path, text: str, alternative: str = "", setting: str | None = "out") -> RunDirectoryError:
    """``text``; use another run directory (``setting``)[, or ``alternative``]. ``setting`` None: the
    directory is not a setting (``rtrl eval DIR``)."""
    if setting is None:
        return RunDirectoryError(literal(text + (f"; {alternative}" if alternative else "")))
    return RunDirectoryError(literal(text) + f"; use another run directory ({{{setting}:name}})" +
                             literal(f", or {alternative}" if alternative else ""), **{setting: str(path)})


def held_kind(path: str | Path) -> tuple[str | None, str]:
    """(the kind of run ``path`` holds or None, the file that says so)."""
    path = Path(path)
    marker = path / KIND_FILE
    if marker.exists():
        try:
            data = json.loads(marker.read_text())
            kind = data.get("kind") if isinstance(data, dict) else None
        except (OSError, ValueError):
            kind = None
        if kind not in KINDS:
            raise directory_error(path, f"{marker} does not say which kind of run {path} holds (accepted: a JSON "
                                  f"table with kind one of {', '.join(KINDS)})", "remove it if the directory is yours")
        return kind, str(marker)
    metrics = path / "metrics.csv"
    if metrics.is_file():
        try:
            with metrics.open(newline="", errors="replace") as f:
                head = tuple(next(csv.reader([f.readline(10_000)]), [])[:2])
        except (OSError, csv.Error):
            head = ()
        if head in _METRICS_HEADS:
            return _METRICS_HEADS[head], str(metrics)
    for name, kind in _OWN_FILES.items():
        if (path / name).exists():
            return kind, str(path / name)
    return None, ""


def record_kind(path: str | Path, kind: str) -> None:
    """Write ``run.json``: the directory holds a run of ``kind``."""
    write_text_atomically(Path(path) / KIND_FILE, json.dumps({"kind": kind}) + "\n")


def check_path(path: str | Path, setting: str | None = "out") -> Path:
    """``path`` as a run directory could be made of it: not empty, not a file, not under a file."""
    if str(path).strip() == "":
        if setting is None:
            raise RunDirectoryError("bad run directory ''; accepted: a directory path (not empty)")
        raise RunDirectoryError("bad {" + setting + "}; accepted: a directory path (not empty)", **{setting: str(path)})
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise directory_error(path, f"{path} is a file, not a run directory", setting=setting)
    blocking = file_in_the_way(path)
    if blocking is not None:
        raise directory_error(path, f"cannot create the run directory {path}: {blocking} is a file", setting=setting)
    return path


class RunGuard:
    """The claim on one run directory: ``acquire`` (create, lock, check the kind), then ``release``."""

    def __init__(self, path: str | Path, kind: str, setting: str | None = "out"):
        self.given, self.path, self.kind, self.setting = path, Path(path), kind, setting
        self.lock = DirectoryLock(self.path / "run.lock")
        self.created = False

    def error(self, text: str, alternative: str = "") -> RunDirectoryError:
        return directory_error(self.path, text, alternative, self.setting)

    def acquire(self, create: bool = True) -> "RunGuard":
        check_path(self.given, self.setting)
        if create:
            self.created = not self.path.exists()
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise self.error(f"cannot create the run directory {self.path}: {error.strerror or error}") from None
        try:
            self.lock.acquire()
        except LockedError as error:
            holder = error.holder
            self._drop_created()
            raise self.error(f"{self.path} is in use by another run (pid {holder.get('pid', 'unknown')}, started "
                             f"{holder.get('started', 'at an unknown time')}: {holder.get('command', '')}); wait "
                             "for it to end or stop it") from None
        except OSError as error:
            self._drop_created()
            if os.path.isdir(self.lock.path):
                raise self.error(f"{self.lock.path} is a directory, not a lock file",
                                 "remove it if no run uses this directory") from None
            raise self.error(f"cannot write in the run directory {self.path}: {error.strerror or error}") from None
        try:
            found, evidence = held_kind(self.path)
            if found is not None and found != self.kind:
                raise self.error(f"{self.path} holds {KINDS[found]} ({evidence}), not {KINDS[self.kind]}; "
                                 "nothing in it was changed")
            theirs = [name for name in _SHARED_FILES[self.kind] if (self.path / name).exists()]
            if found is None and create and theirs:   # (eval, create=False, writes eval.json alone)
                names = ", ".join(theirs)
                raise self.error(f"{self.path} holds {names} but no run of rtrl (no run.json): the run would replace "
                                 f"{'it' if len(theirs) == 1 else 'them'}; nothing in it was changed",
                                 f"move {names} out of it")
        except BaseException:
            self.release()
            raise
        return self

    def record(self) -> None:
        """Say in the directory that it holds a run of this guard's kind (call once the run has started)."""
        if not (self.path / KIND_FILE).exists():
            record_kind(self.path, self.kind)

    def _drop_created(self) -> None:
        if self.created and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()

    def release(self) -> None:
        """Release the lock; a directory this guard created and that stayed empty goes too."""
        self.lock.release()
        self._drop_created()

    def __enter__(self) -> "RunGuard":
        return self if self.lock.fd is not None else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
