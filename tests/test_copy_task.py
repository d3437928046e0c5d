"""Tests of the copy task (rtrl/tasks/copy_task.py): data, scoring, training, CLI."""
import json

import numpy as np
import pytest
import torch

from rtrl import cli
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
                            eval_every=250, seed=0, progress=False, out=str(tmp_path))
    results = ct.train(config)
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
def test_models_output_shape(model):
    net = ct.CopyModel(model, 16)
    tokens = torch.randint(0, 4, (6, 3))
    logits, _ = net(tokens, net.initial_state(3))
    assert logits.shape == (6, 3, ct.NUM_CLASSES)


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


def test_elstm_rtrl_online_learns_tiny_copy_task():
    """Fully online RTRL (a step after every token) solves L=3 within seconds."""
    config = CopyTaskConfig(model="elstm-rtrl", length=3, hidden_size=32, batch_size=32, lr=1e-2,
                            train_size=500, valid_size=200, test_size=200, epochs=30, eval_every=250,
                            seed=0, progress=False)
    results = ct.train(config)
    assert results["test"]["seq_acc"] >= 0.95, results
    assert results["steps"] > results["sequences"] / config.batch_size   # many steps per batch of sequences


def test_time_budget_and_max_steps_stop_training():
    base = dict(model="elstm-bptt", length=5, hidden_size=8, batch_size=8, train_size=100, valid_size=20,
                test_size=20, epochs=1000, progress=False)
    results = ct.train(CopyTaskConfig(**base, max_steps=3))
    assert results["steps"] == 3 and "max_steps" in results["stop_reason"]
    results = ct.train(CopyTaskConfig(**base, time_budget=0.5))
    assert "time budget" in results["stop_reason"] and results["train_time_s"] < 10


# --- command line --------------------------------------------------------------------------------
def test_cli_writes_run_files(tmp_path, capsys):
    out = tmp_path / "run"
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
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == list(ct.METRIC_FIELDS)
    checkpoint = torch.load(out / "checkpoint.pt")
    assert checkpoint["config"]["model"] == "elstm-rtrl" and "readout.weight" in checkpoint["model"]
    assert (tmp_path / "data" / "test.npz").exists()
    assert "test sequence acc" in capsys.readouterr().out


def test_cli_help_lists_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["copy-task", "--help"])
    text = capsys.readouterr().out
    for flag in ("--model", "--length", "--hidden-size", "--lr", "--epochs", "--seed", "--out", "--device",
                 "--batch-size", "--time-budget", "--forget-bias", "--max-steps", "--full-sequence"):
        assert flag in text
    assert "(default: 50)" in text and "(default: elstm-rtrl)" in text


@pytest.mark.parametrize("argv, message", [
    (["--length", "-3"], "--length must be > 0, got -3"),
    (["--hidden-size", "0"], "--hidden-size must be > 0, got 0"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--model", "gru"], "invalid choice: 'gru'"),
    (["--loss-on", "all"], "invalid choice: 'all'"),
    (["--scoring", "paper"], "invalid choice: 'paper'"),
    (["--model", "lstm-bptt", "--full-sequence"], "--full-sequence applies to elstm-rtrl only"),
    (["--time-budget", "-1"], "--time-budget must be > 0"),
])
def test_cli_bad_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["copy-task", *argv, "--out", "/nonexistent/never-written"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
