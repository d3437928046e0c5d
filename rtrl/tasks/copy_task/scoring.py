"""What is scored and what carries loss.

Scoring is exactly the output phase (positions L'..2L'-1). A sequence is right when every one of its
L' output-phase predictions equals its bit (sequence accuracy, the main metric); bit accuracy is the
share of right output-phase predictions over all bits. Both bits count, unlike the paper's released
code, whose loss ignores target id 2 — in its vocabulary the bit "1" (``config.SCORING``, docs/DESIGN.md §5).

Loss: token cross-entropy averaged over the positions ``loss_mask`` selects. ``loss_on="sequence"``
scores every non-padding position, i.e. also "predict blank" during the input phase;
``loss_on="output"`` scores only the output phase.
"""
from __future__ import annotations

from torch import Tensor

from rtrl.tasks.copy_task.config import LOSS_ON, SCORING
from rtrl.tasks.copy_task.data import BIT_1, PAD, output_phase_mask


def _check_choice(name: str, value: str, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise ValueError(f"unknown {name} {value!r}; accepted: {', '.join(accepted)}")


def check_scoring(scoring: str) -> None:
    _check_choice("scoring", scoring, SCORING)


def loss_mask(data_targets: Tensor, lengths: Tensor, loss_on: str, scoring: str = "both-bits") -> Tensor:
    """(n, 2L) bool: the positions that carry loss; "paper-code" drops the bit-1 targets too.

    Args:
        data_targets: (n, 2L) target ids as in ``CopyData``.  lengths: (n,) pattern lengths L'.
        loss_on: "sequence" (every non-padding position) or "output" (the output phase).
    """
    check_scoring(scoring)
    _check_choice("loss_on", loss_on, LOSS_ON)
    if loss_on == "sequence":
        mask = data_targets != PAD
    else:
        mask = output_phase_mask(lengths, data_targets.shape[1])
    return mask & (data_targets != BIT_1) if scoring == "paper-code" else mask


def score(predictions: Tensor, targets: Tensor, lengths: Tensor, scoring: str = "both-bits") -> dict[str, float]:
    """Sequence and bit accuracy over exactly the output phase.

    Args:
        predictions: (n, 2L) predicted class ids (0, 1 or 2 = blank).
        targets: (n, 2L) target ids as in ``CopyData``.  lengths: (n,) pattern lengths L'.
        scoring: "both-bits", or "paper-code" where every position with a target counts (the input
            phase too) and a bit-1 target counts as right whatever is predicted (the released code's
            accuracy; see ``config.SCORING``).
    Returns:
        {"seq_acc": share of sequences with every scored prediction right,
         "bit_acc": share of right output-phase bits, "bits": number of bits scored}.
    """
    check_scoring(scoring)
    mask = output_phase_mask(lengths, targets.shape[1])
    n_bits = int(lengths.sum())
    if scoring == "paper-code":
        ok = (predictions == targets) | (targets == BIT_1) | (targets == PAD)
        return {"seq_acc": ok.all(1).float().mean().item(),
                "bit_acc": (ok & mask).sum().item() / max(n_bits, 1), "bits": n_bits}
    right = (predictions == targets) & mask
    bits_right_per_seq = right.sum(1)
    seq_right = bits_right_per_seq == lengths
    return {"seq_acc": seq_right.float().mean().item(),
            "bit_acc": bits_right_per_seq.sum().item() / max(n_bits, 1), "bits": n_bits}
