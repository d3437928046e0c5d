"""The layering of docs/ARCHITECTURE.md, checked: imports point downwards only, no module is looked up
by name at run time, and every module fits on a few screens."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rtrl"
# lower numbers are lower layers; a module may import its own layer and the ones below
LAYERS = {"tree": 0, "settings": 0, "records": 0, "cells": 1, "algos": 2, "envs": 2, "models": 3,
          "runtime": 4, "eval": 5, "tasks": 5, "bench": 6, "cli": 7}
MAX_LINES = 400


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem not in ("__init__", "__main__"))


def part_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_parts(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        for name in names:
            if name.split(".")[0] == "rtrl" and name != "rtrl":
                found.add(name.split(".")[1])
            if name.split(".")[0] == "importlib":
                found.add("<importlib>")
    return found


def test_every_part_of_the_package_has_a_layer():
    assert {part_of(p) for p in modules()} == set(LAYERS)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_downwards_and_nothing_is_imported_by_name(path):
    own = LAYERS[part_of(path)]
    parts = imported_parts(path)
    assert "<importlib>" not in parts, f"{path.name} imports importlib: import modules statically"
    upwards = sorted(p for p in parts - {"<importlib>"} if LAYERS[p] > own)
    assert not upwards, f"{path.relative_to(PACKAGE)} (layer {own}) imports higher layers: {upwards}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_fit_in_a_few_screens(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_the_checks_catch_an_upward_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("from rtrl.runtime.config import TrainConfig\nimport importlib\n")
    assert imported_parts(module) == {"runtime", "<importlib>"}
