"""Learning-rate schedule and reward clipping used by the R2AC learner (docs/DESIGN.md §5)."""
from __future__ import annotations

import torch

__all__ = ["linear_decay", "clip_rewards"]


def linear_decay(step: int, total_steps: int) -> float:
    """Factor 1 − step/total_steps, floored at 0: the learning rate decays linearly to 0 over the run.

    Use with ``torch.optim.lr_scheduler.LambdaLR(opt, lambda s: linear_decay(s, total_steps))``,
    where ``step`` counts whatever the run counts (learner updates, say) and ``total_steps`` is the
    same count for the whole run.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive; got {total_steps}")
    return max(0.0, 1.0 - step / total_steps)


def clip_rewards(rewards: torch.Tensor) -> torch.Tensor:
    """Rewards clipped to [−1, 1], as the agent sees them in the loss and in the core input."""
    return torch.clamp(rewards, -1.0, 1.0)
