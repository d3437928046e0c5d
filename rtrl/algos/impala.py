"""The R2AC / IMPALA learner loss on one batch of rollouts (Espeholt et al. 2018; Irie et al. 2024 §5).

Rollout layout (time-major, T+1 steps, step 0 repeats the previous rollout's last step):
at index t, ``obs[t]`` is what the agent saw, ``reward[t]`` and ``done[t]`` describe the transition
that led to it (``done[t]``: obs[t] starts a new episode, the state is zeroed before step t), and
``action[t]``, ``policy_logits[t]`` are what the behaviour policy did at obs[t]. So the action at t
earns ``reward[t+1]`` and is cut off from bootstrapping by ``done[t+1]``; the learner's values at
steps 0..T-1 are trained, and its value at step T is the bootstrap.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rtrl.algos.distributions import ActionDistribution
from rtrl.algos.losses import (action_log_probs, baseline_loss, clipped_surrogate_loss, entropy_loss,
                               normalize_advantages, policy_gradient_loss)
from rtrl.algos.schedule import clip_rewards
from rtrl.algos.vtrace import vtrace


@dataclass(frozen=True)
class LossConfig:
    discounting: float = 0.99     # γ
    baseline_cost: float = 0.5    # weight of the baseline loss
    entropy_cost: float = 0.01    # weight of the entropy loss
    reward_clip: bool = True      # clip rewards to [-1, 1]
    normalize_advantages: bool = False   # standardise the V-trace advantages over the batch (not in IMPALA)
    policy_clip: float = 0.0      # ε > 0: PPO's clipped surrogate against μ with V-trace's advantages (APPO)
    vtrace_lambda: float = 1.0    # λ on V-trace's trace coefficients c_s (IMPALA's Remark 2; 1: plain V-trace)


def impala_loss(policy_logits: Tensor, baseline: Tensor, action: Tensor, reward: Tensor, done: Tensor,
                behaviour_logits: Tensor, cfg: LossConfig,
                dist: ActionDistribution | None = None) -> tuple[Tensor, dict[str, float]]:
    """Total loss (summed over T×B) of one batch and its parts as floats.

    Args (all in the rollout layout above, T+1 steps):
        policy_logits: (T+1,B,A) the learner's logits.  baseline: (T+1,B) the learner's values.
        action: (T+1,B) int, the actions taken.  reward: (T+1,B).  done: (T+1,B) bool.
        behaviour_logits: (T+1,B,A) the actors' logits (μ).
        cfg: discounting, loss weights, reward clipping, advantage standardisation and the policy term:
            IMPALA's −Σ ρ̄-clipped ρ_s A_s log π, or with ``policy_clip`` ε > 0 APPO's clipped surrogate
            (``clipped_surrogate_loss``) on A_s = r_s + γ v_{s+1} − V(x_s) (V-trace's targets, no ρ_s).
        dist: the action distribution whose parameters the "logits" are (``rtrl.algos.distributions``;
            None: categorical), and actions then (T+1,B,*its action shape).
    """
    logits, values, bootstrap = policy_logits[:-1], baseline[:-1], baseline[-1]
    actions = action[:-1]
    rewards = reward[1:]
    if cfg.reward_clip:
        rewards = clip_rewards(rewards)
    discounts = (~done[1:]).to(values.dtype) * cfg.discounting
    target_log_probs = action_log_probs(logits, actions, dist)
    behaviour_log_probs = action_log_probs(behaviour_logits[:-1], actions, dist)
    returns = vtrace(behaviour_log_probs, target_log_probs.detach(), discounts, rewards.to(values.dtype),
                     values.detach(), bootstrap.detach(), lambda_=cfg.vtrace_lambda)
    if cfg.policy_clip > 0:   # APPO: the advantage without V-trace's ρ_s, which the surrogate's ratio takes over
        next_vs = torch.cat([returns.vs[1:], bootstrap.detach()[None]])
        advantages = rewards.to(values.dtype) + discounts * next_vs - values.detach()
    else:
        advantages = returns.pg_advantages
    if cfg.normalize_advantages:
        advantages = normalize_advantages(advantages)
    if cfg.policy_clip > 0:
        pg = clipped_surrogate_loss(logits, actions, behaviour_log_probs, advantages, cfg.policy_clip, dist)
    else:
        pg = policy_gradient_loss(logits, actions, advantages, dist)
    baseline_part = cfg.baseline_cost * baseline_loss(values, returns.vs)
    entropy = cfg.entropy_cost * entropy_loss(logits, dist)
    total = pg + baseline_part + entropy
    stats = {"total_loss": total.item(), "pg_loss": pg.item(), "baseline_loss": baseline_part.item(),
             "entropy_loss": entropy.item()}
    return total, stats
