"""The copy task's training (rtrl/tasks/copy_task/, rtrl/cli/copy_task.py): it learns, stops on its budgets,
names bad settings, and `rtrl copy-task` writes its run files and keeps its flags' meaning."""
import json

import pytest
import torch

from rtrl import cli
from rtrl.cli import copy_task as copy_task_cli
from rtrl.settings import SettingError
from rtrl.tasks import copy_task as ct
from rtrl.tasks.copy_task import CopyTaskConfig
from rtrl.tasks.copy_task.config import CELLS


def test_elstm_rtrl_online_learns_tiny_copy_task():
    """Fully online RTRL (a step after every token) solves L=3 within seconds."""
    config = CopyTaskConfig(model="elstm-rtrl", length=3, hidden_size=32, batch_size=32, lr=1e-2,
                            train_size=500, valid_size=200, test_size=200, epochs=30, eval_every=250,
                            seed=0)
    results = ct.train(config, progress=False)
    assert results["test"]["seq_acc"] >= 0.95, results
    assert results["steps"] > results["sequences"] / config.batch_size   # many steps per batch of sequences


def test_time_budget_and_max_steps_stop_training():
    base = dict(model="elstm-bptt", length=5, hidden_size=8, batch_size=8, train_size=100, valid_size=20,
                test_size=20, epochs=1000)
    results = ct.train(CopyTaskConfig(**base, max_steps=3), progress=False)
    assert results["steps"] == 3 and "max_steps" in results["stop_reason"]
    results = ct.train(CopyTaskConfig(**base, time_budget=0.5), progress=False)
    assert "time budget" in results["stop_reason"] and results["train_time_s"] < 10


@pytest.mark.parametrize("cell, learning", [("rtu", "rtrl"), ("clru", "rtrl"), ("rtu", "bptt")])
def test_complex_cells_train_on_the_copy_task(cell, learning):
    """The paired cells (2N outputs) run the copy task end to end, online RTRL and BPTT, one and two layers."""
    for layers in (1, 2):
        config = CopyTaskConfig(cell=cell, learning=learning, length=3, hidden_size=4, num_layers=layers, batch_size=4,
                                train_size=8, valid_size=4, test_size=4, max_steps=3, seed=0)
        results = ct.train(config, progress=False)
        assert results["steps"] == 3 and 0 <= results["test"]["seq_acc"] <= 1


# --- settings and run files ----------------------------------------------------------------------
@pytest.mark.parametrize("changes, message", [
    ({"length": -3}, "bad length=-3; accepted: a positive integer"),
    ({"lr": 0.0}, "bad lr=0.0; accepted: a positive finite number up to 1e30, or none"),
    ({"model": "gru"}, "bad model='gru'; accepted: lstm-bptt, elstm-bptt, elstm-rtrl"),
    ({"model": "lstm-bptt", "full_sequence": True},
     "full_sequence applies to learning rtrl only (BPTT always steps once per batch of sequences), "
     "not to learning='bptt'"),
    ({"cell": "lstm"}, "cell='lstm' is not an element-wise cell, so it cannot learn by learning='rtrl'; accepted: "
     "bptt for it, or an element-wise cell (elstm, indrnn, lru, rtu, clru)"),
    ({"threads": -1}, "bad threads=-1; accepted: 0 or a positive integer, or none"),
    # settings the model would not read (the eLSTM's forget bias for another cell, per-layer for one layer)
    ({"cell": "lru", "forget_bias": 3.0}, "forget_bias=3.0 is read by the elstm cell only; with cell='lru' it would "
     "be ignored: leave it out, or change cell"),
    ({"cell": "lstm", "learning": "bptt", "forget_bias": 1.0}, "forget_bias=1.0 is read by the elstm cell only; with "
     "cell='lstm' it would be ignored: leave it out, or change cell"),
    ({"multilayer": "per-layer"}, "multilayer='per-layer' is read by an element-wise stack learning by rtrl "
     "(learning rtrl, num_layers > 1) only; with learning='rtrl', num_layers=1 it would be ignored: leave it out, "
     "or change learning / num_layers"),
])
def test_bad_settings_are_named_with_their_value(changes, message):
    with pytest.raises(SettingError) as error:
        ct.train(CopyTaskConfig(**changes), progress=False)
    assert str(error.value) == message


def test_cuda_without_cuda_is_a_setting_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SettingError, match=r"bad device='cuda': CUDA is not available here; accepted here: cpu"):
        ct.check_config(CopyTaskConfig(device="cuda"))


# --- command line --------------------------------------------------------------------------------
@pytest.mark.parametrize("name, content", [("metrics.csv", "time,loss\n1,2\n"), ("checkpoint.pt", "mine")])
def test_the_users_own_files_in_out_are_not_replaced(tmp_path, capsys, name, content):
    """A --out that holds no run of rtrl (no run.json, no copy-task metrics header) but a metrics.csv or checkpoint.pt
    is the user's: refused, with nothing in it changed (a training run's rule too)."""
    (tmp_path / name).write_text(content)
    code = cli.main(["copy-task", "--length", "4", "--hidden-size", "8", "--train-size", "32", "--valid-size", "16",
                     "--test-size", "16", "--max-steps", "2", "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and f"holds {name} but no run of rtrl" in err, err
    assert (tmp_path / name).read_text() == content and not (tmp_path / "results.json").exists()


def test_a_finished_run_of_other_settings_is_not_replaced_without_force(tmp_path, capsys):
    """A copy-task --out that holds a finished run (results.json) of other settings is refused, naming the
    differences, with nothing in it changed; the same settings run again over it; --force replaces it."""
    argv = ["copy-task", "--length", "4", "--hidden-size", "8", "--batch-size", "8", "--train-size", "32",
            "--valid-size", "16", "--test-size", "16", "--max-steps", "4", "--out", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name != "run.lock"}
    assert cli.main(argv) == 0   # the same run again: allowed
    code = cli.main(argv[:2] + ["5"] + argv[3:])
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path} holds a finished copy-task run with other settings (length: 4 " \
        "-> 5)" in err and "--force to replace it" in err, err
    assert json.loads((tmp_path / "results.json").read_text())["config"]["length"] == 4
    assert {p.name for p in tmp_path.iterdir() if p.is_file() and p.name != "run.lock"} == set(before)
    assert cli.main(argv[:2] + ["5"] + argv[3:] + ["--force"]) == 0
    assert json.loads((tmp_path / "results.json").read_text())["config"]["length"] == 5


def test_cli_writes_run_files(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("step,sequences,epoch\n1,8,0.1\n")   # an older copy-task run's, killed early: anew
    code = cli.main(["copy-task", "--model", "elstm-rtrl", "--length", "4", "--hidden-size", "8",
                 "--batch-size", "8", "--train-size", "64", "--valid-size", "16", "--test-size", "16",
                 "--max-steps", "30", "--eval-every", "16", "--out", str(out), "--no-progress",
                 "--save-data", str(tmp_path / "data")])
    assert code == 0
    for name in ("metrics.csv", "results.json", "checkpoint.pt", "learning_curve.png"):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob("*.tmp"))
    results = json.loads((out / "results.json").read_text())
    assert set(results["test"]) >= {"seq_acc", "bit_acc"} and results["config"]["length"] == 4
    assert results["config"]["lr"] == ct.DEFAULT_LR["elstm-rtrl"] and "progress" not in results["config"]
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].split(",") == list(ct.METRIC_FIELDS)
    assert [int(line.split(",")[0]) for line in lines[1:]][-1] == results["steps"] == 30
    checkpoint = torch.load(out / "checkpoint.pt")
    assert (checkpoint["config"]["cell"], checkpoint["config"]["learning"]) == ("elstm", "rtrl")
    assert "readout.weight" in checkpoint["model"]
    assert (tmp_path / "data" / "test.npz").exists()
    assert "test sequence acc" in capsys.readouterr().out


def test_cli_flags_keep_their_meaning(monkeypatch, capsys):
    seen = []

    def fake_train(config, progress=True, force=False):
        seen.append((config, progress))
        return {"test": {"seq_acc": 0.5, "bit_acc": 0.5}, "best_valid": {"valid_seq_acc": 0.5},
                "sequences": 1, "steps": 1, "train_time_s": 0.0, "stop_reason": "test"}

    monkeypatch.setattr(copy_task_cli, "train", fake_train)
    assert cli.main(["copy-task", "--length", "7", "--seed", "3", "--full-sequence", "--lr", "none"]) == 0
    config, progress = seen[-1]
    assert config.full_sequence is True and config.lr is None and progress is True
    assert config.out == "runs/copy-elstm-rtrl-L7-s3"
    assert cli.main(["copy-task", "--full-sequence", "false", "--lr", "3e-3", "--out", "x", "--no-progress",
                 "--threads", "none", "--time-budget", "60"]) == 0
    config, progress = seen[-1]
    assert (config.full_sequence, config.lr, config.out) == (False, 3e-3, "x")
    assert (config.threads, config.time_budget) == (None, 60.0)
    assert progress is False
    assert cli.main(["copy-task"]) == 0
    assert seen[-1][0] == CopyTaskConfig(out="runs/copy-elstm-rtrl-L50-s0")


def test_cli_help_lists_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["copy-task", "--help"])
    text = capsys.readouterr().out
    for flag in ("--model", "--length", "--hidden-size", "--lr", "--epochs", "--seed", "--out", "--device",
                 "--batch-size", "--time-budget", "--forget-bias", "--max-steps", "--full-sequence", "--no-progress"):
        assert flag in text
    flat = " ".join(text.split())   # as printed, whatever the line breaks
    assert "(default: 50)" in flat and "(default: elstm)" in flat and "(default: rtrl)" in flat
    assert "recurrent units N (per layer) (default: 256)" in " ".join(text.split())     # each flag's help is its setting's
    cell_help = " ".join(text.split()).split("--cell {")[2].split("(default")[0]   # the flag's help, past its usage
    for cell in CELLS:   # every cell the flag accepts is described (rtu and clru were missing)
        assert f" {cell} " in cell_help or f" {cell}," in cell_help, (cell, cell_help)


@pytest.mark.parametrize("argv, message", [
    (["--length", "-3"], "error: bad --length=-3; accepted: a positive integer"),
    (["--hidden-size", "0"], "error: bad --hidden-size=0; accepted: a positive integer"),
    (["--lr", "0"], "error: bad --lr=0.0; accepted: a positive finite number up to 1e30, or none"),
    (["--model", "gru"], "invalid choice: 'gru'"),
    (["--loss-on", "all"], "invalid choice: 'all'"),
    (["--scoring", "paper"], "invalid choice: 'paper'"),
    (["--model", "lstm-bptt", "--full-sequence"],
     "error: --full-sequence applies to learning rtrl only (BPTT always steps once per batch of sequences), "
     "not to --learning='bptt'"),
    (["--time-budget", "-1"], "error: bad --time-budget=-1.0; accepted: a positive finite number, or none"),
    (["--grad-clip", "-1"], "error: bad --grad-clip=-1.0; accepted: a finite number >= 0"),
    (["--seed", "-1"], "error: bad --seed=-1; accepted: 0 or a positive integer"),
])
def test_cli_bad_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["copy-task", *argv, "--out", "/nonexistent/never-written"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err


def test_the_copy_tasks_optimizer_step_restores_the_cells_parameter_bounds():
    """The copy task's step (batched and online training both take it) projects the cells' parameters back into
    their set afterwards: an IndRNN's |u| <= max_recurrent."""
    from rtrl.models import with_options
    from rtrl.tasks.copy_task import CopyModel, make_optimizer, optimizer_step
    model = CopyModel(with_options(cell="indrnn", learning="rtrl", hidden_size=4))
    model.core.max_recurrent = 0.05
    assert (model.core.weight_c.abs() > 0.05).any()
    logits, _ = model(torch.randint(0, 3, (5, 2)), model.initial_state(2))
    logits.square().sum().backward()
    optimizer_step(model, make_optimizer(model, 1e-3), grad_clip=1.0)
    u = model.core.weight_c.detach()
    assert u.abs().max() <= 0.05 and (u.abs() == 0.05).any()


def test_the_copy_tasks_size_check_counts_an_exact_stacks_sensitivities_and_the_lstms_four_gates(monkeypatch):
    """The check before anything is allocated reads the model's cell and learning: it read the old ``model`` name,
    which the config turns into cell and learning (leaving None), so it counted no sensitivities and one gate."""
    from rtrl.tasks.copy_task import training
    seen = []
    monkeypatch.setattr(training, "check_fits", lambda parts, *args, **kwargs: seen.append(dict(parts)))
    training.check_copy_task_memory(CopyTaskConfig(cell="elstm", learning="rtrl", num_layers=2, hidden_size=256))
    training.check_copy_task_memory(CopyTaskConfig(cell="elstm", learning="rtrl", num_layers=2, hidden_size=256,
                                                   multilayer="per-layer"))
    training.check_copy_task_memory(CopyTaskConfig(cell="lstm", learning="bptt", hidden_size=256))
    training.check_copy_task_memory(CopyTaskConfig(cell="elstm", learning="bptt", hidden_size=256))
    exact, per_layer, lstm, elstm = seen
    sensitivities = [k for k in exact if "sensitivit" in k]
    assert sensitivities and exact[sensitivities[0]] > 10 * per_layer[sensitivities[0]] > 0
    parameters = [k for k in lstm if "param" in k][0]
    assert lstm[parameters] == 4 * elstm[parameters]
