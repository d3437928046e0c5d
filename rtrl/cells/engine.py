"""The RTRL engine for element-wise recurrent cells (docs/DESIGN.md §2 "General form", §3).

A cell in this family has one recurrent state vector c ∈ R^N per batch element and K gates whose
pre-activations are

    p^k_t = W_k x_t + r_k ⊙ c_{t-1} + b_k             (r_k and b_k optional, the same for every gate)

followed by an element-wise transition c_t = φ(p_t, c_{t-1}; θ_u), where θ_u are optional
per-unit parameters that enter φ directly (a decay rate, say). The cell states φ and its local
derivatives (``local_derivatives``): ∂φ/∂c_{t-1} (direct), u^k_t = ∂φ/∂p^k_t and v_t = ∂φ/∂θ_u. From those the engine forms
the diagonal carry

    a_t = ∂φ/∂c_{t-1} + Σ_k u^k_t ⊙ r_k

and the sensitivities S^θ_t = ∂c_t/∂θ, which obey S_t = a_t ⊙ S_{t-1} + (local term):

    W_k: u^k_t ⊗ x_t  (B×K×N×D)     r_k: u^k_t ⊙ c_{t-1}  (B×K×N)
    b_k: u^k_t        (B×K×N)       θ_u: v_t              (B×E×N)

An episode reset before step t zeroes c_{t-1} and every sensitivity of that batch element; the engine
folds it into the carry as ā_t = a_t · keep_t.

Two exact ways compute the same numbers:

* ``method="step"`` — the per-step recursion above, written plainly. The reference implementation.
* ``method="segment"`` — the segment form of docs/DESIGN.md §3. With e_T = g_T, e_s = g_s + ā_{s+1} e_{s+1}
  (BPTT's backward recursion inside the segment) and P_s = Π_{r=s+1..T} ā_r:

      Σ_t g_t ⊙ S_t = e_0 ⊙ S_0 + Σ_s (e_s ⊙ u_s) ⊗ x_s,      e_0 = ā_1 e_1
      S_T           = P_0 ⊙ S_0 + Σ_s (P_s ⊙ u_s) ⊗ x_s

  i.e. one backward recursion over (T,B,N) vectors, one GEMM per input matrix and one pass over S_0
  (``rtrl.cells.sensitivity_pass``) that reads S_0 once and, in the same pass, adds e_0 ⊙ S_0 to the
  gradient and/or writes S_T: the memory floor of docs/DESIGN.md §8.

Both are wrapped in one ``torch.autograd.Function``: the forward returns the states c_1..c_T (and
optionally S_T); the backward receives the immediate gradients g_t = ∂L/∂c_t and returns the exact
parameter gradients through the entire history summarised by S_0, and the within-segment (BPTT)
gradient for x and c_0. The forward transition itself is ``rtrl.cells.transition``.
"""
from __future__ import annotations

import weakref

import torch
from torch import Tensor

from rtrl.cells.sensitivity_pass import _unit_axis, final_terms, sensitivity_pass
from rtrl.cells.transition import ElementwiseTransition, Trajectory, fold_channels, forward_sweep, swap

METHODS = ("segment", "step")
FINAL_SENSITIVITY = ("new", "skip", "in_place")

# names of the sensitivity tensors, in the order the autograd Function takes them
SENSITIVITY_NAMES = ("weight_x", "weight_c", "bias", "per_unit")


def backward_recursion(carry: Tensor, immediate_grad: Tensor, pair: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """e_T = g_T, e_s = g_s + ā_{s+1} e_{s+1}; returns (e (T,B,N), e_0 = ā_1 e_1 (B,N)).

    A paired cell's 2×2 carry is transposed: e_s = g_s + ā_{s+1} e_{s+1} + swap(b̄_{s+1} e_{s+1})."""
    T = carry.shape[0]
    if T == 1:   # a streaming step: e_1 = g_1
        e0 = carry[0] * immediate_grad[0]
        if pair is not None:
            e0 += swap(pair[0] * immediate_grad[0])
        return immediate_grad, e0
    e = torch.empty_like(immediate_grad)
    e[T - 1] = immediate_grad[T - 1]
    for t in range(T - 2, -1, -1):
        torch.addcmul(immediate_grad[t], carry[t + 1], e[t + 1], out=e[t])
        if pair is not None:
            e[t] += swap(pair[t + 1] * e[t + 1])
    e0 = carry[0] * e[0]
    if pair is not None:
        e0 += swap(pair[0] * e[0])
    return e, e0


def apply_carry(carry: Tensor, pair: Tensor | None, S: Tensor) -> Tensor:
    """ā ⊙ S (+ b̄ ⊙ swap(S) for a paired cell) on a sensitivity (B,·,N,[D]) from (B,N) carries."""
    out = _unit_axis(carry, S.dim()) * S
    if pair is not None:
        out += _unit_axis(pair, S.dim()) * swap(S, 2)
    return out


def _local_terms(traj: Trajectory, x: Tensor, names: tuple[str, ...], t: int) -> dict[str, Tensor]:
    """The local term of each sensitivity at step t (the reference path only)."""
    u = traj.gate_grad[t]
    terms = {}
    for name in names:
        if name == "weight_x":
            terms[name] = u.unsqueeze(-1) * x[t][:, None, None, :]
        elif name == "weight_c":
            terms[name] = u * traj.c_prev[t].unsqueeze(1)
        elif name == "bias":
            terms[name] = u
        else:
            terms[name] = traj.per_unit_grad[t]
    return terms


def per_step_sweep(
    traj: Trajectory, x: Tensor, sensitivity: dict[str, Tensor], immediate_grad: Tensor | None
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Reference RTRL: S_t = ā_t S_{t-1} + local_t and ∂L/∂θ = Σ_t Σ_b g_t ⊙ S_t, one step at a time.

    Returns (S_T, parameter gradients); the gradients are empty when ``immediate_grad`` is None.
    """
    S = {name: s.clone() for name, s in sensitivity.items()}
    grads = {name: torch.zeros_like(s[0]) for name, s in S.items()} if immediate_grad is not None else {}
    names = tuple(S)
    for t in range(traj.carry.shape[0]):
        local = _local_terms(traj, x, names, t)
        pair = None if traj.pair is None else traj.pair[t]
        for name in names:
            S[name] = apply_carry(traj.carry[t], pair, S[name]) + local[name]
            if immediate_grad is not None:
                grads[name] += (_unit_axis(immediate_grad[t], S[name].dim()) * S[name]).sum(0)
    return S, grads


def segment_gradients(traj: Trajectory, x: Tensor, names: tuple[str, ...], e: Tensor, eu: Tensor) -> dict[str, Tensor]:
    """Segment form, within-segment part: Σ_{s,b} (e_s ⊙ u_s) ⊗ (x_s | c_{s-1} | 1), and Σ e_s ⊙ v_s.

    ``eu`` = e_s ⊙ u_s (T,B,K,N), which the input gradient needs too. The history part Σ_b e_0 ⊙ S_0
    is added by ``sensitivity_pass`` (the gradient of ``weight_x`` is returned as (K,N,D)).
    """
    T, B, D = x.shape
    grads = {}
    for name in names:
        if name == "weight_x":  # (K, N, D): N state rows (2N for a paired cell, folded by the caller)
            K, N = eu.shape[2:]
            grads[name] = torch.mm(eu.reshape(T * B, K * N).t(), x.reshape(T * B, D)).view(K, N, D)
        elif name == "weight_c":
            grads[name] = (eu * traj.c_prev.unsqueeze(2)).sum((0, 1))
        elif name == "bias":
            grads[name] = eu.sum((0, 1))
        else:
            grads[name] = (e.unsqueeze(2) * traj.per_unit_grad).sum((0, 1))
    return grads


_PENDING = "_rtrl_pending_final"


class _Deferred:
    """S_T of an in-place call under autograd, written by the backward pass in the same pass over S
    that accumulates the gradient (docs/DESIGN.md §8); or, if another call reaches the tensors first,
    by that call, without a gradient. The tensors carry it as an attribute until then."""

    def __init__(self, method: str):
        self.method = method
        self.traj = self.x = self.terms = None
        self.refs: dict[str, weakref.ref] = {}

    def attach(self, sensitivity: dict[str, Tensor]) -> None:
        self.refs = {name: weakref.ref(s) for name, s in sensitivity.items()}
        for s in sensitivity.values():
            setattr(s, _PENDING, self)

    @property
    def pending(self) -> bool:
        return bool(self.refs)

    def write(self, sensitivity: dict[str, Tensor], e0: Tensor | None = None,
              grads: dict[str, Tensor] | None = None, folds: dict | None = None, decay: float = 1.0) -> None:
        """S_T over S_0 (and, with ``e0``, the history gradient from S_0, and the ``folds`` into traces, in the
        same pass); then release."""
        if self.method == "segment":
            sensitivity_pass(sensitivity, e0, grads, self.terms, sensitivity, folds, decay)
        else:
            if folds:
                sensitivity_pass(sensitivity, folds=folds, decay=decay)
            new, _ = per_step_sweep(self.traj, self.x, sensitivity, None)
            for name, s in sensitivity.items():
                s.copy_(new[name])
        for s in sensitivity.values():
            if getattr(s, _PENDING, None) is self:
                delattr(s, _PENDING)
        self.refs = {}
        self.traj = self.x = self.terms = None

    @torch.no_grad()
    def write_now(self, folds: dict | None = None, decay: float = 1.0) -> None:
        tensors = {name: ref() for name, ref in self.refs.items()}
        self.write({name: s for name, s in tensors.items() if s is not None}, folds=folds, decay=decay)


@torch.no_grad()
def complete_pending(sensitivity: dict[str, Tensor], folds: dict | None = None, decay: float = 1.0) -> None:
    """Write now any S_T that an in-place call under autograd left to a backward pass that has not run.

    The engine calls it on every S it receives; call it before reading such tensors directly. With ``folds``
    (``rtrl.cells.sensitivity_pass.sensitivity_pass``: eligibility traces z_b ← decay · z_b + c[b] ⊙ S[b]) the
    traces read the S the tensors hold now (S_0 of the pending call) in the same pass that writes S_T over it.
    """
    for s in sensitivity.values():
        deferred = getattr(s, _PENDING, None)
        if deferred is not None and deferred.pending:
            deferred.write_now(folds, decay)
            folds = None   # done, in the pass that wrote S_T
    if folds:   # nothing was pending: the traces read S as it is
        sensitivity_pass(sensitivity, folds=folds, decay=decay)


class _RTRLFunction(torch.autograd.Function):
    """Autograd wrapper: forward over a segment, exact RTRL parameter gradients in backward."""

    @staticmethod
    def forward(ctx, cell, method, final_sensitivity, deferred, names, x, c0, keep,
                weight_x, weight_c, bias, per_unit, *sensitivity_list):
        sensitivity = dict(zip(names, sensitivity_list))
        traj = forward_sweep(cell, x, c0, keep, weight_x, weight_c, bias, per_unit)
        final = ()
        if deferred is not None:  # S_T is written by backward (in place, with the gradient)
            deferred.traj, deferred.x = traj, x.detach()
            if method == "segment":
                deferred.terms = final_terms(traj, x, names)
        elif final_sensitivity != "skip":
            in_place = final_sensitivity == "in_place"
            if method == "segment":
                new = sensitivity if in_place else {name: torch.empty_like(s) for name, s in sensitivity.items()}
                sensitivity_pass(sensitivity, terms=final_terms(traj, x, names), out=new)
            else:
                new, _ = per_step_sweep(traj, x, sensitivity, None)
                if in_place:
                    new = {name: sensitivity[name].copy_(s) for name, s in new.items()}
            final = tuple(new[name] for name in names)
            ctx.mark_non_differentiable(*final)
        ctx.method = method
        ctx.names = names
        ctx.traj = traj
        ctx.deferred = deferred
        ctx.save_for_backward(x, weight_x, *sensitivity_list)
        return (traj.c,) + final

    @staticmethod
    def backward(ctx, grad_c, *unused_grad_final):
        x, weight_x, *sensitivity_list = ctx.saved_tensors  # fails if S_0 was overwritten since
        sensitivity = dict(zip(ctx.names, sensitivity_list))
        traj, deferred = ctx.traj, ctx.deferred
        if deferred is not None and not deferred.pending:
            raise RuntimeError("the sensitivities of this in-place call were already brought forward by a later "
                               "call: run backward before calling the cell again on the same state")
        if grad_c is None:
            grad_c = torch.zeros_like(traj.c)
        e, e0 = backward_recursion(traj.carry, grad_c, traj.pair)
        eu = e.unsqueeze(2) * traj.gate_grad  # (T,B,K,N); (T,B,K,2N) for a paired cell
        if ctx.method == "segment":
            grads = segment_gradients(traj, x, ctx.names, e, eu)
            if deferred is not None:  # one pass: read S_0, add e_0 ⊙ S_0 to the gradient, write S_T over it
                deferred.write(sensitivity, e0, grads)
            else:
                sensitivity_pass(sensitivity, e0, grads)
        else:
            _, grads = per_step_sweep(traj, x, sensitivity, grad_c)
            if deferred is not None:
                deferred.write(sensitivity)
        channels = 1 if traj.pair is None else 2
        if channels != 1:  # each parameter row n feeds the state rows n and N + n
            grads = {name: fold_channels(g, channels) for name, g in grads.items()}
            eu = eu.view(*eu.shape[:3], channels, -1).sum(3)
        grad_x = None
        if ctx.needs_input_grad[5]:  # within-segment BPTT: ∂L/∂x_s = Σ_k W_kᵀ (e_s ⊙ u^k_s)
            T, B, D = x.shape
            grad_x = torch.mm(eu.reshape(T * B, -1), weight_x).view(T, B, D)
        grad_weight_x = grads["weight_x"].reshape(weight_x.shape) if "weight_x" in grads else None
        n_sens = len(sensitivity_list)
        return (None, None, None, None, None, grad_x, e0, None, grad_weight_x,
                grads.get("weight_c"), grads.get("bias"), grads.get("per_unit")) + (None,) * n_sens


def rtrl_segment(
    cell: ElementwiseTransition,
    x: Tensor,
    c0: Tensor,
    sensitivity: dict[str, Tensor],
    weight_x: Tensor,
    weight_c: Tensor | None = None,
    bias: Tensor | None = None,
    per_unit: Tensor | None = None,
    keep: Tensor | None = None,
    method: str = "segment",
    final_sensitivity: str = "new",
) -> tuple[Tensor, dict[str, Tensor] | None]:
    """Run an element-wise cell over a segment with exact RTRL gradients.

    Args:
        x: (T,B,D) inputs.  c0: (B,N) state before the segment.
        sensitivity: S_0, one tensor per parameter present: ``weight_x`` (B,K,N,D),
            ``weight_c`` (B,K,N), ``bias`` (B,K,N), ``per_unit`` (B,E,N).
        weight_x: (K·N, D) stacked input matrices [W_1; …; W_K].  weight_c, bias: (K,N).
        per_unit: (E,N) per-unit parameters of the transition itself.
        keep: (T,B) float, 0 where the state (and S) is zeroed before step t, else 1.
        method: "segment" (fast) or "step" (reference).
        final_sensitivity: what to do about S_T: "new" (compute it into new tensors), "skip" (a
            learner that discards it), "in_place" (overwrite the tensors of ``sensitivity``). Without
            autograd (an actor's replay) "in_place" writes S_T at once; a backward pass of an earlier
            call that still needs S_0 then fails loudly. Under autograd (a streaming learner) S_T is
            written by this call's backward pass, in the same pass over S that reads S_0 for the
            gradient (one read and one write of S in all, docs/DESIGN.md §8); the next engine call on
            the same tensors writes it first if that backward has not run (``complete_pending``).

    Returns:
        c (T,B,N) states c_1..c_T — differentiable: backward yields the exact gradient of the loss
        for every parameter through the whole history, and within-segment gradients for x and c0 —
        and S_T as a dict (None with "skip").
    """
    if method not in METHODS:
        raise ValueError(f"unknown RTRL method {method!r}; accepted: {', '.join(METHODS)}")
    if final_sensitivity not in FINAL_SENSITIVITY:
        raise ValueError(f"unknown final_sensitivity {final_sensitivity!r}; accepted: {', '.join(FINAL_SENSITIVITY)}")
    names = tuple(name for name in SENSITIVITY_NAMES if name in sensitivity)
    complete_pending(sensitivity)
    deferred = None
    if final_sensitivity == "in_place" and torch.is_grad_enabled() and any(
        p is not None and p.requires_grad for p in (x, c0, weight_x, weight_c, bias, per_unit)
    ):
        deferred = _Deferred(method)
    outputs = _RTRLFunction.apply(
        cell, method, final_sensitivity, deferred, names, x, c0, keep,
        weight_x, weight_c, bias, per_unit, *(sensitivity[name] for name in names),
    )
    c_seq = outputs[0]
    if deferred is not None:
        deferred.attach({name: sensitivity[name] for name in names})
        return c_seq, {name: sensitivity[name] for name in names}
    final = None if final_sensitivity == "skip" else dict(zip(names, outputs[1:]))
    return c_seq, final
