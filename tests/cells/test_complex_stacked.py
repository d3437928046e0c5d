"""Stacks of complex-diagonal cells (float64): exact multi-layer RTRL vs full-history BPTT and central finite
differences, per-layer RTRL vs its reference (BPTT with the inter-layer paths cut at call boundaries).
Several calls of different lengths, random resets; each call's loss backpropagated at its call."""
import pytest
import torch

import rtrl
from conftest import bptt_call_grads as bptt_grads, call_loss, rtrl_call_grads as rtrl_grads
from conftest import max_rel_err
from rtrl.cells import RecurrentState

D, B = 3, 2
LENGTHS = (3, 5, 4)
CELLS = {"rtu-linear": ("rtu", dict(variant="linear", activation="tanh")),
         "rtu-nonlinear": ("rtu", dict(variant="nonlinear", activation="tanh")),
         "clru": ("clru", {})}
MODES = {"exact": dict(learning="rtrl", multilayer="exact"), "per-layer": dict(learning="rtrl", multilayer="per-layer"),
         "bptt": dict(learning="bptt")}


def make_stack(name, mode, sizes=(3, 2), seed=0):
    cell, options = CELLS[name]
    torch.manual_seed(seed)
    return rtrl.StackedRNN(D, list(sizes), len(sizes), cell=cell, r_min=0.5, r_max=0.99, **MODES[mode],
                           **options).double()


def copy_of(stack, name, mode):
    other = make_stack(name, mode, stack.hidden_size)
    other.load_state_dict(stack.state_dict())
    return other


def make_data(seed=1):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(T, B, D, generator=g, dtype=torch.float64) for T in LENGTHS]
    resets = [torch.rand(T, B, generator=g) < 0.25 for T in LENGTHS]
    resets[1][1, 1] = True
    return xs, resets





def total_loss(stack, xs, resets):
    with torch.no_grad():
        state, total = stack.initial_state(B), 0.0
        for i, (x, reset) in enumerate(zip(xs, resets)):
            y, state = stack(x, state, reset=reset)
            total += call_loss(y, i).item()
    return total


@pytest.mark.parametrize("name,sizes", [(name, (3, 2)) for name in CELLS] + [("rtu-linear", (2, 3, 2))])
def test_exact_stack_equals_full_history_bptt(name, sizes):
    exact = make_stack(name, "exact", sizes)
    xs, resets = make_data()
    got, state = rtrl_grads(exact, xs, resets)
    want, bptt_state = bptt_grads(copy_of(exact, name, "bptt"), xs, resets)
    assert set(got) == set(want)
    for k in want:
        assert max_rel_err(got[k], want[k]) <= 1e-10, k
    for s, t in zip(state.layers, bptt_state.layers):
        assert torch.allclose(s.c, t.c, atol=1e-12)


@pytest.mark.parametrize("name", ["rtu-nonlinear", "clru"])
def test_exact_two_layers_equal_finite_differences(name):
    exact = make_stack(name, "exact")
    xs, resets = make_data(seed=2)
    got, _ = rtrl_grads(exact, xs, resets)
    plain = copy_of(exact, name, "bptt")
    eps = 1e-6
    for k, p in plain.named_parameters():
        flat, numeric = p.data.view(-1), torch.zeros(p.numel(), dtype=p.dtype)
        for i in range(flat.numel()):
            orig = flat[i].item()
            flat[i] = orig + eps
            up = total_loss(plain, xs, resets)
            flat[i] = orig - eps
            down = total_loss(plain, xs, resets)
            flat[i] = orig
            numeric[i] = (up - down) / (2 * eps)
        assert max_rel_err(got[k].view(-1), numeric) <= 1e-6, k


@pytest.mark.parametrize("name", CELLS)
def test_per_layer_equals_its_reference_and_differs_from_exact(name):
    per_layer = make_stack(name, "per-layer")
    xs, resets = make_data(seed=3)
    got, _ = rtrl_grads(per_layer, xs, resets)
    plain = copy_of(per_layer, name, "bptt")
    plain.zero_grad()
    carried = [torch.zeros(B, layer.state_size, dtype=torch.float64) for layer in plain.layers]
    total = 0
    for i, (x, reset) in enumerate(zip(xs, resets)):
        h, cut = x, []
        for layer, c in zip(plain.layers, carried):
            y, _ = layer(h, RecurrentState(c, {}, "bptt"), reset)
            _, state_cut = layer(h.detach(), RecurrentState(c, {}, "bptt"), reset)
            cut.append(state_cut.c)
            h = y
        total = total + call_loss(h, i)
        carried = cut
    total.backward()
    for k, p in plain.named_parameters():
        assert max_rel_err(got[k], p.grad) <= 1e-10, k
    exact, _ = rtrl_grads(copy_of(per_layer, name, "exact"), xs, resets)
    assert max_rel_err(got["layers.0.weight_x"], exact["layers.0.weight_x"]) > 1e-3


def test_stack_sizes_follow_the_paired_outputs():
    stack = rtrl.StackedRNN(5, [4, 3], 2, cell="rtu")
    assert stack.layers[1].input_size == 8 and stack.output_size == 6
    shapes = stack._cross_shapes(2)
    assert shapes["1.0.weight_x"] == (2, 6, 40) and shapes["1.0.per_unit"] == (2, 6, 8)
