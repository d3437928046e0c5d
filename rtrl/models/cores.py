"""Recurrent cores of the agent behind one protocol, each with its own typed state.

A core is a ``cell`` trained by a ``learning`` rule (``rtrl.models.config``):

* an element-wise cell (``elstm``, ``indrnn``, ``lru``) is an ``rtrl.ElementwiseRNN`` and a core itself:
  with ``rtrl`` its state (``RecurrentState``) holds c and the sensitivities, so the learner's gradient
  reaches back through the entire history (``rtrl`` + ``elstm`` is the paper's R2AC core); with ``tbptt``
  the gradient stops at the rollout start. With ``num_layers`` > 1 it is an ``rtrl.StackedRNN``
  (``multilayer``: exact or per-layer RTRL; or TBPTT through all layers).
* ``lstm`` — torch.nn.LSTM, truncated BPTT; state ``LSTMState(h, c)``.
* ``ff``   — no recurrence: a ReLU layer of the same width; state ``NoState()``.

The element-wise cells implement the protocol themselves; the other two are adapted here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from rtrl.cells import CELL_TYPES, StackedRNN, chrono_forget_bias
from rtrl.models.config import CORE_ALIASES, ModelConfig

CORES = tuple(CORE_ALIASES)   # the old core names, kept as aliases (``rtrl.models.config.CORE_ALIASES``)


class Core(Protocol):
    """What the agent needs of a recurrent core. x (T,B,D), reset (T,B) bool (zero the state before
    step t), y (T,B,output_size). A state is a dataclass of (B,...) tensors."""

    output_size: int
    # True when ``step_state`` drops part of the state (the RTRL sensitivities): an actor then steps with
    # the step state and brings the full state forward once per rollout with ``advance``
    steps_partial_state: bool

    def initial_state(self, batch_size: int) -> Any:
        """The zero state of ``batch_size`` sequences."""

    def step_state(self, state: Any) -> Any:
        """The part of ``state`` an actor needs to step without gradients (RTRL: c, not S)."""

    def initial_step_state(self, batch_size: int) -> Any:
        """``step_state(initial_state(batch_size))``, without building the part it drops."""

    def forward(self, x: Tensor, state: Any, reset: Tensor | None = None) -> tuple[Tensor, Any]:
        """Outputs and the state after the segment."""

    def outputs(self, x: Tensor, state: Any, reset: Tensor | None = None) -> Tensor:
        """Outputs only, with the gradient the core trains by (the learner's call)."""

    def advance(self, x: Tensor, state: Any, reset: Tensor | None = None) -> Any:
        """Without autograd, the full state after the segment (an actor's once-per-rollout replay);
        may write into the tensors of ``state``."""


@dataclass
class LSTMState:
    h: Tensor   # (B,N)
    c: Tensor   # (B,N)


@dataclass
class NoState:
    """The state of a core without memory."""


class _PlainCore(nn.Module):
    """The protocol's derived calls for a core trained by plain autograd (its full state is its step state)."""

    steps_partial_state = False

    def __init__(self, output_size: int):
        super().__init__()
        self.output_size = output_size

    def step_state(self, state):
        return state

    def initial_step_state(self, batch_size: int):
        return self.initial_state(batch_size)

    def outputs(self, x, state, reset=None):
        return self(x, state, reset)[0]

    @torch.no_grad()
    def advance(self, x, state, reset=None):
        return self(x, state, reset)[1]


class LSTMCore(_PlainCore):
    """torch.nn.LSTM; with ``chrono_max`` > 0 its forget biases start at the chrono initialisation and its
    input-gate biases at their negatives (Tallec & Ollivier 2018), as the eLSTM's do."""

    def __init__(self, input_size: int, hidden_size: int, chrono_max: float = 0.0):
        super().__init__(hidden_size)
        self.lstm = nn.LSTM(input_size, hidden_size)
        if chrono_max:
            N = hidden_size
            with torch.no_grad():   # gate order i, f, g, o; the two bias vectors add up
                forget = chrono_forget_bias(N, chrono_max)
                self.lstm.bias_hh_l0.zero_()
                self.lstm.bias_ih_l0[N:2 * N] = forget
                self.lstm.bias_ih_l0[:N] = -forget

    def initial_state(self, batch_size: int) -> LSTMState:
        w = self.lstm.weight_hh_l0
        return LSTMState(w.new_zeros(batch_size, self.output_size), w.new_zeros(batch_size, self.output_size))

    def forward(self, x, state: LSTMState, reset=None):
        h, c = state.h.unsqueeze(0), state.c.unsqueeze(0)
        keep = None if reset is None else (~reset).to(x.dtype).unsqueeze(-1)
        outputs = []
        for t in range(x.shape[0]):  # step by step: the state is zeroed at episode starts
            if keep is not None:
                h, c = h * keep[t], c * keep[t]
            out, (h, c) = self.lstm(x[t:t + 1], (h, c))
            outputs.append(out)
        return torch.cat(outputs), LSTMState(h.squeeze(0), c.squeeze(0))


class FeedForwardCore(_PlainCore):
    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(hidden_size)
        self.linear = nn.Linear(input_size, hidden_size)

    def initial_state(self, batch_size: int) -> NoState:
        return NoState()

    def forward(self, x, state: NoState, reset=None):
        return torch.relu(self.linear(x)), state


def cell_options(config: ModelConfig) -> dict:
    """The options of ``config.cell``'s constructor that the config sets (the eLSTM's init, the RTU's variant,
    the paired cells' phase)."""
    if config.cell == "elstm":
        return dict(forget_bias=config.forget_bias, init_std=config.init_std, chrono_max=config.chrono_max)
    if config.cell == "rtu":
        return dict(variant=config.rtu_variant, phase=config.phase)
    if config.cell == "clru":
        return dict(phase=config.phase)
    return {}


def make_core(config: ModelConfig, input_size: int, memory_limit: int | None = None) -> nn.Module:
    """The core ``config`` describes, reading ``input_size`` features. ``forget_bias``, ``init_std`` and
    ``chrono_max`` (replacing ``forget_bias`` when > 0) shape the eLSTM's init, of every layer of a stack;
    the LSTM takes ``chrono_max`` only (else PyTorch's init), the other cells their own init. With
    ``num_layers`` > 1 an element-wise cell is a ``StackedRNN``; ``memory_limit``: bytes its
    sensitivities may take (None: what the machine has available)."""
    config.check_model(("rtrl", "tbptt", "bptt"))
    N = config.hidden_size
    if config.cell in CELL_TYPES:
        learning = "rtrl" if config.learning == "rtrl" else "bptt"
        if config.num_layers != 1:
            return StackedRNN(input_size, N, config.num_layers, cell=config.cell, learning=learning,
                              multilayer=config.multilayer, memory_limit=memory_limit, **cell_options(config))
        return CELL_TYPES[config.cell](input_size, N, learning=learning, **cell_options(config))
    if config.cell == "lstm":
        return LSTMCore(input_size, N, config.chrono_max)
    return FeedForwardCore(input_size, N)
