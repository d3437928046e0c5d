"""The R2AC / IMPALA learner loss on one batch of rollouts (Espeholt et al. 2018; Irie et al. 2024 §5).

Rollout layout (time-major, T+1 steps, step 0 repeats the previous rollout's last step):
at index t, ``obs[t]`` is what the agent saw, ``reward[t]`` and ``done[t]`` describe the transition
that led to it (``done[t]``: obs[t] starts a new episode, the state is zeroed before step t), and
``action[t]``, ``policy_logits[t]`` are what the behaviour policy did at obs[t]. So the action at t
earns ``reward[t+1]`` and is cut off from bootstrapping by ``done[t+1]``.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from rtrl.algos.losses import action_log_probs, baseline_loss, entropy_loss, policy_gradient_loss
from rtrl.algos.schedule import clip_rewards
from rtrl.algos.vtrace import vtrace


@dataclass
class LossConfig:
    discounting: float = 0.99
    baseline_cost: float = 0.5
    entropy_cost: float = 0.01
    reward_clip: bool = True


def impala_loss(model, batch: dict[str, Tensor], initial_state: dict[str, Tensor], cfg) -> tuple[Tensor, dict]:
    """Total loss (summed over T×B) of one batch and its parts as floats.

    ``model(obs, reward, done, state, carry_sensitivity=False)`` runs from the actors' stored state
    (for the RTRL core: c_0 and the sensitivities S_0), so ``loss.backward()`` yields the exact
    full-history gradient of the recurrent parameters; S_T is not needed by the learner.
    """
    out, _ = model(batch["obs"], batch["reward"], batch["done"], initial_state, carry_sensitivity=False)
    logits, values = out.policy_logits[:-1], out.baseline[:-1]
    bootstrap = out.baseline[-1]
    actions = batch["action"][:-1]
    rewards = batch["reward"][1:]
    if cfg.reward_clip:
        rewards = clip_rewards(rewards)
    discounts = (~batch["done"][1:]).to(values.dtype) * cfg.discounting
    target_log_probs = action_log_probs(logits, actions)
    behaviour_log_probs = action_log_probs(batch["policy_logits"][:-1], actions)
    returns = vtrace(behaviour_log_probs, target_log_probs.detach(), discounts, rewards.to(values.dtype),
                     values.detach(), bootstrap.detach())
    pg = policy_gradient_loss(logits, actions, returns.pg_advantages)
    baseline = cfg.baseline_cost * baseline_loss(values, returns.vs)
    entropy = cfg.entropy_cost * entropy_loss(logits)
    total = pg + baseline + entropy
    stats = {"total_loss": total.item(), "pg_loss": pg.item(), "baseline_loss": baseline.item(),
             "entropy_loss": entropy.item()}
    return total, stats
