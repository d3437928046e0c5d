"""Action distributions behind one interface: what the policy head outputs, how an action is drawn from it,
its log-probability and entropy. The rollout's ``policy_logits`` field holds a distribution's parameters.

* ``Categorical(n)`` — a ``Discrete(n)`` action; parameters: n logits (the softmax policy of R2AC).
* ``MultiCategorical(nvec)`` — a ``MultiDiscrete(nvec)`` action: independent categoricals, one per component;
  parameters: the components' logits side by side (sum(nvec)).
* ``DiagGaussian(dim)`` — a ``Box`` action of ``dim`` components: independent normals; parameters: the
  means, then the log standard deviations (2·dim). The action stored in the rollout is the Gaussian's own
  sample, before any clipping: the log-probability is exact for it, and clipping to the Box's bounds
  happens in the environment (``rtrl.envs.wrappers.ClipBoxAction``), which makes the clipped action a
  deterministic function of the stored one — the importance ratios of V-trace stay exact. (No tanh squash:
  its entropy has no closed form.)

Every distribution states ``param_size``, ``action_shape`` and ``action_dtype`` (of one action, for the
rollout layout), and ``log_prob(params, action)``, ``entropy(params)``, ``sample(params, generator)`` and
``mode(params)`` (the greedy action), all over leading batch dimensions (T, B, ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ActionDistribution", "Categorical", "MultiCategorical", "DiagGaussian", "sample_categorical",
           "LOG_STD_RANGE"]

LOG_STD_RANGE = (-5.0, 2.0)   # where an agent clamps a Gaussian's log std (std 0.0067 .. 7.4)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class ActionDistribution(Protocol):
    param_size: int
    action_shape: tuple[int, ...]
    action_dtype: torch.dtype

    def log_prob(self, params: Tensor, action: Tensor) -> Tensor: ...
    def entropy(self, params: Tensor) -> Tensor: ...
    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor: ...
    def mode(self, params: Tensor) -> Tensor: ...


def _check(params: Tensor, size: int, name: str) -> None:
    if params.shape[-1] != size:
        raise ValueError(f"{name} parameters have {params.shape[-1]} entries in their last dimension; expected {size}")


def sample_categorical(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One action per row of ``logits`` (B,A), drawn from the softmax policy with ``generator``.

    A row that is not finite (a diverged model's) gets a uniformly random action instead of an error in
    the actor: its logits stay in the rollout, where the learner's non-finite guard skips, counts and
    reports the update (``rtrl.runtime.train``)."""
    probs = torch.softmax(logits, -1)
    diverged = ~probs.isfinite().all(-1)
    if diverged.any():
        probs = torch.where(diverged[:, None], torch.ones_like(probs), probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def categorical_log_prob(logits: Tensor, actions: Tensor) -> Tensor:
    """log π(a|x) of integer ``actions`` (...) under the softmax of ``logits`` (..., A)."""
    if logits.shape[:-1] != actions.shape:
        raise ValueError(
            f"actions have shape {tuple(actions.shape)}; expected {tuple(logits.shape[:-1])} "
            f"(logits shape {tuple(logits.shape)} without the action dimension)"
        )
    log_policy = F.log_softmax(logits, dim=-1)
    return log_policy.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


@dataclass(frozen=True)
class Categorical:
    n: int
    action_dtype = torch.int64

    @property
    def param_size(self) -> int:
        return self.n

    @property
    def action_shape(self) -> tuple[int, ...]:
        return ()

    def log_prob(self, params: Tensor, action: Tensor) -> Tensor:
        return categorical_log_prob(params, action)

    def entropy(self, params: Tensor) -> Tensor:
        log_policy = F.log_softmax(params, dim=-1)
        return -(log_policy.exp() * log_policy).sum(-1)

    def log_prob_grad(self, params: Tensor, action: Tensor) -> Tensor:
        """∂ log π(a)/∂params in closed form: one_hot(a) − π (the streaming learner's heads use it)."""
        return F.one_hot(action.long(), self.n).to(params.dtype) - torch.softmax(params, dim=-1)

    def entropy_grad(self, params: Tensor) -> Tensor:
        """∂H/∂params in closed form: −π ⊙ (log π + H)."""
        log_policy = F.log_softmax(params, dim=-1)
        policy = log_policy.exp()
        return -policy * (log_policy - (policy * log_policy).sum(-1, keepdim=True))

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        flat = params.reshape(-1, self.n)
        return sample_categorical(flat, generator).reshape(params.shape[:-1])

    def mode(self, params: Tensor) -> Tensor:
        return params.argmax(-1)


@dataclass(frozen=True)
class MultiCategorical:
    nvec: tuple[int, ...]
    action_dtype = torch.int64

    @property
    def param_size(self) -> int:
        return sum(self.nvec)

    @property
    def action_shape(self) -> tuple[int, ...]:
        return (len(self.nvec),)

    def _parts(self, params: Tensor) -> tuple[Tensor, ...]:
        _check(params, self.param_size, f"MultiCategorical{self.nvec}")
        return params.split(list(self.nvec), dim=-1)

    def log_prob(self, params: Tensor, action: Tensor) -> Tensor:
        if action.shape != params.shape[:-1] + self.action_shape:
            raise ValueError(f"actions have shape {tuple(action.shape)}; expected "
                             f"{tuple(params.shape[:-1] + self.action_shape)}")
        return sum(categorical_log_prob(p, a) for p, a in zip(self._parts(params), action.unbind(-1)))

    def entropy(self, params: Tensor) -> Tensor:
        return sum(Categorical(p.shape[-1]).entropy(p) for p in self._parts(params))

    def log_prob_grad(self, params: Tensor, action: Tensor) -> Tensor:
        return torch.cat([Categorical(p.shape[-1]).log_prob_grad(p, a)
                          for p, a in zip(self._parts(params), action.unbind(-1))], dim=-1)

    def entropy_grad(self, params: Tensor) -> Tensor:
        return torch.cat([Categorical(p.shape[-1]).entropy_grad(p) for p in self._parts(params)], dim=-1)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.stack([Categorical(p.shape[-1]).sample(p, generator) for p in self._parts(params)], -1)

    def mode(self, params: Tensor) -> Tensor:
        return torch.stack([p.argmax(-1) for p in self._parts(params)], -1)


@dataclass(frozen=True)
class DiagGaussian:
    dim: int
    action_dtype = torch.float32

    @property
    def param_size(self) -> int:
        return 2 * self.dim

    @property
    def action_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def mean_and_log_std(self, params: Tensor) -> tuple[Tensor, Tensor]:
        _check(params, self.param_size, f"DiagGaussian({self.dim})")
        return params[..., :self.dim], params[..., self.dim:]

    def log_prob(self, params: Tensor, action: Tensor) -> Tensor:
        """Σ_i −½((a_i − μ_i)/σ_i)² − log σ_i − ½ log 2π, of the stored (unclipped) action."""
        mean, log_std = self.mean_and_log_std(params)
        if action.shape != mean.shape:
            raise ValueError(f"actions have shape {tuple(action.shape)}; expected {tuple(mean.shape)}")
        z = (action.to(mean.dtype) - mean) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std - _HALF_LOG_2PI).sum(-1)

    def entropy(self, params: Tensor) -> Tensor:
        """Σ_i ½ + ½ log 2π + log σ_i."""
        _, log_std = self.mean_and_log_std(params)
        return (log_std + 0.5 + _HALF_LOG_2PI).sum(-1)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """μ + σ·ε; a non-finite row (a diverged model's) draws from N(0, 1) instead (its parameters stay in
        the rollout, where the learner's non-finite guard skips the update)."""
        mean, log_std = self.mean_and_log_std(params)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        action = mean + torch.exp(log_std) * noise
        return torch.where(action.isfinite(), action, noise)

    def mode(self, params: Tensor) -> Tensor:
        return self.mean_and_log_std(params)[0]
