"""`rtrl bench layers`: what exact multi-layer RTRL costs, against per-layer RTRL and BPTT.

For L stacked eLSTM layers of N units (input D = N), batch B, one call over a segment of T steps from a
state with sensitivities, it times forward + backward + the carried state (median over repeats), and
counts the bytes of the state's tensors. Beside each measured number it prints the count the formulas
of docs/DESIGN.md §4 / ``rtrl.cells.multilayer`` predict (multiply-adds per step, floats per sequence), and
the growth exponent in N, measured against predicted. Write S_d = 2N² + 4N (one layer's own
sensitivities) and P = 4N² + 5N (|θ_k|: W_x, r, b and the output gate, which a stack makes recurrent):

    floats per sequence   exact  L·S_d + L(L−1)/2 · N·P + L·N      per-layer  L·S_d + L·N      BPTT  L·N
    MACs per step (lead)  exact  L=2: ~3·N·P (O(N³));  L=3: adds 2·N²·P (O(N⁴))
                          per-layer ~9·L·N²              BPTT ~12·L·N²

A configuration whose predicted time or memory is over the budget is measured on fewer steps and/or a
smaller batch (per-step cost is linear in B and constant in t) and scaled to B, or skipped with its
predicted cost; the table says which.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from rtrl.bench import median_time
from rtrl.cells import StackedRNN
from rtrl.records.reports import check_report_path, command_line, record_section
from rtrl.settings import POSITIVE, POSITIVE_INT, Check, setting
from rtrl.tree import tensors_of

S = setting
# the stack settings of each mode the table compares
MODES = {"exact": dict(learning="rtrl", multilayer="exact"), "per-layer": dict(learning="rtrl", multilayer="per-layer"),
         "bptt": dict(learning="bptt")}


SIZES = Check("one or more positive integers up to 65536",
              lambda v: len(v) > 0 and all(isinstance(n, int) and 1 <= n <= 65536 for n in v))
GIB = Check("a positive number of GiB below 2**20", lambda v: POSITIVE(v) and v < 2 ** 20)


@dataclass
class LayersBenchConfig:
    layers: list[int] = S([1, 2, 3], "numbers of layers L", check=SIZES)
    hidden_sizes: list[int] = S([32, 64, 128, 256], "hidden sizes N (input D = N)", check=SIZES)
    batch_size: int = S(16, "batch size B", check=POSITIVE_INT)
    length: int = S(50, "segment length T", check=POSITIVE_INT)
    repeats: int = S(3, "timed runs per configuration (the median is reported)", check=POSITIVE_INT)
    threads: int = S(1, "torch intra-op threads", check=POSITIVE_INT)
    time_budget: float = S(20.0, "seconds one timed run may take (predicted); beyond, fewer steps", check=POSITIVE)
    memory_budget: float = S(4.0, "GiB the measurement's sensitivities may take (S_0, S_T and a temporary); "
                             "beyond, a smaller batch, scaled back to B", check=GIB)
    paper_batch: int = S(32, "batch for the largest-N question (the paper's batch, docs/DESIGN.md §5)",
                         check=POSITIVE_INT)
    paper_memory: float = S(24.0, "GiB for the largest-N question", check=GIB)
    record: str | None = S(None, "also write the tables, date, machine and command into this markdown file",
                           flag={"metavar": "FILE"})


# --- the formulas (independent of the code's shapes) -------------------------------------------
def own_floats(N: int) -> int:
    return 2 * N * N + 4 * N


def theta_floats(N: int) -> int:
    return 4 * N * N + 5 * N


def predicted_floats(mode: str, L: int, N: int) -> int:
    """Floats one sequence's state holds (c and sensitivities)."""
    if mode == "bptt":
        return L * N
    cross = L * (L - 1) // 2 * N * theta_floats(N) if mode == "exact" else 0
    return L * own_floats(N) + cross + L * N


def predicted_macs(mode: str, L: int, N: int, T: int) -> float:
    """Multiply-adds per step and sequence, following ``rtrl.cells.multilayer.exact_sweep`` and the engines."""
    layer = 5 * N * N                       # input projection, output gate, J_t (D = N)
    if mode == "bptt":
        return 3 * L * (4 * N * N)          # forward and two backward GEMM-sized passes
    if mode == "per-layer":
        return L * (layer + 4 * N * N + 2 * own_floats(N) / T)
    P = theta_floats(N)
    macs = L * (layer + 2 * own_floats(N))
    for l in range(1, L):
        for k in range(l):
            macs += N * P                                                  # carry ā ⊙ S^{l,k}
            macs += N * P + N ** 3 if k == l - 1 else N * N * P            # J X: outer product or GEMM
            if l < L - 1:
                macs += N * N * P + (N ** 3 + N * P if k == l - 1 else N * N * P)   # X^{l+1,k}
    cross = L * (L - 1) // 2 * N * P
    return macs + 2 * (cross + L * own_floats(N)) / T      # per call: copy of S_0, history gradient


# --- measurement --------------------------------------------------------------------------------
def make_case(mode: str, L: int, N: int, T: int, B: int):
    torch.manual_seed(0)
    stack = StackedRNN(N, N, L, cell="elstm", memory_limit=2 ** 62, **MODES[mode])
    x = torch.randn(T, B, N, requires_grad=True)
    state = stack.initial_state(B)
    for s in tensors_of(state):
        s.normal_(0, 0.01)
    upstream = torch.randn(T, B, N)
    return stack, x, state, upstream


def run_once(stack, x, state, upstream) -> None:
    stack.zero_grad(set_to_none=True)
    x.grad = None
    y, _ = stack(x, state)
    (y * upstream).sum().backward()


def state_floats(mode: str, L: int, N: int) -> int:
    """Floats one sequence's state holds, counted from the tensors ``initial_state`` allocates."""
    stack = StackedRNN(N, N, L, memory_limit=2 ** 62, **MODES[mode])
    return sum(t.numel() for t in tensors_of(stack.initial_state(1)))


def measure_one(cfg: LayersBenchConfig, mode: str, L: int, N: int, rate: float) -> dict:
    B, T = cfg.batch_size, cfg.length
    macs = predicted_macs(mode, L, N, T)
    floats = predicted_floats(mode, L, N)
    row = dict(mode=mode, L=L, N=N, predicted_macs=macs, predicted_bytes=4 * floats * B,
               measured_bytes=4 * state_floats(mode, L, N) * B, steps=T, batch=B, full_T=T, full_B=B)
    per_step_s = macs * B / rate
    steps = min(T, int(cfg.time_budget / max(per_step_s, 1e-12)))
    batch = B
    while batch > 1 and 3 * 4 * floats * batch > cfg.memory_budget * 2 ** 30:
        batch //= 2
    if batch < B:   # a smaller batch: time per step shrinks with it, so more steps fit
        steps = min(T, int(cfg.time_budget / max(per_step_s * batch / B, 1e-12)))
    if steps < 2 or 3 * 4 * floats * batch > cfg.memory_budget * 2 ** 30:
        row["skipped"] = (f"skipped: predicted {per_step_s:.3g} s per step at B={B} "
                          f"({macs * B / 1e9:.3g} GMAC), state {4 * floats * B / 2 ** 30:.3g} GiB")
        return row
    case = make_case(mode, L, N, steps, batch)
    seconds = median_time(lambda: run_once(*case), cfg.repeats, warmup=1 if steps * per_step_s < 5 else 0)
    row.update(ms_per_step=1e3 * seconds / steps * B / batch, steps=steps, batch=batch)
    row["gmac_per_s"] = macs * B / (row["ms_per_step"] / 1e3) / 1e9
    return row


def growth_exponents(rows: list[dict]) -> list[str]:
    """Measured vs predicted growth of the time per step between successive N, per (L, mode)."""
    lines = ["| L | mode | N → N' | measured exponent | predicted exponent | matches (±0.5) |",
             "|--:|---|---|--:|--:|---|"]
    for L in sorted({r["L"] for r in rows}):
        for mode in MODES:
            timed = [r for r in rows if r["L"] == L and r["mode"] == mode and "ms_per_step" in r]
            for a, b in zip(timed, timed[1:]):
                scale = math.log(b["N"] / a["N"])
                measured = math.log(b["ms_per_step"] / a["ms_per_step"]) / scale
                predicted = math.log(b["predicted_macs"] / a["predicted_macs"]) / scale
                ok = "yes" if abs(measured - predicted) <= 0.5 else "**no**"
                lines.append(f"| {L} | {mode} | {a['N']} → {b['N']} | {measured:.2f} | {predicted:.2f} | {ok} |")
    return lines


def largest_n(mode: str, L: int, batch: int, gib: float, copies: int) -> int:
    """Largest N whose state for ``batch`` sequences, ``copies`` times, fits in ``gib`` (the formula)."""
    N = 1
    while copies * 4 * predicted_floats(mode, L, N + 1) * batch <= gib * 2 ** 30:
        N += 1
    return N


def format_row(r: dict) -> str:
    mib = f"{r['measured_bytes'] / 2 ** 20:,.1f} | {r['predicted_bytes'] / 2 ** 20:,.1f}"
    head = f"| {r['L']} | {r['N']} | {r['mode']} |"
    if "skipped" in r:
        return f"{head} – | {r['predicted_macs'] / 1e6:.3g} | – | {mib} | {r['skipped']} |"
    note = "" if (r["steps"], r["batch"]) == (r["full_T"], r["full_B"]) else (
        f"measured on T={r['steps']}, B={r['batch']}" + (f", scaled to B={r['full_B']}" if r["batch"] < r["full_B"]
                                                         else ""))
    return (f"{head} {r['ms_per_step']:,.2f} | {r['predicted_macs'] / 1e6:.3g} | {r['gmac_per_s']:.2f} | {mib} "
            f"| {note} |")


HEADER = ("| L | N | mode | ms per step (measured) | MMAC per step and sequence (formula) | GMAC/s achieved "
          "| state MiB (counted) | state MiB (formula) | note |\n|--:|--:|---|--:|--:|--:|--:|--:|---|")


def run(cfg: LayersBenchConfig) -> list[dict]:
    """Print the tables (and record them with ``cfg.record``); return the rows."""
    check_report_path(cfg.record)   # before the measurements: the record can be written at the end
    torch.set_num_threads(cfg.threads)
    print(f"L stacked eLSTM layers, D=N, B={cfg.batch_size}, T={cfg.length}, float32, {cfg.threads} threads, "
          f"median of {cfg.repeats}")
    print(HEADER)
    rows, rate = [], {mode: 1e9 for mode in MODES}
    for L in cfg.layers:
        for N in cfg.hidden_sizes:
            for mode in MODES:
                if L == 1 and mode == "per-layer":
                    continue   # one layer: per-layer is exact
                row = measure_one(cfg, mode, L, N, rate[mode])
                if "gmac_per_s" in row:
                    rate[mode] = max(rate[mode], row["gmac_per_s"] * 1e9)
                rows.append(row)
                print(format_row(row), flush=True)
    growth = growth_exponents(rows)
    print("\n".join(growth))
    fit1 = largest_n("exact", 2, cfg.paper_batch, cfg.paper_memory, 1)
    fit2 = largest_n("exact", 2, cfg.paper_batch, cfg.paper_memory, 2)
    check = StackedRNN(fit1, fit1, 2, memory_limit=2 ** 62).sensitivity_bytes(cfg.paper_batch)
    largest = (f"Exact L=2 at the paper's batch {cfg.paper_batch} (float32) in {cfg.paper_memory:g} GiB: one state "
               f"of {cfg.paper_batch} sequences fits up to N = {fit1} ({check / 2 ** 30:.2f} GiB of sensitivities, "
               f"counted by StackedRNN.sensitivity_bytes); a learner call holds S_0 and S_T (2 copies): N = {fit2}. "
               f"An R2AC run holds more copies (actors, rollout buffers, learner batch: "
               "each backend's state_copies), so its N is smaller still; the paper's N = 256 (Atari, ProcGen) "
               f"needs {StackedRNN(256, 256, 2, memory_limit=2 ** 62).sensitivity_bytes(cfg.paper_batch) / 2 ** 30:.1f} "
               "GiB per state of 32 sequences.")
    print(largest)
    if cfg.record:
        body = (f"L stacked eLSTM layers, input D = N, B = {cfg.batch_size}, one call over T = {cfg.length} steps from a "
                f"state with (random) sensitivities: forward + backward + the carried state, float32, "
                f"{cfg.threads} torch thread(s), median of {cfg.repeats}. \"ms per step\" is the call's time / T at "
                f"B = {cfg.batch_size}; \"state MiB\" is the state of {cfg.batch_size} sequences (c and sensitivities), "
                "counted from the tensors `initial_state` allocates, beside the closed-form formula "
                "(module docstring of `rtrl/bench/layers.py`).\n\n" + HEADER + "\n"
                + "\n".join(format_row(r) for r in rows) + "\n\nGrowth of the time per step with N:\n\n"
                + "\n".join(growth) + "\n\n" + largest + "\n")
        record_section(Path(cfg.record), "rtrl bench layers", body, command_line())
        print(f"recorded in {cfg.record}")
    return rows
