"""The copy-task data: token ids, the train/valid/test splits, the paper-code layout, position masks.

A pattern of L' bits (1 <= L' <= L) is encoded in 2L tokens::

    input   b_1 … b_L'  _ … _   P … P          (_ = blank, P = padding)
    target  _ … _       b_1 … b_L'  P … P
            |input phase|output phase|padding|
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

BIT_0, BIT_1, BLANK, PAD = 0, 1, 2, 3
NUM_INPUT_TOKENS = 4        # one-hot input size: bit 0, bit 1, blank, padding
NUM_CLASSES = 3             # read-out classes: bit 0, bit 1, blank
SPLITS = ("train", "valid", "test")


@dataclass
class CopyData:
    """One split. inputs, targets: (n, 2L) int64 token ids; lengths: (n,) int64 pattern lengths L'."""

    inputs: Tensor
    targets: Tensor
    lengths: Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def patterns(self) -> list[tuple[int, ...]]:
        """The bit pattern of every sequence, as tuples (for checks and disjointness)."""
        return [tuple(row[:k].tolist()) for row, k in zip(self.inputs, self.lengths.tolist())]

    def subset(self, index: Tensor | slice) -> "CopyData":
        return CopyData(self.inputs[index], self.targets[index], self.lengths[index])


def encode_sequence(bits: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(input, target) token ids, each (2·length,), for one pattern of L' = len(bits) bits."""
    k = len(bits)
    inputs = np.full(2 * length, PAD, dtype=np.int64)
    targets = np.full(2 * length, PAD, dtype=np.int64)
    inputs[:k], inputs[k:2 * k] = bits, BLANK
    targets[:k], targets[k:2 * k] = BLANK, bits
    return inputs, targets


def _draw_split(rng: np.random.Generator, size: int, length: int, forbidden: set[bytes],
                disjoint_min_length: int) -> tuple[CopyData, set[bytes]]:
    """``size`` sequences; patterns of >= disjoint_min_length bits are redrawn while in ``forbidden``."""
    inputs = np.empty((size, 2 * length), dtype=np.int64)
    targets = np.empty((size, 2 * length), dtype=np.int64)
    lengths = np.empty(size, dtype=np.int64)
    used: set[bytes] = set()
    for i in range(size):
        k = int(rng.integers(1, length + 1))
        bits = rng.integers(0, 2, size=k, dtype=np.uint8)
        if k >= disjoint_min_length:
            tries = 0
            while bits.tobytes() in forbidden:
                tries += 1
                if tries > 10000:
                    raise ValueError(f"cannot draw a {k}-bit pattern unused by the other splits; "
                                     f"make the splits smaller or raise disjoint_min_length")
                bits = rng.integers(0, 2, size=k, dtype=np.uint8)
            used.add(bits.tobytes())
        inputs[i], targets[i] = encode_sequence(bits, length)
        lengths[i] = k
    return CopyData(torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(lengths)), used


def make_splits(length: int, seed: int, sizes: tuple[int, int, int] = (10000, 1000, 1000),
                disjoint_min_length: int = 8) -> dict[str, CopyData]:
    """The train/valid/test splits, a function of (length, seed, sizes, disjoint_min_length) only.

    Each sequence draws L' uniformly from 1..L and L' fair bits. Patterns with at least
    ``disjoint_min_length`` bits appear in at most one split (valid is drawn first, then test
    avoiding valid's patterns, then train avoiding both). Shorter patterns are too few to hold out
    (there are only 2^L' of them; L'=1 has two) and every split draws them freely.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    rng = np.random.default_rng(seed)
    train_size, valid_size, test_size = sizes
    valid, valid_patterns = _draw_split(rng, valid_size, length, set(), disjoint_min_length)
    test, test_patterns = _draw_split(rng, test_size, length, valid_patterns, disjoint_min_length)
    train, _ = _draw_split(rng, train_size, length, valid_patterns | test_patterns, disjoint_min_length)
    return {"train": train, "valid": valid, "test": test}


def save_splits(splits: dict[str, CopyData], directory: str | os.PathLike) -> None:
    """Write each split to ``directory/<split>.npz`` (arrays inputs, targets, lengths)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in splits.items():
        np.savez_compressed(directory / f"{name}.npz", inputs=data.inputs.numpy(),
                            targets=data.targets.numpy(), lengths=data.lengths.numpy())


def paper_code_view(data: CopyData, length: int) -> CopyData:
    """The same patterns laid out as the paper's released code lays them out (``config.SCORING``):
    blank instead of padding in the input, and blank targets after the output phase up to position
    L + L' (padding, never scored, beyond)."""
    position = torch.arange(data.inputs.shape[1])
    k = data.lengths.unsqueeze(1)
    inputs = data.inputs.masked_fill(data.inputs == PAD, BLANK)
    targets = data.targets.masked_fill((position >= 2 * k) & (position < length + k), BLANK)
    return CopyData(inputs, targets, data.lengths)


def sequence_ends(data: CopyData) -> Tensor:
    """(n,) the number of leading positions with a target (2L', or L + L' in ``paper_code_view``)."""
    return (data.targets != PAD).sum(1)


def output_phase_mask(lengths: Tensor, total_length: int) -> Tensor:
    """(n, total_length) bool: True at the output-phase positions L'..2L'-1 of each sequence."""
    position = torch.arange(total_length, device=lengths.device)
    k = lengths.unsqueeze(1)
    return (position >= k) & (position < 2 * k)


def sequence_order(n: int, generator: torch.Generator) -> Iterator[int]:
    """Training sequence indices forever: one fresh permutation of range(n) per epoch."""
    while True:
        yield from torch.randperm(n, generator=generator).tolist()
