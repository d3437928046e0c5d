"""Run an ``rtrl`` command as a child process that never outlives the process that started it.

The benchmark scripts under ``bench/`` run ``rtrl train`` and ``rtrl eval`` as children. A plain
``subprocess.run`` leaves the child training when the script is stopped (SIGTERM) or killed outright
(SIGKILL, the OOM killer): nobody then collects its result, and the run directory stays locked by a process
the user does not know about. :func:`run_child` ties the child to its parent:

- The child runs in a session of its own, so a Ctrl-C in the terminal reaches the parent only, and the parent
  passes on exactly one SIGINT: ``rtrl train`` stops with a checkpoint (a second SIGINT could land while the
  checkpoint is written). The parent waits for it, then raises :class:`Stopped`, so a script does not go on to
  its next run.
- SIGTERM to the parent does the same.
- If the parent dies without a word (SIGKILL), the kernel sends the child SIGINT (Linux's
  ``PR_SET_PDEATHSIG``); where that is not available, the child runs as before.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1


class Stopped(Exception):
    """The parent was asked to stop (SIGINT or SIGTERM); its child has stopped with a checkpoint."""

    def __init__(self, signum: int, returncode: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}; the child exited with {returncode}")
        self.signum, self.returncode = signum, returncode


def _stop_with_parent(parent: int) -> None:
    """In the child, between fork and exec: SIGINT when the parent dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGINT), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:       # the parent died before prctl took effect
        os._exit(1)


def stop_with_parent():
    """A ``preexec_fn`` for ``subprocess``: the child gets SIGINT when this process dies (None off Linux)."""
    parent = os.getpid()
    return (lambda: _stop_with_parent(parent)) if sys.platform.startswith("linux") else None


def run_child(cmd: Sequence[str], *, cwd=None, env=None) -> int:
    """Run ``cmd`` to its end and return its exit code; see the module's docstring for how it stops.
    Only from the main thread (signal handlers)."""
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, start_new_session=True, preexec_fn=stop_with_parent())
    received: list[int] = []

    def forward(signum, frame):
        if not received:
            received.append(signum)
            try:
                proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if received:
        raise Stopped(received[0], code)
    return code


def check_child(cmd: Sequence[str], *, cwd=None, env=None) -> None:
    """:func:`run_child`, raising ``subprocess.CalledProcessError`` on a non-zero exit."""
    code = run_child(cmd, cwd=cwd, env=env)
    if code:
        raise subprocess.CalledProcessError(code, list(cmd))


def script_main(main) -> int:
    """A benchmark script's entry point: ``main()``'s exit code; when the script was stopped while a child ran, a
    one-line message and 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM); when a child failed (its own
    message is on stderr already: a bad flag, say), one line naming the command and the child's exit code."""
    script = os.path.basename(sys.argv[0])
    try:
        return main()
    except Stopped as stop:
        print(f"{script}: {stop}; the run's checkpoint is written, run the same command to go on", file=sys.stderr)
        return 128 + stop.signum
    except subprocess.CalledProcessError as failed:
        print(f"{script}: `{' '.join(map(str, failed.cmd))}` exited with {failed.returncode} (its message is above); "
              "the records so far are kept", file=sys.stderr)
        return failed.returncode if 0 < failed.returncode < 256 else 1
