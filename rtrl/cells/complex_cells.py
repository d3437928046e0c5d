"""Complex-diagonal cells as paired real units: the RTU and the complex LRU (docs/DESIGN.md §2).

Each unit n holds a complex number c = c¹ + i c² as two real channels, at n and N + n of a state of 2N
numbers, and rotates-and-decays it by λ = r e^{iθ} = g + i φ:

    z¹_t = g c¹_{t-1} − φ c²_{t-1} + γ p¹_t          p¹_t = W₁ x_t   (gate 0)
    z²_t = g c²_{t-1} + φ c¹_{t-1} + γ p²_t          p²_t = W₂ x_t   (gate 1)

i.e. z_t = λ c_{t-1} + γ (W₁ + i W₂) x_t. The carry ∂c_t/∂c_{t-1} is a 2×2 block per unit, which the engine
takes as its diagonal ā = (g, g) and its partner part b̄ = (−φ, φ) (``Trajectory.pair``); the sensitivities
stay per unit: S^{W_k} (B, 2, 2N, D), S^{θ_u} (B, E, 2N).

|λ| < 1 by construction: r = exp(−exp ν) with ν clamped to [NU_MIN, NU_MAX], so |λ| ≤ exp(−2⁻²²) < 1 in
float32 and float64 whatever ν is, and ν far above NU_MAX (r = 0 to the last digit) yields no inf·0.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rtrl.cells.base import ElementwiseRNN

NU_MIN = math.log(2.0 ** -22)   # exp(ν) ≥ 2⁻²²: |λ| ≤ 1 − 2.4e-7, which float32 still tells from 1
NU_MAX = 5.0                    # exp(ν) ≤ 148: |λ| ≤ 4e-65, zero in float32 anyway

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "linear": lambda z: z}
# how the phase θ is a parameter: "exp": θ = exp(p), the RTU's and the LRU's (their papers and code); "direct": θ = p.
# Under exp, ∂θ/∂p = θ: a larger phase takes larger steps, which can feed on itself (docs/DESIGN.md §2)
PHASES = ("exp", "direct")


def _slope(activation: str, z: Tensor) -> Tensor:
    if activation == "relu":
        return (z > 0).to(z.dtype)
    if activation == "tanh":
        return 1 - torch.tanh(z) ** 2
    return torch.ones_like(z)


def ring_init(hidden_size: int, r_min: float, r_max: float, max_phase: float) -> tuple[Tensor, Tensor]:
    """The LRU's ring initialisation (Orvieto et al. 2023, Lemma 3.2), as the RTU's code uses it too:
    |λ|² uniform in [r_min², r_max²], phase uniform in [0, max_phase]; returned as (ν, log θ) with
    |λ| = exp(−exp ν), θ = exp(log θ). u is kept inside (0, 1) so no endpoint gives an infinite ν."""
    tiny = 1e-7
    u1 = torch.rand(hidden_size, dtype=torch.float64).clamp(tiny, 1 - tiny)
    u2 = torch.rand(hidden_size, dtype=torch.float64).clamp(tiny, 1 - tiny)
    nu = torch.log(-0.5 * torch.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2))
    return nu.clamp(NU_MIN, NU_MAX).float(), torch.log(max_phase * u2).float()


class _RotationCell(ElementwiseRNN):
    """The common part: two gates (the real and imaginary input rows), no bias, a rotation per unit.

    ``per_unit`` = [ν; p; (log γ for the LRU)], each (N,), with θ = exp(p) (``phase="exp"``, the papers') or
    θ = p (``phase="direct"``). ``gamma`` states γ and ∂γ/∂ν."""

    num_gates = 2
    channels = 2
    uses_weight_c = False
    uses_bias = False

    def __init__(self, input_size, hidden_size, learning, method, r_min, r_max, max_phase, phase):
        if phase not in PHASES:
            raise ValueError(f"unknown phase parametrisation {phase!r}; accepted: {', '.join(PHASES)}")
        if not 0 <= r_min < r_max <= 1:
            raise ValueError(f"need 0 <= r_min < r_max <= 1, got r_min={r_min!r}, r_max={r_max!r}")
        if not max_phase > 0:
            raise ValueError(f"max_phase must be > 0 (radians), got {max_phase!r}")
        super().__init__(input_size, hidden_size, learning, method)
        self.r_min, self.r_max, self.max_phase = float(r_min), float(r_max), float(max_phase)
        self.phase = phase

    def init_per_unit(self) -> Tensor:
        """ν and the phase's parameter (log θ, or θ itself) from the ring init; returns ν."""
        nu, log_theta = ring_init(self.hidden_size, self.r_min, self.r_max, self.max_phase)
        with torch.no_grad():
            self.per_unit[0].copy_(nu)
            self.per_unit[1].copy_(log_theta if self.phase == "exp" else torch.exp(log_theta))
        return nu

    # λ = g + iφ from ν and the phase's parameter p, with what the derivatives need (dθ = ∂θ/∂p)
    def rotation(self, per_unit: Tensor):
        nu = per_unit[0].clamp(NU_MIN, NU_MAX)
        rate = torch.exp(nu)
        r = torch.exp(-rate)
        if self.phase == "exp":
            theta = dtheta = torch.exp(per_unit[1])
        else:
            theta, dtheta = per_unit[1], torch.ones_like(per_unit[1])
        return rate, r, dtheta, r * torch.cos(theta), r * torch.sin(theta)

    def gamma(self, per_unit: Tensor, rate: Tensor, r: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def linear_step(self, pre: Tensor, c_prev: Tensor, per_unit: Tensor) -> Tensor:
        """z = λ c_prev + γ (p¹ + i p²) as [z¹; z²] (..., 2N)."""
        N = self.hidden_size
        rate, r, _, g, phi = self.rotation(per_unit)
        gamma, _ = self.gamma(per_unit, rate, r)
        c1, c2 = c_prev[..., :N], c_prev[..., N:]
        z1 = g * c1 - phi * c2 + gamma * pre[..., 0, :]
        z2 = g * c2 + phi * c1 + gamma * pre[..., 1, :]
        return torch.cat((z1, z2), dim=-1)

    def linear_derivatives(self, pre: Tensor, c_prev: Tensor, per_unit: Tensor):
        """The linear step's local derivatives: ((ā, b̄) (...,2N), u (...,2,2N), v (...,E,2N))."""
        N = self.hidden_size
        rate, r, dtheta, g, phi = self.rotation(per_unit)
        gamma, dgamma_dnu = self.gamma(per_unit, rate, r)
        inside = ((per_unit[0] >= NU_MIN) & (per_unit[0] <= NU_MAX)).to(rate.dtype)
        drate = rate * inside                                    # ∂ exp(ν)/∂ν through the clamp
        c1, c2 = c_prev[..., :N], c_prev[..., N:]
        p1, p2 = pre[..., 0, :], pre[..., 1, :]
        lead = c_prev.shape[:-1]
        diagonal = torch.cat((g, g)).expand(*lead, 2 * N)
        partner = torch.cat((-phi, phi)).expand(*lead, 2 * N)
        u = pre.new_zeros(*lead, 2, 2 * N)
        u[..., 0, :N] = gamma
        u[..., 1, N:] = gamma
        # ∂g/∂ν = −e^ν g, ∂φ/∂ν = −e^ν φ;  ∂g/∂p = −dθ φ, ∂φ/∂p = dθ g
        rot1, rot2 = g * c1 - phi * c2, g * c2 + phi * c1         # Re, Im of λ c_prev
        v = [torch.cat((-drate * rot1, -drate * rot2), dim=-1),
             torch.cat((-dtheta * rot2, dtheta * rot1), dim=-1)]
        if dgamma_dnu is not None:                                # the RTU's γ = sqrt(1 − r²) depends on ν
            v[0] = v[0] + torch.cat((dgamma_dnu * inside * p1, dgamma_dnu * inside * p2), dim=-1)
        if self.num_per_unit == 3:                                # the LRU's γ = exp(log γ)
            v.append(torch.cat((gamma * p1, gamma * p2), dim=-1))
        return (diagonal, partner), u, torch.stack(v, dim=-2)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", r_min={self.r_min}, r_max={self.r_max}, max_phase={self.max_phase}, "
                f"phase={self.phase!r}")


class RTU(_RotationCell):
    """Recurrent Trace Units (Elelimy, White, Bowling & White, NeurIPS 2024, arXiv 2409.01449), as their
    paper and released code define them: r = exp(−exp ν), θ = exp(log θ), g = r cos θ, φ = r sin θ,
    γ = sqrt(1 − r²) (a function of ν, not a parameter), W₁, W₂ without bias.

    * ``variant="linear"``: the recurrence above on c, output y = f([c¹; c²]) (2N).
    * ``variant="nonlinear"``: the activation inside the recurrence, on each channel:
      c¹_t = f(g c¹_{t-1} − φ c²_{t-1} + γ W₁ x_t), c²_t = f(g c²_{t-1} + φ c¹_{t-1} + γ W₂ x_t); y = [c¹; c²].
      Its carry diag(f′(z¹), f′(z²)) · [[g, −φ], [φ, g]] is a real 2×2 block, no longer a complex number.

    ``activation`` f: "tanh" (the released control configuration), "relu" (the code's default) or "linear".
    Init: the ring init with r_min = 0, r_max = 1, max_phase = 6.28 (the code's defaults); W ~ N(0, 1/D).
    ``phase="direct"`` makes θ itself the parameter instead of log θ (same init; not the paper's).
    """

    num_per_unit = 2
    VARIANTS = ("linear", "nonlinear")

    def __init__(self, input_size: int, hidden_size: int, learning: str = "rtrl", method: str = "segment",
                 variant: str = "linear", activation: str = "tanh", r_min: float = 0.0, r_max: float = 1.0,
                 max_phase: float = 6.28, phase: str = "exp"):
        if variant not in self.VARIANTS:
            raise ValueError(f"unknown RTU variant {variant!r}; accepted: {', '.join(self.VARIANTS)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; accepted: {', '.join(ACTIVATIONS)}")
        super().__init__(input_size, hidden_size, learning, method, r_min, r_max, max_phase, phase)
        self.variant, self.activation = variant, activation
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight_x, 0.0, 1 / math.sqrt(self.input_size))
        self.init_per_unit()

    def gamma(self, per_unit, rate, r):
        gamma = torch.sqrt(-torch.expm1(-2 * rate))               # sqrt(1 − r²) without cancellation
        return gamma, rate * r * r / gamma                        # ∂γ/∂ν = e^ν r² / γ

    def transition(self, pre, c_prev, per_unit, out=None):
        z = self.linear_step(pre, c_prev, per_unit)
        if self.variant == "nonlinear":
            z = ACTIVATIONS[self.activation](z)
        return z if out is None else out.copy_(z)

    def local_derivatives(self, pre, c_prev, per_unit):
        (diagonal, partner), u, v = self.linear_derivatives(pre, c_prev, per_unit)
        if self.variant == "linear":
            return (diagonal, partner), u, v
        slope = _slope(self.activation, self.linear_step(pre, c_prev, per_unit))   # f′(z), (...,2N)
        return (diagonal * slope, partner * slope), u * slope.unsqueeze(-2), v * slope.unsqueeze(-2)

    def readout(self, x: Tensor, c: Tensor) -> Tensor:
        return ACTIVATIONS[self.activation](c) if self.variant == "linear" else c

    def readout_derivatives(self, x, c):
        if self.variant == "nonlinear" or self.activation == "linear":
            return None, None, {}
        return None, torch.diag_embed(_slope(self.activation, c)), {}

    def extra_repr(self) -> str:
        return super().extra_repr() + f", variant={self.variant!r}, activation={self.activation!r}"


class ComplexLRU(_RotationCell):
    """The complex linear recurrent unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for
    Long Sequences", §3): h_t = λ ⊙ h_{t-1} + γ ⊙ (B x_t), λ = exp(−exp ν + i exp(log θ)) (the exponential
    parametrisation), B = W₁ + i W₂, and the input normalisation γ = exp(log γ), a trainable per-unit
    parameter initialised to sqrt(1 − |λ|²).

    Output y = [Re h; Im h] (2N). The LRU's own readout Re(C h) + D x is a linear map of [Re h; Im h] and
    x: the layer above (or the agent's head) is that map, so the cell's readout has no parameters.
    Init: the ring init (r_min = 0, r_max = 1, max_phase = 6.28 by default, the paper's code's defaults;
    its long-range tasks use r_min = 0.9, r_max = 0.999), W₁, W₂ ~ N(0, 1/(2D)).
    """

    num_per_unit = 3

    def __init__(self, input_size: int, hidden_size: int, learning: str = "rtrl", method: str = "segment",
                 r_min: float = 0.0, r_max: float = 1.0, max_phase: float = 6.28, phase: str = "exp"):
        super().__init__(input_size, hidden_size, learning, method, r_min, r_max, max_phase, phase)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight_x, 0.0, 1 / math.sqrt(2 * self.input_size))
        nu = self.init_per_unit()
        with torch.no_grad():
            # log γ = log sqrt(1 − |λ|²)
            self.per_unit[2].copy_(0.5 * torch.log(-torch.expm1(-2 * torch.exp(nu.double()))))

    def gamma(self, per_unit, rate, r):
        return torch.exp(per_unit[2]), None

    def transition(self, pre, c_prev, per_unit, out=None):
        z = self.linear_step(pre, c_prev, per_unit)
        return z if out is None else out.copy_(z)

    def local_derivatives(self, pre, c_prev, per_unit):
        return self.linear_derivatives(pre, c_prev, per_unit)
