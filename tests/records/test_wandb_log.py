"""`rtrl train --wandb` (issue 27): metrics.csv's rows and the config reach a W&B run, one per run directory and
resumed with it; offline only (WANDB_MODE=offline: nothing here may reach a network). The W&B run is read back
from its offline records file (run-<id>.wandb: a log of W&B's protobuf ``Record`` messages in 32 KiB blocks)."""
from __future__ import annotations

import csv
import json
import math
import struct
import sys
from pathlib import Path

import pytest

from conftest import run_cli, train_argv
from rtrl.records.wandb_log import ID_FILE, INSTALL, WandbWriter, read_run_record

BLOCK, HEADER = 32 * 1024, 7   # the records file: a 7-byte file header, then blocks of chunks with 7-byte headers


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    """W&B offline, its files under tmp_path/wandb-dir, no API key, no network."""
    where = tmp_path / "wandb-dir"
    where.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(where))
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_BASE_URL", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(name, raising=False)
    return where


def records(path: Path):
    """The protobuf records of an offline W&B run's records file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B records file"
    pos, chunks = HEADER, []
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:   # a block's tail too short for a chunk header is padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        pos += HEADER
        if kind == 0 and length == 0:   # zero padding to the block's end
            pos += room - HEADER
            continue
        chunks.append(data[pos:pos + length])
        pos += length
        if kind in (1, 4):   # a full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(b"".join(chunks))
            chunks = []
            yield record


def read_offline_runs(where: Path) -> list[dict]:
    """Each offline W&B session under ``where``, oldest first: its run (id, project, group, name), config and
    history rows."""
    sessions = []
    for path in sorted(where.glob("wandb/offline-run-*/run-*.wandb")):
        session = {"config": {}, "history": []}
        for record in records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run = record.run
                session.update(id=run.run_id, project=run.project, group=run.run_group, name=run.display_name)
            elif kind == "config":
                session["config"].update({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.config.update})
            elif kind == "history":
                row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
                session["history"].append({k: v for k, v in row.items() if not k.startswith("_")} | {"_step": row["_step"]})
        sessions.append(session)
    return sessions


def metrics_rows(run: Path) -> list[dict]:
    with (run / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def same_numbers(wandb_row: dict, csv_row: dict) -> bool:
    for key, text in csv_row.items():
        value = float(text) if text.strip() else math.nan
        if math.isfinite(value):
            if not math.isclose(wandb_row[key], value, rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif key in wandb_row:   # NaN (no episode yet) is not sent
            return False
    return True


@pytest.mark.wandb
def test_rows_and_config_reach_the_wandb_run(tmp_path, capsys, offline):
    run = tmp_path / "run"
    code, text = run_cli(capsys, train_argv(run, "--wandb", "--wandb-project", "proj", "--wandb-group", "grp",
                                            "--wandb-name", "first"))
    assert code == 0, text
    [session] = read_offline_runs(offline)
    assert session["id"] == json.loads((run / ID_FILE).read_text())["id"]
    assert (session["project"], session["group"], session["name"]) == ("proj", "grp", "first")
    written = metrics_rows(run)
    assert len(written) >= 2 and [r["_step"] for r in session["history"]] == [int(r["step"]) for r in written]
    assert all(same_numbers(w, c) for w, c in zip(session["history"], written)), (session["history"], written)
    config = json.loads((run / "config.json").read_text())
    assert session["config"] == config and session["config"]["hidden_size"] == 8
    assert json.loads((run / ID_FILE).read_text())["step"] == int(written[-1]["step"])


@pytest.mark.wandb
def test_a_resumed_run_logs_to_the_same_wandb_run(tmp_path, capsys, offline):
    run = tmp_path / "run"
    assert run_cli(capsys, train_argv(run, "--wandb"))[0] == 0
    first_id = read_run_record(run)["id"]
    # resume with more steps (forced: total_steps is not a runtime setting) and another W&B group (it is)
    code, text = run_cli(capsys, train_argv(run, "--wandb", "--wandb-group", "later", "--total-steps", "80", "--force"))
    assert code == 0, text
    first, second = read_offline_runs(offline)
    assert first["id"] == second["id"] == first_id and read_run_record(run)["id"] == first_id
    assert second["group"] == "later" and second["config"]["total_steps"] == 80
    steps = [r["_step"] for r in first["history"] + second["history"]]
    assert steps == sorted(set(steps)) and steps[-1] == 80   # no step twice, increasing across the sessions
    assert [int(r["step"]) for r in metrics_rows(run)] == steps


@pytest.mark.wandb
def test_a_fresh_run_gets_a_new_wandb_run(tmp_path, capsys, offline):
    first, second = tmp_path / "a", tmp_path / "b"
    for run in (first, second):
        assert run_cli(capsys, train_argv(run, "--wandb"))[0] == 0
    assert read_run_record(first)["id"] != read_run_record(second)["id"]


class _FakeRun:
    def __init__(self):
        self.logged, self.config, self.finished = [], {}, False
        self.config = type("Config", (), {"update": lambda _self, values, allow_val_change: None})()

    def log(self, row, step):
        self.logged.append(step)

    def finish(self):
        self.finished = True


@pytest.mark.wandb
def test_steps_wandb_already_holds_are_skipped_on_resume(tmp_path, monkeypatch):
    """A session resumed from a checkpoint repeats the steps after it; those W&B got are not sent again."""
    import wandb
    fake = _FakeRun()
    monkeypatch.setattr(wandb, "init", lambda **kwargs: fake)
    (tmp_path / ID_FILE).write_text(json.dumps({"id": "abc", "step": 30}))
    writer = WandbWriter(tmp_path, {"a": 1}, resuming=True)
    for step in (10, 20, 30, 40, 50):
        writer.write({"step": step, "loss": 1.0, "mean_return": math.nan})
    writer.close()
    assert writer.id == "abc" and fake.logged == [40, 50] and writer.skipped == 3 and fake.finished
    assert read_run_record(tmp_path) == {"id": "abc", "step": 50}
    assert WandbWriter(tmp_path, {}, resuming=False).id != "abc"   # a fresh run: a new W&B run


@pytest.mark.parametrize("where", ["train", "config"])
def test_a_missing_wandb_package_is_a_clear_error(tmp_path, capsys, monkeypatch, where):
    monkeypatch.setitem(sys.modules, "wandb", None)   # `import wandb` raises ImportError
    if where == "config":
        from rtrl.runtime.config import resolve_config
        from rtrl.settings import SettingError
        with pytest.raises(SettingError, match="rtrl\\[wandb\\]"):
            resolve_config(overrides={"wandb": True})
        return
    run = tmp_path / "run"
    code, text = run_cli(capsys, train_argv(run, "--wandb"))
    assert code == 2, text
    assert "--wandb needs the Python package 'wandb'" in text and INSTALL in text, text
    assert not run.exists()   # refused before the run directory was made


@pytest.mark.parametrize("flags, pieces", [
    (["--wandb-project", "p"], ["--wandb-project='p' does nothing without --wandb"]),
    (["--wandb-name", "n"], ["--wandb-name='n' does nothing without --wandb"]),
    (["--wandb", "--wandb-project", "a/b"], ["bad --wandb-project='a/b'", "none of /"]),
])
def test_wandb_settings_are_checked(tmp_path, capsys, flags, pieces):
    code, text = run_cli(capsys, train_argv(tmp_path / "run", *flags))
    assert code == 2 and all(piece in text for piece in pieces), text


def test_the_wandb_flags_are_in_the_help(capsys):
    code, text = run_cli(capsys, ["train", "--help"])
    assert code == 0
    flat = " ".join(text.split())
    for flag in ("--wandb", "--wandb-project PROJECT", "--wandb-group GROUP", "--wandb-name NAME"):
        assert flag in flat, flag
    assert "rtrl[wandb]" in flat and "WANDB_MODE=offline" in flat


def test_wandb_settings_are_runtime_settings():
    from rtrl.runtime.config import RUNTIME_SETTINGS
    assert {"wandb", "wandb_project", "wandb_group", "wandb_name"} <= RUNTIME_SETTINGS
