"""V-trace off-policy value targets (Espeholt et al. 2018, "IMPALA", Sec. 4.1, eq. 1).

All tensors are time-major: index ``[s, b]`` is step ``s`` of rollout ``b``. With importance ratios
``ratio_s = π(a_s|x_s) / μ(a_s|x_s)`` (π the learner's target policy, μ the actor's behaviour policy):

    ρ_s   = min(ρ̄, ratio_s)                      truncated importance weight of the TD error
    c_s   = λ · min(c̄, ratio_s)                  "trace" coefficient
    δ_s V = ρ_s (r_s + γ_s V(x_{s+1}) − V(x_s))   importance-weighted TD error

    v_s − V(x_s) = δ_s V + γ_s c_s (v_{s+1} − V(x_{s+1}))     (the backward form of eq. 1)

with ``V(x_T)`` = ``v_T`` = the bootstrap value after the last step. ``γ_s`` is a per-step discount,
``γ · (1 − done_s)``, so an episode that ends inside the rollout cuts both the TD error and the trace.
The policy-gradient advantage (IMPALA Sec. 4.2) is

    A_s = ρ^pg_s (r_s + γ_s v_{s+1} − V(x_s)),    ρ^pg_s = min(ρ̄_pg, ratio_s).

On-policy (ratio = 1) with ρ̄ = c̄ = λ = 1 this reduces to the n-step bootstrapped return.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["VTraceReturns", "vtrace"]


class VTraceReturns(NamedTuple):
    vs: torch.Tensor  # (T, B) V-trace value targets v_s
    pg_advantages: torch.Tensor  # (T, B) policy-gradient advantages A_s


def _clipped(ratios: torch.Tensor, threshold: float | None) -> torch.Tensor:
    return ratios if threshold is None else torch.clamp(ratios, max=threshold)


@torch.no_grad()
def vtrace(
    behaviour_log_probs: torch.Tensor,
    target_log_probs: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
    lambda_: float = 1.0,
) -> VTraceReturns:
    """V-trace targets ``vs`` and policy-gradient advantages, computed without gradient.

    Args:
        behaviour_log_probs: (T, B) log μ(a_s|x_s) of the actions taken, from the actor.
        target_log_probs: (T, B) log π(a_s|x_s) of the same actions under the learner's policy.
        discounts: (T, B) γ_s = γ · (1 − done_s); zero where the episode ended at step s.
        rewards: (T, B) r_s (already clipped if the caller clips).
        values: (T, B) V(x_s) from the learner.
        bootstrap_value: (B,) V(x_T), the value of the state after the last step.
        clip_rho_threshold: ρ̄ for the TD-error weights ρ_s (None: no truncation).
        clip_pg_rho_threshold: ρ̄_pg for the policy-gradient weights (None: no truncation).
        clip_c_threshold: c̄ for the trace coefficients c_s (None: no truncation).
        lambda_: λ ∈ [0, 1] multiplying every c_s (Remark 2 of the paper); 1 is plain V-trace.

    Returns:
        VTraceReturns(vs (T, B), pg_advantages (T, B)), both detached from the graph.
    """
    time_major = (behaviour_log_probs, target_log_probs, discounts, rewards, values)
    names = ("behaviour_log_probs", "target_log_probs", "discounts", "rewards", "values")
    if values.dim() != 2:
        raise ValueError(f"values must be time-major (T, B); got shape {tuple(values.shape)}")
    for name, tensor in zip(names, time_major):
        if tensor.shape != values.shape:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)}; expected {tuple(values.shape)} like values"
            )
    if bootstrap_value.shape != values.shape[1:]:
        raise ValueError(
            f"bootstrap_value has shape {tuple(bootstrap_value.shape)}; "
            f"expected {tuple(values.shape[1:])} (one value per rollout)"
        )

    ratios = torch.exp(target_log_probs - behaviour_log_probs)
    rhos = _clipped(ratios, clip_rho_threshold)
    cs = lambda_ * _clipped(ratios, clip_c_threshold)

    # V(x_{s+1}) for every s, the last one being the bootstrap value.
    next_values = torch.cat([values[1:], bootstrap_value.unsqueeze(0)], dim=0)
    deltas = rhos * (rewards + discounts * next_values - values)

    # Backward recursion on the correction vs_s − V(x_s); it is zero beyond the rollout.
    corrections = torch.empty_like(values)
    correction = torch.zeros_like(bootstrap_value)
    for s in reversed(range(values.shape[0])):
        correction = deltas[s] + discounts[s] * cs[s] * correction
        corrections[s] = correction
    vs = values + corrections

    next_vs = torch.cat([vs[1:], bootstrap_value.unsqueeze(0)], dim=0)
    pg_rhos = _clipped(ratios, clip_pg_rho_threshold)
    pg_advantages = pg_rhos * (rewards + discounts * next_vs - values)
    return VTraceReturns(vs=vs, pg_advantages=pg_advantages)
