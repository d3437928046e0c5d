"""The engine's paths at the memory floor (docs/DESIGN.md §8), against the plain per-step reference.

float64: the chunked pass over S (any chunk size), the eager in-place pass and the in-place pass under
autograd (S_T written by backward, with the gradient) agree with ``method="step"`` to 1e-12; float32
agrees with float64 to 1e-4 (relative max error; measured ~1e-6).
"""
import copy

import pytest
import torch

import rtrl
from conftest import max_rel_err
from rtrl.cells import engine, sensitivity_pass

CELLS = [rtrl.ELSTM, rtrl.IndRNN, rtrl.DiagonalLRU]
D, N, B = 3, 4, 3


def make_cell(cls, method="segment", dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    cell = cls(D, N, method=method).to(dtype)
    if cls is rtrl.ELSTM:
        with torch.no_grad():
            cell.weight_c.normal_(0, 0.5)
            cell.bias[1].normal_(1.0, 0.5)
    return cell


def make_stream(lengths, seed=1, dtype=torch.float64, reset_prob=0.2):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(T, B, D, generator=g, dtype=dtype) for T in lengths]
    resets = [torch.rand(T, B, generator=g) < reset_prob for T in lengths]
    targets = [torch.randn(T, B, N, generator=g, dtype=dtype) for T in lengths]
    return xs, resets, targets


def stream(cell, xs, resets, targets, in_place):
    """A streaming learner: a loss and a backward pass per call, the state carried to the next call.

    Returns the gradient summed over the calls and the final state."""
    cell.zero_grad()
    state = cell.initial_state(B)
    for x, reset, target in zip(xs, resets, targets):
        if in_place:
            y, state = cell.forward_in_place(x, state, reset=reset)
        else:
            y, state = cell(x, state, reset=reset)
        ((y - target) ** 2).sum().backward()
    return {k: p.grad.clone() for k, p in cell.named_parameters()}, state


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("lengths", [(1,) * 6, (3, 1, 5, 2)])
@pytest.mark.parametrize("chunk_bytes", [0, 200, 1 << 40])
def test_in_place_streaming_equals_per_step_reference(monkeypatch, cls, lengths, chunk_bytes):
    monkeypatch.setattr(sensitivity_pass, "CHUNK_BYTES", chunk_bytes)
    fused = make_cell(cls)
    reference = copy.deepcopy(fused)
    reference.method = "step"
    data = make_stream(lengths)
    g_ref, s_ref = stream(reference, *data, in_place=False)
    for cell in (fused, copy.deepcopy(reference)):  # the fused segment pass, and the reference in place
        s0 = cell.initial_state(B)
        buffers = {k: v.data_ptr() for k, v in s0.sensitivity.items()}
        grads, state = stream(cell, *data, in_place=True)
        for name in g_ref:
            assert max_rel_err(grads[name], g_ref[name]) <= 1e-12, name
        assert torch.allclose(state.c, s_ref.c, rtol=0, atol=1e-14)
        for name, s in state.sensitivity.items():
            assert max_rel_err(s, s_ref.sensitivity[name]) <= 1e-12, name
        assert set(buffers) == set(state.sensitivity)


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("chunk_bytes", [0, 200, 1 << 40])
def test_chunked_pass_new_skip_and_advance_equal_reference(monkeypatch, cls, chunk_bytes):
    monkeypatch.setattr(sensitivity_pass, "CHUNK_BYTES", chunk_bytes)
    segment = make_cell(cls)
    step = copy.deepcopy(segment)
    step.method = "step"
    xs, resets, targets = make_stream((4, 3))
    g_seg, s_seg = stream(segment, xs, resets, targets, in_place=False)
    g_step, s_step = stream(step, xs, resets, targets, in_place=False)
    for name in g_step:
        assert max_rel_err(g_seg[name], g_step[name]) <= 1e-12, name
    for name in s_step.sensitivity:
        assert max_rel_err(s_seg.sensitivity[name], s_step.sensitivity[name]) <= 1e-12, name
    # outputs ("skip") gives the same gradient; advance writes the same S_T over its input
    segment.zero_grad()
    start = s_seg.map(torch.clone)
    y = segment.outputs(xs[0], start, reset=resets[0])
    ((y - targets[0]) ** 2).sum().backward()
    expected_grads = {k: p.grad.clone() for k, p in segment.named_parameters()}
    step.zero_grad()
    y, expected = step(xs[0], s_seg.map(torch.clone), reset=resets[0])
    ((y - targets[0]) ** 2).sum().backward()
    for name, p in step.named_parameters():
        assert max_rel_err(expected_grads[name], p.grad) <= 1e-12, name
    advanced = segment.advance(xs[0], start, reset=resets[0])
    for name, s in advanced.sensitivity.items():
        assert s.data_ptr() == start.sensitivity[name].data_ptr()
        assert max_rel_err(s, expected.sensitivity[name]) <= 1e-12, name


def test_in_place_pass_allocates_nothing_sensitivity_sized():
    """T = 1 under autograd: forward and backward allocate nothing larger than one chunk of the pass
    (a quarter of S^{W_x} here); the old engine allocated S-sized products."""
    torch.manual_seed(0)
    cell = rtrl.ELSTM(200, 64).double()
    state = cell.initial_state(32)
    s_bytes = state.sensitivity["weight_x"].numel() * 8
    x = torch.randn(1, 32, 200, dtype=torch.float64)
    y, state = cell.forward_in_place(x, state)  # warm-up
    y.sum().backward()
    with torch.profiler.profile(profile_memory=True) as prof:
        y, state = cell.forward_in_place(x, state)
        y.sum().backward()
    sizes = [e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0]
    assert sizes and max(sizes) <= sensitivity_pass.CHUNK_BYTES < s_bytes // 4, (max(sizes), s_bytes)


def test_a_call_before_backward_writes_the_pending_final_sensitivity_first():
    cell = make_cell(rtrl.ELSTM)
    reference = copy.deepcopy(cell)
    xs, resets, _ = make_stream((2, 3))
    state = cell.initial_state(B)
    y, state = cell.forward_in_place(xs[0], state, reset=resets[0])
    # no backward: the next call brings S forward first and then runs on S_T
    y2, state2 = cell(xs[1], state, reset=resets[1])
    with torch.no_grad():
        _, ref = reference(xs[0], reference.initial_state(B), reset=resets[0])
    _, ref2 = reference(xs[1], ref, reset=resets[1])
    for name, s in state.sensitivity.items():
        assert max_rel_err(s, ref.sensitivity[name]) <= 1e-12, name
        assert max_rel_err(state2.sensitivity[name], ref2.sensitivity[name]) <= 1e-12, name
    with pytest.raises(RuntimeError, match="inplace operation|already brought forward"):
        y.sum().backward()  # its S_0 is gone: loud, not a wrong gradient
    # complete_pending: S_T on demand, once
    y, state = cell.forward_in_place(xs[0], cell.initial_state(B), reset=resets[0])
    engine.complete_pending(state.sensitivity)
    for name, s in state.sensitivity.items():
        assert max_rel_err(s, ref.sensitivity[name]) <= 1e-12, name
        assert not hasattr(s, engine._PENDING)


def test_in_place_without_gradients_needed_is_written_at_once():
    cell = make_cell(rtrl.ELSTM)
    for p in cell.parameters():
        p.requires_grad_(False)
    x = torch.randn(2, B, D, dtype=torch.float64)
    with torch.no_grad():
        _, expected = cell(x, cell.initial_state(B))
    _, state = cell.forward_in_place(x, cell.initial_state(B))
    for name, s in state.sensitivity.items():
        assert torch.allclose(s, expected.sensitivity[name], rtol=0, atol=1e-15)
        assert not hasattr(s, engine._PENDING)


def test_float32_in_place_streaming_agrees_with_float64():
    cell64 = make_cell(rtrl.ELSTM)
    cell32 = copy.deepcopy(cell64).float()
    data64 = make_stream((1,) * 8 + (5,))
    data32 = [[t.float() if t.is_floating_point() else t for t in part] for part in data64]
    g64, s64 = stream(cell64, *data64, in_place=True)
    g32, s32 = stream(cell32, *data32, in_place=True)
    for name in g64:
        assert max_rel_err(g32[name].double(), g64[name]) <= 1e-4, name
    for name in s64.sensitivity:
        assert max_rel_err(s32.sensitivity[name].double(), s64.sensitivity[name]) <= 1e-4, name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("cls", CELLS)
def test_in_place_streaming_on_cuda_equals_cpu(cls):
    cpu = make_cell(cls)
    gpu = copy.deepcopy(cpu).cuda()
    data = make_stream((1, 1, 3))
    g_cpu, s_cpu = stream(cpu, *data, in_place=True)
    g_gpu, s_gpu = stream(gpu, *[[t.cuda() for t in part] for part in data], in_place=True)
    for name in g_cpu:
        assert max_rel_err(g_gpu[name].cpu(), g_cpu[name]) <= 1e-10, name
    for name in s_cpu.sensitivity:
        assert max_rel_err(s_gpu.sensitivity[name].cpu(), s_cpu.sensitivity[name]) <= 1e-10, name
