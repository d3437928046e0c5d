"""rtrl.StackedRNN against independent references (float64): exact multi-layer RTRL vs full-history BPTT
and central finite differences; per-layer RTRL vs BPTT with the inter-layer paths cut at call boundaries.

Every check runs several calls of different lengths with random resets; the loss is the sum of every
call's loss, each backpropagated at its call (the RTRL modes) or once over the whole history (BPTT).
"""
import pytest
import torch

import rtrl
from conftest import bptt_call_grads as bptt_grads, call_loss, rtrl_call_grads as rtrl_grads
from conftest import max_rel_err
from rtrl.cells import RecurrentState, SensitivityMemoryError

D, B = 3, 2
SIZES = {2: [4, 3], 3: [4, 5, 3]}
LENGTHS = (3, 5, 4)


# the three modes by their settings: exact and per-layer RTRL, plain BPTT
MODES = {"exact": dict(learning="rtrl", multilayer="exact"), "per-layer": dict(learning="rtrl", multilayer="per-layer"),
         "rtrl": dict(learning="rtrl"), "bptt": dict(learning="bptt")}


def make_stack(cell, L, mode, dtype=torch.float64, seed=0, sizes=None):
    torch.manual_seed(seed)
    stack = rtrl.StackedRNN(D, sizes or SIZES[L], L, cell=cell, **MODES[mode]).to(dtype)
    if cell == "elstm":  # exercise the recurrent path away from its trivial init
        with torch.no_grad():
            for layer in stack.layers:
                layer.weight_c.normal_(0, 0.5)
                layer.bias[1].normal_(1.0, 0.5)
    return stack


def copy_of(stack, mode):
    other = rtrl.StackedRNN(D, stack.hidden_size, stack.num_layers, cell=stack.cell, **MODES[mode])
    other.to(stack.layers[0].weight_x.dtype).load_state_dict(stack.state_dict())
    return other


def make_data(seed=1, dtype=torch.float64, lengths=LENGTHS):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(T, B, D, generator=g, dtype=dtype) for T in lengths]
    resets = [torch.rand(T, B, generator=g) < 0.25 for T in lengths]
    return xs, resets





def per_layer_reference(stack, xs, resets):
    """BPTT where each layer's carried state is recomputed from its *detached* input: across a call
    boundary c^l reaches back to θ_l alone, inside a call every path is kept."""
    stack.zero_grad()
    carried = [torch.zeros(B, n, dtype=xs[0].dtype) for n in stack.hidden_size]
    total = 0
    for i, (x, reset) in enumerate(zip(xs, resets)):
        h, cut = x, []
        for layer, c in zip(stack.layers, carried):
            y, _ = layer(h, RecurrentState(c, {}, "bptt"), reset)
            _, state_cut = layer(h.detach(), RecurrentState(c, {}, "bptt"), reset)
            cut.append(state_cut.c)
            h = y
        total = total + call_loss(h, i)
        carried = cut
    total.backward()
    return {k: p.grad.clone() for k, p in stack.named_parameters()}


def total_loss(stack, xs, resets):
    with torch.no_grad():
        state, total = stack.initial_state(B), 0.0
        for i, (x, reset) in enumerate(zip(xs, resets)):
            y, state = stack(x, state, reset=reset)
            total += call_loss(y, i).item()
    return total


@pytest.mark.parametrize("cell", ["elstm", "indrnn", "lru"])
@pytest.mark.parametrize("L", [2, 3])
def test_exact_equals_full_history_bptt(cell, L):
    exact = make_stack(cell, L, "rtrl")
    xs, resets = make_data()
    got, state = rtrl_grads(exact, xs, resets)
    want, bptt_state = bptt_grads(copy_of(exact, "bptt"), xs, resets)
    assert set(got) == set(want)
    for name in want:
        assert max_rel_err(got[name], want[name]) <= 1e-10, name
    for s, t in zip(state.layers, bptt_state.layers):
        assert torch.allclose(s.c, t.c, atol=1e-12)


@pytest.mark.parametrize("cell,L", [("elstm", 2), ("elstm", 3), ("indrnn", 3), ("lru", 2)])
def test_exact_equals_central_finite_differences(cell, L):
    exact = make_stack(cell, L, "rtrl")
    xs, resets = make_data(seed=2)
    got, _ = rtrl_grads(exact, xs, resets)
    plain = copy_of(exact, "bptt")   # the loss value needs no sensitivities
    eps = 1e-6
    for name, p in plain.named_parameters():
        flat, numeric = p.data.view(-1), torch.zeros(p.numel(), dtype=p.dtype)
        for i in range(flat.numel()):
            orig = flat[i].item()
            flat[i] = orig + eps
            up = total_loss(plain, xs, resets)
            flat[i] = orig - eps
            down = total_loss(plain, xs, resets)
            flat[i] = orig
            numeric[i] = (up - down) / (2 * eps)
        assert max_rel_err(got[name].view(-1), numeric) <= 1e-6, name


@pytest.mark.parametrize("cell,L", [("elstm", 2), ("elstm", 3), ("lru", 3)])
def test_per_layer_equals_its_reference_and_differs_from_exact(cell, L):
    per_layer = make_stack(cell, L, "per-layer")
    xs, resets = make_data(seed=3)
    got, _ = rtrl_grads(per_layer, xs, resets)
    want = per_layer_reference(copy_of(per_layer, "bptt"), xs, resets)
    for name in want:
        assert max_rel_err(got[name], want[name]) <= 1e-10, name
    exact, _ = rtrl_grads(copy_of(per_layer, "rtrl"), xs, resets)
    # the top layer's own tensors agree; a lower layer's recurrent input matrix misses the cross terms
    assert max_rel_err(got[f"layers.{L - 1}.weight_x"], exact[f"layers.{L - 1}.weight_x"]) <= 1e-10
    assert max_rel_err(got["layers.0.weight_x"], exact["layers.0.weight_x"]) > 1e-3


def test_exact_state_blocks_and_advance_and_outputs_agree():
    exact = make_stack("elstm", 3, "rtrl")
    xs, resets = make_data(seed=4)
    state = exact.initial_state(B)
    y, after = exact(xs[0], state, resets[0])
    replay = exact.advance(xs[0], exact.initial_state(B), resets[0])
    for a, b in zip(after.layers, replay.layers):
        assert torch.allclose(a.c, b.c, atol=1e-12)
        assert all(torch.allclose(a.sensitivity[k], b.sensitivity[k], atol=1e-12) for k in a.sensitivity)
    assert all(torch.allclose(after.cross[k], replay.cross[k], atol=1e-12) for k in after.cross)
    # the diagonal blocks are the single-layer sensitivities: per-layer RTRL carries the same numbers
    per_layer = copy_of(exact, "per-layer")
    _, per_state = per_layer(xs[0], per_layer.initial_state(B), resets[0])
    for a, b in zip(after.layers, per_state.layers):
        assert all(torch.allclose(a.sensitivity[k], b.sensitivity[k], atol=1e-12) for k in a.sensitivity)
    # outputs() gives y and the same gradients; a step state steps c alone
    exact.zero_grad()
    (y ** 2).sum().backward()
    g1 = exact.layers[0].weight_x.grad.clone()
    exact.zero_grad()
    (exact.outputs(xs[0], exact.initial_state(B), resets[0]) ** 2).sum().backward()
    assert torch.allclose(exact.layers[0].weight_x.grad, g1)
    with torch.no_grad():
        y_step, stepped = exact(xs[0], exact.step_state(exact.initial_state(B)), resets[0])
    assert torch.allclose(y_step, y) and not stepped.cross


@pytest.mark.parametrize("learning", ["exact", "per-layer"])
def test_float32_matches_float64(learning):
    stack64 = make_stack("elstm", 2, learning, sizes=[16, 16])
    stack32 = copy_of(stack64, learning).float()
    xs, resets = make_data(seed=5, lengths=(20, 30))
    g64, _ = rtrl_grads(stack64, xs, resets)
    g32, _ = rtrl_grads(stack32, [x.float() for x in xs], resets)
    for name in g64:  # float32 rounding through 50 steps and two layers: ~1e-6 relative; allow 1e-4
        assert max_rel_err(g32[name].double(), g64[name]) <= 1e-4, name


@pytest.mark.parametrize("kwargs,message", [
    (dict(hidden_size=[4, 4, 4], num_layers=2), "bad hidden_size=[4, 4, 4] for num_layers=2"),
    (dict(hidden_size=0, num_layers=2), "bad hidden_size=0"),
    (dict(hidden_size=4, num_layers=0), "bad num_layers=0"),
    (dict(hidden_size=4, num_layers=2, cell="gru"), "unknown cell 'gru'; accepted: elstm, indrnn, lru"),
    (dict(hidden_size=4, num_layers=2, learning="exact"), "unknown learning 'exact'; accepted: rtrl, bptt"),
    (dict(hidden_size=4, num_layers=2, multilayer="rtrl"), "unknown multilayer 'rtrl'; accepted: exact, per-layer"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        rtrl.StackedRNN(D, **kwargs)


def test_memory_estimate_over_the_limit_is_refused():
    stack = rtrl.StackedRNN(8, 8, 2, learning="rtrl", memory_limit=12_000)
    numel = stack.sensitivity_numel(1)
    # layer 1's cross block: N_1 × |θ_0|, θ_0 = W (16×8), r, b (2×8 each), W_o (8×16), b_o (8)
    assert numel["cross"] == 8 * (16 * 8 + 16 + 16 + 8 * 16 + 8)
    assert numel["diagonal"] == 2 * (16 * 8 + 16 + 16)
    assert stack.sensitivity_bytes(3) == 3 * 4 * sum(numel.values())
    assert stack.sensitivity_bytes(1) == 10752
    with pytest.raises(SensitivityMemoryError, match=r"of 4 sequences need 42 KiB \(10.5 KiB each\), over the "
                       r"limit of 11.7 KiB"):
        stack.initial_state(4)
    stack.initial_state(1)   # 10752 bytes fit
    with pytest.raises(ValueError, match="bad batch_size=0"):
        stack.initial_state(0)
    with pytest.raises(ValueError, match="multilayer='per-layer'"):
        stack.initial_state(2)
    # a stack only stepped (an evaluation) holds no sensitivities, so any batch fits
    stepping = stack.initial_step_state(4)
    assert [s.sensitivity for s in stepping.layers] == [{}, {}] and stepping.cross == {}
    assert [tuple(s.c.shape) for s in stepping.layers] == [(4, 8), (4, 8)] and not any(s.c.any() for s in stepping.layers)
    with pytest.raises(ValueError, match="bad batch_size=0"):
        stack.initial_step_state(0)


def test_wrong_state_is_named():
    stack = make_stack("indrnn", 2, "rtrl")
    other = make_stack("indrnn", 2, "per-layer")
    x = torch.randn(3, B, D, dtype=torch.float64)
    with pytest.raises(ValueError, match="learning='rtrl', multilayer='per-layer' stack"):
        stack(x, other.initial_state(B))
    with pytest.raises(ValueError, match="x must have shape"):
        stack(torch.randn(3, B, D + 1, dtype=torch.float64), stack.initial_state(B))


def test_the_old_per_layer_spelling_is_the_per_layer_mode():
    """``learning="rtrl-per-layer"`` (before ``multilayer`` existed) builds the per-layer stack, whose state
    the new spelling's stack accepts; the exact stack refuses it."""
    old = rtrl.StackedRNN(D, SIZES[2], 2, cell="indrnn", learning="rtrl-per-layer")
    new = make_stack("indrnn", 2, "per-layer")
    assert (old.learning, old.multilayer, old.mode) == ("rtrl", "per-layer", "per-layer")
    x = torch.randn(3, B, D, dtype=torch.float64)
    new(x, old.double().initial_state(B))
    with pytest.raises(ValueError, match="multilayer='per-layer' stack, this stack has learning='rtrl', "
                       "multilayer='exact'"):
        make_stack("indrnn", 2, "exact")(x, old.initial_state(B))
