"""The copy task's data (rtrl/tasks/copy_task/): the sequence format, splits, saved data."""
import numpy as np
import pytest
import torch

from rtrl.tasks import copy_task as ct
from rtrl.tasks.copy_task import BLANK, PAD


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
