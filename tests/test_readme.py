"""The README's bring-your-own-environment example, run as the README says: the file as written, then
the command lines below it (``rtrl`` run as ``python -m rtrl``)."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

from rtrl.cli import main

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def example() -> tuple[str, list[str]]:
    """The example file's code and the commands listed after it."""
    block = re.search(r"<!-- byo-env example: begin -->\n```python\n(.*?)```\n<!-- byo-env example: end -->\n\n"
                      r"((?:    [^\n]*\n)+)", README, re.S)
    assert block, "the README lost its bring-your-own-env example"
    commands = [line.split("#")[0].strip() for line in block.group(2).splitlines()]
    return block.group(1), commands


@pytest.mark.slow
def test_the_bring_your_own_env_example_runs_as_documented(tmp_path, monkeypatch, capsys):
    """The file runs as a script (its actors import it by name); the command lines run in this process, with
    the directory on sys.path as PYTHONPATH=. puts it (the actor processes inherit it)."""
    code, commands = example()
    (tmp_path / "my_envs.py").write_text(code)
    assert commands[0] == "python my_envs.py" and all(c.startswith("PYTHONPATH=. rtrl ") for c in commands[1:])
    result = subprocess.run([sys.executable, "my_envs.py"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr
    assert 0.0 <= float(result.stdout.strip().splitlines()[-1]) <= 1.0   # the mean return it prints
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        for command in commands[1:]:
            assert main(shlex.split(command.removeprefix("PYTHONPATH=. rtrl "))) == 0, capsys.readouterr()
    finally:
        gym.registry.pop("Corridor-v0", None)
        sys.modules.pop("my_envs", None)
    assert "steps 960" in capsys.readouterr().out
    python_run, cli_run = tmp_path / "runs" / "corridor", tmp_path / "runs" / "corridor-cli"
    assert json.loads((python_run / "config.json").read_text())["env"] == "python:corridor?length=4"
    assert json.loads((python_run / "eval.json").read_text())["episodes"] == 20
    assert json.loads((cli_run / "config.json").read_text())["env"] == "gym:my_envs:Corridor-v0"
    assert json.loads((cli_run / "eval.json").read_text())["episodes"] == 20
