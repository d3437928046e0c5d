"""Tests of the copy task (rtrl/tasks/copy_task/, rtrl/cli/copy_task.py): data, scoring, models,
training (batched and fully online), run files, CLI."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rtrl import cli
from rtrl.cli import copy_task as copy_task_cli
from rtrl.settings import SettingError
from rtrl.tasks import copy_task as ct
from rtrl.tasks.copy_task import BIT_1, BLANK, PAD, CopyTaskConfig


# --- data ----------------------------------------------------------------------------------------
def test_sequence_format():
    L = 7
    splits = ct.make_splits(L, seed=3, sizes=(300, 50, 50))
    for data in splits.values():
        assert data.inputs.shape == data.targets.shape == (len(data), 2 * L)
        assert data.inputs.dtype == data.targets.dtype == torch.int64
        assert int(data.lengths.min()) >= 1 and int(data.lengths.max()) <= L
        for inp, tgt, k in zip(data.inputs, data.targets, data.lengths.tolist()):
            bits = inp[:k]
            assert set(bits.tolist()) <= {0, 1}
            assert (inp[k:2 * k] == BLANK).all() and (inp[2 * k:] == PAD).all()
            assert (tgt[:k] == BLANK).all() and (tgt[k:2 * k] == bits).all() and (tgt[2 * k:] == PAD).all()
    # every length 1..L occurs (uniform L'), and the bits are not constant
    train = splits["train"]
    assert set(train.lengths.tolist()) == set(range(1, L + 1))
    assert 0.4 < train.inputs[train.inputs < 2].float().mean() < 0.6


def test_encode_sequence_by_hand():
    inputs, targets = ct.encode_sequence(np.array([1, 0, 1], dtype=np.uint8), length=4)
    assert inputs.tolist() == [1, 0, 1, BLANK, BLANK, BLANK, PAD, PAD]
    assert targets.tolist() == [BLANK, BLANK, BLANK, 1, 0, 1, PAD, PAD]


def test_splits_reproducible_and_disjoint():
    a = ct.make_splits(20, seed=5, sizes=(2000, 300, 300), disjoint_min_length=8)
    b = ct.make_splits(20, seed=5, sizes=(2000, 300, 300), disjoint_min_length=8)
    c = ct.make_splits(20, seed=6, sizes=(2000, 300, 300), disjoint_min_length=8)
    for name in ct.SPLITS:
        assert torch.equal(a[name].inputs, b[name].inputs)
        assert torch.equal(a[name].targets, b[name].targets)
    assert not torch.equal(a["train"].inputs, c["train"].inputs)
    assert [len(a[n]) for n in ct.SPLITS] == [2000, 300, 300]
    long_patterns = {name: {p for p in a[name].patterns() if len(p) >= 8} for name in ct.SPLITS}
    assert long_patterns["train"] and long_patterns["valid"] and long_patterns["test"]
    assert not long_patterns["train"] & long_patterns["valid"]
    assert not long_patterns["train"] & long_patterns["test"]
    assert not long_patterns["valid"] & long_patterns["test"]


def test_short_patterns_are_shared_by_all_splits():
    """Below disjoint_min_length there are too few patterns to hold out (L'=1 has two)."""
    splits = ct.make_splits(12, seed=0, sizes=(500, 100, 100), disjoint_min_length=8)
    for name in ct.SPLITS:
        assert {p for p in splits[name].patterns() if len(p) == 1} == {(0,), (1,)}


def test_impossible_disjoint_split_is_an_error():
    # L=2 has only 6 patterns: 100 validation sequences use all of them
    with pytest.raises(ValueError, match="unused by the other splits"):
        ct.make_splits(2, seed=0, sizes=(10, 100, 10), disjoint_min_length=1)


def test_save_data(tmp_path):
    splits = ct.make_splits(5, seed=0, sizes=(20, 5, 5))
    ct.save_splits(splits, tmp_path)
    loaded = np.load(tmp_path / "valid.npz")
    assert (loaded["inputs"] == splits["valid"].inputs.numpy()).all()
    assert (loaded["lengths"] == splits["valid"].lengths.numpy()).all()


# --- scoring -------------------------------------------------------------------------------------
@pytest.fixture
def small_valid():
    return ct.make_splits(10, seed=1, sizes=(10, 200, 10))["valid"]


def perfect_predictions(data):
    """The targets, with padding replaced by an arbitrary class (padding is never scored)."""
    return data.targets.masked_fill(data.targets == PAD, BLANK)


def test_perfect_predictions_score_100(small_valid):
    result = ct.score(perfect_predictions(small_valid), small_valid.targets, small_valid.lengths)
    assert result["seq_acc"] == 1.0 and result["bit_acc"] == 1.0
    assert result["bits"] == int(small_valid.lengths.sum())


def test_all_zeros_is_not_100(small_valid):
    zeros = torch.zeros_like(small_valid.targets)
    result = ct.score(zeros, small_valid.targets, small_valid.lengths)
    assert result["seq_acc"] < 0.5 and 0.3 < result["bit_acc"] < 0.7
    # exactly the sequences whose pattern is all zeros are right
    expected = np.mean([not any(p) for p in small_valid.patterns()])
    assert result["seq_acc"] == pytest.approx(expected)


def test_all_ones_is_not_100(small_valid):
    """Both bits are scored (the paper's code drops target id 2, which is its bit "1")."""
    ones = torch.ones_like(small_valid.targets)
    assert ct.score(ones, small_valid.targets, small_valid.lengths)["seq_acc"] < 0.5


def test_paper_code_view_by_hand():
    inputs, targets = ct.encode_sequence(np.array([1, 0]), 4)
    data = ct.CopyData(torch.tensor(inputs)[None], torch.tensor(targets)[None], torch.tensor([2]))
    view = ct.paper_code_view(data, 4)
    assert view.inputs[0].tolist() == [1, 0, BLANK, BLANK, BLANK, BLANK, BLANK, BLANK]
    assert view.targets[0].tolist() == [BLANK, BLANK, 1, 0, BLANK, BLANK, PAD, PAD]     # blanks up to L + L'
    assert ct.sequence_ends(view).tolist() == [6] and ct.sequence_ends(data).tolist() == [4]


def counting_predictions(data):
    """Blank everywhere, 0 for the L' steps after the bits: counts, remembers no bit."""
    mask = ct.output_phase_mask(data.lengths, data.targets.shape[1])
    return torch.full_like(data.targets, BLANK).masked_fill(mask, 0)


def test_paper_code_scoring_gives_100_to_a_counter_that_copies_nothing(small_valid):
    """The released code's scoring (bit 1 ignored) rates a model that only counts at 100%; the default
    scoring does not. This is why the paper's 100% is not evidence of copying."""
    view = ct.paper_code_view(small_valid, small_valid.inputs.shape[1] // 2)
    counter = counting_predictions(view)
    assert ct.score(counter, view.targets, view.lengths, scoring="paper-code")["seq_acc"] == 1.0
    assert ct.score(counter, small_valid.targets, small_valid.lengths)["seq_acc"] < 0.5
    # it must count: a 0 one step past the output phase, or a bit-0 target answered 1, is wrong
    i = next(j for j, pattern in enumerate(small_valid.patterns()) if 0 in pattern and len(pattern) < 20)
    k = int(view.lengths[i])
    for position, value in ((2 * k, 0), (k + small_valid.patterns()[i].index(0), BIT_1), (0, 0)):
        wrong = counter.clone()
        wrong[i, position] = value
        result = ct.score(wrong, view.targets, view.lengths, scoring="paper-code")
        assert result["seq_acc"] == pytest.approx(1 - 1 / len(view)), position
    with pytest.raises(ValueError, match="unknown scoring 'x'; accepted: both-bits, paper-code"):
        ct.score(counter, view.targets, view.lengths, scoring="x")


def test_paper_code_loss_mask_drops_exactly_the_bit_one_targets(small_valid):
    view = ct.paper_code_view(small_valid, small_valid.inputs.shape[1] // 2)
    targets, lengths = view.targets, view.lengths
    for loss_on in ct.LOSS_ON:
        ours = ct.loss_mask(targets, lengths, loss_on)
        paper = ct.loss_mask(targets, lengths, loss_on, "paper-code")
        assert torch.equal(paper, ours & (targets != BIT_1))
        assert (ours & (targets == BIT_1)).any() and not (paper & (targets == BIT_1)).any()


def test_paper_code_training_learns_to_count(tmp_path):
    """Under the released code's scoring, online RTRL reaches 100% at L=12 within seconds, although
    the same network copies almost nothing (scored on both bits)."""
    config = CopyTaskConfig(model="elstm-rtrl", length=12, hidden_size=32, batch_size=32, lr=1e-2,
                            scoring="paper-code", train_size=500, valid_size=200, test_size=200, epochs=40,
                            eval_every=250, seed=0, out=str(tmp_path))
    results = ct.train(config, progress=False)
    assert results["test"]["seq_acc"] == 1.0, results["test"]
    model = ct.CopyModel("elstm-rtrl", 32)
    model.load_state_dict(torch.load(tmp_path / "checkpoint.pt")["model"])
    splits = ct.make_splits(12, 0, (500, 200, 200))
    assert ct.evaluate(model, splits["test"])["seq_acc"] < 0.5


def test_one_wrong_bit_makes_the_sequence_wrong(small_valid):
    predictions = perfect_predictions(small_valid)
    i = 17
    k = int(small_valid.lengths[i])
    predictions[i, k + k // 2] = 1 - predictions[i, k + k // 2]       # flip one output bit
    result = ct.score(predictions, small_valid.targets, small_valid.lengths)
    assert result["seq_acc"] == pytest.approx(1 - 1 / len(small_valid))
    assert result["bit_acc"] == pytest.approx(1 - 1 / result["bits"])


def test_blank_in_output_phase_is_wrong_and_input_phase_is_not_scored(small_valid):
    predictions = perfect_predictions(small_valid)
    k = int(small_valid.lengths[0])
    predictions[0, k] = BLANK                                           # output phase: wrong
    predictions[1, :int(small_valid.lengths[1])] = 1                    # input phase: ignored
    predictions[2, 2 * int(small_valid.lengths[2]):] = 0                # padding: ignored
    result = ct.score(predictions, small_valid.targets, small_valid.lengths)
    assert result["seq_acc"] == pytest.approx(1 - 1 / len(small_valid))


def test_evaluate_scores_a_model(small_valid):
    model = ct.CopyModel("elstm-rtrl", 8)
    result = ct.evaluate(model, small_valid, batch_size=64)
    assert 0 <= result["seq_acc"] < 0.5 and result["loss"] > 0


# --- models and training -------------------------------------------------------------------------
@pytest.mark.parametrize("model", ct.MODELS)
def test_models_are_causal_and_remember(model):
    """logits (T,B,3) at step t depend on the tokens up to t (the first one too), never on later ones."""
    torch.manual_seed(0)
    net = ct.CopyModel(model, 16).double()
    tokens = torch.randint(0, 4, (8, 3))
    logits, _ = net(tokens, net.initial_state(3))
    assert logits.shape == (8, 3, ct.NUM_CLASSES) and logits.dtype == torch.float64
    later = tokens.clone()
    later[5:] = (later[5:] + 1) % 4                                     # change every token after t=4
    logits_later, _ = net(later, net.initial_state(3))
    assert torch.equal(logits_later[:5], logits[:5])
    assert not torch.allclose(logits_later[5:], logits[5:])
    first = tokens.clone()
    first[0] = (first[0] + 1) % 4                                       # change only the first token
    logits_first, _ = net(first, net.initial_state(3))
    assert (logits_first[-1] - logits[-1]).abs().max() > 1e-6          # still felt 7 steps later


def test_elstm_rtrl_and_bptt_compute_the_same_logits():
    """The same weights give the same logits by RTRL and by BPTT, with or without sensitivities and
    with resets; evaluate() (the no-sensitivity path) scores them alike (float64)."""
    torch.manual_seed(0)
    rtrl_net = ct.CopyModel("elstm-rtrl", 12, forget_bias=1.0).double()
    bptt_net = ct.CopyModel("elstm-bptt", 12).double()
    bptt_net.load_state_dict(rtrl_net.state_dict())
    tokens = torch.randint(0, 4, (10, 4))
    reset = torch.zeros(10, 4, dtype=torch.bool)
    reset[4, 1] = reset[7, 2] = True
    by_rtrl, _ = rtrl_net(tokens, rtrl_net.initial_state(4), reset=reset)
    by_bptt, _ = bptt_net(tokens, bptt_net.initial_state(4), reset=reset)
    torch.testing.assert_close(by_rtrl, by_bptt, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        cheap, _ = rtrl_net(tokens, rtrl_net.initial_state(4, sensitivities=False), reset=reset)
    torch.testing.assert_close(cheap, by_rtrl.detach(), rtol=1e-12, atol=1e-12)
    data = ct.make_splits(6, seed=2, sizes=(10, 40, 10))["valid"]
    assert ct.evaluate(rtrl_net, data, batch_size=16) == pytest.approx(ct.evaluate(bptt_net, data, batch_size=16))


@pytest.mark.parametrize("model", ["elstm-bptt", "elstm-rtrl"])
def test_reset_starts_a_fresh_sequence_in_its_slot_only(model):
    torch.manual_seed(0)
    net = ct.CopyModel(model, 16).double()
    tokens = torch.randint(0, 4, (8, 2))
    reset = torch.zeros(8, 2, dtype=torch.bool)
    reset[3, 0] = True
    logits, _ = net(tokens, net.initial_state(2), reset=reset)
    plain, _ = net(tokens, net.initial_state(2))
    fresh, _ = net(tokens[3:, :1], net.initial_state(1))               # slot 0's new sequence alone
    torch.testing.assert_close(logits[3:, 0], fresh[:, 0], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(logits[3:, 0], plain[3:, 0])
    torch.testing.assert_close(logits[:, 1], plain[:, 1], rtol=0, atol=0)
    torch.testing.assert_close(logits[:3], plain[:3], rtol=0, atol=0)


def test_lstm_takes_no_reset():
    net = ct.CopyModel("lstm-bptt", 4)
    with pytest.raises(ValueError, match="lstm-bptt takes no reset"):
        net(torch.zeros(2, 1, dtype=torch.long), reset=torch.zeros(2, 1, dtype=torch.bool))


def test_full_sequence_rtrl_gradient_equals_bptt():
    """Per-token RTRL summed over whole sequences = BPTT's gradient (the same update, float64)."""
    config = CopyTaskConfig(model="elstm-rtrl", full_sequence=True, length=5, hidden_size=6, batch_size=4,
                            grad_clip=0.0)
    data = ct.make_splits(5, seed=0, sizes=(8, 2, 2))["train"]
    torch.manual_seed(0)
    rtrl_model = ct.CopyModel("elstm-rtrl", 6).double()
    bptt_model = ct.CopyModel("elstm-bptt", 6).double()
    bptt_model.load_state_dict(rtrl_model.state_dict())
    grads = []
    for model, model_name in ((rtrl_model, "elstm-rtrl"), (bptt_model, "elstm-bptt")):
        before = {k: v.clone() for k, v in model.named_parameters()}
        sgd = torch.optim.SGD(model.parameters(), lr=1.0)
        cfg = CopyTaskConfig(**{**config.__dict__, "model": model_name,
                                "full_sequence": model_name == "elstm-rtrl"})
        next(ct.batched_updates(model, data, cfg, sgd, torch.Generator().manual_seed(0)))
        grads.append({k: before[k] - v for k, v in model.named_parameters()})
    for name in grads[0]:
        assert grads[0][name].abs().max() > 0
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-9, atol=1e-12)


class GradientRecorder:
    """An optimizer that keeps each step's gradients and leaves the parameters as they are."""

    def __init__(self, model):
        self.model, self.grads = model, []

    def step(self):
        self.grads.append({n: p.grad.clone() for n, p in self.model.named_parameters()})

    def zero_grad(self, set_to_none=True):
        self.model.zero_grad(set_to_none=set_to_none)


def test_online_rtrl_steps_on_the_bptt_gradient_through_each_past():
    """Every tick of the online loop steps on the exact gradient of that tick's loss through the whole
    past of each slot's sequence (BPTT over the prefix from the slot's reset), θ held fixed, float64."""
    L, B, ticks = 3, 3, 12
    data = ct.make_splits(L, seed=0, sizes=(7, 2, 2))["train"]
    torch.manual_seed(0)
    net = ct.CopyModel("elstm-rtrl", 5, forget_bias=2.0).double()
    reference = ct.CopyModel("elstm-bptt", 5).double()
    reference.load_state_dict(net.state_dict())
    recorder = GradientRecorder(net)
    config = CopyTaskConfig(model="elstm-rtrl", length=L, batch_size=B, grad_clip=0.0)
    updates = ct.online_updates(net, data, config, recorder, torch.Generator().manual_seed(0))
    finished = sum(next(updates)[1] for _ in range(ticks))
    assert len(recorder.grads) == ticks and finished >= B               # one step per tick; slots restarted
    # the same schedule by hand: slots take sequences in training order, in slot order as they finish
    order = ct.sequence_order(len(data), torch.Generator().manual_seed(0))
    ends = ct.sequence_ends(data).tolist()
    slots = [[next(order), 0] for _ in range(B)]                        # [sequence, position]
    for tick in range(ticks):
        losses = []
        for sequence, position in slots:
            logits, _ = reference(data.inputs[sequence, :position + 1, None], reference.initial_state(1))
            losses.append(F.cross_entropy(logits[position], data.targets[sequence, position:position + 1]))
        reference.zero_grad()
        torch.stack(losses).mean().backward()
        for name, parameter in reference.named_parameters():
            torch.testing.assert_close(recorder.grads[tick][name], parameter.grad, rtol=1e-9, atol=1e-12)
        for slot in slots:
            slot[1] += 1
            if slot[1] >= ends[slot[0]]:
                slot[:] = [next(order), 0]
    assert recorder.grads[-1]["core.weight_c"].abs().max() > 0


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


# --- settings and run files ----------------------------------------------------------------------
@pytest.mark.parametrize("changes, message", [
    ({"length": -3}, "bad length=-3; accepted: a positive integer"),
    ({"lr": 0.0}, "bad lr=0.0; accepted: a positive finite number up to 1e30, or none"),
    ({"model": "gru"}, "bad model='gru'; accepted: lstm-bptt, elstm-bptt, elstm-rtrl"),
    ({"model": "lstm-bptt", "full_sequence": True},
     "full_sequence applies to elstm-rtrl only (BPTT models always step once per batch of sequences), "
     "not to model='lstm-bptt'"),
    ({"threads": -1}, "bad threads=-1; accepted: 0 or a positive integer, or none"),
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
def test_cli_writes_run_files(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.csv").write_text("stale,header\n1,2\n")         # an older run's file: started anew
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
    assert checkpoint["config"]["model"] == "elstm-rtrl" and "readout.weight" in checkpoint["model"]
    assert (tmp_path / "data" / "test.npz").exists()
    assert "test sequence acc" in capsys.readouterr().out


def test_cli_flags_keep_their_meaning(monkeypatch, capsys):
    seen = []

    def fake_train(config, progress=True):
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
    assert "(default: 50)" in text and "(default: elstm-rtrl)" in text
    assert "recurrent units N (per layer) (default: 256)" in " ".join(text.split())     # each flag's help is its setting's


@pytest.mark.parametrize("argv, message", [
    (["--length", "-3"], "error: bad --length=-3; accepted: a positive integer"),
    (["--hidden-size", "0"], "error: bad --hidden-size=0; accepted: a positive integer"),
    (["--lr", "0"], "error: bad --lr=0.0; accepted: a positive finite number up to 1e30, or none"),
    (["--model", "gru"], "invalid choice: 'gru'"),
    (["--loss-on", "all"], "invalid choice: 'all'"),
    (["--scoring", "paper"], "invalid choice: 'paper'"),
    (["--model", "lstm-bptt", "--full-sequence"],
     "error: --full-sequence applies to elstm-rtrl only (BPTT models always step once per batch of sequences), "
     "not to --model='lstm-bptt'"),
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


@pytest.mark.parametrize("multilayer", ["exact", "per-layer"])
def test_two_layer_full_sequence_rtrl_against_bptt(multilayer):
    """Two stacked eLSTMs: per-token exact RTRL summed over whole sequences = BPTT's update; per-layer
    RTRL (gradients between layers only within each one-token call) is not (float64)."""
    config = CopyTaskConfig(model="elstm-rtrl", full_sequence=True, length=5, hidden_size=5, batch_size=4,
                            grad_clip=0.0, num_layers=2, multilayer=multilayer)
    data = ct.make_splits(5, seed=0, sizes=(8, 2, 2))["train"]
    torch.manual_seed(0)
    rtrl_model = ct.CopyModel("elstm-rtrl", 5, num_layers=2, multilayer=multilayer).double()
    bptt_model = ct.CopyModel("elstm-bptt", 5, num_layers=2).double()
    bptt_model.load_state_dict(rtrl_model.state_dict())
    grads = []
    for model, cfg in ((rtrl_model, config), (bptt_model, CopyTaskConfig(**{**config.__dict__, "model": "elstm-bptt",
                                                                           "full_sequence": False,
                                                                           "multilayer": "exact"}))):
        before = {k: v.clone() for k, v in model.named_parameters()}
        next(ct.batched_updates(model, data, cfg, torch.optim.SGD(model.parameters(), lr=1.0),
                                torch.Generator().manual_seed(0)))
        grads.append({k: before[k] - v for k, v in model.named_parameters()})
    lower = "core.layers.0.weight_x"
    err = (grads[0][lower] - grads[1][lower]).abs().max() / grads[1][lower].abs().max()
    assert (err <= 1e-10) == (multilayer == "exact")
    if multilayer == "exact":
        for name in grads[0]:
            torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-10, atol=1e-12)
    with pytest.raises(SettingError, match="multilayer='per-layer' applies to elstm-rtrl only"):
        ct.check_config(CopyTaskConfig(model="lstm-bptt", multilayer="per-layer"))
