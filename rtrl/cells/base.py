"""The module side of element-wise cells: parameters, state, input checks and the two learning modes."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rtrl.cells.engine import METHODS, rtrl_segment
from rtrl.cells.state import RecurrentState
from rtrl.cells.transition import input_projection, transition_loop

LEARNING_MODES = ("rtrl", "bptt")


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class ElementwiseRNN(nn.Module):
    """Base of the element-wise cells; subclasses state the transition and its local derivatives.

    Class attributes a subclass sets: ``num_gates`` (K), ``uses_weight_c`` (gates read r_k ⊙ c_{t-1}),
    ``uses_bias`` (gates have b_k), ``num_per_unit`` (E per-unit parameters of the transition itself),
    ``channels`` (1; 2 for a paired cell: a complex unit as its real and imaginary part, whose state holds
    2N numbers, unit n's at n and N + n, and whose transition states a 2×2 carry per unit, docs/DESIGN.md §2).
    Parameters: ``weight_x`` (K·N, D) = [W_1; …; W_K]; ``weight_c`` (K,N); ``bias`` (K,N);
    ``per_unit`` (E,N).

    A cell is a recurrent core (``rtrl.models.Core``): besides ``forward`` it offers ``outputs`` (the
    learner's call: the same outputs and gradients, no final state), ``advance`` (an actor's replay:
    the state after a segment, without autograd, written into the state's own tensors) and
    ``step_state`` (the part of the state an actor needs to step without gradients: c alone).

    Args:
        input_size: D.  hidden_size: N.
        learning: "rtrl" — parameter gradients are exact through the entire history since the last
            reset, across any number of calls, and the returned state carries no autograd graph;
            "bptt" — plain autograd, the returned state stays attached (detach it for TBPTT).
        method: how rtrl mode computes: "segment" (fast) or "step" (the per-step reference).
    """

    num_gates = 1
    uses_weight_c = True
    uses_bias = True
    num_per_unit = 0
    channels = 1

    def __init__(self, input_size: int, hidden_size: int, learning: str = "rtrl", method: str = "segment"):
        super().__init__()
        _positive_int("input_size", input_size)
        _positive_int("hidden_size", hidden_size)
        if learning not in LEARNING_MODES:
            raise ValueError(f"unknown learning mode {learning!r}; accepted: {', '.join(LEARNING_MODES)}")
        if method not in METHODS:
            raise ValueError(f"unknown RTRL method {method!r}; accepted: {', '.join(METHODS)}")
        if self.channels != 1 and self.uses_weight_c:
            raise TypeError(f"{type(self).__name__}: a paired cell cannot use weight_c (its units mix two channels)")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.learning = learning
        self.method = method
        K, N = self.num_gates, hidden_size
        self.weight_x = nn.Parameter(torch.empty(K * N, input_size))
        self.weight_c = nn.Parameter(torch.empty(K, N)) if self.uses_weight_c else None
        self.bias = nn.Parameter(torch.empty(K, N)) if self.uses_bias else None
        self.per_unit = nn.Parameter(torch.empty(self.num_per_unit, N)) if self.num_per_unit else None

    @property
    def state_size(self) -> int:
        """Numbers of c per sequence: N, or 2N for a paired cell."""
        return self.channels * self.hidden_size

    @property
    def output_size(self) -> int:
        return self.state_size

    @property
    def steps_partial_state(self) -> bool:
        """In rtrl mode a step state leaves out the sensitivities, which ``advance`` brings forward."""
        return self.learning == "rtrl"

    # --- what a subclass provides -------------------------------------------------------------
    def transition(self, pre: Tensor, c_prev: Tensor, per_unit: Tensor | None, out: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def local_derivatives(self, pre: Tensor, c_prev: Tensor, per_unit: Tensor | None):
        raise NotImplementedError

    def readout(self, x: Tensor, c: Tensor) -> Tensor:
        """Output y_t from x_t and c_t (non-recurrent, so autograd is exact); default y = c."""
        return c

    def readout_parameters(self) -> dict[str, Tensor]:
        """The readout's own parameters by name (none for y = c). In a stack they become recurrent:
        layer l's readout feeds layer l+1, whose state carries them forward (``rtrl.StackedRNN``)."""
        return {}

    def readout_derivatives(self, x: Tensor, c: Tensor) -> tuple[Tensor | None, Tensor | None, dict[str, Tensor]]:
        """Jacobians of y_t = readout(x_t, c_t) for one step, x (B,D), c (B,N), no autograd:
        (∂y/∂x (B,N,D) or None when zero, ∂y/∂c (B,N,N) or None when the identity, and for each readout
        parameter ρ its per-unit derivative: ∂y_m/∂ρ is zero outside unit m's own slice ρ[m], whose
        derivative is returned as (B,N,*slice shape)). A subclass that overrides ``readout`` states these
        too; the default is y = c."""
        return None, None, {}

    # --- state -----------------------------------------------------------------------------------
    def sensitivity_shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        B, K, N, D = batch_size, self.num_gates, self.state_size, self.input_size
        shapes = {"weight_x": (B, K, N, D)}
        if self.uses_weight_c:
            shapes["weight_c"] = (B, K, N)
        if self.uses_bias:
            shapes["bias"] = (B, K, N)
        if self.num_per_unit:
            shapes["per_unit"] = (B, self.num_per_unit, N)
        return shapes

    def sensitivity_bytes(self, batch_size: int = 1) -> int:
        """Bytes the sensitivities of ``batch_size`` sequences take (0 in bptt mode)."""
        if self.learning != "rtrl":
            return 0
        numel = sum(math.prod(s) for s in self.sensitivity_shapes(batch_size).values())
        return numel * self.weight_x.element_size()

    def initial_state(self, batch_size: int) -> RecurrentState:
        """The zero state (and, in rtrl mode, zero sensitivities) on the module's device and dtype."""
        _positive_int("batch_size", batch_size)
        like = self.weight_x
        c = like.new_zeros(batch_size, self.state_size)
        sensitivity = {}
        if self.learning == "rtrl":
            sensitivity = {k: like.new_zeros(s) for k, s in self.sensitivity_shapes(batch_size).items()}
        return RecurrentState(c, sensitivity, self.learning)

    def step_state(self, state: RecurrentState) -> RecurrentState:
        """``state`` without its sensitivities: enough to step the cell under ``torch.no_grad()``."""
        return RecurrentState(state.c, {}, state.learning)

    def initial_step_state(self, batch_size: int) -> RecurrentState:
        """``step_state(initial_state(batch_size))`` without allocating the sensitivities first."""
        _positive_int("batch_size", batch_size)
        return RecurrentState(self.weight_x.new_zeros(batch_size, self.state_size), {}, self.learning)

    # --- checks ----------------------------------------------------------------------------------
    def _check_inputs(self, x: Tensor, state: RecurrentState, reset: Tensor | None) -> None:
        name = type(self).__name__
        like = self.weight_x
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.input_size:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: x must have shape (T, B, input_size={self.input_size}), got {got}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{name}: x must have T >= 1 and B >= 1, got shape {tuple(x.shape)}")
        if x.dtype != like.dtype or x.device != like.device:
            raise ValueError(f"{name}: x is {x.dtype} on {x.device} but the module is {like.dtype} on "
                             f"{like.device}; convert one of them (.to(...))")
        if not isinstance(state, RecurrentState):
            raise ValueError(f"{name}: state must be a RecurrentState from initial_state(), got "
                             f"{type(state).__name__}")
        if state.learning != self.learning:
            raise ValueError(f"{name}: state comes from a learning={state.learning!r} cell, this cell "
                             f"has learning={self.learning!r}")
        T, B = x.shape[:2]
        if tuple(state.c.shape) != (B, self.state_size):
            width = (f"hidden_size={self.hidden_size}" if self.channels == 1
                     else f"{self.channels}·hidden_size={self.state_size}")
            raise ValueError(f"{name}: state.c must have shape (B={B}, {width}) to match x, got "
                             f"{tuple(state.c.shape)}")
        # gradients need S_0; without them (an actor stepping) a step state without S is enough
        if self.learning == "rtrl" and (torch.is_grad_enabled() or state.sensitivity):
            expected = self.sensitivity_shapes(B)
            got = {k: tuple(v.shape) for k, v in state.sensitivity.items()}
            if got != expected:
                raise ValueError(f"{name}: state sensitivities must have shapes {expected}, got {got}")
        for t in (state.c, *state.sensitivity.values()):
            if t.dtype != like.dtype or t.device != like.device:
                raise ValueError(f"{name}: state is {t.dtype} on {t.device} but the module is {like.dtype} "
                                 f"on {like.device}")
        if reset is not None:
            if not isinstance(reset, Tensor) or reset.dtype != torch.bool or tuple(reset.shape) != (T, B):
                got = (f"{reset.dtype} {tuple(reset.shape)}" if isinstance(reset, Tensor)
                       else type(reset).__name__)
                raise ValueError(f"{name}: reset must be a bool tensor of shape (T={T}, B={B}), got {got}")

    # --- forward ---------------------------------------------------------------------------------
    def _run(self, x: Tensor, state: RecurrentState | None, reset: Tensor | None,
             final_sensitivity: str) -> tuple[Tensor, RecurrentState]:
        """Check the inputs; c_1..c_T (T,B,N) and the state after the segment."""
        if state is None:
            state = self.initial_state(x.shape[1] if isinstance(x, Tensor) and x.dim() == 3 else 1)
        self._check_inputs(x, state, reset)
        keep = None if reset is None else (~reset.to(x.device)).to(x.dtype)
        if self.learning == "rtrl" and state.sensitivity:
            c_seq, final = rtrl_segment(
                self, x, state.c.detach(), state.sensitivity, self.weight_x, self.weight_c, self.bias,
                self.per_unit, keep=keep, method=self.method, final_sensitivity=final_sensitivity)
            return c_seq, RecurrentState(c_seq[-1].detach(), final or {}, "rtrl")
        # bptt mode, or stepping without gradients: the transition alone (autograd records it in bptt)
        pre = input_projection(x, self.weight_x, self.bias, self.num_gates)
        c_seq, _ = transition_loop(self, pre, state.c, keep, self.weight_c, self.per_unit)
        return c_seq, RecurrentState(c_seq[-1], {}, self.learning)

    def forward(self, x: Tensor, state: RecurrentState | None = None,
                reset: Tensor | None = None) -> tuple[Tensor, RecurrentState]:
        """Run the cell over a segment.

        Args:
            x: (T,B,D) inputs, time-major.
            state: from ``initial_state``, ``step_state`` (no gradients) or a previous call;
                None means the zero state.
            reset: (T,B) bool; True zeroes the state (and the sensitivities) before step t.

        Returns:
            y (T,B,N) and the state after step T.
        """
        c_seq, new_state = self._run(x, state, reset, "new")
        return self.readout(x, c_seq), new_state

    def outputs(self, x: Tensor, state: RecurrentState, reset: Tensor | None = None) -> Tensor:
        """y (T,B,N) as ``forward`` gives it, with the same gradients; the state after the segment is
        not computed (a learner that discards it saves a pass over the sensitivities)."""
        c_seq, _ = self._run(x, state, reset, "skip")
        return self.readout(x, c_seq)

    def run_in_place(self, x: Tensor, state: RecurrentState,
                     reset: Tensor | None = None) -> tuple[Tensor, RecurrentState]:
        """(c_1..c_T, the state after the segment in the tensors of ``state``) for a learner that takes the
        parameters' gradient from the sensitivities itself (a streaming learner: ∂L/∂θ = g_T ⊙ S_T for a loss
        at the last step): as ``forward_in_place``, S_T is written by the next engine call on the tensors or by
        ``rtrl.cells.engine.complete_pending``, and until then they hold S_0."""
        return self._run(x, state, reset, "in_place")

    def forward_in_place(self, x: Tensor, state: RecurrentState,
                         reset: Tensor | None = None) -> tuple[Tensor, RecurrentState]:
        """``forward`` for a learner that steps its own state (a streaming learner, T = 1): the same
        outputs and gradients, and the state after the segment in the tensors of ``state``. Under
        autograd the backward pass writes S_T over S_0 in the same pass that reads S_0 for the gradient
        (one read and one write of S, no S-sized allocation: docs/DESIGN.md §8); until it runs the tensors
        hold S_0, and the next call on them writes S_T first (then that backward fails loudly)."""
        c_seq, new_state = self.run_in_place(x, state, reset)
        return self.readout(x, c_seq), new_state

    @torch.no_grad()
    def advance(self, x: Tensor, state: RecurrentState, reset: Tensor | None = None) -> RecurrentState:
        """The state after the segment, without autograd; the sensitivities are written into the
        tensors of ``state`` (one read and one write of S: an actor's once-per-rollout replay)."""
        return self._run(x, state, reset, "in_place")[1]

    @torch.no_grad()
    def project_parameters_(self) -> None:
        """Bring the parameters back into the set the cell is defined on, in place; a learner calls it after
        every update (``project_parameters``). Default: nothing (most cells bound themselves by construction)."""

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"learning={self.learning!r}, method={self.method!r}")


def project_parameters(module: nn.Module) -> None:
    """``project_parameters_`` of every cell inside ``module`` (a model, a stack or a cell): what a learner
    calls after each parameter update, as the IndRNN paper clips its recurrent weights after each step."""
    for sub in module.modules():
        if isinstance(sub, ElementwiseRNN):
            sub.project_parameters_()


def recurrence_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters of the recurrence itself in every cell inside ``module``: the element-wise recurrent weights
    (``weight_c``) and the per-unit transition parameters (``per_unit``: an RTU's or LRU's decay and phase). Their
    sensitivities grow with how long a unit remembers (a decay's gradient sums over the whole past it keeps), so a
    learner may bound their steps apart from the rest (the streaming learner's ``obgd_bound recurrence``)."""
    return [p for sub in module.modules() if isinstance(sub, ElementwiseRNN)
            for p in (sub.weight_c, sub.per_unit) if p is not None]
