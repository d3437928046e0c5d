"""The module side of element-wise cells: parameters, state, input checks and the two learning modes."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from rtrl.cells.engine import METHODS, rtrl_segment

LEARNING_MODES = ("rtrl", "bptt")


@dataclass
class RecurrentState:
    """State carried between calls of an element-wise cell.

    Attributes:
        c: (B,N) the recurrent state.
        sensitivity: in ``rtrl`` mode the RTRL sensitivities S = ∂c/∂θ of the recurrent
            parameters: ``weight_x`` (B,K,N,D), ``weight_c`` (B,K,N), ``bias`` (B,K,N),
            ``elementwise`` (B,E,N); empty in ``bptt`` mode.
        learning: the mode of the cell that made it ("rtrl" or "bptt").
    """

    c: Tensor
    sensitivity: dict[str, Tensor] = field(default_factory=dict)
    learning: str = "rtrl"

    @property
    def batch_size(self) -> int:
        return self.c.shape[0]

    def tensors(self) -> dict[str, Tensor]:
        """All tensors by name (``c`` and ``sensitivity.<name>``): for buffers and checkpoints."""
        out = {"c": self.c}
        out.update({f"sensitivity.{k}": v for k, v in self.sensitivity.items()})
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], learning: str) -> "RecurrentState":
        sensitivity = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("sensitivity.")}
        return cls(tensors["c"], sensitivity, learning)

    def map(self, fn) -> "RecurrentState":
        """A new state with ``fn`` applied to every tensor (``detach``, ``clone``, ``to``...)."""
        return RecurrentState(fn(self.c), {k: fn(v) for k, v in self.sensitivity.items()}, self.learning)

    def detach(self) -> "RecurrentState":
        return self.map(lambda t: t.detach())


class ElementwiseRNN(nn.Module):
    """Base of the element-wise cells; subclasses state the transition and its local derivatives.

    Class attributes a subclass sets: ``num_gates`` (K), ``uses_weight_c`` (gates read r_k ⊙ c_{t-1}),
    ``uses_bias`` (gates have b_k), ``num_elementwise`` (E per-unit parameters of the transition).
    Parameters: ``weight_x`` (K·N, D) = [W_1; …; W_K]; ``weight_c`` (K,N); ``bias`` (K,N);
    ``elementwise`` (E,N).

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
    num_elementwise = 0

    def __init__(self, input_size: int, hidden_size: int, learning: str = "rtrl", method: str = "segment"):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if learning not in LEARNING_MODES:
            raise ValueError(f"unknown learning mode {learning!r}; accepted: {', '.join(LEARNING_MODES)}")
        if method not in METHODS:
            raise ValueError(f"unknown RTRL method {method!r}; accepted: {', '.join(METHODS)}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.learning = learning
        self.method = method
        K, N = self.num_gates, hidden_size
        self.weight_x = nn.Parameter(torch.empty(K * N, input_size))
        self.weight_c = nn.Parameter(torch.empty(K, N)) if self.uses_weight_c else None
        self.bias = nn.Parameter(torch.empty(K, N)) if self.uses_bias else None
        self.elementwise = nn.Parameter(torch.empty(self.num_elementwise, N)) if self.num_elementwise else None

    # --- what a subclass provides -------------------------------------------------------------
    def transition(self, pre: Tensor, c_prev: Tensor, elementwise: Tensor | None, out: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def local(self, pre: Tensor, c_prev: Tensor, elementwise: Tensor | None):
        raise NotImplementedError

    def readout(self, x: Tensor, c: Tensor) -> Tensor:
        """Output y_t from x_t and c_t (non-recurrent, so autograd is exact); default y = c."""
        return c

    # --- state -----------------------------------------------------------------------------------
    def sensitivity_shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        B, K, N, D = batch_size, self.num_gates, self.hidden_size, self.input_size
        shapes = {"weight_x": (B, K, N, D)}
        if self.uses_weight_c:
            shapes["weight_c"] = (B, K, N)
        if self.uses_bias:
            shapes["bias"] = (B, K, N)
        if self.num_elementwise:
            shapes["elementwise"] = (B, self.num_elementwise, N)
        return shapes

    def initial_state(self, batch_size: int) -> RecurrentState:
        """The zero state (and, in rtrl mode, zero sensitivities) on the module's device and dtype."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        like = self.weight_x
        c = like.new_zeros(batch_size, self.hidden_size)
        sensitivity = {}
        if self.learning == "rtrl":
            sensitivity = {k: like.new_zeros(s) for k, s in self.sensitivity_shapes(batch_size).items()}
        return RecurrentState(c, sensitivity, self.learning)

    # --- checks ----------------------------------------------------------------------------------
    def _check_inputs(self, x: Tensor, state: RecurrentState, reset: Tensor | None,
                      needs_sensitivity: bool = True) -> None:
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
        if tuple(state.c.shape) != (B, self.hidden_size):
            raise ValueError(f"{name}: state.c must have shape (B={B}, hidden_size={self.hidden_size}) to "
                             f"match x, got {tuple(state.c.shape)}")
        if self.learning == "rtrl" and (needs_sensitivity or state.sensitivity):
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
    def recurrence(
        self,
        x: Tensor,
        state: RecurrentState,
        reset: Tensor | None = None,
        carry_sensitivity: bool = True,
        inplace: bool = False,
    ) -> tuple[Tensor, RecurrentState]:
        """c_1..c_T (T,B,N) and the state after the segment; see ``forward`` for the arguments."""
        keep = None if reset is None else (~reset.to(x.device)).to(x.dtype)
        # an actor stepping without gradients and without sensitivities needs only the transition
        rtrl_needed = self.learning == "rtrl" and (carry_sensitivity or torch.is_grad_enabled())
        if rtrl_needed:
            c_seq, final = rtrl_segment(
                self, x, state.c.detach(), state.sensitivity, self.weight_x, self.weight_c, self.bias,
                self.elementwise, keep=keep, method=self.method,
                carry_sensitivity=carry_sensitivity, inplace=inplace,
            )
            return c_seq, RecurrentState(c_seq[-1].detach(), final or {}, "rtrl")
        T, B, _ = x.shape
        pre_x = torch.nn.functional.linear(x, self.weight_x).view(T, B, self.num_gates, self.hidden_size)
        if self.bias is not None:
            pre_x = pre_x + self.bias
        c, outputs = state.c, []
        for t in range(T):
            c_prev = c if keep is None else c * keep[t].unsqueeze(-1)
            pre = pre_x[t] if self.weight_c is None else pre_x[t] + self.weight_c * c_prev.unsqueeze(1)
            c = self.transition(pre, c_prev, self.elementwise)
            outputs.append(c)
        return torch.stack(outputs), RecurrentState(c, {}, self.learning)

    def forward(
        self,
        x: Tensor,
        state: RecurrentState | None = None,
        reset: Tensor | None = None,
        carry_sensitivity: bool = True,
        inplace: bool = False,
    ) -> tuple[Tensor, RecurrentState]:
        """Run the cell over a segment.

        Args:
            x: (T,B,D) inputs, time-major.
            state: from ``initial_state`` or a previous call; None means the zero state.
            reset: (T,B) bool; True zeroes the state (and the sensitivities) before step t.
            carry_sensitivity: rtrl mode only — compute the sensitivities after the segment (a
                learner that discards them can skip the work; the returned state then has none).
            inplace: rtrl mode, under ``torch.no_grad()`` only — overwrite the sensitivity buffers
                of ``state`` instead of allocating new ones (an actor's fast path).

        Returns:
            y (T,B,N) and the state after step T.
        """
        if state is None:
            state = self.initial_state(x.shape[1] if isinstance(x, Tensor) and x.dim() == 3 else 1)
        self._check_inputs(x, state, reset, needs_sensitivity=carry_sensitivity or torch.is_grad_enabled())
        c_seq, new_state = self.recurrence(x, state, reset, carry_sensitivity, inplace)
        return self.readout(x, c_seq), new_state

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"learning={self.learning!r}, method={self.method!r}")
