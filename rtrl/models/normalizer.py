"""Running normalisation of vector observations (``--obs-norm``) and scaling of rewards (``--reward-norm``), as Stable-Baselines3's VecNormalize,
Sample Factory's ``normalize_input`` and CleanRL's ``NormalizeObservation`` wrapper offer it.

The statistics are buffers of the agent: the learner updates them from each batch it trains on, and they
reach the actors with the weights and are saved in checkpoints, so an evaluation normalises as training did.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class ObservationNormalizer(nn.Module):
    """(obs − mean) / sqrt(var + eps), clipped to ±``clip``; mean and var are the running statistics of every
    observation passed to ``update`` (per feature, in float64). Before the first update it is the identity
    (mean 0, var 1), up to the clip."""

    def __init__(self, obs_dim: int, clip: float = 5.0, eps: float = 1e-8):
        super().__init__()
        if not clip > 0:  # math.inf: no clip
            raise ValueError(f"clip must be > 0, got {clip!r}")
        self.clip, self.eps = float(clip), float(eps)
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(obs_dim, dtype=torch.float64))

    def forward(self, obs: Tensor) -> Tensor:
        dtype = obs.dtype if obs.is_floating_point() else torch.float32
        scaled = (obs.to(torch.float64) - self.mean) / torch.sqrt(self.var + self.eps)
        return scaled.clamp(-self.clip, self.clip).to(dtype)

    @torch.no_grad()
    def update(self, obs: Tensor) -> None:
        """Merge the statistics of ``obs`` (…, obs_dim) into the running ones (Chan et al.'s parallel update)."""
        batch = obs.detach().reshape(-1, self.mean.shape[0]).to(self.mean)
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean, batch_var = batch.mean(0), batch.var(0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.mean += delta * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def extra_repr(self) -> str:
        return f"{self.mean.shape[0]}, clip={self.clip}, count={int(self.count)}"


class RewardScaler(nn.Module):
    """r / scale, with scale² = var/(1−γ²) + mean²/(1−γ)²: the mean square of a discounted return of rewards
    drawn independently with the running mean and variance (float64) of every reward passed to ``update``
    — so that returns, and the values the baseline must learn, are of order 1 whatever the rewards' units
    (RMSprop moves a value head by about the learning rate per update: values of hundreds would take
    hundreds of thousands of updates). A scale only: the mean is not subtracted, so a reward keeps its sign.
    VecNormalize divides by the std of each environment's running discounted return instead; the learner
    here sees rollouts from any actor in any order and keeps no per-environment return. ``discount`` (γ) is
    a buffer the learner sets. Before the first update it is the identity."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = float(eps)
        self.stats = ObservationNormalizer(1, clip=math.inf, eps=eps)
        self.register_buffer("discount", torch.zeros((), dtype=torch.float64))

    def scale(self) -> Tensor:
        if self.stats.count == 0:
            return torch.ones((), dtype=torch.float64)
        gamma = self.discount
        return torch.sqrt(self.stats.var[0] / (1 - gamma ** 2) + (self.stats.mean[0] / (1 - gamma)) ** 2 + self.eps)

    def forward(self, reward: Tensor) -> Tensor:
        return (reward.to(torch.float64) / self.scale()).to(reward.dtype)

    @torch.no_grad()
    def update(self, reward: Tensor) -> None:
        self.stats.update(reward.reshape(-1, 1))
