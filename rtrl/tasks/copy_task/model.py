"""The copy-task model, its optimizer, and greedy evaluation.

A recurrent network of the library's vocabulary (``rtrl.models.ModelConfig``: ``cell`` elstm, indrnn,
lru or lstm; ``learning`` rtrl or bptt; ``num_layers``, ``multilayer``) reads one-hot tokens and ends in
a linear read-out to the three classes (bit 0, bit 1, blank). The paper's three models are lstm-bptt
(torch.nn.LSTM), elstm-bptt and elstm-rtrl. An element-wise cell with the same weights computes the
same logits under rtrl and bptt and, over whole sequences, the same gradients; they differ in how the
gradient is carried (docs/DESIGN.md §2).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rtrl.cells import project_parameters
from rtrl.models import ModelConfig, make_core
from rtrl.tasks.copy_task.data import NUM_CLASSES, NUM_INPUT_TOKENS, CopyData
from rtrl.tasks.copy_task.scoring import loss_mask, score


class CopyModel(nn.Module):
    """One-hot tokens → recurrent core (``config``: an element-wise cell or the LSTM, ``num_layers`` of them
    stacked) → linear read-out to the 3 classes. Element-wise cells are made by ``rtrl.models.make_core``
    (a stack is an ``rtrl.StackedRNN``: exact or per-layer RTRL); the LSTM is ``torch.nn.LSTM`` with all its
    layers, trained by BPTT."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.check_model(("rtrl", "bptt"))
        self.config = config
        if config.cell == "lstm":
            self.core = nn.LSTM(NUM_INPUT_TOKENS, config.hidden_size, num_layers=config.num_layers)
        else:
            self.core = make_core(config, NUM_INPUT_TOKENS)
        width = config.hidden_size if config.cell == "lstm" else self.core.output_size   # 2N: rtu, clru
        self.readout = nn.Linear(width, NUM_CLASSES)

    def initial_state(self, batch_size: int, sensitivities: bool = True):
        """The zero state: None for the LSTM (torch's zero state), the cell's (or stack's) state else.

        ``sensitivities=False`` leaves out the RTRL sensitivities (learning rtrl): enough to run the model
        under ``torch.no_grad()`` (evaluation), and much cheaper.
        """
        if self.config.cell == "lstm":
            return None
        state = self.core.initial_state(batch_size)
        return state if sensitivities else self.core.step_state(state)

    def forward(self, tokens: Tensor, state=None, reset: Tensor | None = None):
        """tokens (T,B) int64 → logits (T,B,3) and the state after step T.

        ``reset`` (T,B) bool, element-wise cells only: True zeroes that sequence's state (and sensitivities)
        before step t, so a new sequence can start in a running batch.
        """
        x = F.one_hot(tokens, NUM_INPUT_TOKENS).to(self.readout.weight.dtype)
        if self.config.cell == "lstm":
            if reset is not None:
                raise ValueError("the lstm takes no reset; start each batch from the zero state")
            h, state = self.core(x, state)
        else:
            h, state = self.core(x, state, reset=reset)
        return self.readout(h), state


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam with the paper's settings: betas (0.9, 0.995), eps 1e-9."""
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.995), eps=1e-9)


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float) -> None:
    """Clip the global gradient norm to ``grad_clip`` (0: no clipping), step, clear the gradients."""
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    project_parameters(model)
    optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def evaluate(model: CopyModel, data: CopyData, batch_size: int = 500, loss_on: str = "sequence",
             scoring: str = "both-bits") -> dict[str, float]:
    """Greedy predictions (argmax of the logits) from the zero state over whole sequences.

    Returns ``score`` of the predictions ({"seq_acc", "bit_acc", "bits"}) and "loss": the token
    cross-entropy averaged over the positions of ``loss_mask(loss_on, scoring)``.
    """
    device = model.readout.weight.device
    predictions, loss_sum, loss_count = [], 0.0, 0
    for start in range(0, len(data), batch_size):
        batch = data.subset(slice(start, start + batch_size))
        tokens = batch.inputs.t().to(device)                             # (T,B)
        logits, _ = model(tokens, model.initial_state(tokens.shape[1], sensitivities=False))
        logits = logits.transpose(0, 1).cpu()                           # (B,T,3)
        mask = loss_mask(batch.targets, batch.lengths, loss_on, scoring)
        loss_sum += F.cross_entropy(logits[mask], batch.targets[mask], reduction="sum").item()
        loss_count += int(mask.sum())
        predictions.append(logits.argmax(-1))
    result = score(torch.cat(predictions), data.targets, data.lengths, scoring)
    result["loss"] = loss_sum / max(loss_count, 1)
    return result
