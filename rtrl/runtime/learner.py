"""The R2AC learner: one update per batch of rollouts (DESIGN.md §5).

The agent runs over the batch from the state the actors stored before step 0. For the RTRL core that
state holds c_0 and the sensitivities S_0, so ``loss.backward()`` gives the recurrent parameters their
exact gradient through each actor's whole history (the engine's backward); everything else gets
ordinary backprop within the rollout. The sensitivities after the rollout are not computed: the
actors' state is what carries forward.
"""
from __future__ import annotations

import math

import torch

from rtrl.algos import impala_loss, linear_decay
from rtrl.models import Agent
from rtrl.runtime.config import TrainConfig
from rtrl.runtime.rollout import Rollout


class Learner:
    """RMSprop on the IMPALA loss, the learning rate decayed linearly to 0 over ``total_steps``,
    global gradient-norm clipping (RTRL gradients included); no step on a non-finite loss or gradient."""

    def __init__(self, model: Agent, cfg: TrainConfig):
        self.model = model
        self.trained = [p for p in model.parameters() if p.requires_grad]   # a frozen stem is left out
        self.optimizer = torch.optim.RMSprop(self.trained, lr=cfg.lr, alpha=cfg.rmsprop_alpha, eps=cfg.rmsprop_eps)
        self.loss_config = cfg.loss_config()
        self.lr, self.total_steps, self.grad_norm_clip = cfg.lr, cfg.total_steps, cfg.grad_norm_clip

    def update(self, batch: Rollout, steps_done: int) -> dict:
        """One gradient step on ``batch`` (on the model's device); returns the losses, grad norm and lr, and
        under ``"nonfinite"`` the terms that were NaN or infinite: then the step is skipped (the weights and
        the optimizer's state stay as they were)."""
        lr = self.lr * linear_decay(steps_done, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.model.obs_norm is not None:   # step 0 repeats the previous rollout's last step: counted once
            self.model.obs_norm.update(batch.obs[1:])
        out = self.model.outputs(batch.obs, batch.reward, batch.done, batch.state)
        loss, stats = impala_loss(out.policy_logits, out.baseline, batch.action, batch.reward, batch.done,
                                  batch.policy_logits, self.loss_config)
        self.optimizer.zero_grad(set_to_none=True)
        nonfinite = [k for k, v in stats.items() if not math.isfinite(v)]   # then no backward, no step
        stats["grad_norm"] = math.nan
        if not nonfinite:
            loss.backward()
            stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.trained, self.grad_norm_clip))
            if math.isfinite(stats["grad_norm"]):
                self.optimizer.step()
            else:
                nonfinite = ["grad_norm"]
        return {**stats, "lr": lr, "nonfinite": nonfinite}
