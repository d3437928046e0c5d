"""Cost floors of one RTRL segment (docs/DESIGN.md §8): operation counts, and this machine's rates.

The floor of a forward + backward over a segment that carries S_T is

    floor = (S read once + S written once + the call's activations) / bandwidth  +  GEMM FLOPs / GEMM rate

with the bandwidth from a large copy (bytes read + bytes written per second) and the GEMM rate from a
matmul of the segment's own shapes, (T·B × D) @ (D × K·N). Memory and arithmetic are added, not
overlapped: a floor that no implementation of these operation counts beats on this machine by more
than the overlap it manages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class OperationCounts:
    """What one forward + backward over a segment of T steps must move and compute.

    s_bytes: every sensitivity read once and written once (S_0 in, S_T out).
    activation_bytes: the call's own inputs and outputs, each once: x (T,B,D) and its gradient, the
        outputs y (T,B,N) and their upstream gradient.
    gemm_flops: 2·m·n·k of every matrix product: the cell's input projection, its weight gradient, its
        input gradient and the rank-T local term of S_T (each 2·T·B·D·K·N), and for each matrix of the
        readout (out × in) its forward, weight-gradient and input-gradient products (each 2·T·B·out·in).
    """

    s_bytes: int
    activation_bytes: int
    gemm_flops: int

    @property
    def bytes(self) -> int:
        return self.s_bytes + self.activation_bytes


def operation_counts(cell, T: int, B: int) -> OperationCounts:
    """The counts of ``OperationCounts`` for an element-wise cell (``rtrl.cells.ElementwiseRNN``)."""
    K, N, D = cell.num_gates, cell.hidden_size, cell.input_size
    size = cell.weight_x.element_size()
    s_numel = sum(math.prod(shape) for shape in cell.sensitivity_shapes(B).values())
    readout = sum(p.shape[0] * p.shape[1] for p in cell.readout_parameters().values() if p.dim() == 2)
    return OperationCounts(
        s_bytes=2 * s_numel * size,
        activation_bytes=2 * T * B * (D + N) * size,
        gemm_flops=4 * 2 * T * B * D * K * N + 3 * 2 * T * B * readout,
    )


class Rates:
    """This machine's bandwidth and GEMM rate, measured by probes the benchmark interleaves with its runs."""

    def __init__(self, copy_bytes: int, gemm_shape: tuple[int, int, int], dtype: torch.dtype, device: str):
        numel = max(1, copy_bytes // torch.empty((), dtype=dtype).element_size())
        self.src = torch.ones(numel, dtype=dtype, device=device)
        self.dst = torch.empty_like(self.src)
        m, k, n = gemm_shape
        self.a = torch.randn(m, k, dtype=dtype, device=device)
        self.b = torch.randn(k, n, dtype=dtype, device=device)
        self.out = torch.empty(m, n, dtype=dtype, device=device)
        self.cuda = device.startswith("cuda")

    def _sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def copy(self) -> None:
        self.dst.copy_(self.src)
        self._sync()

    def gemm(self) -> None:
        torch.mm(self.a, self.b, out=self.out)
        self._sync()

    def bandwidth(self, seconds: float) -> float:
        """Bytes per second of a copy that took ``seconds`` (read + write)."""
        return 2 * self.src.numel() * self.src.element_size() / seconds

    def gemm_rate(self, seconds: float) -> float:
        """FLOP per second of the probe matmul that took ``seconds``."""
        return 2 * self.a.shape[0] * self.a.shape[1] * self.b.shape[1] / seconds


def floor_seconds(counts: OperationCounts, bandwidth: float, gemm_rate: float) -> float:
    """bytes / bandwidth + GEMM FLOPs / GEMM rate (docs/DESIGN.md §8)."""
    return counts.bytes / bandwidth + counts.gemm_flops / gemm_rate
