"""One writer per directory: an advisory lock file that names its holder.

``DirectoryLock(path).acquire()`` takes an exclusive ``flock`` on ``path`` (created if needed) and writes
the holder's pid, start time and command into it. The kernel drops the lock when the holder's process
ends, however it ends: a lock file left behind by a killed process does not block the next one (its
text is only shown while a live process holds the lock). ``release()`` removes the file.
"""
from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path


class LockedError(RuntimeError):
    """The lock is held by another live process; ``holder`` is the text it wrote (pid, start, command)."""

    def __init__(self, path: Path, holder: dict[str, str]):
        self.path, self.holder = path, holder
        super().__init__(f"{path} is held by pid {holder.get('pid', '(unknown)')}")


class DirectoryLock:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self) -> "DirectoryLock":
        """Take the lock or raise :class:`LockedError`; an OSError if the file cannot be created."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _parse(os.pread(fd, 4096, 0))
                os.close(fd)
                raise LockedError(self.path, holder) from None
            try:  # the previous holder may have removed the file between our open and our flock
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        text = f"pid {os.getpid()}\nstarted {time.strftime('%Y-%m-%d %H:%M:%S')}\ncommand {' '.join(sys.argv)}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)   # still holding the lock: nobody else can be using the file
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _parse(data: bytes) -> dict[str, str]:
    holder = {}
    for line in data.decode(errors="replace").splitlines():
        key, _, value = line.partition(" ")
        holder[key] = value
    return holder
