"""The complex-diagonal cells (RTU linear and non-linear, ComplexLRU) under exact RTRL.

float64: RTRL gradients vs autograd BPTT over the whole concatenated history (resets inside) and vs
central finite differences; segment form vs per-step reference, all three final-sensitivity modes;
float32 vs float64; |λ| < 1 for any ν.
"""
import pytest
import torch

import rtrl
from conftest import max_rel_err
from rtrl.cells.complex_cells import NU_MAX, NU_MIN

D, N, B = 3, 4, 2
LENGTHS = (3, 5, 4)
CELLS = {
    "rtu-linear": (rtrl.RTU, dict(variant="linear", activation="tanh")),
    "rtu-nonlinear": (rtrl.RTU, dict(variant="nonlinear", activation="tanh")),
    "rtu-relu": (rtrl.RTU, dict(variant="nonlinear", activation="relu")),
    "clru": (rtrl.ComplexLRU, {}),
    "rtu-direct": (rtrl.RTU, dict(variant="nonlinear", activation="tanh", phase="direct")),
    "clru-direct": (rtrl.ComplexLRU, dict(phase="direct")),
}


def make_pair(name, method="segment", dtype=torch.float64, seed=0):
    cls, kw = CELLS[name]
    torch.manual_seed(seed)
    a = cls(D, N, learning="rtrl", method=method, r_min=0.5, r_max=0.99, **kw).to(dtype)
    b = cls(D, N, learning="bptt", r_min=0.5, r_max=0.99, **kw).to(dtype)
    b.load_state_dict(a.state_dict())
    return a, b


def make_data(seed=1, dtype=torch.float64, lengths=LENGTHS, batch=B):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(T, batch, D, generator=g, dtype=dtype) for T in lengths]
    resets = [torch.rand(T, batch, generator=g) < 0.2 for T in lengths]
    resets[1][2, 0] = True                      # at least one reset inside a call
    target = torch.randn(lengths[-1], batch, 2 * N, generator=g, dtype=dtype)
    return xs, resets, target


def loss_of(y, target):
    return ((y - target) ** 2).sum() + y.sum()


def run_calls(cell, xs, resets, target, mode="forward"):
    """The loss is on the last call's outputs; earlier calls carry the state (and S) forward."""
    cell.zero_grad()
    state = cell.initial_state(xs[0].shape[1])
    for i, (x, reset) in enumerate(zip(xs, resets)):
        if i < len(xs) - 1:
            y, state = cell(x, state, reset=reset)
        elif mode == "outputs":
            y = cell.outputs(x, state, reset=reset)
        elif mode == "in_place":
            y, state = cell.forward_in_place(x, state, reset=reset)
        else:
            y, state = cell(x, state, reset=reset)
    loss_of(y, target).backward()
    return {k: p.grad.clone() for k, p in cell.named_parameters()}, state, y


def loss_value(cell, xs, resets, target):
    with torch.no_grad():
        state = cell.initial_state(xs[0].shape[1])
        for x, reset in zip(xs, resets):
            y, state = cell(x, state, reset=reset)
        return loss_of(y, target).item()


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("method", ["segment", "step"])
def test_rtrl_equals_full_history_bptt(name, method):
    a, b = make_pair(name, method)
    xs, resets, target = make_data()
    grads, _, y = run_calls(a, xs, resets, target)
    ref, _, y_ref = run_calls(b, xs, resets, target)    # bptt: the state stays attached across calls
    assert torch.allclose(y, y_ref, rtol=0, atol=1e-12)
    for k in grads:
        assert max_rel_err(grads[k], ref[k]) < 1e-10, k


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("mode", ["outputs", "in_place"])
def test_every_final_sensitivity_mode_gives_the_same_gradient(name, mode):
    a, b = make_pair(name)
    xs, resets, target = make_data()
    ref, _, _ = run_calls(b, xs, resets, target)
    grads, _, _ = run_calls(a, xs, resets, target, mode)
    for k in grads:
        assert max_rel_err(grads[k], ref[k]) < 1e-10, k


@pytest.mark.parametrize("name", CELLS)
def test_rtrl_equals_finite_differences(name):
    a, _ = make_pair(name)
    xs, resets, target = make_data(seed=3)
    grads, _, _ = run_calls(a, xs, resets, target)
    eps = 1e-6
    for pname, p in a.named_parameters():
        fd = torch.zeros_like(p)
        for i in range(p.numel()):
            with torch.no_grad():
                flat = p.view(-1)
                old = flat[i].item()
                flat[i] = old + eps
                up = loss_value(a, xs, resets, target)
                flat[i] = old - eps
                down = loss_value(a, xs, resets, target)
                flat[i] = old
            fd.view(-1)[i] = (up - down) / (2 * eps)
        assert max_rel_err(grads[pname], fd) < 1e-6, pname


@pytest.mark.parametrize("name", CELLS)
def test_segment_equals_per_step_sensitivities(name):
    seg, _ = make_pair(name, "segment")
    step, _ = make_pair(name, "step")
    xs, resets, _ = make_data()
    s1, s2 = seg.initial_state(B), step.initial_state(B)
    with torch.no_grad():
        for x, reset in zip(xs, resets):
            _, s1 = seg(x, s1, reset=reset)
            s2 = step.advance(x, s2, reset=reset)
    for k in s1.sensitivity:
        assert max_rel_err(s1.sensitivity[k], s2.sensitivity[k]) < 1e-12, k
    assert torch.allclose(s1.c, s2.c, rtol=0, atol=1e-13)


def test_a_wrong_carry_would_fail():
    """The BPTT comparison can fail: dropping the partner part of the 2×2 carry changes the gradient."""
    a, b = make_pair("rtu-linear")
    xs, resets, target = make_data()
    ref, _, _ = run_calls(b, xs, resets, target)
    original = a.local_derivatives

    def diagonal_only(pre, c_prev, per_unit):
        (d, o), u, v = original(pre, c_prev, per_unit)
        return (d, torch.zeros_like(o)), u, v
    a.local_derivatives = diagonal_only
    grads, _, _ = run_calls(a, xs, resets, target)
    assert max_rel_err(grads["weight_x"], ref["weight_x"]) > 1e-3


@pytest.mark.parametrize("name", CELLS)
def test_float32_close_to_float64(name):
    """float32 against float64 over 3 calls of 20 steps, N = 32, D = 16: relative error ≤ 1e-3."""
    cls, kw = CELLS[name]
    torch.manual_seed(0)
    c64 = cls(16, 32, **kw).double()
    c32 = cls(16, 32, **kw)
    c32.load_state_dict({k: v.float() for k, v in c64.state_dict().items()})
    g = torch.Generator().manual_seed(5)
    xs = [torch.randn(20, 4, 16, generator=g, dtype=torch.float64) for _ in range(3)]
    resets = [torch.rand(20, 4, generator=g) < 0.05 for _ in range(3)]
    out = {}
    for cell, dtype in ((c64, torch.float64), (c32, torch.float32)):
        state = cell.initial_state(4)
        for x, reset in zip(xs, resets):
            y, state = cell(x.to(dtype), state, reset=reset)
        cell.zero_grad()
        (y ** 2).sum().backward()
        out[dtype] = {k: p.grad.double() for k, p in cell.named_parameters()}
    for k in out[torch.float64]:
        assert max_rel_err(out[torch.float32][k], out[torch.float64][k]) < 1e-3, k


@pytest.mark.parametrize("cls", [rtrl.RTU, rtrl.ComplexLRU])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lambda_inside_the_unit_circle_for_any_nu(cls, dtype):
    cell = cls(2, 7, r_min=0.0, r_max=1.0).to(dtype)
    with torch.no_grad():
        cell.per_unit[0] = torch.tensor([-1e30, -1e4, -40.0, NU_MIN - 1, 0.0, NU_MAX + 1, 1e30], dtype=dtype)
    _, r, _, g, phi = cell.rotation(cell.per_unit)
    assert torch.isfinite(r).all() and (r < 1).all() and (r >= 0).all()
    assert (g * g + phi * phi < 1).all()
    # and the derivatives stay finite there
    x = torch.randn(3, 2, 2, dtype=dtype)
    y, state = cell(x)
    y.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in cell.parameters())


@pytest.mark.parametrize("cls", [rtrl.RTU, rtrl.ComplexLRU])
def test_initialisation_never_reaches_the_unit_circle(cls):
    torch.manual_seed(0)
    cell = cls(3, 4096, r_min=0.0, r_max=1.0)      # the widest ring
    _, r, *_ = cell.rotation(cell.per_unit)
    assert (r < 1).all() and torch.isfinite(cell.per_unit).all()


@pytest.mark.parametrize("cls", [rtrl.RTU, rtrl.ComplexLRU])
def test_direct_phase_is_the_same_cell_with_theta_as_its_parameter(cls):
    """phase="direct" starts from the same λ as the papers' exp parametrisation and computes the same outputs;
    only the parameter differs (θ instead of log θ), so its gradient is the exp one divided by ∂θ/∂log θ = θ."""
    torch.manual_seed(3)
    a = cls(3, 6).double()
    torch.manual_seed(3)
    b = cls(3, 6, phase="direct").double()
    assert torch.allclose(torch.exp(a.per_unit[1]), b.per_unit[1], rtol=1e-6)   # the init, up to float32's exp
    with torch.no_grad():
        b.per_unit[1] = torch.exp(a.per_unit[1])                               # the same θ to float64's last digit
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    ya, _ = a(x)
    yb, _ = b(x)
    assert torch.allclose(ya, yb, rtol=1e-12, atol=1e-12)
    ya.square().sum().backward()
    yb.square().sum().backward()
    theta = b.per_unit[1].detach()
    assert torch.allclose(a.per_unit.grad[1], b.per_unit.grad[1] * theta, rtol=1e-9, atol=1e-12)
    assert torch.allclose(a.weight_x.grad, b.weight_x.grad, rtol=1e-9, atol=1e-12)
    assert "phase='direct'" in repr(b)


def test_shapes_and_errors():
    cell = rtrl.RTU(3, 5)
    assert cell.output_size == 10 and cell.state_size == 10
    assert cell.sensitivity_shapes(2) == {"weight_x": (2, 2, 10, 3), "per_unit": (2, 2, 10)}
    assert rtrl.ComplexLRU(3, 5).sensitivity_shapes(1)["per_unit"] == (1, 3, 10)
    with pytest.raises(ValueError, match="variant 'gru'.*linear, nonlinear"):
        rtrl.RTU(3, 5, variant="gru")
    with pytest.raises(ValueError, match="activation 'gelu'"):
        rtrl.RTU(3, 5, activation="gelu")
    with pytest.raises(ValueError, match="r_max=1.5"):
        rtrl.ComplexLRU(3, 5, r_max=1.5)
    with pytest.raises(ValueError, match="phase parametrisation 'log'; accepted: exp, direct"):
        rtrl.ComplexLRU(3, 5, phase="log")
