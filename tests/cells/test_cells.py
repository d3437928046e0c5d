"""The RTRL engine and the element-wise cells, checked against independent references.

float64: RTRL gradients vs central finite differences and vs autograd BPTT over the whole
concatenated history; segment form vs per-step reference. float32 vs float64 at the paper's sizes.
"""
import copy

import pytest
import torch

import rtrl
from conftest import max_rel_err

CELLS = [rtrl.ELSTM, rtrl.IndRNN, rtrl.DiagonalLRU]
D, N, B = 3, 4, 2
LENGTHS = (3, 5, 4)


def make_pair(cls, learning_a="rtrl", learning_b="bptt", method="segment", dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    a = cls(D, N, learning=learning_a, method=method, **kw).to(dtype)
    if cls is rtrl.ELSTM:  # exercise the recurrent path away from its trivial init
        with torch.no_grad():
            a.weight_c.normal_(0, 0.5)
            a.bias[1].normal_(1.0, 0.5)
    b = cls(D, N, learning=learning_b, **kw).to(dtype)
    b.load_state_dict(a.state_dict())
    return a, b


def make_data(seed=1, dtype=torch.float64, lengths=LENGTHS, batch=B, reset_prob=0.2):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(T, batch, D, generator=g, dtype=dtype) for T in lengths]
    resets = [torch.rand(T, batch, generator=g) < reset_prob for T in lengths]
    target = torch.randn(lengths[-1], batch, N, generator=g, dtype=dtype)
    return xs, resets, target


def last_call_loss(y, target):
    return ((y - target) ** 2).sum() + y.sum()


def run_calls(cell, xs, resets, target, detach_between=False):
    """Run the calls in order; the loss is on the last call's output only. Returns (grads, state, y)."""
    cell.zero_grad()
    state = cell.initial_state(xs[0].shape[1])
    for x, reset in zip(xs, resets):
        if detach_between:
            state = state.detach()
        y, state = cell(x, state, reset=reset)
    last_call_loss(y, target).backward()
    return {k: p.grad.clone() for k, p in cell.named_parameters()}, state, y


def loss_value(cell, xs, resets, target):
    with torch.no_grad():
        state = cell.initial_state(xs[0].shape[1])
        for x, reset in zip(xs, resets):
            y, state = cell(x, state, reset=reset)
        return last_call_loss(y, target).item()


@pytest.mark.parametrize("cls", CELLS)
def test_rtrl_gradient_equals_finite_differences(cls):
    cell, _ = make_pair(cls)
    xs, resets, target = make_data()
    grads, _, _ = run_calls(cell, xs, resets, target)
    eps = 1e-6
    for name, p in cell.named_parameters():
        numeric = torch.zeros_like(p)
        flat = p.data.view(-1)
        for i in range(flat.numel()):
            orig = flat[i].item()
            flat[i] = orig + eps
            up = loss_value(cell, xs, resets, target)
            flat[i] = orig - eps
            down = loss_value(cell, xs, resets, target)
            flat[i] = orig
            numeric.view(-1)[i] = (up - down) / (2 * eps)
        assert max_rel_err(grads[name], numeric) <= 1e-6, name


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("method", ["segment", "step"])
def test_rtrl_gradient_equals_full_bptt_over_concatenated_history(cls, method):
    cell, bptt = make_pair(cls, method=method)
    xs, resets, target = make_data()
    grads, state, _ = run_calls(cell, xs, resets, target)
    # BPTT reference: one call over the concatenated sequence, loss on the last call's steps
    bptt.zero_grad()
    y, ref_state = bptt(torch.cat(xs), bptt.initial_state(B), reset=torch.cat(resets))
    last_call_loss(y[-LENGTHS[-1]:], target).backward()
    for name, p in bptt.named_parameters():
        assert max_rel_err(grads[name], p.grad) <= 1e-6, name
    assert torch.allclose(state.c, ref_state.c, rtol=0, atol=1e-12)
    assert not state.c.requires_grad and all(not s.requires_grad for s in state.sensitivity.values())


@pytest.mark.parametrize("cls", CELLS)
def test_segment_form_equals_per_step_reference(cls):
    segment, _ = make_pair(cls, method="segment")
    step = copy.deepcopy(segment)
    step.method = "step"
    xs, resets, target = make_data(seed=5, lengths=(6, 2, 7))
    g_seg, s_seg, _ = run_calls(segment, xs, resets, target)
    g_step, s_step, _ = run_calls(step, xs, resets, target)
    for name in g_seg:
        assert max_rel_err(g_seg[name], g_step[name]) <= 1e-12, name
    assert s_seg.sensitivity.keys() == s_step.sensitivity.keys() == segment.sensitivity_shapes(B).keys()
    for name in s_seg.sensitivity:
        assert max_rel_err(s_seg.sensitivity[name], s_step.sensitivity[name]) <= 1e-12, name


@pytest.mark.parametrize("cls", CELLS)
def test_tbptt_differs_from_rtrl(cls):
    rtrl_cell, bptt_cell = make_pair(cls)
    xs, _, target = make_data(seed=2)
    no_resets = [torch.zeros(x.shape[:2], dtype=torch.bool) for x in xs]
    g_rtrl, _, _ = run_calls(rtrl_cell, xs, no_resets, target)
    g_full, _, _ = run_calls(bptt_cell, xs, no_resets, target)
    g_tbptt, _, _ = run_calls(bptt_cell, xs, no_resets, target, detach_between=True)
    recurrent = [n for n in g_rtrl if not n.startswith("output_gate")]
    for name in recurrent:
        assert max_rel_err(g_rtrl[name], g_full[name]) <= 1e-6
    assert max(max_rel_err(g_tbptt[n], g_full[n]) for n in recurrent) > 1e-3


@pytest.mark.parametrize("cls", CELLS)
def test_input_gradient_is_within_call_bptt(cls):
    cell, bptt = make_pair(cls)
    xs, resets, target = make_data(seed=3)
    state_r, state_b = cell.initial_state(B), bptt.initial_state(B)
    for x, r in zip(xs[:-1], resets[:-1]):
        _, state_r = cell(x, state_r, reset=r)
        _, state_b = bptt(x, state_b, reset=r)
    x_r = xs[-1].clone().requires_grad_()
    x_b = xs[-1].clone().requires_grad_()
    y, _ = cell(x_r, state_r, reset=resets[-1])
    last_call_loss(y, target).backward()
    y, _ = bptt(x_b, state_b.detach(), reset=resets[-1])
    last_call_loss(y, target).backward()
    assert max_rel_err(x_r.grad, x_b.grad) <= 1e-10


@pytest.mark.parametrize("cls", CELLS)
def test_local_derivatives_match_autograd_of_transition(cls):
    cell, _ = make_pair(cls)
    K = cell.num_gates
    pre = torch.randn(5, K, N, dtype=torch.float64, requires_grad=True)
    c_prev = torch.randn(5, N, dtype=torch.float64, requires_grad=True)
    elem = None if cell.per_unit is None else cell.per_unit.detach().clone().requires_grad_()
    c = cell.transition(pre, c_prev, elem)
    # element-wise: the gradient of sum(c) w.r.t. each input is the diagonal derivative
    inputs = [pre, c_prev] + ([elem] if elem is not None else [])
    grads = [g if g is not None else torch.zeros_like(i)
             for g, i in zip(torch.autograd.grad(c.sum(), inputs, allow_unused=True), inputs)]
    direct, d_pre, d_elem = cell.local_derivatives(pre.detach(), c_prev.detach(), None if elem is None else elem.detach())
    assert torch.allclose(d_pre, grads[0], atol=1e-14)
    assert torch.allclose(direct.expand_as(c_prev), grads[1], atol=1e-14)
    if elem is not None:  # per-unit parameters: autograd sums over the batch
        assert torch.allclose(d_elem.sum(0), grads[2], atol=1e-14)


def test_float32_at_paper_size_agrees_with_float64():
    """Paper's Atari/ProcGen size N=256 with a 257-wide input, two calls of T=50 (B kept small).

    Tolerance: relative max error of the float32 RTRL gradient w.r.t. float64 ≤ 1e-3 (measured ~1e-5).
    """
    torch.manual_seed(0)
    d, n, b = 257, 256, 4
    cell64 = rtrl.ELSTM(d, n, forget_bias=2.0).double()
    cell32 = copy.deepcopy(cell64).float()
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(50, b, d, generator=g, dtype=torch.float64) for _ in range(2)]
    grads = {}
    for cell, dtype in ((cell64, torch.float64), (cell32, torch.float32)):
        state = cell.initial_state(b)
        for x in xs:
            y, state = cell(x.to(dtype), state)
        y.square().mean().backward()
        grads[dtype] = {k: p.grad.double() for k, p in cell.named_parameters()}
        assert y.dtype == dtype
    for name in grads[torch.float64]:
        assert max_rel_err(grads[torch.float32][name], grads[torch.float64][name]) <= 1e-3, name


@pytest.mark.parametrize("cls", CELLS)
def test_reset_equals_fresh_start(cls):
    """A reset before step t makes outputs and gradients from t on equal to a fresh run from zero."""
    cell, _ = make_pair(cls)
    fresh = copy.deepcopy(cell)
    xs, _, _ = make_data(seed=4, lengths=(4, 6))
    reset = torch.zeros(6, B, dtype=torch.bool)
    reset[2] = True
    _, state = cell(xs[0], cell.initial_state(B))
    y, state_after = cell(xs[1], state, reset=reset)
    y[2:].sum().backward()
    y_fresh, state_fresh = fresh(xs[1][2:], fresh.initial_state(B))
    y_fresh.sum().backward()
    assert torch.allclose(y[2:], y_fresh, atol=1e-13)
    for (name, p), q in zip(cell.named_parameters(), fresh.parameters()):
        assert max_rel_err(p.grad, q.grad) <= 1e-12, name
    for name in state_after.sensitivity:
        assert torch.allclose(state_after.sensitivity[name], state_fresh.sensitivity[name], atol=1e-13)


def test_reset_is_per_batch_element():
    cell, _ = make_pair(rtrl.ELSTM)
    x = torch.randn(3, 2, D, dtype=torch.float64)
    state = cell.initial_state(2)
    state.c.fill_(0.7)
    reset = torch.tensor([[True, False], [False, False], [False, False]])
    y_reset, _ = cell(x, state, reset=reset)
    y_plain, _ = cell(x, state)
    y_zero, _ = cell(x, cell.initial_state(2))
    assert torch.allclose(y_reset[:, 0], y_zero[:, 0]) and torch.allclose(y_reset[:, 1], y_plain[:, 1])
    assert not torch.allclose(y_plain[:, 0], y_zero[:, 0])


def test_online_calls_of_length_one_equal_one_long_call():
    cell, _ = make_pair(rtrl.ELSTM)
    online = copy.deepcopy(cell)
    x = torch.randn(6, B, D, dtype=torch.float64)
    y, state = cell(x, cell.initial_state(B))
    y.sum().backward()
    st = online.initial_state(B)
    for t in range(6):
        y_t, st = online(x[t:t + 1], st)
        y_t.sum().backward()  # gradients accumulate: Σ_t ∂L_t/∂θ through the whole past
    for (name, p), q in zip(cell.named_parameters(), online.parameters()):
        assert max_rel_err(q.grad, p.grad) <= 1e-12, name
    for name in state.sensitivity:
        assert torch.allclose(state.sensitivity[name], st.sensitivity[name], atol=1e-14)


def test_advance_updates_in_place_and_outputs_skip_the_final_sensitivity():
    cell, _ = make_pair(rtrl.ELSTM)
    x = torch.randn(5, B, D, dtype=torch.float64)
    _, start = cell(x, cell.initial_state(B))
    with torch.no_grad():
        _, expected = cell(x, start)
    buffers = start.map(torch.clone)
    updated = cell.advance(x, buffers)
    for name, s in expected.sensitivity.items():
        assert updated.sensitivity[name].data_ptr() == buffers.sensitivity[name].data_ptr()
        assert torch.allclose(updated.sensitivity[name], s, atol=1e-15)
    assert torch.allclose(updated.c, expected.c, atol=1e-15) and not updated.c.requires_grad
    # overwriting S_0 that a pending backward pass still needs fails loudly instead of a wrong gradient
    y, _ = cell(x, buffers)
    cell.advance(x, buffers)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    # a learner that discards S_T gets the same outputs and gradients
    cell.zero_grad()
    y, st = cell(x, start)
    y.sum().backward()
    full = [p.grad.clone() for p in cell.parameters()]
    cell.zero_grad()
    y_out = cell.outputs(x, start)
    y_out.sum().backward()
    assert torch.equal(y_out, y)
    for a, b in zip(full, cell.parameters()):
        assert torch.equal(a, b.grad)


@pytest.mark.parametrize("learning", ["rtrl", "bptt"])
def test_dtype_and_device_follow_the_module(learning):
    cell = rtrl.ELSTM(D, N, learning=learning)
    assert cell.initial_state(2).c.dtype == torch.float32
    cell = cell.double()
    state = cell.initial_state(2)
    assert state.c.dtype == torch.float64
    assert all(s.dtype == torch.float64 for s in state.sensitivity.values())
    y, _ = cell(torch.randn(2, 2, D, dtype=torch.float64), state)
    assert y.dtype == torch.float64
    with pytest.raises(ValueError, match="float32"):
        cell(torch.randn(2, 2, D), state)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        moved = rtrl.ELSTM(D, N, learning=learning).to(device)
        y, st = moved(torch.randn(2, 2, D, device=device))
        y.sum().backward()
        assert y.device.type == device and st.c.device.type == device


def test_bptt_state_stays_attached():
    cell = rtrl.ELSTM(D, N, learning="bptt")
    _, state = cell(torch.randn(2, 2, D))
    assert state.c.requires_grad and state.sensitivity == {}


@pytest.mark.parametrize("bad, match", [
    (lambda c: c(torch.randn(2, D)), r"\(T, B, input_size=3\)"),
    (lambda c: c(torch.randn(2, 2, D + 1)), r"input_size=3"),
    (lambda c: c(torch.randn(2, 3, D), c.initial_state(2)), r"B=3"),
    (lambda c: c(torch.randn(2, 2, D), rtrl.ELSTM(D, N, learning="bptt").initial_state(2)), "learning='bptt'"),
    (lambda c: c(torch.randn(2, 2, D), rtrl.ELSTM(D, N + 1).initial_state(2)), "hidden_size=4"),
    (lambda c: c(torch.randn(2, 2, D), rtrl.ELSTM(D + 1, N).initial_state(2)), "sensitivities"),
    (lambda c: c(torch.randn(2, 2, D), reset=torch.zeros(2, 2)), "bool"),
    (lambda c: c(torch.randn(2, 2, D), reset=torch.zeros(3, 2, dtype=torch.bool)), r"\(T=2, B=2\)"),
    (lambda c: c(torch.randn(2, 2, D), state=(torch.zeros(2, N),)), "RecurrentState"),
    (lambda c: rtrl.ELSTM(D, N, learning="tbptt"), "accepted: rtrl, bptt"),
    (lambda c: rtrl.ELSTM(D, 0), "hidden_size"),
    (lambda c: rtrl.ELSTM(D, N, method="chunk"), "accepted: segment, step"),
    (lambda c: rtrl.IndRNN(D, N, activation="gelu"), "relu, tanh"),
    (lambda c: rtrl.IndRNN(D, N, max_recurrent=0.0), r"max_recurrent must be .* got 0.0"),
    (lambda c: rtrl.IndRNN(D, N, max_recurrent=float("inf")), r"or None \(no bound\), got inf"),
    (lambda c: c.initial_state(0), "batch_size"),
])
def test_bad_input_gives_clear_errors(bad, match):
    cell = rtrl.ELSTM(D, N)
    with pytest.raises(ValueError, match=match):
        bad(cell)


def test_project_parameters_bounds_the_indrnn_recurrent_weights_in_any_module():
    """``rtrl.project_parameters`` restores |u| <= max_recurrent in every IndRNN inside a module (a stack's layers
    here), keeps the weights inside the bound as they are, and leaves the other cells and parameters alone."""
    module = torch.nn.ModuleList([rtrl.StackedRNN(D, N, 2, cell="indrnn", max_recurrent=0.9),
                                  rtrl.IndRNN(D, N, max_recurrent=None), rtrl.ELSTM(D, N)])
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.linspace(-2, 2, p.numel()).view_as(p)) if name.endswith("weight_c") else p.mul_(4)
    before = {name: p.clone() for name, p in module.named_parameters()}
    rtrl.project_parameters(module)
    bounded = [name for name in before if name.startswith("0.") and name.endswith("weight_c")]
    assert len(bounded) == 2
    for name, p in module.named_parameters():
        u = before[name]
        if name in bounded:
            inside = u.abs() <= 0.9
            assert u.abs().max() > 0.9 and inside.any() and torch.equal(p, u.clamp(-0.9, 0.9)), name
        else:
            assert torch.equal(p, u), name
    assert rtrl.IndRNN(D, N).max_recurrent == 1.0 and module[1].max_recurrent is None


def test_stepping_without_gradients_or_sensitivities():
    """An actor's fast path: no grad, no sensitivities — same outputs; the learner path still insists on S."""
    cell, _ = make_pair(rtrl.ELSTM)
    x = torch.randn(4, B, D, dtype=torch.float64)
    y_full, state_full = cell(x, cell.initial_state(B))
    with torch.no_grad():
        state = cell.step_state(cell.initial_state(B))
        ys = []
        for t in range(4):
            y, state = cell(x[t:t + 1], state)
            ys.append(y)
        replayed = cell.advance(x, cell.initial_state(B))
    assert state.sensitivity == {}
    assert torch.allclose(torch.cat(ys), y_full, atol=1e-14) and torch.allclose(state.c, state_full.c, atol=1e-14)
    # stepping and the engine's replay run the same transition loop: the same c up to GEMM rounding
    assert torch.allclose(state.c, replayed.c, rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="sensitivities"):
        cell(x, state)


@pytest.mark.parametrize("chunk_bytes", [0, 1 << 40])
def test_both_ways_of_reading_s0_give_the_same_gradient(monkeypatch, chunk_bytes):
    """S_0 is read batch element by batch element, or in chunks of several: the same numbers."""
    from rtrl.cells import sensitivity_pass
    monkeypatch.setattr(sensitivity_pass, "CHUNK_BYTES", chunk_bytes)
    segment, bptt = make_pair(rtrl.ELSTM)
    xs, resets, target = make_data(seed=9)
    grads, _, _ = run_calls(segment, xs, resets, target)
    reference, _, _ = run_calls(bptt, xs, resets, target)
    for name in grads:
        assert max_rel_err(grads[name], reference[name]) <= 1e-10, name
