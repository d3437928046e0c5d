"""`rtrl bench cells`: per-step RTRL vs segment RTRL vs autograd BPTT of one eLSTM segment.

For each segment length T and hidden size N it times (median over repeats) forward + backward of
    (a) the per-step reference RTRL (``method="step"``),
    (b) the segment RTRL (forward with the carried S_T, backward with the exact full-history gradient),
    (c) autograd BPTT of the same eLSTM segment (``learning="bptt"``),
and measures the peak extra memory of (b) and (c), each in a fresh process.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from rtrl.bench import median_time, run_rtrl
from rtrl.cells import ELSTM
from rtrl.records.reports import command_line, record_section
from rtrl.settings import POSITIVE_INT, setting

S = setting


@dataclass
class CellsBenchConfig:
    lengths: list[int] = S([1, 10, 50, 100], "segment lengths T")
    hidden_sizes: list[int] = S([128, 512], "hidden sizes N")
    input_size: int = S(257, "input size D", check=POSITIVE_INT)
    batch_size: int = S(32, "batch size B", check=POSITIVE_INT)
    dtype: str = S("float32", "floating type", choices=("float32", "float64"))
    device: str = S("cpu", "torch device (cpu, cuda, cuda:1, ...)")
    threads: int = S(2, "torch intra-op threads", check=POSITIVE_INT)
    repeats: int = S(5, "timed runs per cell (the median is reported)", check=POSITIVE_INT)
    memory: bool = S(True, "measure the peak memory of (b) and (c), each in a fresh process")
    record: str | None = S(None, "also write the table, date, machine and command into this markdown file",
                           flag={"metavar": "FILE"})

VARIANTS = {"step": ("rtrl", "step"), "segment": ("rtrl", "segment"), "bptt": ("bptt", "segment")}


def make_case(variant: str, T: int, N: int, D: int, B: int, dtype: torch.dtype, device: str, seed: int = 0):
    """A cell, its input (T,B,D) (requiring grad, as a stem's output would), a state and an upstream grad."""
    learning, method = VARIANTS[variant]
    torch.manual_seed(seed)
    cell = ELSTM(D, N, learning=learning, method=method).to(device=device, dtype=dtype)
    x = torch.randn(T, B, D, device=device, dtype=dtype, requires_grad=True)
    state = cell.initial_state(B)
    for s in state.sensitivity.values():  # a realistic, non-zero history
        s.normal_(0, 0.01)
    upstream = torch.randn(T, B, N, device=device, dtype=dtype)
    return cell, x, state, upstream


def run_once(cell, x, state, upstream):
    cell.zero_grad(set_to_none=True)
    x.grad = None
    y, new_state = cell(x, state)
    (y * upstream).sum().backward()
    return new_state


def _proc_status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_extra_memory(variant, T, N, D, B, dtype, device) -> float:
    """Peak memory (MB) above what the inputs, state and model already hold, during one fwd+bwd."""
    case = make_case(variant, T, N, D, B, dtype, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run_once(*case)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    run_once(*make_case(variant, 1, 8, 8, 1, dtype, device))  # first-call allocations of torch itself
    before = _proc_status_bytes("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
    run_once(*case)
    return max(0, _proc_status_bytes("VmHWM") - before) / 2**20


def measure(args) -> list[dict]:
    dtype = getattr(torch, args.dtype)
    rows = []
    for N in args.hidden_sizes:
        for T in args.lengths:
            row = {"T": T, "N": N}
            for variant in VARIANTS:
                cell, x, state, upstream = make_case(variant, T, N, args.input_size, args.batch_size,
                                                     dtype, args.device)

                def step():
                    run_once(cell, x, state, upstream)
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()

                row[f"{variant}_ms"] = 1e3 * median_time(step, args.repeats)
            if args.memory:
                for variant in ("segment", "bptt"):
                    out = run_rtrl([
                        "bench", "cells", "--peak-memory-of", variant, str(T), str(N),
                        "--input-size", str(args.input_size), "--batch-size", str(args.batch_size),
                        "--dtype", args.dtype, "--device", args.device, "--threads", str(args.threads)])
                    row[f"{variant}_MB"] = float(out.strip().splitlines()[-1])
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


HEADER = ("|   T |   N | (a) per-step RTRL ms | (b) segment RTRL ms | (c) BPTT ms | a/b speed-up | b/c ratio "
          "| (b) peak MB | (c) peak MB |\n"
          "|----:|----:|---------------------:|--------------------:|------------:|-------------:|----------:"
          "|------------:|------------:|")


def format_row(row: dict) -> str:
    mem = (f"{row['segment_MB']:11.1f} | {row['bptt_MB']:11.1f}" if "segment_MB" in row else
           f"{'-':>11} | {'-':>11}")
    return (f"| {row['T']:3d} | {row['N']:3d} | {row['step_ms']:20.1f} | {row['segment_ms']:19.1f} | "
            f"{row['bptt_ms']:11.1f} | {row['step_ms'] / row['segment_ms']:11.1f}x | "
            f"{row['segment_ms'] / row['bptt_ms']:9.2f} | {mem} |")


def run(args: CellsBenchConfig) -> list[dict]:
    """Print the table (and record it with ``args.record``); return its rows."""
    torch.set_num_threads(args.threads)
    print(f"eLSTM segment, D={args.input_size}, B={args.batch_size}, {args.dtype}, {args.device}, "
          f"{args.threads} threads, median of {args.repeats}")
    print(HEADER)
    rows = measure(args)
    if args.record:
        body = (f"eLSTM, D={args.input_size}, B={args.batch_size}, {args.dtype}, {args.device}, "
                f"median of {args.repeats} runs of forward + backward (input requires grad). "
                "Peak MB = memory above the inputs, state and model during one forward + backward, "
                "measured in a fresh process (peak RSS on CPU).\n\n"
                + HEADER + "\n" + "\n".join(format_row(r) for r in rows) + "\n")
        record_section(Path(args.record), "rtrl bench cells", body, command_line())
        print(f"recorded in {args.record}")
    return rows
