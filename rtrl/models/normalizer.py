"""Running normalisation of vector observations (``--obs-norm``), as Stable-Baselines3's VecNormalize,
Sample Factory's ``normalize_input`` and CleanRL's ``NormalizeObservation`` wrapper offer it.

The statistics are buffers of the agent: the learner updates them from each batch it trains on, and they
reach the actors with the weights and are saved in checkpoints, so an evaluation normalises as training did.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class ObservationNormalizer(nn.Module):
    """(obs − mean) / sqrt(var + eps), clipped to ±``clip``; mean and var are the running statistics of every
    observation passed to ``update`` (per feature, in float64). Before the first update it is the identity
    (mean 0, var 1), up to the clip."""

    def __init__(self, obs_dim: int, clip: float = 5.0, eps: float = 1e-8):
        super().__init__()
        if not clip > 0:
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
