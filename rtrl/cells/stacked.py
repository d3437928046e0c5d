"""A stack of element-wise layers with a choice of how the gradient crosses layers and calls."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn

from rtrl.cells.cells import ELSTM, DiagonalLRU, IndRNN
from rtrl.cells.complex_cells import RTU, ComplexLRU
from rtrl.cells.multilayer import HistoryGradient, cross_key, exact_sweep, layer_parameters
from rtrl.cells.state import RecurrentState, TensorState
from rtrl.cells.transition import input_projection, transition_loop

CELL_TYPES = {"elstm": ELSTM, "indrnn": IndRNN, "lru": DiagonalLRU, "rtu": RTU, "clru": ComplexLRU}
STACK_LEARNING = ("rtrl", "bptt")
MULTILAYER = ("exact", "per-layer")
# the spelling before ``multilayer`` existed: learning="rtrl-per-layer" is learning="rtrl", multilayer="per-layer"
_OLD_LEARNING = {"rtrl-per-layer": ("rtrl", "per-layer")}
# how each layer of the stack runs by itself, by mode: exact mode drives plain layers and keeps all blocks itself
_LAYER_LEARNING = {"exact": "bptt", "per-layer": "rtrl", "bptt": "bptt"}


_MODE_SPELLING = {"exact": "learning='rtrl', multilayer='exact'", "per-layer": "learning='rtrl', multilayer='per-layer'",
                  "bptt": "learning='bptt'"}


class SensitivityMemoryError(ValueError):
    """The sensitivities a state would hold do not fit in the memory allowed for them."""


def available_memory() -> int:
    """Bytes the kernel reports as available (MemAvailable), else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def format_bytes(num_bytes: float) -> str:
    """1.5 GiB, 12 MiB, 10.5 KiB, 300 B."""
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if num_bytes >= size:
            return f"{num_bytes / size:.3g} {unit}"
    return f"{num_bytes:.0f} B"


@dataclass
class StackedState(TensorState):
    """State of a ``StackedRNN``: each layer's ``RecurrentState`` (c and, in the RTRL modes, the diagonal
    sensitivities ∂c^l/∂θ_l) and, in exact mode, the cross blocks S^{l,k} = ∂c^l/∂θ_k for k < l by
    ``cross_key(l, k, name)``, each (B, N_l, numel of θ_k[name])."""

    layers: list[RecurrentState]
    cross: dict[str, Tensor] = field(default_factory=dict)
    mode: str = "exact"   # the stack's ``mode``: "exact", "per-layer" or "bptt"


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"bad {name}={value!r}; accepted: a positive int")


class StackedRNN(nn.Module):
    """L element-wise layers; layer l reads layer l−1's output y^{l-1} (the eLSTM's gated output, the
    state itself for IndRNN and the LRU). The call contract of a single cell: ``state =
    stack.initial_state(B)``; ``y, state = stack(x, state, reset=done)``; ``loss(y).backward()``.

    Write θ_k for all of layer k's parameters (its recurrent tensors and its readout's: in a stack the
    eLSTM's output gate of layer k feeds layer k+1 and so reaches the future) and e^l_0 = ∂L/∂c^l_0 for
    BPTT's adjoint, inside the call, of layer l's state before it. For a loss on this call's outputs,
    the true gradient is dL/dθ_k = (BPTT inside the call) + Σ_{l ≥ k} e^l_0 · S^{l,k}_0 with
    S^{l,k}_0 = dc^l_0/dθ_k through the whole history since the last reset. ``learning`` and ``multilayer``:

    * ``learning="rtrl", multilayer="exact"`` — exact: keeps every term. The state carries all L(L+1)/2 blocks S^{l,k}; the
      cross blocks (k < l) are dense, (B, N_l, |θ_k|), so two layers cost O(N³) memory and time per step
      and three O(N⁴) time (``rtrl.cells.multilayer``). Gradients equal full-history BPTT.
    * ``learning="rtrl", multilayer="per-layer"`` — each layer is a single-layer RTRL cell (what the paper does for its one
      recurrent layer): keeps BPTT inside the call and e^k_0 · S^{k,k}_0 (each layer's own parameters
      through its own past, its input held fixed); drops Σ_{l > k} e^l_0 · S^{l,k}_0, every path by
      which θ_k reached a higher layer's state before the call. Memory and time as L single layers.
    * ``learning="bptt"`` — plain autograd: keeps BPTT inside the call and, while the returned state stays
      attached, through earlier calls; detach it for truncated BPTT (which drops every e_0 term).

    In every mode the gradient for x (a stem below the stack) is BPTT inside the call.

    Args:
        input_size: D.  hidden_size: N, one int or one per layer.  num_layers: L.
        cell: "elstm", "indrnn" or "lru".  learning: "rtrl" or "bptt".  multilayer: with "rtrl", "exact" or
            "per-layer" (ignored with "bptt"). The old ``learning="rtrl-per-layer"`` still means
            ``learning="rtrl", multilayer="per-layer"``.
        memory_limit: bytes the sensitivities of ``initial_state`` may take; None: what the machine has
            available (``available_memory``). Above it ``initial_state`` raises ``SensitivityMemoryError``.
        **cell_options: passed to every layer (``forget_bias=3.0`` for the eLSTM, say).
    """

    def __init__(self, input_size: int, hidden_size: int | Sequence[int], num_layers: int, cell: str = "elstm",
                 learning: str = "rtrl", memory_limit: int | None = None, multilayer: str = "exact",
                 **cell_options):
        super().__init__()
        _check_positive("input_size", input_size)
        _check_positive("num_layers", num_layers)
        sizes = [hidden_size] * num_layers if isinstance(hidden_size, int) and not isinstance(hidden_size, bool) \
            else list(hidden_size) if isinstance(hidden_size, (list, tuple)) else None
        if sizes is None or len(sizes) != num_layers or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                                                            for n in sizes):
            raise ValueError(f"bad hidden_size={hidden_size!r} for num_layers={num_layers}; accepted: a positive "
                             f"int or a list of {num_layers} positive ints")
        if cell not in CELL_TYPES:
            raise ValueError(f"unknown cell {cell!r}; accepted: {', '.join(CELL_TYPES)}")
        learning, multilayer = _OLD_LEARNING.get(learning, (learning, multilayer))
        if learning not in STACK_LEARNING:
            raise ValueError(f"unknown learning {learning!r}; accepted: {', '.join(STACK_LEARNING)}")
        if multilayer not in MULTILAYER:
            raise ValueError(f"unknown multilayer {multilayer!r}; accepted: {', '.join(MULTILAYER)}")
        self.input_size, self.hidden_size, self.num_layers = input_size, sizes, num_layers
        self.cell, self.learning, self.memory_limit = cell, learning, memory_limit
        self.multilayer = multilayer if learning == "rtrl" else None
        self.mode = self.multilayer or "bptt"   # how gradients cross layers and calls: exact, per-layer, bptt
        self.layers = nn.ModuleList()
        for n in sizes:   # each layer reads the output of the one below (2N for a paired cell)
            d = self.layers[-1].output_size if len(self.layers) else input_size
            self.layers.append(CELL_TYPES[cell](d, n, learning=_LAYER_LEARNING[self.mode], **cell_options))

    @property
    def output_size(self) -> int:
        return self.layers[-1].output_size

    @property
    def steps_partial_state(self) -> bool:
        return self.mode != "bptt"

    # --- sizes -----------------------------------------------------------------------------------
    def _cross_shapes(self, batch_size: int) -> dict[str, tuple[int, int, int]]:
        if self.mode != "exact":
            return {}
        params = [layer_parameters(layer) for layer in self.layers]
        return {cross_key(l, k, name): (batch_size, self.layers[l].state_size, p.numel())
                for l in range(1, self.num_layers) for k in range(l) for name, p in params[k].items()}

    def sensitivity_numel(self, batch_size: int = 1) -> dict[str, int]:
        """Numbers the state's sensitivities hold: {"diagonal": Σ_l |S^{l,l}|, "cross": Σ_{k<l} N_l |θ_k|}."""
        if self.mode == "bptt":
            return {"diagonal": 0, "cross": 0}
        diagonal = sum(math.prod(s) for layer in self.layers for s in layer.sensitivity_shapes(batch_size).values())
        return {"diagonal": diagonal, "cross": sum(math.prod(s) for s in self._cross_shapes(batch_size).values())}

    def sensitivity_bytes(self, batch_size: int = 1) -> int:
        return sum(self.sensitivity_numel(batch_size).values()) * self.layers[0].weight_x.element_size()

    def check_memory(self, batch_size: int, limit: int | None = None) -> None:
        """Raise ``SensitivityMemoryError`` (stating the estimate and the limit) if the sensitivities of
        ``batch_size`` sequences would not fit in ``limit`` bytes (default: ``memory_limit``, else what
        the machine has available)."""
        limit = limit if limit is not None else self.memory_limit if self.memory_limit is not None \
            else available_memory()
        need = self.sensitivity_bytes(batch_size)
        if need > limit:
            raise SensitivityMemoryError(
                f"{self._spelled()} with num_layers={self.num_layers}, hidden_size={self.hidden_size}: "
                f"the sensitivities of {batch_size} sequences need {format_bytes(need)} ({format_bytes(need / batch_size)} each), "
                f"over the limit of {format_bytes(limit)}; accepted: fewer layers or units, a smaller batch, or "
                f"multilayer='per-layer' ({format_bytes(self._per_layer_bytes(batch_size))})")

    def _per_layer_bytes(self, batch_size: int) -> int:
        """What the same stack would hold with per-layer RTRL: the diagonal blocks alone."""
        return self.sensitivity_numel(batch_size)["diagonal"] * self.layers[0].weight_x.element_size()

    # --- state -----------------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> StackedState:
        """The zero state (and zero sensitivities), after ``check_memory``."""
        _check_positive("batch_size", batch_size)
        self.check_memory(batch_size)
        if self.mode != "exact":
            return StackedState([layer.initial_state(batch_size) for layer in self.layers], {}, self.mode)
        like = self.layers[0].weight_x
        layers = [RecurrentState(like.new_zeros(batch_size, layer.state_size),
                                 {k: like.new_zeros(s) for k, s in layer.sensitivity_shapes(batch_size).items()},
                                 "rtrl") for layer in self.layers]
        cross = {key: like.new_zeros(shape) for key, shape in self._cross_shapes(batch_size).items()}
        return StackedState(layers, cross, "exact")

    def step_state(self, state: StackedState) -> StackedState:
        """c of every layer without the sensitivities: enough to step under ``torch.no_grad()``."""
        return StackedState([RecurrentState(s.c, {}, s.learning) for s in state.layers], {}, state.mode)

    def initial_step_state(self, batch_size: int) -> StackedState:
        """``step_state(initial_state(batch_size))`` without allocating the sensitivities (nor checking that
        they fit: a stack only stepped, as in an evaluation, never holds them)."""
        _check_positive("batch_size", batch_size)
        return StackedState([layer.initial_step_state(batch_size) for layer in self.layers], {}, self.mode)

    def _check(self, x: Tensor, state: StackedState, reset: Tensor | None) -> None:
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.input_size:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"StackedRNN: x must have shape (T, B, input_size={self.input_size}), got {got}")
        if not isinstance(state, StackedState) or len(state.layers) != self.num_layers:
            raise ValueError(f"StackedRNN: state must be a StackedState of {self.num_layers} layers from "
                             f"initial_state(), got {type(state).__name__}")
        if state.mode != self.mode:
            raise ValueError(f"StackedRNN: state comes from a {_MODE_SPELLING.get(state.mode, state.mode)} stack, "
                             f"this stack has {self._spelled()}")
        if self.mode != "exact":
            return  # each layer checks its own part as it runs
        B = x.shape[1]
        for layer, s in zip(self.layers, state.layers):
            # c, dtypes and the reset as a single cell checks them
            layer._check_inputs(x.new_empty(x.shape[0], B, layer.input_size),
                                RecurrentState(s.c, {}, layer.learning), reset)
        if torch.is_grad_enabled() or state.layers[0].sensitivity or state.cross:
            expected = [layer.sensitivity_shapes(B) for layer in self.layers], self._cross_shapes(B)
            got = ([{k: tuple(v.shape) for k, v in s.sensitivity.items()} for s in state.layers],
                   {k: tuple(v.shape) for k, v in state.cross.items()})
            if got != expected:
                raise ValueError(f"StackedRNN: state sensitivities (per layer, cross) must have shapes {expected}, "
                                 f"got {got}")

    # --- forward ---------------------------------------------------------------------------------
    def forward(self, x: Tensor, state: StackedState | None = None,
                reset: Tensor | None = None) -> tuple[Tensor, StackedState]:
        """x (T,B,D), reset (T,B) bool (True zeroes every layer's state and sensitivities before step t)
        -> y (T,B,N_L) of the top layer and the state after step T."""
        return self._run(x, state, reset, "new")

    def outputs(self, x: Tensor, state: StackedState, reset: Tensor | None = None) -> Tensor:
        """y with the gradients of ``forward``; the state after the segment is not computed."""
        return self._run(x, state, reset, "skip")[0]

    @torch.no_grad()
    def advance(self, x: Tensor, state: StackedState, reset: Tensor | None = None) -> StackedState:
        """The state after the segment without autograd, written into the tensors of ``state``."""
        return self._run(x, state, reset, "in_place")[1]

    def _run(self, x, state, reset, final):
        if state is None:
            state = self.initial_state(x.shape[1] if isinstance(x, Tensor) and x.dim() == 3 else 1)
        self._check(x, state, reset)
        if self.mode == "exact":
            return self._run_exact(x, state, reset, final)
        h, new_layers = x, []
        for layer, s in zip(self.layers, state.layers):
            if final == "new" or not s.sensitivity:
                h, s = layer(h, s, reset)
            elif final == "skip":
                h = layer.outputs(h, s, reset)
            else:  # in place: the next layer's input from a step state, then the replay
                h_next, _ = layer(h, layer.step_state(s), reset)
                s, h = layer.advance(h, s, reset), h_next
            new_layers.append(s)
        return h, StackedState(new_layers, {}, self.mode)

    def _run_exact(self, x, state, reset, final):
        keep = None if reset is None else (~reset.to(x.device)).to(x.dtype)
        c0 = [s.c.detach() for s in state.layers]
        has_sensitivity = bool(state.layers[0].sensitivity)
        start = c0
        if has_sensitivity and torch.is_grad_enabled():
            start = self._attach_history(c0, state)
        y, c_last = None, None
        if final != "in_place" or not has_sensitivity:
            h, c_last = x, []
            for layer, c in zip(self.layers, start):
                pre = input_projection(h, layer.weight_x, layer.bias, layer.num_gates)
                c_seq, _ = transition_loop(layer, pre, c, keep, layer.weight_c, layer.per_unit)
                h = layer.readout(h, c_seq)
                c_last.append(c_seq[-1].detach())
            y = h
        if not has_sensitivity or final == "skip":
            layers = [RecurrentState(c, {}, "rtrl") for c in (c_last or c0)]
            return y, StackedState(layers, {}, "exact")
        c, diag, cross = exact_sweep(self.layers, x.detach(), c0, [s.sensitivity for s in state.layers],
                                     state.cross, keep, in_place=final == "in_place")
        layers = [RecurrentState(cl, d, "rtrl") for cl, d in zip(c, diag)]
        return y, StackedState(layers, cross, "exact")

    def _attach_history(self, c0: list[Tensor], state: StackedState) -> list[Tensor]:
        """c0 through ``HistoryGradient``, which adds Σ_l e^l_0 · S^{l,k}_0 to the parameters' gradients."""
        params, index = [], {}
        for l, layer in enumerate(self.layers):
            for name, p in layer_parameters(layer).items():
                index[(l, name)] = len(params)
                params.append(p)
        layout, sensitivities = [], []
        for l, s in enumerate(state.layers):
            for name, S in s.sensitivity.items():
                layout.append((l, index[(l, name)], "diagonal"))
                sensitivities.append(S)
            for k in range(l):
                for name in layer_parameters(self.layers[k]):
                    layout.append((l, index[(k, name)], "cross"))
                    sensitivities.append(state.cross[cross_key(l, k, name)])
        return list(HistoryGradient.apply(tuple(layout), len(params), len(c0), *params, *c0, *sensitivities))

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, num_layers={self.num_layers}, "
                f"cell={self.cell!r}, {self._spelled()}")

    def _spelled(self) -> str:
        return _MODE_SPELLING[self.mode]
