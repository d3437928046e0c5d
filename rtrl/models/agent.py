"""The actor-critic network of R2AC: stem -> core([features ; clipped reward]) -> policy and baseline heads."""
from __future__ import annotations

import numbers

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rtrl.algos.distributions import LOG_STD_RANGE, ActionDistribution, Categorical, DiagGaussian, sample_categorical
from rtrl.models.config import ModelConfig, with_options
from rtrl.models.cores import make_core
from rtrl.models.normalizer import ObservationNormalizer, RewardScaler
from rtrl.models.stems import make_stem


@dataclass
class AgentOutput:
    policy_logits: Tensor   # (T,B,P) the action distribution's parameters (a categorical's: its logits)
    baseline: Tensor        # (T,B)
    core_input: Tensor      # (T,B,D) what the core read (an actor replays it to advance the state)


class Agent(nn.Module):
    """R2AC network (docs/DESIGN.md §5). Observations, rewards and dones are time-major (T,B,...); ``done[t]``
    means obs[t] starts an episode (the core's state is zeroed before step t, and reward[t], which
    ended the previous episode, is not fed).

    Args:
        obs_shape, obs_dtype: of one observation; (C,H,W) uint8 images get the IMPALA ResNet by default.
        num_actions: the size of a discrete action space, or the action distribution
            (``rtrl.algos.distributions``: ``Categorical``, ``MultiCategorical``, ``DiagGaussian``), kept as
            ``action_dist``. A Gaussian's means come from ``policy`` (initialised 100x smaller than PyTorch's
            default, so that the first actions are near 0), its log stds from ``policy_log_std`` (one parameter
            per component, 0 at first) or, with ``log_std="state"``, from ``policy`` too; the log stds are
            clamped to ``LOG_STD_RANGE``.
        config: the network (``rtrl.models.ModelConfig``: cell, learning, sizes, stem, init); ``**options``
            replace its fields (``Agent(shape, dtype, 4, cell="lru", hidden_size=64)``). Of its options,
            ``feature_norm`` puts a LayerNorm on the stem's features before the core (not in the paper):
            without it, an Atari run drove the features to large, nearly constant values that saturate the
            core's gates, leaving the policy blind (docs/BENCHMARKS.md); ``output_norm`` puts one without
            parameters on the core's output before the heads (Stream AC(λ)'s LayerNorm after a hidden
            layer); ``obs_norm`` normalises vector observations by their running mean and std before the
            stem (``ObservationNormalizer``; the learner updates the statistics from each batch);
            ``reward_norm`` scales the rewards so that returns are of order 1 (``RewardScaler``; the learner
            updates its statistics and scales the loss's rewards by it too).
        memory_limit: bytes a stacked core's sensitivities may take (None: what the machine has available).
    """

    def __init__(self, obs_shape, obs_dtype, num_actions: int | ActionDistribution, config: ModelConfig | None = None,
                 memory_limit: int | None = None, **options):
        super().__init__()
        self.config = config = with_options(config, **options)
        # what it was built from: another network of the same kind (the streaming learner's separate critic)
        self.obs_shape, self.obs_dtype, self.memory_limit = tuple(obs_shape), obs_dtype, memory_limit
        self.obs_norm = None
        if config.obs_norm:
            if len(obs_shape) != 1 or not torch.empty((), dtype=obs_dtype).is_floating_point():
                raise ValueError(f"obs_norm normalises vector observations; this env's are {tuple(obs_shape)} "
                                 f"{obs_dtype} (images are scaled by their stem)")
            self.obs_norm = ObservationNormalizer(obs_shape[0])
        self.stem = make_stem(config.stem, tuple(obs_shape), obs_dtype, config.stem_hidden_size)
        self.feature_norm = nn.LayerNorm(self.stem.output_size) if config.feature_norm else None
        self.core = make_core(config, self.stem.output_size + 1, memory_limit)
        # an action count (any integer type: a space's n is often a numpy integer) or a distribution
        self.action_dist = Categorical(int(num_actions)) if isinstance(num_actions, numbers.Integral) else num_actions
        self.reward_norm = RewardScaler() if config.reward_norm else None
        self.policy_log_std = None
        if isinstance(self.action_dist, DiagGaussian):
            dim = self.action_dist.dim
            self.policy = nn.Linear(self.core.output_size, dim if config.log_std == "parameter" else 2 * dim)
            with torch.no_grad():
                self.policy.weight.mul_(0.01)
                self.policy.bias.zero_()
            if config.log_std == "parameter":
                self.policy_log_std = nn.Parameter(torch.zeros(dim))
        else:
            self.policy = nn.Linear(self.core.output_size, self.action_dist.param_size)   # 2N for rtu, clru
        self.baseline = nn.Linear(self.core.output_size, 1)
        self._register_load_state_dict_pre_hook(_rename_old_core_keys)

    def initial_state(self, batch_size: int) -> Any:
        return self.core.initial_state(batch_size)

    def step_state(self, state: Any) -> Any:
        """What an actor carries from step to step (the RTRL core: c without the sensitivities)."""
        return self.core.step_state(state)

    def initial_step_state(self, batch_size: int) -> Any:
        """The zero step state, without allocating what ``step_state`` would drop (an evaluation's start)."""
        return self.core.initial_step_state(batch_size)

    def core_input(self, obs: Tensor, reward: Tensor, done: Tensor) -> Tensor:
        """[stem(obs) ; clipped reward], (T,B,D). A reward that ended the previous episode is not fed."""
        if self.obs_norm is not None:
            obs = self.obs_norm(obs)
        features = self.stem(obs)
        if self.feature_norm is not None:
            features = self.feature_norm(features)
        if self.reward_norm is not None:
            reward = self.reward_norm(reward)
        reward = reward.clamp(-1, 1) * (~done).to(features.dtype)
        return torch.cat((features, reward.unsqueeze(-1).to(features.dtype)), dim=-1)

    def _heads(self, y: Tensor, x: Tensor) -> AgentOutput:
        if self.config.output_norm:
            y = F.layer_norm(y, y.shape[-1:])
        return AgentOutput(self.policy_params(y), self.baseline(y).squeeze(-1), x)

    def policy_params(self, y: Tensor) -> Tensor:
        """The action distribution's parameters from the core's output (a categorical's: the logits)."""
        params = self.policy(y)
        if not isinstance(self.action_dist, DiagGaussian):
            return params
        if self.policy_log_std is None:
            mean, log_std = params.chunk(2, dim=-1)
        else:
            mean, log_std = params, self.policy_log_std.expand_as(params)
        return torch.cat((mean, log_std.clamp(*LOG_STD_RANGE)), dim=-1)

    def forward(self, obs: Tensor, reward: Tensor, done: Tensor, state: Any) -> tuple[AgentOutput, Any]:
        """Outputs over the steps and the core's state after them (an actor steps with T=1)."""
        x = self.core_input(obs, reward, done)
        y, new_state = self.core(x, state, done)
        return self._heads(y, x), new_state

    def outputs(self, obs: Tensor, reward: Tensor, done: Tensor, state: Any) -> AgentOutput:
        """The learner's call: outputs with the core's training gradient (for the RTRL core, exact through
        the history summarised by the state's sensitivities); the state after the steps is not computed."""
        x = self.core_input(obs, reward, done)
        return self._heads(self.core.outputs(x, state, done), x)

    def step_in_place(self, obs: Tensor, reward: Tensor, done: Tensor, state: Any) -> tuple[AgentOutput, Tensor, Any]:
        """One call of a streaming learner whose single-layer RTRL core keeps its sensitivities in place
        (``ElementwiseRNN.run_in_place``): the outputs, the core's states c (T,B,N) — whose gradient the learner
        contracts with the sensitivities itself — and the state (S_T pending until ``complete_pending``)."""
        x = self.core_input(obs, reward, done)
        c_seq, new_state = self.core.run_in_place(x, state, done)
        return self._heads(self.core.readout(x, c_seq), x), c_seq, new_state

    def advance(self, core_input: Tensor, state: Any, done: Tensor) -> Any:
        """Replay a rollout's core inputs from ``state`` (no grad): the full state after them."""
        return self.core.advance(core_input, state, done)


def _rename_old_core_keys(state_dict, prefix, *args) -> None:
    """Checkpoints written before the eLSTM became the core itself hold its tensors as ``core.cell.*``."""
    old = prefix + "core.cell."
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[prefix + "core." + key[len(old):]] = state_dict.pop(key)


sample_actions = sample_categorical   # one action per row of logits (B,A); ``Agent.action_dist.sample`` for any
