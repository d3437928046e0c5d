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
from rtrl.settings import SettingError, literal


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
        value_tower: the baseline reads a network of its own (``ValueTower``: stem, core, of the same config,
            initialised from the random stream after the policy's), not the policy's core: the value loss then
            shapes no feature the policy reads (``--critic separate`` of the impala learner). The state is then
            the pair (policy core's, tower core's), and ``core_input`` the two cores' inputs side by side.
    """

    def __init__(self, obs_shape, obs_dtype, num_actions: int | ActionDistribution, config: ModelConfig | None = None,
                 memory_limit: int | None = None, value_tower: bool = False, **options):
        super().__init__()
        self.config = config = with_options(config, **options)
        # what it was built from: another network of the same kind (the streaming learner's separate critic)
        self.obs_shape, self.obs_dtype, self.memory_limit = tuple(obs_shape), obs_dtype, memory_limit
        self.obs_norm = None
        if config.obs_norm:
            if len(obs_shape) != 1 or not torch.empty((), dtype=obs_dtype).is_floating_point():
                raise SettingError("{obs_norm} normalises vector observations; " + literal(
                    f"this env's are {tuple(obs_shape)} {obs_dtype} (images are scaled by their stem)"), obs_norm=True)
            self.obs_norm = ObservationNormalizer(obs_shape[0])
        self.stem, self.feature_norm, self.core = _tower(obs_shape, obs_dtype, config, memory_limit)
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
        self.value_tower = ValueTower(obs_shape, obs_dtype, config, memory_limit) if value_tower else None
        value_core = self.core if self.value_tower is None else self.value_tower.core
        self.baseline = nn.Linear(value_core.output_size, 1)
        self._register_load_state_dict_pre_hook(_rename_old_core_keys)

    @property
    def cores(self) -> tuple:
        """The recurrent cores whose states make the agent's: the policy's, and the value tower's if any."""
        return (self.core,) if self.value_tower is None else (self.core, self.value_tower.core)

    def _each(self, method: str, *args) -> Any:
        found = [getattr(core, method)(*args) for core in self.cores]
        return found[0] if self.value_tower is None else tuple(found)

    def initial_state(self, batch_size: int) -> Any:
        return self._each("initial_state", batch_size)

    def step_state(self, state: Any) -> Any:
        """What an actor carries from step to step (the RTRL core: c without the sensitivities)."""
        if self.value_tower is None:
            return self.core.step_state(state)
        return tuple(core.step_state(part) for core, part in zip(self.cores, state))

    def initial_step_state(self, batch_size: int) -> Any:
        """The zero step state, without allocating what ``step_state`` would drop (an evaluation's start)."""
        return self._each("initial_step_state", batch_size)

    @property
    def steps_partial_state(self) -> bool:
        """A step state leaves out what ``advance`` brings forward (an RTRL core's sensitivities)."""
        return any(core.steps_partial_state for core in self.cores)

    def sensitivity_bytes(self, batch_size: int = 1) -> int:
        """Bytes the RTRL sensitivities of ``batch_size`` environments take, in every core."""
        return sum(core.sensitivity_bytes(batch_size) for core in self.cores if hasattr(core, "sensitivity_bytes"))

    def core_input(self, obs: Tensor, reward: Tensor, done: Tensor) -> Tensor:
        """[stem(obs) ; clipped reward], (T,B,D) (and the value tower's beside it). A reward that ended the previous
        episode is not fed."""
        if self.obs_norm is not None:
            obs = self.obs_norm(obs)
        if self.reward_norm is not None:
            reward = self.reward_norm(reward)
        x = _stem_input(self.stem, self.feature_norm, obs, reward, done)
        if self.value_tower is None:
            return x
        return torch.cat((x, _stem_input(self.value_tower.stem, self.value_tower.feature_norm, obs, reward, done)), -1)

    def _split(self, x: Tensor) -> tuple[Tensor, ...]:
        """The policy core's and the value tower's inputs of a ``core_input``."""
        return (x,) if self.value_tower is None else x.split([self.stem.output_size + 1,
                                                               self.value_tower.stem.output_size + 1], dim=-1)

    def _heads(self, y: Tensor, x: Tensor, y_value: Tensor | None = None) -> AgentOutput:
        y_value = y if y_value is None else y_value
        if self.config.output_norm:
            y, y_value = F.layer_norm(y, y.shape[-1:]), F.layer_norm(y_value, y_value.shape[-1:])
        return AgentOutput(self.policy_params(y), self.baseline(y_value).squeeze(-1), x)

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
        if self.value_tower is None:
            y, new_state = self.core(x, state, done)
            return self._heads(y, x), new_state
        (y, policy_state), (y_value, value_state) = [core(part, s, done) for core, part, s
                                                     in zip(self.cores, self._split(x), state)]
        return self._heads(y, x, y_value), (policy_state, value_state)

    def outputs(self, obs: Tensor, reward: Tensor, done: Tensor, state: Any) -> AgentOutput:
        """The learner's call: outputs with the core's training gradient (for the RTRL core, exact through
        the history summarised by the state's sensitivities); the state after the steps is not computed."""
        x = self.core_input(obs, reward, done)
        if self.value_tower is None:
            return self._heads(self.core.outputs(x, state, done), x)
        y, y_value = [core.outputs(part, s, done) for core, part, s in zip(self.cores, self._split(x), state)]
        return self._heads(y, x, y_value)

    def step_in_place(self, obs: Tensor, reward: Tensor, done: Tensor, state: Any) -> tuple[AgentOutput, Tensor, Any]:
        """One call of a streaming learner whose single-layer RTRL core keeps its sensitivities in place
        (``ElementwiseRNN.run_in_place``): the outputs, the core's states c (T,B,N) — whose gradient the learner
        contracts with the sensitivities itself — and the state (S_T pending until ``complete_pending``)."""
        if self.value_tower is not None:
            raise TypeError("step_in_place steps one core; this agent's value tower is a second (the streaming "
                            "learner keeps a separate critic of its own)")
        x = self.core_input(obs, reward, done)
        c_seq, new_state = self.core.run_in_place(x, state, done)
        return self._heads(self.core.readout(x, c_seq), x), c_seq, new_state

    def advance(self, core_input: Tensor, state: Any, done: Tensor) -> Any:
        """Replay a rollout's core inputs from ``state`` (no grad): the full state after them."""
        if self.value_tower is None:
            return self.core.advance(core_input, state, done)
        return tuple(core.advance(part, s, done) for core, part, s in zip(self.cores, self._split(core_input), state))


class ValueTower(nn.Module):
    """The value's own network (``Agent(value_tower=True)``): a stem (and feature norm) and a core of the agent's
    config, reading the agent's normalised observations and rewards; the agent's ``baseline`` head reads its core."""

    def __init__(self, obs_shape, obs_dtype, config: ModelConfig, memory_limit: int | None):
        super().__init__()
        self.stem, self.feature_norm, self.core = _tower(obs_shape, obs_dtype, config, memory_limit)


def _tower(obs_shape, obs_dtype, config: ModelConfig, memory_limit: int | None) -> tuple:
    """A stem, its feature norm (or None) and the core reading [features ; reward]: the policy's, or a value tower's."""
    stem = make_stem(config.stem, tuple(obs_shape), obs_dtype, config.stem_hidden_size)
    feature_norm = nn.LayerNorm(stem.output_size) if config.feature_norm else None
    return stem, feature_norm, make_core(config, stem.output_size + 1, memory_limit)


def _stem_input(stem: nn.Module, feature_norm: nn.Module | None, obs: Tensor, reward: Tensor, done: Tensor) -> Tensor:
    """[stem(obs) (feature-normed) ; reward clipped to ±1, 0 where done] of already normalised obs and rewards."""
    features = stem(obs)
    if feature_norm is not None:
        features = feature_norm(features)
    reward = reward.clamp(-1, 1) * (~done).to(features.dtype)
    return torch.cat((features, reward.unsqueeze(-1).to(features.dtype)), dim=-1)


def _rename_old_core_keys(state_dict, prefix, *args) -> None:
    """Checkpoints written before the eLSTM became the core itself hold its tensors as ``core.cell.*``."""
    old = prefix + "core.cell."
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[prefix + "core." + key[len(old):]] = state_dict.pop(key)


sample_actions = sample_categorical   # one action per row of logits (B,A); ``Agent.action_dist.sample`` for any
