"""The copy task's scoring (rtrl/tasks/copy_task/): both bits scored by default, and the released code's
scoring (paper-code) that rates a counter at 100%."""
import numpy as np
import pytest
import torch

from conftest import copy_net
from rtrl.tasks import copy_task as ct
from rtrl.tasks.copy_task import BIT_1, BLANK, PAD, CopyTaskConfig


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
    model = copy_net("elstm-rtrl", 32)
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
    model = copy_net("elstm-rtrl", 8)
    result = ct.evaluate(model, small_valid, batch_size=64)
    assert 0 <= result["seq_acc"] < 0.5 and result["loss"] > 0
