"""A supervised probe behind docs/MEMORY_SUITE.md: how fast can a core learn to output the symbol it saw K
steps ago (POPGym's RepeatPrevious without the RL)? Full BPTT over the whole sequence, Adam, a target at
every step, so nothing but the core's own learnability is measured.

    python bench/delay_probe.py                      # every core below, K = 4
    python bench/delay_probe.py --delay 8 --iterations 3000 --cores elstm,lstm

Prints, per core, the training accuracy every 250 iterations and the first iteration at which a batch's
accuracy reached 0.99 (each iteration: 32 sequences of 40 random symbols out of 4).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn

from rtrl.cells import ELSTM, DiagonalLRU, IndRNN, project_parameters
from rtrl.records.reports import machine_description, utc_stamp


class WithReLU(nn.Module):
    """A linear recurrence (the real LRU) followed by a ReLU layer, as its docstring asks: with a linear
    head alone, the probe's classifier would see only a linear function of the inputs."""

    def __init__(self, cell: nn.Module, hidden: int):
        super().__init__()
        self.cell, self.layer = cell, nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())

    def forward(self, x, state):
        y, state = self.cell(x, state)
        return self.layer(y), state


CORES = {
    "elstm (memory-suite init)": lambda symbols, n: ELSTM(symbols, n, learning="bptt", init_std=0.5, chrono_max=300),
    "elstm (paper init)": lambda symbols, n: ELSTM(symbols, n, learning="bptt", init_std=0.1, forget_bias=0.0),
    "indrnn (relu)": lambda symbols, n: IndRNN(symbols, n, learning="bptt"),
    "indrnn (tanh)": lambda symbols, n: IndRNN(symbols, n, learning="bptt", activation="tanh"),
    "diagonal lru (real) + relu layer": lambda symbols, n: WithReLU(DiagonalLRU(symbols, n, learning="bptt"), n),
    "lstm (torch.nn.LSTM)": lambda symbols, n: nn.LSTM(symbols, n),
}


def probe(name: str, delay: int, iterations: int, symbols: int = 4, hidden: int = 128, length: int = 40,
          batch: int = 32, seed: int = 0) -> tuple[int | None, list[tuple[int, float]]]:
    """(first iteration with batch accuracy >= 0.99 or None, [(iteration, accuracy)] every 250)."""
    if not 0 < delay < length:
        raise ValueError(f"delay {delay} must be shorter than the sequence length {length} (and >= 1)")
    torch.manual_seed(seed)
    core, head = CORES[name](symbols, hidden), nn.Linear(hidden, symbols)
    optimizer = torch.optim.Adam([*core.parameters(), *head.parameters()], 3e-3)
    reached, trace = None, []
    for it in range(iterations + 1):
        sym = torch.randint(symbols, (length, batch))
        x = nn.functional.one_hot(sym, symbols).float()
        y = core(x)[0] if isinstance(core, nn.LSTM) else core(x, None)[0]
        logits = head(y)[delay:]                      # at step t, name the symbol of step t - delay
        target = sym[:-delay]
        loss = nn.functional.cross_entropy(logits.reshape(-1, symbols), target.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        project_parameters(core)   # the IndRNN's |u| <= 1 (since 2026-12-07; its table rows were made before)
        accuracy = (logits.argmax(-1) == target).float().mean().item()
        if reached is None and accuracy >= 0.99:
            reached = it
        if it % 250 == 0:
            trace.append((it, accuracy))
    return reached, trace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cores", default="", help="comma-separated words; runs the cores whose names start with one "
                        f"(default: all of {', '.join(CORES)})")
    args = parser.parse_args(argv)
    if args.delay < 1 or args.iterations < 1:
        parser.error(f"--delay and --iterations must be >= 1, got {args.delay} and {args.iterations}")
    words = [w.strip() for w in args.cores.split(",") if w.strip()]
    chosen = [name for name in CORES if not words or any(name.startswith(w) for w in words)]
    unmatched = [w for w in words if not any(name.startswith(w) for name in CORES)]
    if unmatched:
        parser.error(f"--cores {','.join(unmatched)} names no core; accepted: the start of one of {', '.join(CORES)}")
    torch.set_num_threads(1)
    print(f"# delay probe, K = {args.delay}; {utc_stamp()}; {machine_description()}")
    print(f"# command: python bench/delay_probe.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print("| core | first iteration at accuracy >= 0.99 | accuracy at 250 / 1000 / 2000 / last | seconds |")
    print("|---|---:|---|---:|")
    for name in chosen:
        start = time.monotonic()
        reached, trace = probe(name, args.delay, args.iterations, seed=args.seed)
        at = dict(trace)
        marks = [at.get(i) for i in (250, 1000, 2000)] + [trace[-1][1]]
        print(f"| {name} | {reached if reached is not None else f'not within {args.iterations}'} | "
              + " / ".join("–" if a is None else f"{a:.3f}" for a in marks)
              + f" | {time.monotonic() - start:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
