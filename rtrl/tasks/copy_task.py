"""The copy task (Irie, Gopalakrishnan & Schmidhuber, ICLR 2024, Sec. 4.1) as ``rtrl copy-task``.

Task. A pattern of L' random bits, L' uniform in 1..L, is shown; then L' blanks are shown and the
model must output the pattern. Every sequence is padded to length 2L::

    input   b_1 … b_L'  _ … _   P … P          (_ = blank, P = padding)
    target  _ … _       b_1 … b_L'  P … P
            |input phase|output phase|padding|

Vocabulary (token ids):  0 = bit 0,  1 = bit 1,  2 = blank,  3 = padding.
Inputs are one-hot over all four ids (``NUM_INPUT_TOKENS``); the read-out predicts the three
output classes 0, 1, blank (``NUM_CLASSES``). Padding is never a target.

Scoring: exactly the output phase (positions L'..2L'-1). A sequence is right when every one of its
L' output-phase predictions equals its bit (sequence accuracy, the main metric); bit accuracy is
the share of right output-phase predictions over all bits. Both bits count, unlike the paper's
released code, whose loss ignores target id 2 — in its vocabulary the bit "1" (DESIGN.md §5).

Loss: token cross-entropy averaged over the scored positions of an update. ``loss_on="sequence"``
(the default) scores every non-padding position, i.e. also "predict blank" during the input phase;
``loss_on="output"`` scores only the output phase.

Models: ``lstm-bptt`` (torch.nn.LSTM), ``elstm-bptt`` and ``elstm-rtrl`` (``rtrl.ELSTM``), each
followed by a linear read-out to the three classes. BPTT models take one optimizer step per batch
of whole sequences. ``elstm-rtrl`` learns fully online: B training sequences run side by side, the
cell is called with T=1 on every token and the optimizer steps after every token, with the state and
the RTRL sensitivities carried from the sequence's first token (the gradient at token t reaches the
whole past of its sequence, with no truncation). When a slot's sequence ends, the next training
sequence starts in it with a reset. ``full_sequence=True`` keeps the per-token RTRL calls but steps
once per batch of whole sequences, like BPTT.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import rtrl
from rtrl.files import write_atomically

BIT_0, BIT_1, BLANK, PAD = 0, 1, 2, 3
NUM_INPUT_TOKENS = 4        # one-hot input size: bit 0, bit 1, blank, padding
NUM_CLASSES = 3             # read-out classes: bit 0, bit 1, blank
MODELS = ("lstm-bptt", "elstm-bptt", "elstm-rtrl")
LOSS_ON = ("sequence", "output")
# "both-bits": every output-phase bit counts (the task as specified). "paper-code": the task as the paper's
# released code poses it, for comparison only (``paper_code_view``). Its generator pads with the blank
# token, so the input is the bits then L blanks and the target is L' blanks, the bits, then L - L' blanks.
# Its target vocabulary, built in order of appearance from the first target line (blank, 0, …, 1), gives
# the bit "1" id 2, which is also the id its loss ignores as padding (ignore_index=2) and its sequence
# accuracy counts as right whatever is predicted. Every other position counts, the input phase too.
# Outputting 0 for the L' steps after the bits and blank elsewhere -- counting, no copying -- scores 100%.
SCORING = ("both-bits", "paper-code")
SPLITS = ("train", "valid", "test")
# default Adam learning rates, from 45-60 s probes at L=10 on a 2-core CPU (docs/COPY_TASK.md):
# for eLSTM 1e-2 beat 3e-3 and 1e-3 under both BPTT and online RTRL
DEFAULT_LR = {"lstm-bptt": 3e-3, "elstm-bptt": 1e-2, "elstm-rtrl": 1e-2}


@dataclass
class CopyTaskConfig:
    """One run of the copy task; saved with the run (checkpoint and results.json)."""

    model: str = "elstm-rtrl"          # one of MODELS
    length: int = 50                   # L: patterns have 1..L bits; sequences have 2L tokens
    hidden_size: int = 256             # N, recurrent units
    forget_bias: float = 0.0           # initial eLSTM forget-gate bias (paper: 0); LSTM keeps torch defaults
    lr: float | None = None            # Adam learning rate (None: DEFAULT_LR[model])
    grad_clip: float = 1.0             # max global gradient norm (0 disables clipping)
    batch_size: int = 128              # sequences per update (BPTT) / side by side (online RTRL)
    full_sequence: bool = False        # elstm-rtrl: one step per batch of sequences instead of per token
    loss_on: str = "sequence"          # "sequence": all non-padding positions; "output": output phase only
    scoring: str = "both-bits"         # "both-bits"; "paper-code": the released code's layout, loss and score (SCORING)
    epochs: int = 100                  # passes over the training split (an upper bound)
    max_steps: int | None = None       # stop after this many optimizer steps
    time_budget: float | None = None   # stop training after this many seconds of wall time
    eval_every: int | None = None      # validate every this many training sequences (None: once per epoch)
    train_size: int = 10000            # paper: 10000
    valid_size: int = 1000             # paper: 1000
    test_size: int = 1000              # paper: 1000
    disjoint_min_length: int = 8       # patterns of >= this many bits never occur in two splits
    eval_batch_size: int = 500         # sequences per forward pass when evaluating
    seed: int = 0                      # seeds the data, the initialisation and the training order
    device: str = "cpu"                # "cpu" or "cuda"
    threads: int | None = 1            # torch CPU threads (0/None: torch's default); 1 is far faster on a busy machine
    out: str | None = None             # run directory (metrics.csv, checkpoint, plot, results.json)
    save_data: str | None = None       # also write the splits as .npz files to this directory
    progress: bool = True              # show a tqdm progress bar


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
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

    def subset(self, index: Tensor) -> "CopyData":
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
    """The same patterns laid out as the paper's released code lays them out (see ``SCORING``): blank
    instead of padding in the input, and blank targets after the output phase up to position L + L'
    (padding, never scored, beyond)."""
    position = torch.arange(data.inputs.shape[1])
    k = data.lengths.unsqueeze(1)
    inputs = data.inputs.masked_fill(data.inputs == PAD, BLANK)
    targets = data.targets.masked_fill((position >= 2 * k) & (position < length + k), BLANK)
    return CopyData(inputs, targets, data.lengths)


def sequence_ends(data: CopyData) -> Tensor:
    """(n,) the number of leading positions with a target (2L', or L + L' in ``paper_code_view``)."""
    return (data.targets != PAD).sum(1)


def check_scoring(scoring: str) -> None:
    if scoring not in SCORING:
        raise ValueError(f"unknown scoring {scoring!r}; accepted: {', '.join(SCORING)}")


def output_phase_mask(lengths: Tensor, total_length: int) -> Tensor:
    """(n, total_length) bool: True at the output-phase positions L'..2L'-1 of each sequence."""
    position = torch.arange(total_length, device=lengths.device)
    k = lengths.unsqueeze(1)
    return (position >= k) & (position < 2 * k)


def loss_mask(data_targets: Tensor, lengths: Tensor, loss_on: str, scoring: str = "both-bits") -> Tensor:
    """(n, 2L) bool: the positions that carry loss (see the module docstring and ``SCORING``)."""
    check_scoring(scoring)
    if loss_on == "sequence":
        mask = data_targets != PAD
    elif loss_on == "output":
        mask = output_phase_mask(lengths, data_targets.shape[1])
    else:
        raise ValueError(f"unknown loss_on {loss_on!r}; accepted: {', '.join(LOSS_ON)}")
    return mask & (data_targets != BIT_1) if scoring == "paper-code" else mask


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------
def score(predictions: Tensor, targets: Tensor, lengths: Tensor, scoring: str = "both-bits") -> dict[str, float]:
    """Sequence and bit accuracy over exactly the output phase.

    Args:
        predictions: (n, 2L) predicted class ids (0, 1 or 2 = blank).
        targets: (n, 2L) target ids as in ``CopyData``.  lengths: (n,) pattern lengths L'.
        scoring: "both-bits", or "paper-code" where a bit-1 target counts as right whatever is
            predicted (the released code's accuracy; see ``SCORING``).
    Returns:
        {"seq_acc": share of sequences with every output-phase bit right,
         "bit_acc": share of right output-phase bits, "bits": number of bits scored}.
    """
    check_scoring(scoring)
    mask = output_phase_mask(lengths, targets.shape[1])
    n_bits = int(lengths.sum())
    if scoring == "paper-code":
        # the released code: every position with a target counts, and a bit-1 target is always right
        ok = (predictions == targets) | (targets == BIT_1) | (targets == PAD)
        return {"seq_acc": ok.all(1).float().mean().item(),
                "bit_acc": (ok & mask).sum().item() / max(n_bits, 1), "bits": n_bits}
    right = (predictions == targets) & mask
    bits_right_per_seq = right.sum(1)
    seq_right = bits_right_per_seq == lengths
    return {"seq_acc": seq_right.float().mean().item(),
            "bit_acc": bits_right_per_seq.sum().item() / max(n_bits, 1), "bits": n_bits}


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------
class CopyModel(nn.Module):
    """One-hot tokens → recurrent core (LSTM or eLSTM) → linear read-out to the 3 classes."""

    def __init__(self, model: str, hidden_size: int, forget_bias: float = 0.0):
        super().__init__()
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; accepted: {', '.join(MODELS)}")
        self.kind = model
        if model == "lstm-bptt":
            self.core = nn.LSTM(NUM_INPUT_TOKENS, hidden_size)
        else:
            learning = "rtrl" if model == "elstm-rtrl" else "bptt"
            self.core = rtrl.ELSTM(NUM_INPUT_TOKENS, hidden_size, learning=learning, forget_bias=forget_bias)
        self.readout = nn.Linear(hidden_size, NUM_CLASSES)

    def initial_state(self, batch_size: int):
        if self.kind == "lstm-bptt":
            return None
        return self.core.initial_state(batch_size)

    def forward(self, tokens: Tensor, state=None, reset: Tensor | None = None,
                carry_sensitivity: bool = True):
        """tokens (T,B) int64 → logits (T,B,3), state. ``reset`` (T,B) bool: eLSTM only."""
        x = F.one_hot(tokens, NUM_INPUT_TOKENS).to(self.readout.weight.dtype)
        if self.kind == "lstm-bptt":
            if reset is not None:
                raise ValueError("lstm-bptt takes no reset; start each batch from the zero state")
            h, state = self.core(x, state)
        elif self.kind == "elstm-rtrl":
            h, state = self.core(x, state, reset=reset, carry_sensitivity=carry_sensitivity)
        else:
            h, state = self.core(x, state, reset=reset)
        return self.readout(h), state


@torch.no_grad()
def evaluate(model: CopyModel, data: CopyData, batch_size: int = 500, loss_on: str = "sequence",
             scoring: str = "both-bits") -> dict[str, float]:
    """Greedy predictions from the zero state over whole sequences; ``score`` plus the mean loss."""
    device = model.readout.weight.device
    predictions, loss_sum, loss_count = [], 0.0, 0
    for start in range(0, len(data), batch_size):
        batch = data.subset(slice(start, start + batch_size))
        tokens = batch.inputs.t().to(device)                             # (T,B)
        logits, _ = model(tokens, model.initial_state(tokens.shape[1]), carry_sensitivity=False)
        logits = logits.transpose(0, 1).cpu()                           # (B,T,3)
        mask = loss_mask(batch.targets, batch.lengths, loss_on, scoring)
        loss_sum += F.cross_entropy(logits[mask], batch.targets[mask], reduction="sum").item()
        loss_count += int(mask.sum())
        predictions.append(logits.argmax(-1))
    result = score(torch.cat(predictions), data.targets, data.lengths, scoring)
    result["loss"] = loss_sum / max(loss_count, 1)
    return result


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam with the paper's settings: betas (0.9, 0.995), eps 1e-9."""
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.995), eps=1e-9)


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float) -> None:
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def sequence_order(n: int, generator: torch.Generator) -> Iterator[int]:
    """Training sequence indices forever: one fresh permutation per epoch."""
    while True:
        yield from torch.randperm(n, generator=generator).tolist()


def batched_updates(model: CopyModel, data: CopyData, config: CopyTaskConfig,
                    optimizer: torch.optim.Optimizer, generator: torch.Generator
                    ) -> Iterator[tuple[float, int]]:
    """One optimizer step per batch of whole sequences; yields (loss, sequences in the batch).

    BPTT models: one forward over the batch (cut at its longest sequence) and one backward.
    elstm-rtrl with ``full_sequence``: T=1 calls on every token carrying state and sensitivities,
    the per-token RTRL gradients summed, one step at the end.
    """
    device = model.readout.weight.device
    order = sequence_order(len(data), generator)
    while True:
        index = torch.tensor([next(order) for _ in range(config.batch_size)])
        batch = data.subset(index)
        T = int(sequence_ends(batch).max())
        tokens = batch.inputs[:, :T].t().to(device)                       # (T,B)
        targets = batch.targets[:, :T].t().to(device)
        mask = loss_mask(batch.targets, batch.lengths, config.loss_on, config.scoring)[:, :T].t().to(device)
        count = int(mask.sum())
        if count == 0:      # possible with --loss-on output --scoring paper-code: nothing to learn from
            yield float("nan"), config.batch_size
            continue
        state = model.initial_state(config.batch_size)
        if config.model == "elstm-rtrl":
            total = 0.0
            for t in range(T):
                logits, state = model(tokens[t:t + 1], state)
                if mask[t].any():
                    loss = F.cross_entropy(logits[0][mask[t]], targets[t][mask[t]], reduction="sum") / count
                    loss.backward()
                    total += loss.item()
        else:
            logits, _ = model(tokens, state)
            loss = F.cross_entropy(logits[mask], targets[mask])
            loss.backward()
            total = loss.item()
        optimizer_step(model, optimizer, config.grad_clip)
        yield total, config.batch_size


def online_updates(model: CopyModel, data: CopyData, config: CopyTaskConfig,
                   optimizer: torch.optim.Optimizer, generator: torch.Generator
                   ) -> Iterator[tuple[float, int]]:
    """Fully online RTRL: an optimizer step after every token; yields (loss, sequences finished).

    ``batch_size`` slots each run one training sequence; a slot whose sequence has ended starts the
    next one (reset=True zeroes its state and sensitivities), so every step covers B tokens.
    """
    device = model.readout.weight.device
    B = config.batch_size
    order = sequence_order(len(data), generator)
    inputs, targets = data.inputs.to(device), data.targets.to(device)
    mask_all = loss_mask(data.targets, data.lengths, config.loss_on, config.scoring).to(device)
    end = sequence_ends(data).to(device)
    slot_sequence = torch.tensor([next(order) for _ in range(B)], device=device)
    position = torch.zeros(B, dtype=torch.long, device=device)
    reset = torch.zeros(1, B, dtype=torch.bool, device=device)
    state = model.initial_state(B)
    while True:
        tokens = inputs[slot_sequence, position]
        target = targets[slot_sequence, position]
        scored = mask_all[slot_sequence, position]
        logits, state = model(tokens.unsqueeze(0), state, reset=reset)
        loss_value = float("nan")
        if scored.any():
            loss = F.cross_entropy(logits[0][scored], target[scored])
            loss.backward()
            optimizer_step(model, optimizer, config.grad_clip)
            loss_value = loss.item()
        position += 1
        finished = position >= end[slot_sequence]
        n_finished = int(finished.sum())
        if n_finished:
            slot_sequence[finished] = torch.tensor([next(order) for _ in range(n_finished)], device=device)
            position[finished] = 0
        reset = finished.unsqueeze(0)
        yield loss_value, n_finished


METRIC_FIELDS = ("step", "sequences", "epoch", "wall_time", "train_loss", "valid_loss",
                 "valid_seq_acc", "valid_bit_acc")


def plot_learning_curve(rows: list[dict], path: Path, title: str) -> None:
    """valid sequence/bit accuracy and train loss against training sequences, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seen = [r["sequences"] for r in rows]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_acc.plot(seen, [100 * r["valid_seq_acc"] for r in rows], marker=".", label="valid sequence acc.")
    ax_acc.plot(seen, [100 * r["valid_bit_acc"] for r in rows], marker=".", label="valid bit acc.")
    ax_acc.set_xlabel("training sequences")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_ylim(0, 101)
    ax_acc.legend(loc="lower right")
    ax_loss.plot(seen, [r["train_loss"] for r in rows], marker=".", label="train")
    ax_loss.plot(seen, [r["valid_loss"] for r in rows], marker=".", label="valid")
    ax_loss.set_xlabel("training sequences")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    fig.suptitle(title)
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


def check_config(config: CopyTaskConfig) -> None:
    """Raise ValueError naming the bad field, its value and what is accepted."""
    def positive(name, allow_none=False):
        value = getattr(config, name)
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")

    if config.model not in MODELS:
        raise ValueError(f"unknown model {config.model!r}; accepted: {', '.join(MODELS)}")
    if config.loss_on not in LOSS_ON:
        raise ValueError(f"unknown loss_on {config.loss_on!r}; accepted: {', '.join(LOSS_ON)}")
    check_scoring(config.scoring)
    if config.device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {config.device!r}; accepted: cpu, cuda")
    for name in ("length", "hidden_size", "batch_size", "epochs", "train_size", "valid_size",
                 "test_size", "eval_batch_size", "disjoint_min_length"):
        positive(name)
    for name in ("lr", "max_steps", "time_budget", "eval_every"):
        positive(name, allow_none=True)
    if config.threads is not None and not config.threads >= 0:
        raise ValueError(f"threads must be >= 0 (0: torch's default), got {config.threads!r}")
    if not config.grad_clip >= 0:
        raise ValueError(f"grad_clip must be >= 0 (0 disables clipping), got {config.grad_clip!r}")
    if config.full_sequence and config.model != "elstm-rtrl":
        raise ValueError(f"full_sequence applies to elstm-rtrl only (BPTT models always step once per "
                         f"batch of sequences), got model {config.model!r}")


def train(config: CopyTaskConfig) -> dict:
    """Train, validate, keep the best checkpoint, test it; write the run files; return the results.

    Stops at the first of: ``epochs`` passes, ``max_steps`` optimizer steps, ``time_budget``
    seconds, or 100% validation sequence accuracy.
    """
    from tqdm import tqdm

    check_config(config)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; accepted here: cpu")
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    out = Path(config.out) if config.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)

    splits = make_splits(config.length, config.seed,
                         (config.train_size, config.valid_size, config.test_size), config.disjoint_min_length)
    if config.save_data:
        save_splits(splits, config.save_data)
    if config.scoring == "paper-code":
        splits = {name: paper_code_view(data, config.length) for name, data in splits.items()}
    torch.manual_seed(config.seed)
    model = CopyModel(config.model, config.hidden_size, config.forget_bias).to(device)
    if config.lr is None:
        config = dataclasses.replace(config, lr=DEFAULT_LR[config.model])
    optimizer = make_optimizer(model, config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    online = config.model == "elstm-rtrl" and not config.full_sequence
    updates = (online_updates if online else batched_updates)(model, splits["train"], config, optimizer, generator)

    eval_every = config.eval_every or config.train_size
    total_sequences = config.epochs * config.train_size
    rows: list[dict] = []
    best = {"valid_seq_acc": -1.0}
    checkpoint_path = out / "checkpoint.pt" if out else None
    best_state = None
    step = sequences = 0
    next_eval = eval_every
    loss_sum, loss_count = 0.0, 0
    stop_reason = f"{config.epochs} epochs"
    start = time.perf_counter()
    bar = tqdm(total=total_sequences, unit="seq", disable=not config.progress, dynamic_ncols=True,
               desc=f"{config.model} L={config.length}")

    def validate() -> dict:
        model.eval()
        valid = evaluate(model, splits["valid"], config.eval_batch_size, config.loss_on, config.scoring)
        model.train()
        row = {"step": step, "sequences": sequences, "epoch": sequences / config.train_size,
               "wall_time": time.perf_counter() - start,
               "train_loss": loss_sum / loss_count if loss_count else float("nan"),
               "valid_loss": valid["loss"], "valid_seq_acc": valid["seq_acc"], "valid_bit_acc": valid["bit_acc"]}
        rows.append(row)
        if out:
            write_atomically(out / "metrics.csv", lambda tmp: _write_csv(tmp, rows))
        return row

    for loss_value, finished in updates:
        step += 1
        sequences += finished
        bar.update(finished)
        if not math.isnan(loss_value):
            loss_sum, loss_count = loss_sum + loss_value, loss_count + 1
        elapsed = time.perf_counter() - start
        out_of_time = config.time_budget is not None and elapsed >= config.time_budget
        out_of_steps = config.max_steps is not None and step >= config.max_steps
        done = sequences >= total_sequences
        if sequences >= next_eval or out_of_time or out_of_steps or done:
            next_eval = (sequences // eval_every + 1) * eval_every
            row = validate()
            loss_sum, loss_count = 0.0, 0
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", valid_seq=f"{100 * row['valid_seq_acc']:.1f}%")
            if row["valid_seq_acc"] > best["valid_seq_acc"]:
                best = dict(row)
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if checkpoint_path:
                    payload = {"model": best_state, "config": dataclasses.asdict(config), "valid": best}
                    write_atomically(checkpoint_path, lambda tmp: torch.save(payload, tmp))
            if row["valid_seq_acc"] >= 1.0:
                stop_reason = "100% validation sequence accuracy"
                break
            if out_of_time:
                stop_reason = f"time budget {config.time_budget:g} s"
                break
            if out_of_steps:
                stop_reason = f"max_steps {config.max_steps}"
                break
            if done:
                break
    bar.close()
    train_time = time.perf_counter() - start

    model.load_state_dict(best_state)
    model.eval()
    test = evaluate(model, splits["test"], config.eval_batch_size, config.loss_on, config.scoring)
    reached = next((r for r in rows if r["valid_seq_acc"] >= 1.0), None)
    results = {
        "config": dataclasses.asdict(config),
        "test": test,
        "best_valid": best,
        "stop_reason": stop_reason,
        "steps": step,
        "sequences": sequences,
        "train_time_s": train_time,
        "time_to_100pct_valid_s": reached["wall_time"] if reached else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if out:
        write_atomically(out / "results.json", lambda tmp: tmp.write_text(json.dumps(results, indent=2)))
        plot_learning_curve(rows, out / "learning_curve.png",
                            f"copy task, {config.model}, L={config.length}, N={config.hidden_size}")
    return results


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``rtrl copy-task``."""
    d = CopyTaskConfig()
    p = subparsers.add_parser(
        "copy-task", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="the copy-task diagnostic (Irie et al. 2024, Sec. 4.1)",
        description="Copy task: read L' random bits (L' uniform in 1..L), then L' blanks, and output the "
                    "bits. Vocabulary: 0, 1, 2=blank, 3=padding. Scored on the output phase only: "
                    "sequence accuracy (all bits right) and bit accuracy. Writes metrics.csv, "
                    "checkpoint.pt (best validation), learning_curve.png and results.json to --out.")
    p.add_argument("--model", choices=MODELS, default=d.model,
                   help="lstm-bptt / elstm-bptt: one step per batch of sequences; elstm-rtrl: fully online, "
                        "one step per token")
    p.add_argument("--length", type=int, default=d.length, help="L: patterns have 1..L bits, sequences 2L tokens")
    p.add_argument("--hidden-size", type=int, default=d.hidden_size, help="recurrent units N")
    p.add_argument("--forget-bias", type=float, default=d.forget_bias,
                   help="initial eLSTM forget-gate bias (paper: 0); the LSTM keeps torch's init")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate (betas 0.9/0.995, eps 1e-9); None = 1e-2 for the eLSTM models, "
                        "3e-3 for lstm-bptt")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm; 0 disables")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="sequences per update (BPTT, --full-sequence) or run side by side (online RTRL)")
    p.add_argument("--full-sequence", action="store_true",
                   help="elstm-rtrl: step once per batch of whole sequences instead of after every token")
    p.add_argument("--loss-on", choices=LOSS_ON, default=d.loss_on,
                   help="positions with loss: 'sequence' = input phase (target blank) and output phase; "
                        "'output' = output phase only. Both-bits scoring is always the output phase.")
    p.add_argument("--scoring", choices=SCORING, default=d.scoring,
                   help="'both-bits': every output bit counts. 'paper-code': for comparison only, the task as "
                        "the paper's released code poses it: padding is blank (input and target), and bit-1 "
                        "targets are dropped from the loss and count as right whatever is predicted (its "
                        "vocabulary gives bit 1 the ignored padding id), so counting L' steps and outputting 0 "
                        "scores 100%%")
    p.add_argument("--epochs", type=int, default=d.epochs, help="max passes over the training split")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="max optimizer steps; None = no limit")
    p.add_argument("--time-budget", type=float, default=d.time_budget, metavar="SECONDS",
                   help="stop training after this much wall time; None = no limit")
    p.add_argument("--eval-every", type=int, default=d.eval_every, metavar="SEQUENCES",
                   help="validate every this many training sequences; None = once per epoch")
    p.add_argument("--train-size", type=int, default=d.train_size, help="training sequences")
    p.add_argument("--valid-size", type=int, default=d.valid_size, help="validation sequences")
    p.add_argument("--test-size", type=int, default=d.test_size, help="test sequences")
    p.add_argument("--disjoint-min-length", type=int, default=d.disjoint_min_length,
                   help="patterns of at least this many bits occur in one split only")
    p.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size, help="sequences per eval batch")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds data, initialisation and training order")
    p.add_argument("--device", choices=("cpu", "cuda"), default=d.device, help="torch device")
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads; 0 = torch's choice. On a shared/busy CPU more threads than free cores "
                        "can be 10x slower (OpenMP spinning)")
    p.add_argument("--out", default=None, help="run directory; None = runs/copy-<model>-L<length>-s<seed>")
    p.add_argument("--save-data", default=None, metavar="DIR", help="also write the splits to DIR/<split>.npz")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run, _parser=p)
    return p


def run(args: argparse.Namespace) -> int:
    out = args.out or f"runs/copy-{args.model}-L{args.length}-s{args.seed}"
    fields = {f.name for f in dataclasses.fields(CopyTaskConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    config = CopyTaskConfig(**{**values, "out": out, "progress": not args.no_progress})
    try:
        check_config(config)
        if config.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda requested but CUDA is not available; accepted here: cpu")
    except ValueError as error:
        flag = str(error).split()[0] if str(error) else ""
        args._parser.error(str(error).replace(flag, "--" + flag.replace("_", "-"), 1)
                           if flag in fields else str(error))
    results = train(config)
    test = results["test"]
    print(f"{config.model} L={config.length}: stopped after {results['sequences']} sequences, "
          f"{results['steps']} steps, {results['train_time_s']:.1f} s ({results['stop_reason']})")
    print(f"best valid sequence acc {100 * results['best_valid']['valid_seq_acc']:.2f}%; "
          f"test sequence acc {100 * test['seq_acc']:.2f}%, bit acc {100 * test['bit_acc']:.2f}%")
    print(f"wrote {out}/results.json, metrics.csv, checkpoint.pt, learning_curve.png")
    return 0
