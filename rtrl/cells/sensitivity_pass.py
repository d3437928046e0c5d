"""The engine's one pass over the sensitivities S, at the memory floor (docs/DESIGN.md §8).

Everything the segment form does to S is a stream over it: read S_0 once and, in the same pass,

    (i)  accumulate the history part of the gradient  Σ_b e_0 ⊙ S_0,
    (ii) write S_T = P_0 ⊙ S_0 + Σ_s (P_s ⊙ u_s) ⊗ (x_s | c_{s-1} | 1)  (or v_s for θ_u),

into new tensors or over S_0 itself. The input sensitivity (B,K,N,D) — all but a sliver of S — is
walked a few batch elements at a time, so that one chunk (``CHUNK_BYTES``) stays in cache between
the operations on it: the memory traffic is one read of S and, when S_T is wanted, one write,
whatever T is; no S-sized temporary is allocated. The carry acts per unit (ā_t (B,N) scales the
rows of every gate), so P_0 and e_0 broadcast over the gate and input axes. For a paired cell
(docs/DESIGN.md §2) the carry is a 2×2 block per unit, ā ⊙ S + b̄ ⊙ swap(S), and so is P_0: the pass
reads each chunk's partner rows from the same chunk (one chunk-sized temporary), nothing more.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rtrl.cells import native
from rtrl.cells.transition import Trajectory, fold_channels, swap

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
    P0_pair: Tensor | None = None   # a paired cell's partner part of P_0 (B,2N), else None


def _compose(outer: tuple[Tensor, Tensor | None], inner: tuple[Tensor, Tensor | None], out: Tensor | None = None,
             out_pair: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """The 2×2 per-unit maps S -> d ⊙ S + o ⊙ swap(S) composed, outer ∘ inner (o None: diagonal only)."""
    (d2, o2), (d1, o1) = outer, inner
    if o2 is None and o1 is None:
        return torch.mul(d2, d1, out=out), None
    o1 = torch.zeros_like(d1) if o1 is None else o1
    o2 = torch.zeros_like(d2) if o2 is None else o2
    d = torch.addcmul(d2 * d1, o2, swap(o1), out=out)
    o = torch.addcmul(d2 * o1, o2, swap(d1), out=out_pair)
    return d, o


def _apply(d: Tensor, o: Tensor | None, local: Tensor) -> Tensor:
    """d ⊙ local + o ⊙ swap(local) along the last (unit) axis, with d, o broadcasting over the middle one."""
    out = d * local
    if o is not None:
        out += o * swap(local)
    return out


def final_terms(traj: Trajectory, x: Tensor, names: tuple[str, ...]) -> FinalTerms:
    """P_s = Π_{r=s+1..T} ā_r by one backward product over the (T,B,N) carries, and the local terms."""
    T = x.shape[0]
    carry, pair = traj.carry, traj.pair
    if T == 1:   # a streaming step: P_1 = 1, P_0 = ā_1
        return _local_final_terms(traj, x, names, carry[0], None if pair is None else pair[0],
                                  traj.gate_grad, traj.per_unit_grad)
    P = torch.empty_like(carry)
    P[T - 1] = 1
    Q = None                            # the partner part of P_s for a paired cell
    if pair is not None:
        Q = torch.empty_like(pair)
        Q[T - 1] = 0
    for t in range(T - 1, 0, -1):       # P_{s-1} = P_s ∘ ā_s
        _compose((P[t], None if Q is None else Q[t]), (carry[t], None if pair is None else pair[t]),
                 out=P[t - 1], out_pair=None if Q is None else Q[t - 1])
    P0, P0_pair = _compose((P[0], None if Q is None else Q[0]), (carry[0], None if pair is None else pair[0]))
    Qk = None if Q is None else Q.unsqueeze(2)
    Pu = _apply(P.unsqueeze(2), Qk, traj.gate_grad)  # (T,B,K,N)
    Pv = None if traj.per_unit_grad is None else _apply(P.unsqueeze(2), Qk, traj.per_unit_grad)
    return _local_final_terms(traj, x, names, P0, P0_pair, Pu, Pv)


def _local_final_terms(traj: Trajectory, x: Tensor, names: tuple[str, ...], P0: Tensor, P0_pair: Tensor | None,
                       Pu: Tensor, Pv: Tensor | None) -> FinalTerms:
    """The local terms from Pu = P_s ⊙ u_s (T,B,K,N) and Pv = P_s ⊙ v_s (T,B,E,N)."""
    T = x.shape[0]
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
            local[name] = Pv.sum(0)
    return FinalTerms(P0, lhs, xb, local, P0_pair)


def _unit_axis(tensor: Tensor, rank: int) -> Tensor:
    """View a (B,N) tensor so that it broadcasts over a sensitivity of the given rank (B,·,N,[D])."""
    return tensor[:, None, :, None] if rank == 4 else tensor[:, None, :]


def _fold(s: Tensor, b: int, folds, decay: float) -> None:
    """z_b ← decay · z_b + c[b] ⊙ S_0[b] for each fold (c (B,N) on the unit axis, [z_b]), ``s`` = S_0[b]. For a
    paired cell (z_b half the size of S_0[b]: parameter row n feeds state rows n and N + n) the two channels' terms
    are summed into row n."""
    shape = (-1, 1) if s.dim() == 3 else (-1,)
    for coef, traces in folds:
        z = traces[b]
        if z.numel() == s.numel():
            z.view(s.shape).mul_(decay).addcmul_(coef[b].view(shape), s)
            continue
        term = fold_channels(coef[b].view(shape) * s, 2)   # (K, 2N, D) -> (K, N, D), (E, 2N) -> (E, N)
        z.view(term.shape).mul_(decay).add_(term)


def _pass_weight_x(s0: Tensor, e0: Tensor | None, grad: Tensor | None, terms: FinalTerms | None,
                   out: Tensor | None, folds=(), decay: float = 1.0) -> None:
    """The chunked pass over S^{W_x} (B,K,N,D): grad (K,N,D) += Σ_b e_0 ⊙ S_0, out = S_T, and the folds."""
    final = (terms.P0, terms.P0_pair, terms.lhs, terms.x) if out is not None else (None,) * 4   # what S_T needs
    if native.weight_x_pass(s0, e0 if grad is not None else None, grad, *final, out, folds, decay):
        return   # the same pass in C, where it builds and takes these tensors (rtrl.cells.native)
    B, K, N, D = s0.shape
    step = max(1, CHUNK_BYTES // max(1, s0[0].numel() * s0.element_size()))
    in_place = out is not None and out.data_ptr() == s0.data_ptr()
    for b0 in range(0, B, step):
        b1 = min(B, b0 + step)
        s = s0[b0:b1]
        for b in range(b0, b1) if folds else ():   # the traces read S_0 before it is overwritten
            _fold(s[b - b0], b, folds, decay)
        if grad is not None:  # read S_0 before it is overwritten
            if b1 - b0 == 1:
                grad.addcmul_(s[0], e0[b0, None, :, None])
            else:
                grad.add_((s * e0[b0:b1, None, :, None]).sum(0))
        if out is not None:
            o = s if in_place else out[b0:b1]
            partner = None if terms.P0_pair is None else swap(s, 2)  # read before s is overwritten
            if in_place:
                o.mul_(terms.P0[b0:b1, None, :, None])
            else:
                torch.mul(s, terms.P0[b0:b1, None, :, None], out=o)
            if partner is not None:
                o.addcmul_(partner, terms.P0_pair[b0:b1, None, :, None])
            o.view(b1 - b0, K * N, D).baddbmm_(terms.lhs[b0:b1], terms.x[b0:b1])


def sensitivity_pass(sensitivity: dict[str, Tensor], e0: Tensor | None = None,
                     grads: dict[str, Tensor] | None = None, terms: FinalTerms | None = None,
                     out: dict[str, Tensor] | None = None, folds: dict | None = None, decay: float = 1.0) -> None:
    """One pass over S_0: ``grads[name] += Σ_b e_0 ⊙ S_0`` when ``e0`` (B,N) is given, and
    ``out[name] = P_0 ⊙ S_0 + local`` when ``terms`` is; ``out`` may hold S_0's own tensors (in place).

    ``grads`` hold (K,N,D) for ``weight_x`` (a view of the (K·N,D) gradient is fine), (K,N) / (E,N) else.
    ``folds[name]``: [(c (B,N), [z_b shaped like S_0[b], one per b]), ...] — eligibility traces updated from S_0
    in the same pass, z_b ← decay · z_b + c[b] ⊙ S_0[b] (a streaming learner's, ``StreamLearner``); for a paired
    cell z_b is shaped like its parameter, half of S_0[b], and takes both channels' terms (``_fold``).
    """
    folds = folds or {}
    for name, s0 in sensitivity.items():
        o = out[name] if terms is not None else None
        if name == "weight_x":
            _pass_weight_x(s0, e0, grads[name] if e0 is not None else None, terms, o, folds.get(name, ()), decay)
            continue
        for b in range(s0.shape[0]) if folds.get(name) else ():
            _fold(s0[b], b, folds[name], decay)
        if e0 is not None:
            grads[name].add_((s0 * _unit_axis(e0, 3)).sum(0))
        if o is not None:
            partner = None if terms.P0_pair is None else swap(s0, 2)
            if o.data_ptr() == s0.data_ptr():
                o.mul_(_unit_axis(terms.P0, 3))
            else:
                torch.mul(s0, _unit_axis(terms.P0, 3), out=o)
            if partner is not None:
                o.addcmul_(partner, _unit_axis(terms.P0_pair, 3))
            o.add_(terms.local[name])
