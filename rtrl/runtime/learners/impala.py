"""The R2AC learner: one update per batch of rollouts, or passes of minibatch steps over it (docs/DESIGN.md §5).

The agent runs over the batch from the state the actors stored before step 0. For the RTRL core that
state holds c_0 and the sensitivities S_0, so ``loss.backward()`` gives the recurrent parameters their
exact gradient through each actor's whole history (the engine's backward); everything else gets
ordinary backprop within the rollout. The sensitivities after the rollout are not computed: the
actors' state is what carries forward.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from rtrl.algos import impala_loss, linear_decay
from rtrl.cells import project_parameters
from rtrl.models import Agent
from rtrl.runtime.config import TrainConfig
from rtrl.runtime.experience import Experience
from rtrl.runtime.rollout import Rollout

# the loss terms of ``impala_loss``, then the update's own numbers; policy_lag comes with the experience
LOSS_METRICS = ("total_loss", "pg_loss", "baseline_loss", "entropy_loss")


class ImpalaLearner:
    """RMSprop on the IMPALA loss, the learning rate decayed linearly to 0 over ``total_steps``,
    global gradient-norm clipping (RTRL gradients included); no step on a non-finite loss or gradient.

    Each batch gives ``update_epochs`` passes of ``minibatches`` steps (1 and 1: one step, the paper's).
    A minibatch is a share of the batch's rollouts, whole (every rollout starts from its stored state,
    c_0 and S_0 for the RTRL core), drawn by a permutation per pass from the learner's own generator
    (seeded by the run's seed, in the checkpoint)."""

    metrics = LOSS_METRICS + ("grad_norm", "lr", "policy_lag")

    def __init__(self, model: Agent, cfg: TrainConfig):
        self.model = model
        self.trained = [p for p in model.parameters() if p.requires_grad]   # a frozen stem is left out
        self.optimizer = torch.optim.RMSprop(self.trained, lr=cfg.lr, alpha=cfg.rmsprop_alpha, eps=cfg.rmsprop_eps)
        self.loss_config = cfg.loss_config()
        self.lr, self.total_steps, self.grad_norm_clip = cfg.lr, cfg.total_steps, cfg.grad_norm_clip
        self.epochs, self.minibatches = cfg.update_epochs, cfg.minibatches
        self.shuffle = torch.Generator().manual_seed(cfg.seed)
        self.device = next(model.parameters()).device
        if model.reward_norm is not None:
            model.reward_norm.discount.fill_(cfg.discounting)

    def update(self, experience: Experience, steps_done: int) -> dict:
        """The gradient steps on the experience's batch (a collated ``Rollout``); returns the losses and grad
        norm (means over the steps), lr and the experience's stats, and under ``"nonfinite"`` the terms that
        were NaN or infinite: then that step is skipped (the weights and the optimizer's state stay as they
        were) and so are the batch's remaining steps."""
        batch = experience.data.to(self.device)
        lr = self.lr * linear_decay(steps_done, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.model.obs_norm is not None:   # step 0 repeats the previous rollout's last step: counted once
            self.model.obs_norm.update(batch.obs[1:])
        reward = batch.reward
        if self.model.reward_norm is not None:   # the loss's rewards scaled as the core's input is
            self.model.reward_norm.update(batch.reward[1:])
            reward = self.model.reward_norm(batch.reward)
        taken: list[dict] = []
        for _ in range(self.epochs):
            for part, part_reward in self._parts(batch, reward):
                stats = self._step(part, part_reward)
                if stats["nonfinite"]:
                    return {**stats, **experience.stats, "lr": lr}
                taken.append(stats)
        means = {k: sum(s[k] for s in taken) / len(taken) for k in taken[0] if k != "nonfinite"}
        return {**means, **experience.stats, "lr": lr, "nonfinite": []}

    def _parts(self, batch: Rollout, reward: Tensor) -> list[tuple[Rollout, Tensor]]:
        """The batch and the loss's rewards as ``minibatches`` shares of the rollouts (all, in order, for one)."""
        if self.minibatches == 1:
            return [(batch, reward)]
        order = torch.randperm(batch.done.shape[1], generator=self.shuffle).to(self.device)
        return [(batch.select(index), reward.index_select(1, index)) for index in order.tensor_split(self.minibatches)]

    def _step(self, batch: Rollout, reward: Tensor) -> dict:
        """One gradient step on ``batch`` (the core reads its raw rewards; the loss takes ``reward``)."""
        out = self.model.outputs(batch.obs, batch.reward, batch.done, batch.state)
        loss, stats = impala_loss(out.policy_logits, out.baseline, batch.action, reward, batch.done,
                                  batch.policy_logits, self.loss_config, self.model.action_dist)
        self.optimizer.zero_grad(set_to_none=True)
        nonfinite = [k for k, v in stats.items() if not math.isfinite(v)]   # then no backward, no step
        stats["grad_norm"] = math.nan
        if not nonfinite:
            loss.backward()
            stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.trained, self.grad_norm_clip))
            if math.isfinite(stats["grad_norm"]):
                self.optimizer.step()
                project_parameters(self.model)
            else:
                nonfinite = ["grad_norm"]
        return {**stats, "nonfinite": nonfinite}

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "shuffle": self.shuffle.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if "shuffle" in state:   # checkpoints from before minibatches have none (and needed none)
            self.shuffle.set_state(state["shuffle"])
