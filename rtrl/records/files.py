"""Writing files so that a reader (or a crash) never sees half of one."""
from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` on a sibling temporary file, then move it into place with os.replace."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text))
