"""`rtrl bench cells`: the RTRL engine against this machine's floor, and against autograd BPTT.

For each segment length T and hidden size N it times forward + backward of one eLSTM segment by
    (a) the per-step reference RTRL (``method="step"``, S_T into new tensors),
    (b) the segment RTRL (``forward``: S_T into new tensors, the exact full-history gradient),
    (b') the segment RTRL in place (``forward_in_place``: S_T written over S_0 by the backward pass,
         in the pass that reads S_0 for the gradient — a streaming learner's step),
    (c) autograd BPTT of the same eLSTM segment (``learning="bptt"``),
interleaved, repeat by repeat, with two probes of this machine: a large copy (bandwidth) and a matmul
of the segment's shapes (GEMM rate), each taken at its fastest run. Each row's floor is (S read + write + activations) / bandwidth
+ GEMM FLOPs / GEMM rate, from the row's operation counts (docs/DESIGN.md §8); every time is a median
and every ratio divides medians of the same run. The peak extra memory of (b), (b') and (c) is
measured in a fresh process each (``python -m rtrl.bench.cells_memory``).

With ``--cells elstm rtu clru`` the paired cells get a table each beside the eLSTM's, each row at the
eLSTM's parameter count for that N (``equal_parameter_size``: with D = 257, the eLSTM's N = 32, 128, 512
are the RTU's 50, 224, 1278 and the complex LRU's 50, 224, 1276). The default is the eLSTM alone, so that
the recorded table stays comparable with the records before it (and the bench's time does not triple).
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rtrl.bench.cells_memory import BENCH_CELLS, VARIANTS, make_case, peak_memory_in_fresh_process, run_once
from rtrl.bench.floors import Rates, floor_seconds, operation_counts
from rtrl.cells import native
from rtrl.records.reports import check_report_path, command_line, record_section
from rtrl.runtime.devices import check_device
from rtrl.settings import POSITIVE_INT, Check, setting

S = setting
CELL_LIST = Check("one or more of " + ", ".join(BENCH_CELLS),
                  lambda v: isinstance(v, list) and bool(v) and all(c in BENCH_CELLS for c in v))

# the targets of issue 24, checked on the rows they name
T1_TARGET = 2.0          # T = 1: the in-place RTRL within 2x of its floor, every N
LONG_FLOOR_TARGET = 2.0  # T = 100, N = 512: within 2x of its floor ...
LONG_BPTT_TARGET = 0.5   # ... and at most 0.5x autograd BPTT
# a segment length T: each one is timed, so at least one, and none that is zero, negative or not a whole number
LENGTHS = Check("one or more positive integers up to 65536",
                lambda v: len(v) > 0 and all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 65536
                                             for n in v))
# a hidden size N: each one is timed, so the same kind of list (refused before the probes run, not at its row)
HIDDEN_SIZES = Check("one or more positive integers up to 65536",
                     lambda v: len(v) > 0 and all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 65536
                                                  for n in v))


@dataclass
class CellsBenchConfig:
    lengths: list[int] = S([1, 10, 100], "segment lengths T", check=LENGTHS)
    hidden_sizes: list[int] = S([32, 128, 512], "hidden sizes N", check=HIDDEN_SIZES)
    input_size: int = S(257, "input size D", check=POSITIVE_INT)
    batch_size: int = S(32, "batch size B", check=POSITIVE_INT)
    dtype: str = S("float32", "floating type", choices=("float32", "float64"))
    device: str = S("cpu", "torch device (cpu, cuda, cuda:1, ...)")
    threads: int = S(2, "torch intra-op threads", check=POSITIVE_INT)
    repeats: int = S(5, "timed runs per cell (the median is reported)", check=POSITIVE_INT)
    copy_mb: int = S(256, "size of the bandwidth probe's copy in MB (larger than the caches)", check=POSITIVE_INT)
    memory: bool = S(True, "measure the peak memory of (b), (b') and (c), each in a fresh process")
    cells: list[str] = S(["elstm"], "cells to time: elstm, and the paired rtu and clru, each at the eLSTM's "
                         "parameter count for each hidden size (default: the eLSTM alone, comparable with the "
                         "recorded table)", check=CELL_LIST)
    record: str | None = S(None, "also write the table, date, machine and command into this markdown file",
                           flag={"metavar": "FILE"})

    def check_together(self) -> None:
        """The device must be one this machine has: the benchmark allocates on it at once."""
        check_device(self.device)


def _cells(args) -> list[str]:
    return args.cells


def parameter_count(cell: str, N: int, D: int) -> int:
    return sum(p.numel() for p in BENCH_CELLS[cell](D, N).parameters())


def equal_parameter_size(cell: str, N: int, D: int) -> int:
    """The hidden size at which ``cell`` has (nearest) the eLSTM's parameter count at ``N`` with D inputs."""
    if cell == "elstm":
        return N
    target, one = parameter_count("elstm", N, D), parameter_count(cell, 1, D)
    per_unit = parameter_count(cell, 2, D) - one   # the paired cells' count is linear in N
    return max(1, round((target - (one - per_unit)) / per_unit))


def _timed(fn, cuda: bool) -> float:
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure_row(args, T: int, N: int, dtype: torch.dtype, cell: str = "elstm") -> dict:
    """Median times of the four methods and the two probes, interleaved repeat by repeat."""
    cuda = args.device.startswith("cuda")
    B, D = args.batch_size, args.input_size
    cases = {v: make_case(v, T, N, D, B, dtype, args.device, cell=cell) for v in VARIANTS}
    rates = Rates(args.copy_mb << 20, (T * B, D, cases["segment"][0].num_gates * N), dtype, args.device)
    jobs = {v: (lambda c=c, v=v: run_once(*c, in_place=v == "in_place")) for v, c in cases.items()}
    jobs.update(copy=rates.copy, gemm=rates.gemm)
    times = {name: [] for name in jobs}
    for name, job in jobs.items():  # warm-up
        _timed(job, cuda)
    for _ in range(args.repeats):
        for name, job in jobs.items():
            times[name].append(_timed(job, cuda))
    med = {name: statistics.median(t) for name, t in times.items()}
    counts = operation_counts(cases["segment"][0], T, B)
    # the machine's rates from the fastest probe: what the hardware allows (the methods get medians)
    bandwidth, gemm_rate = rates.bandwidth(min(times["copy"])), rates.gemm_rate(min(times["gemm"]))
    row = {"cell": cell, "T": T, "N": N, "moved_MB": counts.bytes / 1e6, "gflop": counts.gemm_flops / 1e9,
           "GBps": bandwidth / 1e9, "GFps": gemm_rate / 1e9,
           "floor_ms": 1e3 * floor_seconds(counts, bandwidth, gemm_rate)}
    for v in VARIANTS:
        row[f"{v}_ms"] = 1e3 * med[v]
    return row


def measure(args) -> list[dict]:
    """The rows of each cell (``args.cells``, default the eLSTM), each printed under its cell's title."""
    dtype = getattr(torch, args.dtype)
    rows = []
    for cell in _cells(args):
        print(title(cell, args.hidden_sizes, args.input_size) + "\n" + HEADER, flush=True)
        for elstm_N in args.hidden_sizes:
            N = equal_parameter_size(cell, elstm_N, args.input_size)
            for T in args.lengths:
                row = measure_row(args, T, N, dtype, cell)
                if args.memory:
                    for variant in ("segment", "in_place", "bptt"):
                        row[f"{variant}_MB"] = peak_memory_in_fresh_process(
                            variant, T, N, args.input_size, args.batch_size, args.dtype, args.device, args.threads,
                            cell)
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


def title(cell: str, hidden_sizes: list[int], D: int) -> str:
    """The line above a cell's table: its name and, for a paired cell, its N against the eLSTM's."""
    if cell == "elstm":
        return "eLSTM:"
    sizes = ", ".join(f"{equal_parameter_size(cell, N, D)} (eLSTM {N}: {parameter_count('elstm', N, D):,} "
                      f"parameters, {cell} {parameter_count(cell, equal_parameter_size(cell, N, D), D):,})"
                      for N in hidden_sizes)
    return f"{cell}, at the eLSTM's parameter count: N = {sizes}:"


def tables(rows: list[dict], hidden_sizes: list[int], D: int) -> str:
    """Each cell's title and table, in the order of the rows."""
    cells = list(dict.fromkeys(row.get("cell", "elstm") for row in rows))
    return "\n\n".join(title(cell, hidden_sizes, D) + "\n\n" + HEADER + "\n"
                       + "\n".join(format_row(r) for r in rows if r.get("cell", "elstm") == cell) for cell in cells)


HEADER = ("|   T |   N | moved MB | GFLOP | GB/s | GFLOP/s | floor ms | (a) step ms | (b) segment ms "
          "| (b') in place ms | (c) BPTT ms | (b)/floor | (b')/floor | (c)/floor | (b')/(c) | (b) MB | (b') MB | (c) MB |\n"
          "|----:|----:|---------:|------:|-----:|--------:|---------:|------------:|---------------:"
          "|-----------------:|------------:|----------:|-----------:|----------:|---------:|-------:|--------:|-------:|")


def format_row(row: dict) -> str:
    f = row["floor_ms"]
    mem = " | ".join(f"{row[k]:.1f}" if k in row else "-" for k in ("segment_MB", "in_place_MB", "bptt_MB"))
    return (f"| {row['T']:3d} | {row['N']:3d} | {row['moved_MB']:.3g} | {row['gflop']:.3g} | {row['GBps']:.3g} | "
            f"{row['GFps']:.3g} | {f:.3g} | {row['step_ms']:.1f} | {row['segment_ms']:.2f} | "
            f"{row['in_place_ms']:.2f} | {row['bptt_ms']:.2f} | {row['segment_ms'] / f:.2f} | "
            f"{row['in_place_ms'] / f:.2f} | {row['bptt_ms'] / f:.2f} | {row['in_place_ms'] / row['bptt_ms']:.2f} | {mem} |")


def verdicts(rows: list[dict]) -> list[str]:
    """The targets of issue 24 on the rows they name, met or missed and by how much."""
    lines = []
    for row in (r for r in rows if r.get("cell", "elstm") == "elstm"):   # issue 24's targets are the eLSTM's
        ratio = row["in_place_ms"] / row["floor_ms"]
        if row["T"] == 1:
            lines.append(f"T=1, N={row['N']}: (b') = {ratio:.2f}x its floor (target <= {T1_TARGET}x): "
                         + ("met" if ratio <= T1_TARGET else f"missed by {ratio / T1_TARGET:.2f}x"))
        if row["T"] == 100 and row["N"] == 512:
            vs_bptt = row["in_place_ms"] / row["bptt_ms"]
            lines.append(f"T=100, N=512: (b') = {ratio:.2f}x its floor (target <= {LONG_FLOOR_TARGET}x): "
                         + ("met" if ratio <= LONG_FLOOR_TARGET else f"missed by {ratio / LONG_FLOOR_TARGET:.2f}x"))
            lines.append(f"T=100, N=512: (b') = {vs_bptt:.2f}x BPTT (target <= {LONG_BPTT_TARGET}x): "
                         + ("met" if vs_bptt <= LONG_BPTT_TARGET else f"missed by {vs_bptt / LONG_BPTT_TARGET:.2f}x")
                         + f"; BPTT itself is {row['bptt_ms'] / row['floor_ms']:.2f}x the RTRL floor")
    return lines


def run(args: CellsBenchConfig) -> list[dict]:
    """Print the table and the targets' verdicts (and record them with ``args.record``); return the rows."""
    check_report_path(args.record)   # before the measurements: the record can be written at the end
    torch.set_num_threads(args.threads)
    print(f"{', '.join(_cells(args))} segment, D={args.input_size}, B={args.batch_size}, "
          f"{args.dtype}, {args.device}, {args.threads} threads, median of {args.repeats}")
    print(f"pass over S on the CPU: {native.status()}")
    load_before = os.getloadavg()[0]
    rows = measure(args)
    lines = verdicts(rows)
    lines.append(f"machine load (1-minute load average) {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at "
                 f"the end, on {os.cpu_count()} logical cores: above the core count, other processes share them")
    for line in lines:
        print(line)
    if args.record:
        body = (f"{', '.join(_cells(args))}, D={args.input_size}, B={args.batch_size}, {args.dtype}, {args.device}, median of "
                f"{args.repeats} interleaved runs of forward + backward (input requires grad). Floor = (S read + "
                "written once + activations) / bandwidth + GEMM FLOPs / GEMM rate (docs/DESIGN.md §8), with the "
                f"bandwidth of a {args.copy_mb} MB copy and the rate of a (T·B × D) @ (D × K·N) matmul, each the "
                "fastest of its runs interleaved with the methods'. Peak MB = memory above the inputs, state and model during one forward + "
                "backward, measured in a fresh process (peak RSS on CPU). Pass over S on the CPU: "
                f"{native.status()} (rtrl.cells.native: T <= {native.MAX_T}).\n\n"
                + tables(rows, args.hidden_sizes, args.input_size) + "\n\n"
                + "".join(f"- {line}\n" for line in lines))
        # the eLSTM's table keeps its section; a run of other cells gets its own beside it
        name = "rtrl bench cells" if _cells(args) == ["elstm"] else "rtrl bench cells: " + ", ".join(_cells(args))
        record_section(Path(args.record), name, body, command_line())
        print(f"recorded in {args.record}")
    return rows
