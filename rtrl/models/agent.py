"""The actor-critic network of R2AC: stem -> core([features ; clipped reward]) -> policy and baseline heads."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rtrl.models.cores import make_core
from rtrl.models.stems import make_stem


@dataclass
class AgentOutput:
    policy_logits: Tensor   # (T,B,A)
    baseline: Tensor        # (T,B)
    core_input: Tensor      # (T,B,D) what the core read (an actor replays it to advance sensitivities)


class Agent(nn.Module):
    """R2AC network (DESIGN.md §5).

    Args:
        obs_shape, obs_dtype: of one observation; (C,H,W) uint8 images get the IMPALA ResNet by default.
        num_actions: size of the discrete action space.
        core: one of ``rtrl.models.CORES``.  hidden_size: N of the core.
        stem, stem_hidden_size: stem kind (auto, mlp, resnet) and its output width (paper: 256).
        forget_bias: initial eLSTM forget-gate bias (paper 0; 3 lets a trace survive long delays).
        feature_norm: LayerNorm on the stem's features before the core (not in the paper). Without it, an
            Atari run drove the features to large, nearly constant values that saturate the core's gates,
            leaving the policy blind (docs/BENCHMARKS.md).
    """

    def __init__(self, obs_shape, obs_dtype, num_actions: int, core: str = "rtrl-elstm", hidden_size: int = 256,
                 stem: str = "auto", stem_hidden_size: int = 256, forget_bias: float = 0.0,
                 feature_norm: bool = False):
        super().__init__()
        self.num_actions = num_actions
        self.stem = make_stem(stem, tuple(obs_shape), obs_dtype, stem_hidden_size)
        self.feature_norm = nn.LayerNorm(self.stem.output_size) if feature_norm else None
        self.core_kind = core
        self.core = make_core(core, self.stem.output_size + 1, hidden_size, forget_bias)
        self.policy = nn.Linear(hidden_size, num_actions)
        self.baseline = nn.Linear(hidden_size, 1)

    def initial_state(self, batch_size: int) -> dict[str, Tensor]:
        return self.core.initial_state(batch_size)

    def core_input(self, obs: Tensor, reward: Tensor, done: Tensor) -> Tensor:
        """[stem(obs) ; clipped reward], (T,B,D). A reward that ended the previous episode is not fed."""
        features = self.stem(obs)
        if self.feature_norm is not None:
            features = self.feature_norm(features)
        reward = reward.clamp(-1, 1) * (~done).to(features.dtype)
        return torch.cat((features, reward.unsqueeze(-1).to(features.dtype)), dim=-1)

    def forward(self, obs: Tensor, reward: Tensor, done: Tensor, state: dict[str, Tensor],
                carry_sensitivity: bool = True, inplace: bool = False) -> tuple[AgentOutput, dict[str, Tensor]]:
        """obs (T,B,...), reward (T,B), done (T,B) bool (state zeroed before step t), state from initial_state."""
        x = self.core_input(obs, reward, done)
        y, new_state = self.core(x, state, done, carry_sensitivity=carry_sensitivity, inplace=inplace)
        return AgentOutput(self.policy(y), self.baseline(y).squeeze(-1), x), new_state

    def advance_core(self, core_input: Tensor, state: dict[str, Tensor], done: Tensor) -> dict[str, Tensor]:
        """Replay a rollout's core inputs from ``state`` (no grad): the state (and sensitivities) after it."""
        with torch.no_grad():
            _, new_state = self.core(core_input, state, done, carry_sensitivity=True, inplace=True)
        return new_state
