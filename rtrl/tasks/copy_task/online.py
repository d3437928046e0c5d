"""Fully online RTRL: one optimizer step after every token (the training of a model with learning rtrl).

B training sequences run side by side, one in each of B *slots*. At every tick each slot feeds its
next token to the model, a call with T=1::

    logits, state = model(tokens.unsqueeze(0), state, reset=reset)     # (1,B,3)

``state`` holds the eLSTM's cell c_t and its RTRL sensitivities S_t = ∂c_t/∂θ, carried forward from the
slot's first token (S_t = a_t ⊙ S_{t-1} + local term, ``rtrl.cells.engine``). So ``loss.backward()``
on this tick's loss alone gives the exact gradient of that loss through the whole past of each
sequence — what BPTT over the sequence so far gives — with no stored history and no truncation, and
the optimizer steps at once. (The sensitivities of earlier tokens were computed under the parameters
of their tick: exact for fixed θ, the usual online approximation once θ moves.)

When a slot's sequence ends, the next training sequence starts in it: ``reset`` zeroes that slot's
state and sensitivities before its first token, while the other slots carry on. Every tick thus
covers B tokens, and there is no notion of a batch of whole sequences.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from rtrl.tasks.copy_task.config import CopyTaskConfig
from rtrl.tasks.copy_task.data import CopyData, sequence_ends, sequence_order
from rtrl.tasks.copy_task.model import CopyModel, optimizer_step
from rtrl.tasks.copy_task.scoring import loss_mask


def online_updates(model: CopyModel, data: CopyData, config: CopyTaskConfig,
                   optimizer: torch.optim.Optimizer, generator: torch.Generator) -> Iterator[tuple[float, int]]:
    """Train on ``data`` forever, a step per tick; yields (this tick's loss, sequences finished)."""
    device = model.readout.weight.device
    B = config.batch_size
    order = sequence_order(len(data), generator)                     # the training order, epoch after epoch
    inputs, targets = data.inputs.to(device), data.targets.to(device)
    scored_at = loss_mask(data.targets, data.lengths, config.loss_on, config.scoring).to(device)
    end = sequence_ends(data).to(device)
    sequence = torch.tensor([next(order) for _ in range(B)], device=device)   # (B,) each slot's sequence
    position = torch.zeros(B, dtype=torch.long, device=device)                # (B,) and its next token
    reset = torch.zeros(1, B, dtype=torch.bool, device=device)
    state = model.initial_state(B)
    while True:
        logits, state = model(inputs[sequence, position].unsqueeze(0), state, reset=reset)
        target, scored = targets[sequence, position], scored_at[sequence, position]
        loss_value = float("nan")                                    # no position with loss this tick
        if scored.any():
            loss = F.cross_entropy(logits[0][scored], target[scored])
            loss.backward()                                          # exact gradient through each past
            optimizer_step(model, optimizer, config.grad_clip)
            loss_value = loss.item()
        position += 1
        finished = position >= end[sequence]                         # these slots take a new sequence
        n_finished = int(finished.sum())
        if n_finished:
            sequence[finished] = torch.tensor([next(order) for _ in range(n_finished)], device=device)
            position[finished] = 0
        reset = finished.unsqueeze(0)
        yield loss_value, n_finished
