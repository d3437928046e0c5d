"""Signals while a command starts: installed before the first heavy import (torch, gymnasium, ...).

Importing the commands takes seconds. A Ctrl-C (SIGINT) or SIGTERM in that time must still stop the
command at once, with its exit code (130, 143) and no traceback: nothing has started, so there is nothing to
keep. A KeyboardInterrupt raised inside a library's import can be swallowed by its ``except:`` clauses,
so the handler ends the process itself. ``rtrl.cli.main`` replaces it by ``errors.signals_as_interrupt``
once the command runs. This module imports nothing heavy.
"""
from __future__ import annotations

import os
import signal
import sys

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def is_command_line() -> bool:
    """True in the process of the ``rtrl`` command (the console script or ``python -m rtrl``), not when a
    program (pytest, a user's script) imports the package."""
    argv = getattr(sys, "orig_argv", [])
    as_module = any(a == "-m" and b == "rtrl" for a, b in zip(argv, argv[1:]))
    return as_module or os.path.basename(sys.argv[0] if sys.argv else "") == "rtrl"


def _stop(signum, frame) -> None:
    name = "interrupted" if signum == signal.SIGINT else "terminated"
    try:
        if not _is_spawned_child():   # an actor stopped while it imports: its parent, the command, speaks
            os.write(2, f"rtrl: {name} while starting; nothing was run\n".encode())
    finally:
        os._exit(EXIT_CODES[signum])


def _is_spawned_child() -> bool:
    """True in a process that multiprocessing started (an actor re-imports the command's main module, and with it
    this handler). multiprocessing is already imported there; it is not imported here for the question."""
    mp = sys.modules.get("multiprocessing")
    return mp is not None and mp.parent_process() is not None


def install() -> None:
    """SIGINT and SIGTERM end the process at once with 130 / 143 (while the commands are imported)."""
    for signum in EXIT_CODES:
        signal.signal(signum, _stop)
