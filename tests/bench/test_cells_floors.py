"""The operation counts behind `rtrl bench cells`' floors, checked against the tensors a call touches."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import rtrl
from rtrl.bench import cells_memory
from rtrl.bench.cells import verdicts
from rtrl.bench.floors import OperationCounts, Rates, floor_seconds, operation_counts
from rtrl.cells import native

T, B, D, N = 3, 2, 5, 4


def baddbmm_flop(self_shape, a_shape, b_shape, out_shape=None, **kwargs) -> int:
    """2·b·m·k·n of an in-place baddbmm_ (torch's counter knows the out-of-place one only)."""
    batch, m, k = a_shape
    return 2 * batch * m * k * b_shape[2]


@pytest.mark.parametrize("cls", [rtrl.ELSTM, rtrl.IndRNN, rtrl.DiagonalLRU])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_operation_counts_match_the_tensors_touched(cls, dtype, monkeypatch):
    """Counted on the PyTorch pass: the C pass (rtrl.cells.native) does the same rank-T update of S_T, but
    outside the view of torch's FLOP counter."""
    monkeypatch.setattr(native, "_state", {"lib": None, "reason": "counted on the PyTorch pass"})
    cell = cls(D, N).to(dtype)
    counts = operation_counts(cell, T, B)
    state = cell.initial_state(B)
    # S: every sensitivity tensor of the state, read once and written once
    assert counts.s_bytes == 2 * sum(s.numel() * s.element_size() for s in state.sensitivity.values())
    x = torch.randn(T, B, D, dtype=dtype, requires_grad=True)
    # GEMMs: every matrix product the in-place forward + backward runs (the in-place baddbmm_ counted too)
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.baddbmm_: baddbmm_flop}) as flops:
        y, state = cell.forward_in_place(x, state)
        upstream = torch.randn_like(y)
        (y * upstream).sum().backward()
    assert counts.gemm_flops == flops.get_total_flops()
    # activations: x and its gradient, y and its upstream gradient
    touched = (x, x.grad, y, upstream)
    assert counts.activation_bytes == sum(t.numel() * t.element_size() for t in touched)
    assert counts.bytes == counts.s_bytes + counts.activation_bytes


def test_floor_is_bytes_over_bandwidth_plus_flops_over_rate():
    counts = OperationCounts(s_bytes=6_000, activation_bytes=4_000, gemm_flops=3_000)
    assert floor_seconds(counts, bandwidth=1_000.0, gemm_rate=1_000.0) == pytest.approx(13.0)
    rates = Rates(1 << 12, (2, 3, 4), torch.float32, "cpu")
    rates.copy()
    rates.gemm()
    assert torch.equal(rates.dst, rates.src) and torch.allclose(rates.out, rates.a @ rates.b)
    assert rates.bandwidth(2.0) == pytest.approx((1 << 12))     # (read + write) / 2 s
    assert rates.gemm_rate(0.5) == pytest.approx(2 * 2 * 3 * 4 / 0.5)


def test_verdicts_say_met_or_missed_and_by_how_much():
    rows = [{"T": 1, "N": 32, "in_place_ms": 3.0, "floor_ms": 1.0, "bptt_ms": 1.0},
            {"T": 1, "N": 512, "in_place_ms": 1.5, "floor_ms": 1.0, "bptt_ms": 1.0},
            {"T": 100, "N": 512, "in_place_ms": 150.0, "floor_ms": 100.0, "bptt_ms": 200.0}]
    lines = verdicts(rows)
    assert lines[0] == "T=1, N=32: (b') = 3.00x its floor (target <= 2.0x): missed by 1.50x"
    assert lines[1].endswith("met")
    assert lines[2] == "T=100, N=512: (b') = 1.50x its floor (target <= 2.0x): met"
    assert lines[3].startswith("T=100, N=512: (b') = 0.75x BPTT (target <= 0.5x): missed by 1.50x")


def test_memory_child_is_a_library_module(capsys):
    assert cells_memory.main(["segment", "2", "4", "3", "2", "float32", "cpu", "1"]) == 0
    assert float(capsys.readouterr().out.strip()) >= 0
    assert cells_memory.main(["segment"]) == 2 and "usage" in capsys.readouterr().err
    with pytest.raises(ValueError, match="accepted: step, segment, in_place, bptt"):
        cells_memory.make_case("chunk", 1, 4, 3, 2, torch.float32, "cpu")
    assert cells_memory.peak_memory_in_fresh_process("in_place", 2, 4, 3, 2, "float32", "cpu", 1) >= 0
