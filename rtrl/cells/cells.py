"""Element-wise recurrent cells: each states its transition and the transition's local derivatives."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from rtrl.cells.base import ElementwiseRNN


class ELSTM(ElementwiseRNN):
    """The paper's eLSTM (Irie et al. 2024, Sec. 3; "QuasiLSTM" in its code), docs/DESIGN.md §2.

        z_t = tanh(W_z x_t + w_z ⊙ c_{t-1} + b_z)
        f_t = σ(W_f x_t + w_f ⊙ c_{t-1} + b_f)
        c_t = f_t ⊙ c_{t-1} + (1 − f_t) ⊙ z_t
        h_t = σ(W_o [x_t ; c_t] + b_o) ⊙ c_t          (output gate; not recurrent)

    Gate order in the stacked parameters: 0 = z (cell input), 1 = f (forget gate);
    ``weight_x`` = [W_z; W_f] (2N, D), ``weight_c`` = [w_z; w_f], ``bias`` = [b_z; b_f].

    Args:
        input_size, hidden_size, learning, method: see ``ElementwiseRNN``.
        forget_bias: initial b_f. The paper uses 0; a positive value (e.g. 3) keeps f ≈ 1 at the
            start, so a trace survives long delays (docs/DESIGN.md §7).
        init_std: std of the normal init of the six recurrent tensors (paper: 0.1).
        chrono_max: if > 0, replaces ``forget_bias`` by the chrono initialisation (Tallec & Ollivier 2018):
            b_f = log(u), u ~ U(1, chrono_max − 1) per unit, so σ(b_f) = u / (1 + u) and the units' time
            scales 1 / (1 − σ(b_f)) = 1 + u spread over [2, chrono_max] steps.
    """

    num_gates = 2

    def __init__(self, input_size: int, hidden_size: int, learning: str = "rtrl", method: str = "segment",
                 forget_bias: float = 0.0, init_std: float = 0.1, chrono_max: float = 0.0):
        super().__init__(input_size, hidden_size, learning, method)
        if chrono_max and chrono_max <= 2:
            raise ValueError(f"chrono_max must be 0 (off) or > 2, got {chrono_max!r}")
        self.forget_bias = float(forget_bias)
        self.init_std = float(init_std)
        self.chrono_max = float(chrono_max)
        self.output_gate = nn.Linear(input_size + hidden_size, hidden_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in (self.weight_x, self.weight_c, self.bias):
            nn.init.normal_(p, 0.0, self.init_std)
        with torch.no_grad():
            if self.chrono_max:
                self.bias[1].copy_(chrono_forget_bias(self.hidden_size, self.chrono_max))
            else:
                self.bias[1].fill_(self.forget_bias)
        self.output_gate.reset_parameters()

    def transition(self, pre, c_prev, per_unit=None, out=None):
        z = torch.tanh(pre[..., 0, :])
        f = torch.sigmoid(pre[..., 1, :])
        # f c_prev + (1 − f) z as one op: z + f (c_prev − z)
        return torch.lerp(z, c_prev, f) if out is None else torch.lerp(z, c_prev, f, out=out)

    def local_derivatives(self, pre, c_prev, per_unit=None):
        z = torch.tanh(pre[..., 0, :])
        f = torch.sigmoid(pre[..., 1, :])
        one_minus_f = 1 - f
        d_pre = torch.empty_like(pre)
        alpha, beta = d_pre.unbind(-2)
        torch.mul(one_minus_f, 1 - z * z, out=alpha)             # α_t = ∂c/∂(pre z) = (1−f)(1−z²)
        torch.mul((c_prev - z) * f, one_minus_f, out=beta)       # β_t = ∂c/∂(pre f) = (c_prev−z) f (1−f)
        return f, d_pre, None

    def readout(self, x: Tensor, c: Tensor) -> Tensor:
        o = torch.sigmoid(self.output_gate(torch.cat((x, c), dim=-1)))
        return o * c

    def readout_parameters(self) -> dict[str, Tensor]:
        return {"output_gate.weight": self.output_gate.weight, "output_gate.bias": self.output_gate.bias}

    def readout_derivatives(self, x, c):
        # y = o ⊙ c, o = σ(W_o [x; c] + b_o):  ∂y/∂x = diag(c o(1−o)) W_ox,  ∂y/∂c = diag(o) + diag(c o(1−o)) W_oc,
        # ∂y_m/∂W_o[m,:] = c_m o_m(1−o_m) [x; c],  ∂y_m/∂b_o[m] = c_m o_m(1−o_m)
        xc = torch.cat((x, c), dim=-1)
        o = torch.sigmoid(self.output_gate(xc))
        slope = c * o * (1 - o)                                               # (B,N)
        weight = self.output_gate.weight
        D = self.input_size
        dy_dx = slope.unsqueeze(-1) * weight[:, :D]
        dy_dc = slope.unsqueeze(-1) * weight[:, D:]
        dy_dc.diagonal(dim1=-2, dim2=-1).add_(o)
        direct = {"output_gate.weight": slope.unsqueeze(-1) * xc.unsqueeze(-2), "output_gate.bias": slope}
        return dy_dx, dy_dc, direct

    def extra_repr(self) -> str:
        init = f"chrono_max={self.chrono_max}" if self.chrono_max else f"forget_bias={self.forget_bias}"
        return super().extra_repr() + ", " + init


def chrono_forget_bias(hidden_size: int, chrono_max: float, generator: torch.Generator | None = None) -> Tensor:
    """Chrono initialisation of forget-gate biases (Tallec & Ollivier 2018, eq. 16): log(U(1, chrono_max − 1)),
    shape (hidden_size,). A gate σ(b) with this bias keeps a trace for about 1 + u steps."""
    u = torch.empty(hidden_size).uniform_(1.0, chrono_max - 1.0, generator=generator)
    return torch.log(u)


class IndRNN(ElementwiseRNN):
    """Independently recurrent network (Li et al. 2018): c_t = act(W x_t + u ⊙ c_{t-1} + b).

    Output y_t = c_t. ``activation`` is "relu" (the original) or "tanh".
    Init: W ~ U(±1/√D), u ~ U(0, 1) (so |u| < 1 keeps the carry contractive at the start), b = 0.
    ``max_recurrent``: the bound on |u| the learners restore after every update (``project_parameters_``),
    as the IndRNN paper constrains its recurrent weights; without it one large step (a streaming learner's
    may move a weight by 1/κ) can put a relu unit's u above 1, and its state then grows geometrically.
    None: no bound.
    """

    num_gates = 1
    ACTIVATIONS = ("relu", "tanh")

    def __init__(self, input_size: int, hidden_size: int, learning: str = "rtrl", method: str = "segment",
                 activation: str = "relu", max_recurrent: float | None = 1.0):
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; accepted: {', '.join(self.ACTIVATIONS)}")
        if max_recurrent is not None and not (isinstance(max_recurrent, (int, float))
                                              and not isinstance(max_recurrent, bool)
                                              and math.isfinite(max_recurrent) and max_recurrent > 0):
            raise ValueError(f"max_recurrent must be a finite number > 0 or None (no bound), got {max_recurrent!r}")
        super().__init__(input_size, hidden_size, learning, method)
        self.activation = activation
        self.max_recurrent = None if max_recurrent is None else float(max_recurrent)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.input_size)
        nn.init.uniform_(self.weight_x, -bound, bound)
        nn.init.uniform_(self.weight_c, 0.0, 1.0)
        nn.init.zeros_(self.bias)
        self.project_parameters_()

    @torch.no_grad()
    def project_parameters_(self) -> None:
        if self.max_recurrent is not None:
            self.weight_c.clamp_(-self.max_recurrent, self.max_recurrent)

    def transition(self, pre, c_prev, per_unit=None, out=None):
        if self.activation == "relu":
            return torch.clamp_min(pre[..., 0, :], 0.0, out=out)
        return torch.tanh(pre[..., 0, :], out=out)

    def local_derivatives(self, pre, c_prev, per_unit=None):
        if self.activation == "relu":
            slope = (pre[..., 0, :] > 0).to(pre.dtype)
        else:
            slope = 1 - torch.tanh(pre[..., 0, :]) ** 2
        return torch.zeros_like(c_prev), slope.unsqueeze(-2), None

    def extra_repr(self) -> str:
        return super().extra_repr() + f", activation={self.activation!r}, max_recurrent={self.max_recurrent}"


class DiagonalLRU(ElementwiseRNN):
    """A real diagonal linear recurrent unit in the spirit of the LRU (Orvieto et al. 2023):

        c_t = λ ⊙ c_{t-1} + W x_t + b,      λ = exp(−exp(ν))  ∈ (0, 1)

    ν (``per_unit[0]``) is a parameter of the transition itself, so this cell exercises the
    engine's per-unit parameter path. Output y_t = c_t (put a non-linearity after it).
    Init: λ uniform in [r_min, r_max] (the LRU's ring init, restricted to the real axis).
    """

    num_gates = 1
    uses_weight_c = False
    num_per_unit = 1

    def __init__(self, input_size: int, hidden_size: int, learning: str = "rtrl", method: str = "segment",
                 r_min: float = 0.5, r_max: float = 0.99):
        if not 0 < r_min <= r_max < 1:
            raise ValueError(f"need 0 < r_min <= r_max < 1, got r_min={r_min}, r_max={r_max}")
        super().__init__(input_size, hidden_size, learning, method)
        self.r_min, self.r_max = r_min, r_max
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.input_size)
        nn.init.uniform_(self.weight_x, -bound, bound)
        nn.init.zeros_(self.bias)
        with torch.no_grad():
            lam = torch.empty(self.hidden_size).uniform_(self.r_min, self.r_max)
            self.per_unit[0] = torch.log(-torch.log(lam))

    def transition(self, pre, c_prev, per_unit, out=None):
        lam = torch.exp(-torch.exp(per_unit[0]))
        return torch.addcmul(pre[..., 0, :], lam, c_prev, out=out)

    def local_derivatives(self, pre, c_prev, per_unit):
        rate = torch.exp(per_unit[0])
        lam = torch.exp(-rate)
        d_nu = -(rate * lam) * c_prev                      # ∂c/∂ν = −e^ν λ c_prev
        return lam.expand_as(c_prev), torch.ones_like(pre), d_nu.unsqueeze(-2)
