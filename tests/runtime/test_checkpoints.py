"""Checkpoints load with weights_only=True: the random-number states they carry, and the run directories
of rtrl 0.1.0 (numpy's RNG state as a numpy array, config.json without the settings added since)."""
import json
import random

import numpy as np
import pytest
import torch

from conftest import small_config
from rtrl.cli import main
from rtrl.runtime.checkpoints import CheckpointError, load_checkpoint, rng_states, set_rng_states
from rtrl.runtime.train import train


def draws():
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    torch.manual_seed(5), np.random.seed(6), random.seed(7)
    np.random.randn()   # numpy keeps a cached gaussian: part of its state
    torch.save({"config": {}, "model": {}, "steps": 0, "rng": rng_states()}, tmp_path / "c.pt")
    expected = draws()
    loaded = load_checkpoint(tmp_path / "c.pt")   # weights_only=True inside
    set_rng_states(loaded["rng"])
    assert draws() == expected


def as_written_by_rtrl_0_1(path):
    """Rewrite a run directory the way rtrl 0.1.0 left it: numpy's RNG state as np.random.get_state() (a numpy
    array inside the pickle) and a config.json without the settings added since."""
    checkpoint = torch.load(path / "checkpoint.pt", weights_only=True)
    np.random.seed(1)
    checkpoint["rng"]["numpy"] = np.random.get_state()
    del checkpoint["nonfinite_updates"]
    torch.save(checkpoint, path / "checkpoint.pt")
    config = json.loads((path / "config.json").read_text())
    del config["max_nonfinite"]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(Exception, match="numpy"):   # what plain weights_only=True makes of it
        torch.load(path / "checkpoint.pt", weights_only=True)


def test_a_run_directory_of_rtrl_0_1_resumes_and_evaluates(tmp_path):
    cfg = small_config(total_steps=40)
    train(cfg, tmp_path, progress=False)
    as_written_by_rtrl_0_1(tmp_path)
    old = load_checkpoint(tmp_path / "checkpoint.pt")
    set_rng_states(old["rng"])
    assert np.random.rand() == np.random.RandomState(1).rand()   # the old form restores numpy's stream
    assert main(["eval", str(tmp_path), "--episodes", "2"]) == 0
    summary = train(small_config(total_steps=80), tmp_path, force=True, progress=False)
    assert summary["finished"] and summary["steps"] == 80
    resumed = torch.load(tmp_path / "checkpoint.pt", weights_only=True)   # the new form: no numpy objects
    assert resumed["steps"] == 80 and isinstance(resumed["rng"]["numpy"]["key"], torch.Tensor)


def test_old_config_json_resumes_without_force(tmp_path):
    cfg = small_config(total_steps=40)
    train(cfg, tmp_path, backend_factory=_stop_after_one_batch, progress=False)
    as_written_by_rtrl_0_1(tmp_path)
    summary = train(cfg, tmp_path, progress=False)   # same settings: no --force needed
    assert summary["finished"] and summary["steps"] == 40


def _stop_after_one_batch(cfg, spec, model):
    from rtrl.runtime.backends import InlineBackend

    class Stop(InlineBackend):
        batches = 0

        def next_batch(self):
            self.batches += 1
            if self.batches > 1:
                raise KeyboardInterrupt
            return super().next_batch()

    return Stop(cfg, spec, model)


def test_only_numpy_arrays_get_through_not_other_numpy_globals(tmp_path):
    """The allowed numpy globals rebuild arrays; numpy functions (np.load here, which reads files) stay refused."""
    torch.save({"config": {}, "model": {}, "steps": 0, "x": _Reducer()}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"numpy.*could run code; refused"):
        load_checkpoint(tmp_path / "c.pt")


class _Reducer:
    def __reduce__(self):
        return np.load, ("/nonexistent.npy",)
