"""Recurrent cores of the agent, one interface for all:

    state = core.initial_state(B)                 # dict of (B, ...) tensors ({} for ff)
    y, state = core(x, state, reset)              # x (T,B,D), reset (T,B) bool -> y (T,B,N)

* ``rtrl-elstm``  — eLSTM trained by exact RTRL (the paper's R2AC core); the state holds c and the
  sensitivities, so the learner's gradient reaches back through the entire history.
* ``tbptt-elstm`` — the same eLSTM trained by truncated BPTT (gradient stops at the rollout start).
* ``lstm``        — torch.nn.LSTM, truncated BPTT.
* ``ff``          — no recurrence: a ReLU layer of the same width.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from rtrl.cells import ELSTM, RecurrentState

CORES = ("rtrl-elstm", "tbptt-elstm", "lstm", "ff")


class ELSTMCore(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, learning: str, forget_bias: float):
        super().__init__()
        self.learning = learning
        self.cell = ELSTM(input_size, hidden_size, learning=learning, forget_bias=forget_bias)
        self.output_size = hidden_size

    def initial_state(self, batch_size: int) -> dict[str, Tensor]:
        return self.cell.initial_state(batch_size).tensors()

    def forward(self, x, state, reset, carry_sensitivity: bool = True, inplace: bool = False):
        recurrent = RecurrentState.from_tensors(state, self.learning)
        y, new = self.cell(x, recurrent, reset=reset, carry_sensitivity=carry_sensitivity, inplace=inplace)
        return y, new.tensors()


class LSTMCore(nn.Module):
    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size)
        self.output_size = hidden_size

    def initial_state(self, batch_size: int) -> dict[str, Tensor]:
        w = self.lstm.weight_hh_l0
        return {"h": w.new_zeros(batch_size, self.output_size), "c": w.new_zeros(batch_size, self.output_size)}

    def forward(self, x, state, reset, carry_sensitivity: bool = True, inplace: bool = False):
        h, c = state["h"].unsqueeze(0), state["c"].unsqueeze(0)
        keep = (~reset).to(x.dtype).unsqueeze(-1)
        outputs = []
        for t in range(x.shape[0]):  # step by step: the state is zeroed at episode starts
            out, (h, c) = self.lstm(x[t:t + 1], (h * keep[t], c * keep[t]))
            outputs.append(out)
        return torch.cat(outputs), {"h": h.squeeze(0), "c": c.squeeze(0)}


class FeedForwardCore(nn.Module):
    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(input_size, hidden_size)
        self.output_size = hidden_size

    def initial_state(self, batch_size: int) -> dict[str, Tensor]:
        return {}

    def forward(self, x, state, reset, carry_sensitivity: bool = True, inplace: bool = False):
        return torch.relu(self.linear(x)), {}


def make_core(kind: str, input_size: int, hidden_size: int, forget_bias: float = 0.0) -> nn.Module:
    if kind == "rtrl-elstm":
        return ELSTMCore(input_size, hidden_size, "rtrl", forget_bias)
    if kind == "tbptt-elstm":
        return ELSTMCore(input_size, hidden_size, "bptt", forget_bias)
    if kind == "lstm":
        return LSTMCore(input_size, hidden_size)
    if kind == "ff":
        return FeedForwardCore(input_size, hidden_size)
    raise ValueError(f"unknown core {kind!r}; accepted: {', '.join(CORES)}")
