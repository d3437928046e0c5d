"""The forward transition of element-wise cells, written once for every path that runs it.

The plain path (BPTT through autograd, or an actor stepping without gradients) and the RTRL
engine (``forward_sweep``, which also records the local derivatives) run the same
``transition_loop`` over the same ``input_projection``: a state computed one step at a time by an
actor and the same state recomputed by the engine over a whole segment round alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


class ElementwiseTransition(Protocol):
    """What a cell states: its element-wise transition and the transition's local derivatives."""

    num_gates: int

    def transition(self, pre: Tensor, c_prev: Tensor, per_unit: Tensor | None, out: Tensor | None = None) -> Tensor:
        """c_t from pre-activations ``pre`` (...,K,N) and ``c_prev`` (...,N); plain autograd ops.

        With ``out`` (no autograd) the result is written there (the loop then allocates nothing).
        """

    def local_derivatives(
        self, pre: Tensor, c_prev: Tensor, per_unit: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """(∂c_t/∂c_prev (...,N), ∂c_t/∂pre (...,K,N), ∂c_t/∂θ_u (...,E,N) or None).

        Called once on all steps of a segment (leading dims (T,B)); no autograd needed. A paired cell
        (state 2N) returns ((diagonal, partner) of its 2×2 carry, each (...,2N), (...,K,2N), (...,E,2N)).
        """


def input_projection(x: Tensor, weight_x: Tensor, bias: Tensor | None, num_gates: int) -> Tensor:
    """W_k x_t + b_k for all steps and gates in one GEMM: x (T,B,D) -> (T,B,K,N)."""
    T, B, D = x.shape
    x2 = x.reshape(T * B, D)
    pre = torch.mm(x2, weight_x.t()) if bias is None else torch.addmm(bias.reshape(-1), x2, weight_x.t())
    return pre.view(T, B, num_gates, -1)


def transition_loop(cell: ElementwiseTransition, pre: Tensor, c0: Tensor, keep: Tensor | None,
                    weight_c: Tensor | None, per_unit: Tensor | None,
                    keep_previous: bool = False) -> tuple[Tensor, Tensor | None]:
    """The one sequential loop: p_t = pre_t + r ⊙ c_{t-1}, c_t = φ(p_t, c_{t-1}), from c0 (B,N).

    ``keep`` (T,B) float is 0 where the state is zeroed before step t. Returns c_1..c_T (T,B,N) and,
    with ``keep_previous``, c_0..c_{T-1} after resets (T,B,N). Without autograd every step writes
    into preallocated outputs (and adds the recurrent term into ``pre`` in place); under autograd
    the same operations run out of place, so that BPTT flows through the loop.
    """
    T, B, _, N = pre.shape
    graph = torch.is_grad_enabled()
    N = c0.shape[-1]  # the state's width: N, or 2N for a paired (complex) cell whose gates have N rows
    c_seq = None if graph else pre.new_empty(T, B, N)
    c_prev_seq = None if graph or not (keep_previous or keep is not None) else pre.new_empty(T, B, N)

    def into(buffer, t):  # where step t writes: nowhere (a new tensor) while autograd records the loop
        return None if buffer is None else buffer[t]

    steps, c = [], c0
    for t in range(T):  # 2-5 small ops per step
        c_prev = c if keep is None else torch.mul(c, keep[t].unsqueeze(-1), out=into(c_prev_seq, t))
        p = pre[t]
        if weight_c is not None:
            p = torch.addcmul(p, weight_c, c_prev.unsqueeze(-2), out=None if graph else p)
        c = cell.transition(p, c_prev, per_unit, out=into(c_seq, t))
        steps.append(c)
    if graph:
        return torch.stack(steps), (torch.stack([c0] + steps[:-1]) if keep_previous else None)
    if keep_previous and keep is None:
        c_prev_seq[0] = c0
        c_prev_seq[1:] = c_seq[:-1]
    return c_seq, c_prev_seq if keep_previous else None


@dataclass
class Trajectory:
    """What the forward sweep of a segment keeps for the sensitivity and gradient computations.

    Shapes: carry (T,B,N) = ā_t; gate_grad (T,B,K,N) = u_t; c_prev (T,B,N) = c_{t-1} after resets
    (kept only when the cell has recurrent weights); per_unit_grad (T,B,E,N) = v_t or None.

    A paired cell (``channels = 2``: a complex unit as its real and imaginary part, docs/DESIGN.md §2)
    has a state of 2N numbers, unit n's two channels at n and N + n, and a 2×2 carry per unit:
    ∂c_t[i]/∂c_{t-1} = ā_t[i] at i and ``pair`` b̄_t[i] at the partner i ± N (T,B,2N); None for the
    other cells. Its gate_grad and per_unit_grad are then (T,B,K,2N) and (T,B,E,2N).
    """

    c: Tensor
    carry: Tensor
    gate_grad: Tensor
    c_prev: Tensor | None
    per_unit_grad: Tensor | None
    pair: Tensor | None = None


@torch.no_grad()
def forward_sweep(cell: ElementwiseTransition, x: Tensor, c0: Tensor, keep: Tensor | None, weight_x: Tensor,
                  weight_c: Tensor | None, bias: Tensor | None, per_unit: Tensor | None) -> Trajectory:
    """Run the cell over x (T,B,D) from c0 (B,N) (no autograd) and record the local derivatives.

    Only the transition itself is sequential; the loop records the pre-activations and previous
    states, and the local derivatives are then computed for all steps at once.
    """
    pre = input_projection(x, weight_x, bias, cell.num_gates)
    c_seq, c_prev_seq = transition_loop(cell, pre, c0, keep, weight_c, per_unit, keep_previous=True)
    direct, gate_grad, per_unit_grad = cell.local_derivatives(pre, c_prev_seq, per_unit)
    pair = None
    if isinstance(direct, tuple):  # a paired cell: (diagonal, partner) of its 2×2 carry
        direct, pair = direct
        pair = pair.expand_as(c_seq).clone()
        if keep is not None:
            pair.mul_(keep.unsqueeze(-1))
    carry = direct.expand_as(c_seq).clone()
    if weight_c is not None:
        for k in range(cell.num_gates):  # a_t = ∂φ/∂c_prev + Σ_k u^k_t r_k, without a (T,B,K,N) temporary
            carry.addcmul_(gate_grad[..., k, :], weight_c[k])
    if keep is not None:
        carry.mul_(keep.unsqueeze(-1))
    return Trajectory(c_seq, carry, gate_grad, c_prev_seq if weight_c is not None else None, per_unit_grad, pair)


def swap(tensor: Tensor, dim: int = -1) -> Tensor:
    """The partner of every entry of a paired cell's unit axis: halves [a; b] -> [b; a] along ``dim``."""
    return tensor.roll(tensor.shape[dim] // 2, dims=dim)


def fold_channels(grad: Tensor, channels: int) -> Tensor:
    """A gradient summed over a paired cell's two channels: (..., 2N, [D]) on the unit axis -> (..., N, [D]).

    The unit axis is dim 1 of (K,2N,D) and (E,2N) (a parameter row n feeds the state rows n and N + n)."""
    if channels == 1:
        return grad
    shape = list(grad.shape)
    return grad.view(shape[0], channels, shape[1] // channels, *shape[2:]).sum(1)
