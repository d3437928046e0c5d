"""The cases of `rtrl bench cells`, and their peak memory measured in a fresh process.

``python -m rtrl.bench.cells_memory VARIANT T N D B DTYPE DEVICE THREADS [CELL]`` prints the peak extra memory
(MB) of one forward + backward of that case (of the eLSTM, or of CELL: ``BENCH_CELLS``); ``peak_memory_in_fresh_process`` runs it (a fresh process
has fresh peak counters).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from rtrl.cells import ELSTM, RTU, ComplexLRU

# variant: (learning, method); "in_place" runs ``forward_in_place``
VARIANTS = {"step": ("rtrl", "step"), "segment": ("rtrl", "segment"), "in_place": ("rtrl", "segment"),
            "bptt": ("bptt", "segment")}
# the cells the bench times: the eLSTM, and the paired (complex-diagonal) cells beside it
BENCH_CELLS = {"elstm": ELSTM, "rtu": RTU, "clru": ComplexLRU}


def make_case(variant: str, T: int, N: int, D: int, B: int, dtype: torch.dtype, device: str, seed: int = 0,
              cell: str = "elstm"):
    """A cell (``BENCH_CELLS``), its input (T,B,D) (requiring grad, as a stem's output would), a state and an
    upstream grad (T,B, the cell's output size: 2N for a paired cell)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; accepted: {', '.join(VARIANTS)}")
    if cell not in BENCH_CELLS:
        raise ValueError(f"unknown cell {cell!r}; accepted: {', '.join(BENCH_CELLS)}")
    learning, method = VARIANTS[variant]
    torch.manual_seed(seed)
    cell = BENCH_CELLS[cell](D, N, learning=learning, method=method).to(device=device, dtype=dtype)
    x = torch.randn(T, B, D, device=device, dtype=dtype, requires_grad=True)
    state = cell.initial_state(B)
    for s in state.sensitivity.values():  # a realistic, non-zero history
        s.normal_(0, 0.01)
    upstream = torch.randn(T, B, cell.output_size, device=device, dtype=dtype)
    return cell, x, state, upstream


def run_once(cell, x, state, upstream, in_place: bool = False):
    """Forward + backward of one case; with ``in_place`` through ``forward_in_place`` (S_T over S_0)."""
    cell.zero_grad(set_to_none=True)
    x.grad = None
    y, new_state = cell.forward_in_place(x, state) if in_place else cell(x, state)
    (y * upstream).sum().backward()
    return new_state


def _proc_status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_extra_memory(variant, T, N, D, B, dtype, device, cell: str = "elstm") -> float:
    """Peak memory (MB) above what the inputs, state and model already hold, during one fwd+bwd."""
    case = make_case(variant, T, N, D, B, dtype, device, cell=cell)
    in_place = variant == "in_place"
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run_once(*case, in_place=in_place)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    run_once(*make_case(variant, 1, 8, 8, 1, dtype, device, cell=cell), in_place=in_place)  # torch's first-call allocations
    before = _proc_status_bytes("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
    run_once(*case, in_place=in_place)
    return max(0, _proc_status_bytes("VmHWM") - before) / 2**20


def peak_memory_in_fresh_process(variant: str, T: int, N: int, D: int, B: int, dtype: str, device: str,
                                 threads: int, cell: str = "elstm") -> float:
    """``peak_extra_memory`` of one case, run by ``python -m rtrl.bench.cells_memory`` in a fresh process."""
    args = [variant, T, N, D, B, dtype, device, threads, cell]
    out = subprocess.run([sys.executable, "-m", "rtrl.bench.cells_memory"] + [str(a) for a in args],
                         check=True, text=True, stdout=subprocess.PIPE)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    if len(argv) not in (8, 9):
        print("usage: python -m rtrl.bench.cells_memory VARIANT T N D B DTYPE DEVICE THREADS [CELL]", file=sys.stderr)
        return 2
    variant, T, N, D, B, dtype, device, threads, cell = argv + ["elstm"] * (9 - len(argv))
    torch.set_num_threads(int(threads))
    print(f"{peak_extra_memory(variant, int(T), int(N), int(D), int(B), getattr(torch, dtype), device, cell):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
