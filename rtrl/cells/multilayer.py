"""Exact RTRL through a stack of element-wise layers (docs/DESIGN.md §4): the sensitivity recursion and the
history term of the gradient.

Layer l (0-based, L layers) reads x^l_t = y^{l-1}_t (x^0_t the stack's input), has the state c^l_t ∈ R^{N_l}
and parameters θ_l: its recurrent tensors (``weight_x`` W, ``weight_c`` r, ``bias`` b, ``per_unit`` v) and
its readout's (the eLSTM's output gate), which feed layer l+1 and so become recurrent in a stack.
The state carries, for every k ≤ l, S^{l,k}_t = dc^l_t/dθ_k:

* k = l (the diagonal block): the single-layer sensitivities, per unit, with the same recursion as
  ``rtrl.cells.engine`` (layer l's input does not depend on θ_l).
* k < l (cross blocks), dense in the unit index, (B, N_l, |θ_k|):

      S^{l,k}_t = ā^l_t ⊙ S^{l,k}_{t-1} + J^l_t X^{l,k}_t,     J^l_t = ∂c^l_t/∂x^l_t = Σ_g diag(u^{l,g}_t) W^l_g
      X^{l,k}_t = dx^l_t/dθ_k = R^{l-1}_x X^{l-1,k}_t + R^{l-1}_c S^{l-1,k}_t + [k = l-1] ∂y^{l-1}_t/∂θ_{l-1}

  with R_x, R_c the readout's Jacobians (zero and the identity for y = c). For k = l-1 the right-hand
  factor is per unit (S^{l-1,l-1} and ∂y/∂ρ touch unit m's own parameters only), so X^{l,l-1} is kept as a
  matrix times a per-unit tensor and J X costs O(N_l·|θ_{l-1}|) (an outer product), not a GEMM; only
  k < l-1 needs the dense (N_l × D_l)·(D_l × |θ_k|) product, which makes three layers O(N⁴) per step.

An episode reset before step t zeroes c and every block of that batch element (folded into ā = a·keep).

The gradient is split the way the segment form of §3 splits it: dL/dθ = (BPTT inside the call) +
Σ_l e^l_0 · S^{l,·}_0, where e^l_0 = ∂L/∂c^l_0 is BPTT's adjoint of the state before the call. The
first term is plain autograd over the call; ``HistoryGradient`` adds the second.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from rtrl.cells.engine import apply_carry
from rtrl.cells.transition import fold_channels, swap

# the recurrent tensors of an element-wise cell, in the order the sensitivities are kept
RECURRENT_NAMES = ("weight_x", "weight_c", "bias", "per_unit")


def layer_parameters(cell) -> dict[str, Tensor]:
    """θ_l in the order of its sensitivity blocks: the recurrent tensors present, then the readout's."""
    found = {name: getattr(cell, name) for name in RECURRENT_NAMES if getattr(cell, name) is not None}
    found.update(cell.readout_parameters())
    return found


def cross_key(layer: int, source: int, name: str) -> str:
    return f"{layer}.{source}.{name}"


def _per_unit_view(tensor: Tensor, name: str, num_units: int) -> Tensor:
    """A per-unit tensor as (B, pre, N, post): the diagonal blocks are (B,K,N,D), (B,K,N) or (B,E,N);
    a readout's direct derivative is (B,N,*slice)."""
    B = tensor.shape[0]
    if name in RECURRENT_NAMES:
        return tensor.reshape(B, tensor.shape[1], num_units, -1)
    return tensor.reshape(B, 1, num_units, -1)


class Factored:
    """X = M · s with s per unit: X[b, i, (p, j, q)] = Σ_m M[b,i,m] s[b,p,m,q] = M[b,i,j] s[b,p,j,q].
    ``matrix`` None is the identity. For a paired cell s runs over its 2N state rows and the parameter
    row n feeds rows n and N + n: X[b, i, (p, n, q)] = Σ_c M[b,i,cN+n] s[b,p,cN+n,q] (``channels`` = 2)."""

    def __init__(self, matrix: Tensor | None, per_unit: Tensor, channels: int = 1):
        self.matrix, self.per_unit, self.channels = matrix, per_unit, channels


def _add_product(out: Tensor, left: Tensor, right) -> Tensor:
    """out (B,n,P) += left (B,n,m) · right, where right is dense (B,m,P) or ``Factored``."""
    if isinstance(right, Factored):
        lm = left if right.matrix is None else torch.bmm(left, right.matrix)   # (B,n,N_k)
        s = right.per_unit
        B, n = out.shape[:2]
        C = right.channels
        rows = s.shape[2] // C
        view = out.view(B, n, s.shape[1], rows, s.shape[3])
        for c in range(C):
            part = slice(c * rows, (c + 1) * rows)
            view.addcmul_(lm[:, :, None, part, None], s[:, None, :, part])
        return out
    return out.baddbmm_(left, right)


def _input_jacobian(cell, u: Tensor) -> Tensor:
    """J_t = ∂c_t/∂x_t = Σ_g diag(u^g_t) W_g: (B,N,D) from u (B,K,N) (a paired cell's state row i reads
    the gate row i mod N)."""
    K = u.shape[1]
    weight = cell.weight_x.view(K, cell.hidden_size, -1)
    if cell.channels != 1:
        weight = weight.repeat(1, cell.channels, 1)
    return torch.einsum("bkn,knd->bnd", u, weight)


@torch.no_grad()
def exact_sweep(layers, x: Tensor, c0: list[Tensor], diagonal: list[dict[str, Tensor]], cross: dict[str, Tensor],
                keep: Tensor | None, in_place: bool = False) -> tuple[list[Tensor], list[dict], dict]:
    """Run the stack over x (T,B,D) step by step and bring every sensitivity block forward.

    Args: c0 per layer (B,N_l); ``diagonal`` per layer the single-layer sensitivities (the cell's
    ``sensitivity_shapes``); ``cross`` the blocks k < l by ``cross_key`` (B,N_l,|θ_k[name]|); keep (T,B)
    float, 0 where the state is zeroed before step t. With ``in_place`` the given tensors are overwritten.
    Returns (c_T per layer, diagonal blocks, cross blocks) after the segment.
    """
    copy = (lambda t: t) if in_place else Tensor.clone
    c = [t.clone() for t in c0]
    diag = [{name: copy(s) for name, s in d.items()} for d in diagonal]
    cross = {key: copy(s) for key, s in cross.items()}
    names = [list(layer_parameters(cell)) for cell in layers]
    L = len(layers)
    for t in range(x.shape[0]):
        inputs, input_sens = x[t], {}       # x^l_t and X^{l,k}_t by k
        for l, cell in enumerate(layers):
            K, N = cell.num_gates, cell.hidden_size
            c_prev = c[l] if keep is None else c[l] * keep[t, :, None]
            pre = torch.mm(inputs, cell.weight_x.t())
            if cell.bias is not None:
                pre += cell.bias.reshape(-1)
            pre = pre.view(-1, K, N)
            if cell.weight_c is not None:
                pre.addcmul_(cell.weight_c, c_prev.unsqueeze(-2))
            c[l] = cell.transition(pre, c_prev, cell.per_unit)
            direct, u, v = cell.local_derivatives(pre, c_prev, cell.per_unit)
            pair = None
            if isinstance(direct, tuple):      # a paired cell's 2×2 carry: (diagonal, partner)
                direct, pair = direct
                pair = pair.expand_as(c_prev).clone()
                if keep is not None:
                    pair *= keep[t, :, None]
            carry = direct.expand_as(c_prev).clone()
            if cell.weight_c is not None:
                carry += (u * cell.weight_c).sum(1)
            if keep is not None:
                carry *= keep[t, :, None]
            # diagonal block: the single-layer recursion
            S = diag[l]
            if pair is not None:               # S ← ā ⊙ S + b̄ ⊙ swap(S), then the local terms below
                for s in S.values():
                    s.copy_(apply_carry(carry, pair, s))
                carry_diag = torch.ones_like(carry)
            else:
                carry_diag = carry
            if "weight_x" in S:
                S["weight_x"].mul_(carry_diag[:, None, :, None]).addcmul_(u.unsqueeze(-1), inputs[:, None, None, :])
            if "weight_c" in S:
                S["weight_c"].mul_(carry_diag[:, None]).addcmul_(u, c_prev[:, None])
            if "bias" in S:
                S["bias"].mul_(carry_diag[:, None]).add_(u)
            if "per_unit" in S:
                S["per_unit"].mul_(carry_diag[:, None]).add_(v)
            # cross blocks: S^{l,k} = ā S^{l,k} + J X^{l,k}
            if l > 0:
                jac = _input_jacobian(cell, u)
                for k in range(l):
                    for name in names[k]:
                        block = cross[cross_key(l, k, name)]
                        if pair is not None:
                            block.copy_(carry[:, :, None] * block + pair[:, :, None] * swap(block, 1))
                        else:
                            block.mul_(carry[:, :, None])
                        _add_product(block, jac, input_sens[k][name])
            if l + 1 < L:
                y = cell.readout(inputs, c[l])
                input_sens = _output_sensitivity(cell, inputs, c[l], input_sens, diag[l], cross, l, names)
                inputs = y
    return c, diag, cross


def _output_sensitivity(cell, inputs, c, input_sens, diag, cross, l, names) -> dict:
    """X^{l+1,k}_t = dy^l_t/dθ_k for k ≤ l: dense for k < l, ``Factored`` for k = l."""
    dy_dx, dy_dc, direct = cell.readout_derivatives(inputs, c)
    N, C = cell.state_size, cell.channels
    out = {}
    for k in range(l):
        out[k] = {}
        for name in names[k]:
            block = cross[cross_key(l, k, name)]
            dense = block.clone() if dy_dc is None else torch.bmm(dy_dc, block)
            if dy_dx is not None:
                _add_product(dense, dy_dx, input_sens[k][name])
            out[k][name] = dense
    own = {name: Factored(dy_dc, _per_unit_view(s, name, N), C) for name, s in diag.items()}
    own.update({name: Factored(None, _per_unit_view(d, name, N)) for name, d in direct.items()})
    out[l] = own
    return out


class HistoryGradient(torch.autograd.Function):
    """Identity on the states before a call; its backward adds the history term of the gradient,

        ∂L/∂θ_k += Σ_{l ≥ k} Σ_b e^l_0[b] · S^{l,k}_0[b],      e^l_0 = ∂L/∂c^l_0 (the incoming gradient),

    for the blocks it is given (all of them: exact RTRL; the diagonal ones: per-layer RTRL).
    ``layout`` lists, for each sensitivity tensor, (layer l, index of the parameter in ``params``,
    "diagonal" or "cross"); the parameter gradients are returned in ``params`` order."""

    @staticmethod
    def forward(ctx, layout, num_params, num_layers, *tensors):
        params = tensors[:num_params]
        c0 = tensors[num_params:num_params + num_layers]
        ctx.layout, ctx.num_params, ctx.num_layers = layout, num_params, num_layers
        ctx.shapes = [p.shape for p in params]
        ctx.save_for_backward(*tensors[num_params + num_layers:])
        return tuple(c.clone() for c in c0)

    @staticmethod
    def backward(ctx, *grad_c0):
        sensitivities = ctx.saved_tensors
        grads: list[Tensor | None] = [None] * ctx.num_params
        for (layer, index, kind), S in zip(ctx.layout, sensitivities):
            e = grad_c0[layer]
            if e is None:
                continue
            if kind == "cross":       # (B,N_l,P): Σ_b Σ_n e[b,n] S[b,n,p]
                g = torch.einsum("bn,bnp->p", e, S).view(ctx.shapes[index])
            else:                     # per unit: Σ_b e[b,n] S[b,·,n,·] (a paired cell's two channels summed)
                unit = e[:, None, :, None] if S.dim() == 4 else e[:, None, :]
                g = (S * unit).sum(0)
                g = fold_channels(g, g.numel() // math.prod(ctx.shapes[index])).view(ctx.shapes[index])
            grads[index] = g if grads[index] is None else grads[index] + g
        return (None, None, None, *grads, *(None,) * (ctx.num_layers + len(sensitivities)))
