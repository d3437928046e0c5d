"""The engine's one pass over the sensitivities S, at the memory floor (docs/DESIGN.md §8).

Everything the segment form does to S is a stream over it: read S_0 once and, in the same pass,

    (i)  accumulate the history part of the gradient  Σ_b e_0 ⊙ S_0,
    (ii) write S_T = P_0 ⊙ S_0 + Σ_s (P_s ⊙ u_s) ⊗ (x_s | c_{s-1} | 1)  (or v_s for θ_u),

into new tensors or over S_0 itself. The input sensitivity (B,K,N,D) — all but a sliver of S — is
walked a few batch elements at a time, so that one chunk (``CHUNK_BYTES``) stays in cache between
the operations on it: the memory traffic is one read of S and, when S_T is wanted, one write,
whatever T is; no S-sized temporary is allocated. The carry acts per unit (ā_t (B,N) scales the
rows of every gate), so P_0 and e_0 broadcast over the gate and input axes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rtrl.cells.transition import Trajectory

# a chunk of S^{W_x} small enough to stay in (L2/L3) cache between the three operations on it
CHUNK_BYTES = 1 << 20


@dataclass
class FinalTerms:
    """What S_T needs besides S_0: P_0 = Π_{r=1..T} ā_r (B,N), and per sensitivity its local term.

    ``lhs`` (B, K·N, T) = (P_s ⊙ u_s) laid out for S^{W_x}_T += lhs @ x (B,T,D), one rank-T update
    per batch element; ``local`` the summed local terms of the small sensitivities (B,K,N) / (B,E,N).
    """

    P0: Tensor
    lhs: Tensor | None
    x: Tensor | None
    local: dict[str, Tensor]


def final_terms(traj: Trajectory, x: Tensor, names: tuple[str, ...]) -> FinalTerms:
    """P_s = Π_{r=s+1..T} ā_r by one backward product over the (T,B,N) carries, and the local terms."""
    T = x.shape[0]
    carry = traj.carry
    P = torch.empty_like(carry)
    P[T - 1] = 1
    for t in range(T - 1, 0, -1):
        torch.mul(carry[t], P[t], out=P[t - 1])
    P0 = carry[0] * P[0]
    Pu = P.unsqueeze(2) * traj.gate_grad  # (T,B,K,N)
    lhs = xb = None
    local = {}
    for name in names:
        if name == "weight_x":
            lhs = Pu.permute(1, 2, 3, 0).reshape(x.shape[1], -1, T)
            xb = x.transpose(0, 1)
        elif name == "weight_c":
            local[name] = (Pu * traj.c_prev.unsqueeze(2)).sum(0)
        elif name == "bias":
            local[name] = Pu.sum(0)
        else:
            local[name] = (P.unsqueeze(2) * traj.per_unit_grad).sum(0)
    return FinalTerms(P0, lhs, xb, local)


def _unit_axis(tensor: Tensor, rank: int) -> Tensor:
    """View a (B,N) tensor so that it broadcasts over a sensitivity of the given rank (B,·,N,[D])."""
    return tensor[:, None, :, None] if rank == 4 else tensor[:, None, :]


def _pass_weight_x(s0: Tensor, e0: Tensor | None, grad: Tensor | None, terms: FinalTerms | None,
                   out: Tensor | None) -> None:
    """The chunked pass over S^{W_x} (B,K,N,D): grad (K,N,D) += Σ_b e_0 ⊙ S_0, out = S_T."""
    B, K, N, D = s0.shape
    step = max(1, CHUNK_BYTES // max(1, s0[0].numel() * s0.element_size()))
    in_place = out is not None and out.data_ptr() == s0.data_ptr()
    for b0 in range(0, B, step):
        b1 = min(B, b0 + step)
        s = s0[b0:b1]
        if grad is not None:  # read S_0 before it is overwritten
            if b1 - b0 == 1:
                grad.addcmul_(s[0], e0[b0, None, :, None])
            else:
                grad.add_((s * e0[b0:b1, None, :, None]).sum(0))
        if out is not None:
            o = s if in_place else out[b0:b1]
            if in_place:
                o.mul_(terms.P0[b0:b1, None, :, None])
            else:
                torch.mul(s, terms.P0[b0:b1, None, :, None], out=o)
            o.view(b1 - b0, K * N, D).baddbmm_(terms.lhs[b0:b1], terms.x[b0:b1])


def sensitivity_pass(sensitivity: dict[str, Tensor], e0: Tensor | None = None,
                     grads: dict[str, Tensor] | None = None, terms: FinalTerms | None = None,
                     out: dict[str, Tensor] | None = None) -> None:
    """One pass over S_0: ``grads[name] += Σ_b e_0 ⊙ S_0`` when ``e0`` (B,N) is given, and
    ``out[name] = P_0 ⊙ S_0 + local`` when ``terms`` is; ``out`` may hold S_0's own tensors (in place).

    ``grads`` hold (K,N,D) for ``weight_x`` (a view of the (K·N,D) gradient is fine), (K,N) / (E,N) else.
    """
    for name, s0 in sensitivity.items():
        o = out[name] if terms is not None else None
        if name == "weight_x":
            _pass_weight_x(s0, e0, grads[name] if e0 is not None else None, terms, o)
            continue
        if e0 is not None:
            grads[name].add_((s0 * _unit_axis(e0, 3)).sum(0))
        if o is not None:
            if o.data_ptr() == s0.data_ptr():
                o.mul_(_unit_axis(terms.P0, 3))
            else:
                torch.mul(s0, _unit_axis(terms.P0, 3), out=o)
            o.add_(terms.local[name])
