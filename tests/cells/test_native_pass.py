"""The C pass over S^{W_x} (rtrl.cells.native) against a plain reference in float64, its fallbacks, and the
engine's exact gradients with it and without it."""
import pytest
import torch

from rtrl.cells import native
from rtrl.cells.sensitivity_pass import FinalTerms, _pass_weight_x
from rtrl.cells.transition import swap

pytestmark = pytest.mark.skipif(not native.available(), reason=f"no C pass here: {native.status()}")


def reference(s0, e0, P0, Q0, lhs, x):
    """grad = Σ_b e0 ⊙ S_0, out = P0 ⊙ S_0 + Q0 ⊙ swap(S_0) + lhs @ x, written out plainly."""
    B, K, N, D = s0.shape
    grad = torch.zeros(K, N, D, dtype=s0.dtype)
    out = torch.zeros_like(s0)
    for b in range(B):
        for k in range(K):
            for n in range(N):
                grad[k, n] += e0[b, n] * s0[b, k, n]
                out[b, k, n] = P0[b, n] * s0[b, k, n] + lhs[b, k * N + n] @ x[b]
                if Q0 is not None:
                    out[b, k, n] += Q0[b, n] * s0[b, k, (n + N // 2) % N]
    return grad, out


def case(paired, T, dtype=torch.float64, B=3, K=2, N=6, D=5):
    g = torch.Generator().manual_seed(T + 10 * paired)
    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)
    return r(B, K, N, D), r(B, N), r(B, N), (r(B, N) if paired else None), r(B, K * N, T), r(B, T, D)


@pytest.mark.parametrize("paired", [False, True])
@pytest.mark.parametrize("T", [1, 2, native.MAX_T])
@pytest.mark.parametrize("in_place", [False, True])
def test_the_c_pass_equals_the_plain_reference(paired, T, in_place):
    s0, e0, P0, Q0, lhs, x = case(paired, T)
    want_grad, want_out = reference(s0, e0, P0, Q0, lhs, x)
    grad = torch.full_like(want_grad, 0.5)   # the pass adds to what is there
    s = s0.clone()
    out = s if in_place else torch.empty_like(s)
    assert native.weight_x_pass(s, e0, grad, P0, Q0, lhs, x, out)
    torch.testing.assert_close(grad, want_grad + 0.5, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(out, want_out, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("paired", [False, True])
def test_the_gradient_alone_and_s_t_alone(paired):
    s0, e0, P0, Q0, lhs, x = case(paired, 1)
    want_grad, want_out = reference(s0, e0, P0, Q0, lhs, x)
    grad = torch.zeros_like(want_grad)
    assert native.weight_x_pass(s0, e0, grad, None, None, None, None, None)
    torch.testing.assert_close(grad, want_grad, rtol=1e-13, atol=1e-13)
    out = torch.empty_like(s0)
    assert native.weight_x_pass(s0, None, None, P0, Q0, lhs, x, out)
    torch.testing.assert_close(out, want_out, rtol=1e-13, atol=1e-13)


def test_float32_within_rounding_and_threads_split_the_rows_exactly(monkeypatch):
    """With threads (the threshold lowered to this case); float32 within 1e-5 of the float64 result."""
    monkeypatch.setattr(native, "THREAD_MIN_ELEMENTS", 1000)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)   # rows split unevenly between three threads
    s0, e0, P0, Q0, lhs, x = case(True, 1, B=4, K=2, N=64, D=600)
    grad64, out64 = torch.zeros(2, 64, 600, dtype=torch.float64), torch.empty_like(s0)
    assert native.weight_x_pass(s0, e0, grad64, P0, Q0, lhs, x, out64)
    want_grad, want_out = reference(s0[:1], e0[:1], P0[:1], Q0[:1], lhs[:1], x[:1])
    single = torch.zeros_like(want_grad)
    assert native.weight_x_pass(s0[:1].contiguous(), e0[:1].contiguous(), single, None, None, None, None, None)
    torch.testing.assert_close(single, want_grad, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(out64[:1], want_out, rtol=1e-13, atol=1e-13)
    f = [t.float() for t in (s0, e0, P0, Q0, lhs, x)]
    grad32, out32 = torch.zeros(2, 64, 600), torch.empty_like(f[0])
    assert native.weight_x_pass(f[0], f[1], grad32, f[2], f[3], f[4], f[5], out32)
    torch.testing.assert_close(grad32.double(), grad64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out32.double(), out64, rtol=1e-5, atol=1e-5)


def test_what_the_c_pass_does_not_take_goes_to_pytorch_with_the_same_numbers():
    """A longer segment, a non-contiguous S or mixed dtypes: the C pass declines (nothing written) and the
    engine's PyTorch pass gives the reference's numbers."""
    s0, e0, P0, Q0, lhs, x = case(False, native.MAX_T + 1)
    want_grad, want_out = reference(s0, e0, P0, Q0, lhs, x)
    untouched = torch.zeros_like(want_grad)
    assert not native.weight_x_pass(s0, e0, untouched, P0, Q0, lhs, x, torch.empty_like(s0))
    assert not native.weight_x_pass(s0.transpose(2, 3).contiguous().transpose(2, 3), e0, untouched,
                                    None, None, None, None, None)
    assert not native.weight_x_pass(s0, e0.float(), untouched, None, None, None, None, None)
    assert not untouched.any()
    grad, out = torch.zeros_like(want_grad), torch.empty_like(s0)
    _pass_weight_x(s0, e0, grad, FinalTerms(P0, lhs, x, {}, Q0), out)
    torch.testing.assert_close(grad, want_grad, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(out, want_out, rtol=1e-13, atol=1e-13)


def test_a_fresh_cache_builds_the_library_once(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("RTRL_CACHE_DIR", str(tmp_path / "cache"))
    assert native.available() and native.status() == "the C pass is in use"
    built = list((tmp_path / "cache").glob("sensitivity_pass-*.so"))
    assert len(built) == 1 and native.build() == built[0]   # a second build finds it


def test_without_a_compiler_the_pytorch_pass_runs_and_status_says_why(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("RTRL_CACHE_DIR", str(tmp_path))   # nothing built here yet
    monkeypatch.setenv("CC", "false")                     # a "compiler" that always fails
    assert not native.available()
    assert "could not be built" in native.status() and "false failed" in native.status()
    s0, e0, P0, Q0, lhs, x = case(True, 1)
    assert not native.weight_x_pass(s0, e0, torch.zeros(2, 6, 5, dtype=torch.float64), None, None, None, None, None)
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("RTRL_NATIVE", "0")
    assert not native.available() and "RTRL_NATIVE=0" in native.status()


def test_the_engine_gives_the_same_gradients_and_s_t_with_and_without_the_c_pass(monkeypatch):
    """One in-place T = 1 step and one T = 3 segment of an eLSTM and an RTU, float64: gradients and S_T agree."""
    from rtrl.cells import ELSTM, RTU
    results = []
    for use_native in (True, False):
        monkeypatch.setattr(native, "_state", {} if use_native else {"lib": None, "reason": "test"})
        for make, T in ((lambda: ELSTM(5, 4), 1), (lambda: RTU(5, 3), 1), (lambda: ELSTM(5, 4), 3)):
            torch.manual_seed(0)
            cell = make().double()
            state = cell.initial_state(2)
            for s in state.sensitivity.values():
                s.normal_()
            x = torch.randn(T, 2, 5, dtype=torch.float64)
            y, new = cell.forward_in_place(x, state)
            y.square().sum().backward()
            results.append(([p.grad.clone() for p in cell.parameters()],
                            [s.clone() for s in new.sensitivity.values()]))
    half = len(results) // 2
    for (g1, s1), (g2, s2) in zip(results[:half], results[half:]):
        for a, b in zip(g1 + s1, g2 + s2):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("use_c", [True, False])
def test_traces_fold_from_s_0_in_the_pass_that_writes_s_t(use_c, monkeypatch):
    """z_b ← decay · z_b + c[b] ⊙ S_0[b] for two folds (a streaming learner's value and policy traces), with the
    in-place S_T write and the gradient in the same call, in C and in PyTorch's pass: equal to the plain reference."""
    from rtrl.cells.sensitivity_pass import sensitivity_pass
    if not use_c:
        monkeypatch.setattr(native, "_state", {"lib": None, "reason": "test"})
    s0, e0, P0, Q0, lhs, x = case(False, 1)
    B, K, N, D = s0.shape
    small = torch.randn(B, K, N, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    coefs = [torch.randn(B, N, generator=g, dtype=torch.float64) for _ in range(2)]
    traces = [[torch.randn(K * N, D, generator=g, dtype=torch.float64) for _ in range(B)] for _ in range(2)]
    small_traces = [[torch.randn(K, N, generator=g, dtype=torch.float64) for _ in range(B)] for _ in range(2)]
    want = [[0.9 * z.view(K, N, D) + c[b][:, None] * s0[b] for b, z in enumerate(zs)] for c, zs in zip(coefs, traces)]
    want_small = [[0.9 * z + c[b] * small[b] for b, z in enumerate(zs)] for c, zs in zip(coefs, small_traces)]
    want_grad, want_out = reference(s0, e0, P0, None, lhs, x)
    S = {"weight_x": s0.clone(), "bias": small.clone()}
    grads = {"weight_x": torch.zeros(K, N, D, dtype=torch.float64), "bias": torch.zeros(K, N, dtype=torch.float64)}
    folds = {"weight_x": list(zip(coefs, traces)), "bias": list(zip(coefs, small_traces))}
    sensitivity_pass(S, e0, grads, FinalTerms(P0, lhs, x, {"bias": torch.zeros(B, K, N, dtype=torch.float64)}), S,
                     folds, 0.9)
    for got, expected in ((traces, want), (small_traces, want_small)):
        for zs, ws in zip(got, expected):
            for z, w in zip(zs, ws):
                torch.testing.assert_close(z.view(w.shape), w, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(grads["weight_x"], want_grad, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(S["weight_x"], want_out, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("use_c", [True, False])
def test_a_paired_cells_traces_fold_both_channels_in_the_pass_that_writes_s_t(use_c, monkeypatch):
    """A paired cell's traces are shaped like its parameter, half of S[b]: z_b[k, n] ← decay · z_b[k, n] +
    c[b, n] S_0[b, k, n] + c[b, n + M] S_0[b, k, n + M], in the pass that writes S_T in place (with its 2×2 carry)
    and adds the gradient: in C (which takes it) and in PyTorch's pass, equal to the plain reference."""
    if not use_c:
        monkeypatch.setattr(native, "_state", {"lib": None, "reason": "test"})
    s0, e0, P0, Q0, lhs, x = case(True, 1)
    B, K, N, D = s0.shape
    M = N // 2
    g = torch.Generator().manual_seed(7)
    coefs = [torch.randn(B, N, generator=g, dtype=torch.float64) for _ in range(2)]
    traces = [[torch.randn(K * M, D, generator=g, dtype=torch.float64) for _ in range(B)] for _ in range(2)]
    want = [[0.9 * z.view(K, M, D) + c[b, :M, None] * s0[b, :, :M] + c[b, M:, None] * s0[b, :, M:]
             for b, z in enumerate(zs)] for c, zs in zip(coefs, traces)]
    want_grad, want_out = reference(s0, e0, P0, Q0, lhs, x)
    S, grad = s0.clone(), torch.zeros(K, N, D, dtype=torch.float64)
    folds = list(zip(coefs, traces))
    _pass_weight_x(S, e0, grad, FinalTerms(P0, lhs, x, {}, Q0), S, folds, 0.9)
    for zs, ws in zip(traces, want):
        for z, w in zip(zs, ws):
            torch.testing.assert_close(z.view(w.shape), w, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(grad, want_grad, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(S, want_out, rtol=1e-13, atol=1e-13)
    if use_c:   # the C pass takes the half-size folds (before, it declined them and PyTorch's pass ran)
        calls = []
        real = native.weight_x_pass
        monkeypatch.setattr(native, "weight_x_pass", lambda *a, **k: calls.append(real(*a, **k)) or calls[-1])
        _pass_weight_x(s0.clone(), e0, grad, FinalTerms(P0, lhs, x, {}, Q0), s0.clone(), folds, 0.9)
        assert calls == [True]
