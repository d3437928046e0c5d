"""Writing files so that a reader (or a crash) never sees half of one; reading a user's text file with an error
that names it."""
from __future__ import annotations

import os
from pathlib import Path

TMP_SUFFIX = ".tmp"


def file_in_the_way(path: str | os.PathLike) -> Path | None:
    """The first of ``path``'s parents that exists as something other than a directory (a file where a directory
    must be), or None: nothing can be made under it."""
    return next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)


def why_no_file_there(path: str | os.PathLike) -> str | None:
    """Why no file can be written at ``path`` ("it is a directory", or which of its parents is a file), or None."""
    if Path(path).is_dir():
        return "it is a directory"
    blocking = file_in_the_way(path)
    return None if blocking is None else f"{blocking} is a file, not a directory"


def write_atomically(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` on a sibling temporary file, flush it to the disk, then move it into place
    with os.replace: a reader, a SIGKILL or a power cut sees the old file or the new one, never a mix.
    If writing fails (a full disk, say) the temporary file is removed and the old file stays as it was."""
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text))


def write_bytes_atomically(path: str | os.PathLike, data: bytes | memoryview) -> None:
    write_atomically(path, lambda tmp: tmp.write_bytes(data))


def remove_stale_temporaries(directory: str | os.PathLike, names) -> list[Path]:
    """Delete ``name.tmp`` left in ``directory`` by a writer that was killed before its os.replace;
    returns the files removed. Call it only while no writer can be running (under the run's lock)."""
    removed = []
    for name in names:
        tmp = Path(directory) / (name + TMP_SUFFIX)
        if tmp.is_file():
            tmp.unlink()
            removed.append(tmp)
    return removed


def read_user_text(path: Path, kind: str, accepted: str, error: type[Exception], newline: str | None = None) -> str:
    """The UTF-8 text of ``path``, a ``kind`` file the user pointed at; ``error`` naming the file, why it cannot
    be read (not UTF-8, a directory, ...) and what is ``accepted`` otherwise."""
    try:
        with path.open(newline=newline, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as decode:
        raise error(f"{path} is not {kind}: it is not UTF-8 text ({decode.reason} at byte {decode.start}); "
                    f"accepted: {accepted}") from None
    except OSError as failure:
        what = "a directory, not a file" if path.is_dir() else failure.strerror or str(failure)
        raise error(f"{path} cannot be read: {what}; accepted: {accepted}") from None
