"""How a command ends: one clear message for every error, and the exit codes the README documents.

    0    done
    1    the run failed after it started: an actor or its environment crashed, the model diverged
         (max_nonfinite updates in a row), a file could not be written (a full disk), or an unexpected
         error (a bug in rtrl)
    2    bad input, refused before anything ran: a flag, a config file, an env id or its options, a run
         directory, a checkpoint, a missing optional package
    130  interrupted by SIGINT (Ctrl-C): a training run writes its checkpoint first
    143  interrupted by SIGTERM: the same

No error prints a Python traceback: an actor's traceback (its environment's code) and an unexpected
error's are written to a file that the message names.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import sys
import tempfile
import threading
import traceback
from pathlib import Path

from rtrl.cli.flags import render_error
from rtrl.envs import MissingPackage, UserEnvError
from rtrl.runtime.backends import ActorError
from rtrl.runtime.session import NonFiniteError

DONE, FAILED, BAD_INPUT = 0, 1, 2
SIGNAL_EXITS = {signal.SIGINT: 130, signal.SIGTERM: 143}
_received = [signal.SIGINT]   # the last interrupting signal of this process


def interrupted_exit_code() -> int:
    """130 if the last interruption was SIGINT (Ctrl-C), 143 if it was SIGTERM."""
    return SIGNAL_EXITS[_received[-1]]


@contextlib.contextmanager
def signals_as_interrupt():
    """Within the block SIGINT and SIGTERM both raise KeyboardInterrupt (training stops with a checkpoint);
    :func:`interrupted_exit_code` then tells which one arrived."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        _received.append(signum)
        raise KeyboardInterrupt

    _received[:] = [signal.SIGINT]
    previous = {s: signal.signal(s, handler) for s in SIGNAL_EXITS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _StderrHandler(logging.Handler):
    """Log records as ``rtrl train: note``/``warning: ...`` lines that do not tear a progress bar."""

    def __init__(self, command: str):
        super().__init__(logging.INFO)
        self.command = command

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm
        kind = "note" if record.levelno < logging.WARNING else record.levelname.lower()
        tqdm.write(f"{self.command}: {kind}: {record.getMessage()}", file=sys.stderr)


@contextlib.contextmanager
def log_to_stderr(command: str):
    """The library's log (the ``rtrl`` logger, INFO and up) on stderr while a command runs."""
    logger, handler = logging.getLogger("rtrl"), _StderrHandler(command)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def report(command: str, error: Exception, trace_dir: str | None = None) -> int:
    """Print ``error`` as one message on stderr and return its exit code (see the module docstring)."""
    trace = None
    if isinstance(error, ActorError):
        message, code, trace = str(error).splitlines()[0], FAILED, error.trace
    elif isinstance(error, NonFiniteError):
        message, code = render_error(error), FAILED
    elif isinstance(error, UserEnvError):   # the user's env raised: bad input about their code, its traceback kept
        message, code, trace = str(error).splitlines()[0], BAD_INPUT, error.trace
    elif isinstance(error, MissingPackage):
        message, code = str(error), BAD_INPUT
    elif isinstance(error, ValueError):   # SettingError and the other errors of input the library names
        message, code = render_error(error), BAD_INPUT
    elif isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        message, code = f"{where}{error.strerror or error}", FAILED
    elif isinstance(error, ImportError):
        message, code = f"cannot import {error.name or 'a module'} ({error}); install the package that provides it", BAD_INPUT
    else:
        message, code = f"unexpected {type(error).__name__}: {error}", FAILED
        trace = "".join(traceback.format_exception(error))
    if trace is not None:
        message += f" (traceback: {_keep(trace, command, trace_dir)})"
    print(f"{command}: error: {message}", file=sys.stderr)
    return code


def _keep(trace: str, command: str, trace_dir: str | None) -> str:
    """Write ``trace`` to ``trace_dir/error.txt`` (a run directory) or a temporary file; its path."""
    name = f"{command.replace(' ', '-')}-error.txt"
    try:
        if trace_dir and Path(trace_dir).is_dir():
            path = Path(trace_dir) / name
            path.write_text(trace)
            return str(path)
        with tempfile.NamedTemporaryFile("w", prefix="rtrl-", suffix=f"-{name}", delete=False) as f:
            f.write(trace)
            return f.name
    except OSError:   # nowhere to write (a full disk): the message still ends the command
        return "not kept: no file could be written"
