"""Report sections in docs/ files: written with date, machine and command, replacing only their own section."""
from rtrl.records.reports import command_line, machine_description, record_section


def test_record_section_keeps_other_sections(tmp_path):
    doc = tmp_path / "B.md"
    record_section(doc, "one", "first body", "cmd one")
    record_section(doc, "two", "second body", "cmd two")
    record_section(doc, "one", "replaced body", "cmd one again")
    text = doc.read_text()
    assert "replaced body" in text and "first body" not in text and "second body" in text
    assert text.index("## one") < text.index("## two")
    assert text.count("- machine: ") == 2 and "- command: `cmd one again`" in text


def test_machine_and_command_are_described():
    line = machine_description()
    assert "logical cores" in line and "torch" in line
    assert command_line(["/x/.venv/bin/rtrl", "bench", "cells", "--record", "docs/A B.md"]) == \
        "rtrl bench cells --record 'docs/A B.md'"
    assert command_line(["bench/memory.py", "--seeds", "0"]) == "python bench/memory.py --seeds 0"
