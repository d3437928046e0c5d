"""Numbers written to docs/: the machine they were measured on, the command, and report sections.

Every table in docs/ says when, where and how it was made: ``machine_description()`` and
``command_line()`` give the last two; ``record_section`` replaces one named section of a markdown
report and leaves the rest of the file as it was.
"""
from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sys
from pathlib import Path

from rtrl.records.files import file_in_the_way, read_user_text, write_text_atomically

__all__ = ["machine_description", "command_line", "utc_stamp", "record_section", "write_section"]


def machine_description(load: bool = True) -> str:
    """One line naming the machine: CPU model, cores, load (unless ``load`` is false: a record's machine, which
    must not change from one report to the next), OS, Python, torch and its thread count."""
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    average = ""
    if load and hasattr(os, "getloadavg"):
        average = ", load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} logical cores{average}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads")


def command_line(argv: list[str] | None = None) -> str:
    """The command that is running, as a user would type it (``rtrl ...`` or ``python script ...``)."""
    argv = sys.argv if argv is None else argv
    if argv and Path(argv[0]).name == "rtrl":
        return "rtrl " + shlex.join(argv[1:])
    if argv and argv[0].endswith("__main__.py"):
        return "python -m rtrl " + shlex.join(argv[1:])
    return "python " + shlex.join(argv)


def utc_stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def record_section(path: str | Path, name: str, body: str, command: str) -> None:
    """Write ``body`` as the section ``name`` of the markdown file ``path``, replacing an older one.

    The section carries the date, the machine and the command that produced it.
    """
    section = (f"## {name}\n\n- date: {utc_stamp()}\n- machine: {machine_description()}\n"
               f"- command: `{command}`\n\n{body}")
    write_section(path, name, section, "# Benchmarks\n\nEach section is written by the command it names.\n\n")


def write_section(path: str | Path, name: str, section: str, new_file_text: str) -> None:
    """Put ``section`` between the markers ``<!-- begin NAME -->`` / ``<!-- end NAME -->`` of the markdown
    file ``path``: in place of an older one, else at the end; the rest of the file is kept. A file that
    does not exist yet starts with ``new_file_text``."""
    path = Path(path)
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{section.rstrip()}\n{end}\n"
    text = read_report(path) if path.exists() else new_file_text
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, text)
    except (FileExistsError, NotADirectoryError):
        raise ReportError(f"{path} cannot be written: a part of its path is a file, not a directory; accepted: a "
                          "markdown file in a directory") from None


class ReportError(ValueError):
    """A report file that cannot be read or written as a report; the message names it."""


def read_report(path: str | Path) -> str:
    """The text of the markdown report ``path``; a :class:`ReportError` naming it if it is not UTF-8 text."""
    return read_user_text(Path(path), "a markdown report", "a UTF-8 markdown file, or a new path", ReportError)


def check_report_path(path: str | Path | None) -> None:
    """Before a benchmark runs: the report file it will write can be read (if it exists) and written."""
    if not path:
        return
    path = Path(path)
    blocking = file_in_the_way(path)
    if blocking is not None:
        raise ReportError(f"{path} cannot be written: {blocking} is a file, not a directory; accepted: a markdown "
                          "file in a directory")
    if path.exists():
        read_report(path)
