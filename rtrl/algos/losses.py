"""The three IMPALA loss terms as pure functions (Espeholt et al. 2018, Sec. 4.2).

Every loss is a *sum* over the T×B steps of a rollout batch, as in the paper. The learner combines them
as ``pg + baseline_cost · baseline + entropy_cost · entropy`` (costs 0.5 and 0.01 in R2AC).
Shapes: ``logits`` (T, B, A), ``actions`` (T, B) integer, everything else (T, B). The policy terms take the
action distribution (``rtrl.algos.distributions``) as ``dist``; without it the logits are a categorical's,
as in R2AC. With it, ``logits`` are the distribution's parameters (T, B, P) and ``actions`` its actions
(T, B, *action_shape).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rtrl.algos.distributions import ActionDistribution, Categorical, categorical_log_prob

__all__ = ["action_log_probs", "policy_gradient_loss", "clipped_surrogate_loss", "baseline_loss", "entropy_loss",
           "normalize_advantages"]


def action_log_probs(logits: torch.Tensor, actions: torch.Tensor,
                     dist: ActionDistribution | None = None) -> torch.Tensor:
    """log π(a_s|x_s) of the taken actions: logits (T, B, A), actions (T, B) int -> (T, B); with ``dist``,
    its parameters and actions."""
    if dist is not None:
        return dist.log_prob(logits, actions)
    return categorical_log_prob(logits, actions)


def policy_gradient_loss(
    logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor, dist: ActionDistribution | None = None
) -> torch.Tensor:
    """−Σ_{s,b} log π(a_s|x_s) · A_s; the advantages are constants (detached).

    Its gradient is the policy-gradient estimate −Σ A_s ∇ log π(a_s|x_s); ``advantages`` are the V-trace
    ``pg_advantages`` (T, B). Returns a scalar.
    """
    return -(action_log_probs(logits, actions, dist) * advantages.detach()).sum()


def clipped_surrogate_loss(logits: torch.Tensor, actions: torch.Tensor, behaviour_log_probs: torch.Tensor,
                           advantages: torch.Tensor, clip: float, dist: ActionDistribution | None = None
                           ) -> torch.Tensor:
    """−Σ_{s,b} min(r_s A_s, clip(r_s, 1 − ε, 1 + ε) A_s) with r_s = π(a_s|x_s)/μ(a_s|x_s): PPO's clipped
    surrogate (Schulman et al. 2017) against the actors' policy μ, as APPO uses it beside V-trace.

    Its gradient at r = 1 is the policy-gradient loss's; once a step has moved r out of [1 − ε, 1 + ε] in
    the direction A favours, that step's term gives no more gradient. ``behaviour_log_probs`` and
    ``advantages`` are constants (detached). Shapes as ``policy_gradient_loss``; returns a scalar.
    """
    ratio = (action_log_probs(logits, actions, dist) - behaviour_log_probs.detach()).exp()
    advantages = advantages.detach()
    return -torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages).sum()


def baseline_loss(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0.5 · Σ_{s,b} (v_s − V(x_s))²; the targets v_s are constants (detached).

    The 0.5 belongs to the squared error, so that the gradient w.r.t. V(x_s) is −(v_s − V(x_s)), the
    paper's value update (v_s − V(x_s)) ∇V(x_s). It is *not* the baseline cost: the caller multiplies
    this loss by the baseline cost (0.5 in the paper and torchbeast). values, targets (T, B) -> scalar.
    """
    if values.shape != targets.shape:
        raise ValueError(
            f"values have shape {tuple(values.shape)} but targets {tuple(targets.shape)}"
        )
    return 0.5 * ((targets.detach() - values) ** 2).sum()


def entropy_loss(logits: torch.Tensor, dist: ActionDistribution | None = None) -> torch.Tensor:
    """−Σ_{s,b} H(π(·|x_s)) = Σ_{s,b} Σ_a π(a|x_s) log π(a|x_s); minimising it raises the entropy.

    logits (T, B, A) -> scalar (with ``dist``: its parameters, and its entropy). The caller multiplies by
    the entropy cost (0.01 in R2AC).
    """
    if dist is not None and not isinstance(dist, Categorical):
        return -dist.entropy(logits).sum()
    log_policy = F.log_softmax(logits, dim=-1)
    return (log_policy.exp() * log_policy).sum()


def normalize_advantages(advantages: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(A − mean(A)) / (std(A) + eps) over all T×B entries (population std), as PPO implementations do.

    Not in IMPALA or R2AC: it makes the policy-gradient step independent of the rewards' scale (POPGym's
    rewards are ±1/episode length per step). A batch of equal advantages becomes all zeros. (T, B) -> (T, B).
    """
    centred = advantages - advantages.mean()
    return centred / (centred.pow(2).mean().sqrt() + eps)
