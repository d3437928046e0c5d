"""The streaming actor-critic's update as pure functions: eligibility traces, the TD error and the overshooting-
bounded step size (Elsayed, Vasan & Mahmood 2024, "Streaming Deep
Reinforcement Learning Finally Works": Stream AC(λ) with ObGD; the recurrent form with RTRL is Farr et al. 2026).

Per stream and step, with z a trace per parameter tensor:

    δ_t   = r_{t+1} + γ (1 − done_{t+1}) V(s_{t+1}) − V(s_t)           (``td_error``)
    z     ← γλ z + ∇_θ f(s_t)                                            (``decay_traces``)
    α_t   = α / max(1, α κ max(|δ_t|, 1) ‖z‖₁)                           (``obgd_step_size``)
    θ     ← θ + α_t δ_t z

f is V for the critic's trace and log π(a_t|s_t) + β sign(δ_t) H(π(·|s_t)) for the actor's. ObGD bounds the
update's effect: a step of α_t along δ z changes a function of gradient z by about α_t δ ‖z‖², and the bound
keeps α_t κ δ̄ ‖z‖₁ ≤ 1 (with ‖z‖₂² ≤ ‖z‖₁ max|z|), so one sample cannot overshoot its own target.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["td_error", "decay_traces", "trace_l1", "obgd_step_size", "obgd_steps", "RunningReturnScale"]


def td_error(reward: Tensor, done: Tensor, value: Tensor, next_value: Tensor, discount: float) -> Tensor:
    """δ = r + γ (1 − done) V' − V, elementwise over streams (B,); ``done`` ends the bootstrap."""
    return reward + discount * (~done).to(value.dtype) * next_value - value


@torch.no_grad()
def decay_traces(traces: list[Tensor], grads: list[Tensor | None], decay: float) -> None:
    """z ← decay · z + g, in place, for each trace and its gradient (None: a parameter the loss does not reach)."""
    torch._foreach_mul_(traces, decay)
    reached = [(z, g) for z, g in zip(traces, grads) if g is not None]
    if reached:
        torch._foreach_add_([z for z, _ in reached], [g for _, g in reached])


def trace_l1(traces: list[Tensor]) -> float:
    """‖z‖₁ over all the traces' elements."""
    return float(torch.stack(torch._foreach_norm(traces, 1)).sum()) if traces else 0.0


def obgd_step_size(lr: float, kappa: float, delta: float, l1_norm: float) -> float:
    """ObGD's effective step size: α / max(1, α κ max(|δ|, 1) ‖z‖₁). Non-finite inputs give 0 (no step)."""
    bound = lr * kappa * max(abs(delta), 1.0) * l1_norm
    if not math.isfinite(bound):
        return 0.0
    return lr / max(1.0, bound)


@torch.no_grad()
def obgd_steps(params: list[Tensor], traces: list[Tensor], groups: list[list[int]], lr: float, kappa: float,
               delta: float) -> tuple[list[float], float]:
    """θ ← θ + α_g δ z for each group g of the parameters (indices into ``params`` and ``traces``), α_g ObGD's step
    size from the group's own ‖z‖₁ (one group of all: Stream AC(λ)'s step); the step sizes in the groups' order and
    the traces' whole L1 norm. A group whose traces overflowed takes no step (0·inf would write NaN into its
    parameters) and its traces start again from zero (decay cannot bring them back)."""
    alphas, total = [], 0.0
    for group in groups:
        group_traces = [traces[i] for i in group]
        norm = trace_l1(group_traces)
        alphas.append(obgd_step_size(lr, kappa, delta, norm))
        if math.isfinite(norm):
            torch._foreach_add_([params[i] for i in group], group_traces, alpha=alphas[-1] * delta)
        else:
            torch._foreach_zero_(group_traces)
        total += norm
    return alphas, total


class RunningReturnScale:
    """Rewards divided by the running standard deviation of the discounted return, per stream's return
    G ← γ (1 − done) G + r, with the variance of all G seen so far (Welford's update), as Stream AC's
    ``ScaleReward`` and SB3's VecNormalize(norm_reward) do. The state is plain numbers and tensors."""

    def __init__(self, streams: int, discount: float, eps: float = 1e-8):
        self.discount, self.eps = discount, eps
        self.returns = torch.zeros(streams, dtype=torch.float64)
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def __call__(self, reward: Tensor, done: Tensor) -> Tensor:
        """Scale ``reward`` (B,) after updating the statistics; ``done``: the reward ended its episode."""
        self.returns = self.discount * self.returns + reward.to(torch.float64)
        for g in self.returns.tolist():
            self.count += 1
            delta = g - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (g - self.mean)
        self.returns[done] = 0.0
        var = self.m2 / self.count if self.count > 1 else 1.0
        return reward / math.sqrt(var + self.eps)

    def state_dict(self) -> dict:
        return {"returns": self.returns.clone(), "count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict) -> None:
        """The statistics only: a resumed run's streams start new episodes (environments cannot be saved), so
        each stream's return starts again at 0 instead of going on from the episode that was cut short."""
        self.returns.zero_()
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])
