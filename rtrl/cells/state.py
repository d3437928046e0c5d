"""The state an element-wise cell carries between calls."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from rtrl.tree import map_tensors


class TensorState:
    """``map`` and ``detach`` for a state dataclass whose tensors ``rtrl.tree.map_tensors`` reaches."""

    def map(self, fn):
        """A new state of the same type with ``fn`` applied to every tensor (``detach``, ``clone``, ``to``...)."""
        return map_tensors(fn, self)

    def detach(self):
        return self.map(Tensor.detach)


@dataclass
class RecurrentState(TensorState):
    """State carried between calls of an element-wise cell; the same type from the cell to the actor's
    rollout buffers and back to the learner.

    Attributes:
        c: (B,N) the recurrent state.
        sensitivity: in ``rtrl`` mode the RTRL sensitivities S = ∂c/∂θ of the recurrent parameters:
            ``weight_x`` (B,K,N,D), ``weight_c`` (B,K,N), ``bias`` (B,K,N), ``per_unit`` (B,E,N);
            empty in ``bptt`` mode, and in a step state (``step_state``) that only advances c.
        learning: the mode of the cell that made it ("rtrl" or "bptt").
    """

    c: Tensor
    sensitivity: dict[str, Tensor] = field(default_factory=dict)
    learning: str = "rtrl"
