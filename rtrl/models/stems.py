"""Stems: observation -> feature vector. The core reads [features ; clipped reward]."""
from __future__ import annotations

import torch
from torch import Tensor, nn

STEMS = ("auto", "mlp", "resnet", "nature", "identity")


class MLPStem(nn.Module):
    """Vector observations (…, obs_dim) float -> (…, hidden_size) through two ReLU layers."""

    def __init__(self, obs_dim: int, hidden_size: int = 256):
        super().__init__()
        self.output_size = hidden_size
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden_size), nn.ReLU(),
                                 nn.Linear(hidden_size, hidden_size), nn.ReLU())

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs.to(self.net[0].weight.dtype))


class IdentityStem(nn.Module):
    """Vector observations fed to the core as they are (a float cast only)."""

    def __init__(self, obs_dim: int):
        super().__init__()
        self.output_size = obs_dim
        self.register_buffer("_dtype_probe", torch.zeros(()), persistent=False)

    def forward(self, obs: Tensor) -> Tensor:
        return obs.to(self._dtype_probe.dtype)


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaResNetStem(nn.Module):
    """The IMPALA "deep" stem (Espeholt et al. 2018, Fig. 3), as used by the paper (docs/DESIGN.md §5).

    Input uint8 (…, C, H, W), scaled to [0, 1]. Three stages with 16/32/32 channels, each
    conv3×3 -> max-pool 3×3 stride 2 -> two residual blocks; ReLU; FC to ``hidden_size``; ReLU.
    """

    def __init__(self, obs_shape: tuple[int, int, int], hidden_size: int = 256, channels=(16, 32, 32)):
        super().__init__()
        c, h, w = obs_shape
        stages = []
        for out in channels:
            stages += [nn.Conv2d(c, out, 3, padding=1), nn.MaxPool2d(3, stride=2, padding=1),
                       _ResidualBlock(out), _ResidualBlock(out)]
            c, h, w = out, (h + 1) // 2, (w + 1) // 2
        self.convs = nn.Sequential(*stages)
        self.fc = nn.Linear(c * h * w, hidden_size)
        self.output_size = hidden_size
        self.obs_shape = tuple(obs_shape)

    def forward(self, obs: Tensor) -> Tensor:
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *self.obs_shape).to(self.fc.weight.dtype) / 255.0
        x = torch.relu(self.convs(x)).flatten(1)
        return torch.relu(self.fc(x)).view(*lead, -1)


class NatureCNNStem(nn.Module):
    """The DQN network of Mnih et al. 2015 (Nature), IMPALA's "shallow" stem: conv 8×8/4 (32), 4×4/2 (64),
    3×3/1 (64), each ReLU; FC to ``hidden_size``; ReLU. About 6× fewer multiply-adds than the ResNet on
    84×84 frames, which matters on a CPU. Input uint8 (…, C, H, W), scaled to [0, 1]."""

    def __init__(self, obs_shape: tuple[int, int, int], hidden_size: int = 256):
        super().__init__()
        c, h, w = obs_shape
        self.convs = nn.Sequential(nn.Conv2d(c, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2),
                                   nn.ReLU(), nn.Conv2d(64, 64, 3, stride=1), nn.ReLU())
        for k, st in ((8, 4), (4, 2), (3, 1)):
            h, w = (h - k) // st + 1, (w - k) // st + 1
        if h < 1 or w < 1:
            raise ValueError(f"the nature stem needs frames of at least 36×36, got {obs_shape}")
        self.fc = nn.Linear(64 * h * w, hidden_size)
        self.output_size = hidden_size
        self.obs_shape = tuple(obs_shape)
        # orthogonal weights with ReLU gain, zero biases (as in the A2C/PPO baselines). torch's default
        # init makes features almost constant across Pong frames (std over time ~3e-4 of a mean ~7e-3),
        # and an Atari run with it never left the uniform policy (docs/BENCHMARKS.md).
        for layer in (*self.convs[::2], self.fc):
            nn.init.orthogonal_(layer.weight, gain=nn.init.calculate_gain("relu"))
            nn.init.zeros_(layer.bias)

    def forward(self, obs: Tensor) -> Tensor:
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *self.obs_shape).to(self.fc.weight.dtype) / 255.0
        return torch.relu(self.fc(self.convs(x).flatten(1))).view(*lead, -1)


def make_stem(kind: str, obs_shape: tuple[int, ...], obs_dtype, hidden_size: int) -> nn.Module:
    """``auto`` picks the ResNet for uint8 (C,H,W) images and the MLP for 1-D vectors; ``identity``
    feeds a vector observation to the core unchanged."""
    if kind not in STEMS:
        raise ValueError(f"unknown stem {kind!r}; accepted: {', '.join(STEMS)}")
    is_image = len(obs_shape) == 3
    if kind == "auto":
        kind = "resnet" if is_image else "mlp"
    if kind in ("resnet", "nature"):
        if not is_image:
            raise ValueError(f"the {kind} stem needs (C, H, W) image observations, got shape {obs_shape}")
        return (ImpalaResNetStem if kind == "resnet" else NatureCNNStem)(obs_shape, hidden_size)
    if len(obs_shape) != 1:
        raise ValueError(f"the {kind} stem needs 1-D vector observations, got shape {obs_shape}; use the resnet or nature stem for images")
    return MLPStem(obs_shape[0], hidden_size) if kind == "mlp" else IdentityStem(obs_shape[0])
