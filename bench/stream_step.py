"""What one step of the streaming learner costs, by how it takes its gradients: docs/STREAMING.md.

The streaming learner's whole cost is its per-step work (``rtrl train --learner stream``). On the fused path (a
single-layer element-wise RTRL core behind a parameter-free stem: the ``stream`` preset) it takes the gradients of
V, log π and H either in closed form (``HeadGradients``, the default where it applies) or by one batched autograd
call down to c_t (``--output-norm`` runs, or ``closed_form`` switched off here); every other core takes them by
autograd through the engine, a call per stream and output. This times the three on the same task, model and
seed: in each repeat every mode runs ``--steps`` steps (after a warm-up) of ``StreamSource.next`` +
``StreamLearner.update``, in turn, with one torch thread; it prints the median steps/s over the repeats and each
mode's median ratio to the closed form within a repeat (timings on a shared machine are noisy: compare ratios).

    python bench/stream_step.py                                   # delay 30, the stream preset, 5 repeats
    python bench/stream_step.py --record                          # also write the table to docs/STREAMING.md
    python bench/stream_step.py --env "popgym:RepeatPreviousEasy" --hidden-size 64
    python bench/stream_step.py --cell rtu
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from rtrl.bench.child import script_main  # noqa: E402
from rtrl.envs import EnvSpec  # noqa: E402
from rtrl.records.reports import command_line, machine_description, utc_stamp, write_section  # noqa: E402
from rtrl.runtime.config import build_agent, resolve_config  # noqa: E402
from rtrl.runtime.learners.stream import StreamLearner, StreamSource  # noqa: E402

MODES = {"closed form": "the heads' gradients in closed form (the default on the fused path)",
         "batched autograd": "one batched autograd call down to c_t (the fused path without the closed form)",
         "autograd through the engine": "every gradient by autograd, a call per stream and output (other cores)"}


def make(cfg, spec, mode: str):
    torch.manual_seed(cfg.seed)
    agent = build_agent(cfg, spec)
    source, learner = StreamSource(cfg, spec, agent), StreamLearner(agent, cfg)
    if mode != "closed form":
        for gradients in {id(g): g for g in (learner.actor, learner.value_net)}.values():
            if mode == "batched autograd":
                gradients.closed_form = False
            else:
                gradients.all_autograd()
        source.fused = source.fused and mode == "batched autograd"
    return source, learner


def steps_per_second(cfg, spec, mode: str, steps: int, warmup: int) -> float:
    source, learner = make(cfg, spec, mode)
    try:
        for t in range(warmup):
            learner.update(source.next(), t)
        start = time.perf_counter()
        for t in range(warmup, warmup + steps):
            learner.update(source.next(), t)
        return steps / (time.perf_counter() - start)
    finally:
        source.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="memory:delayed_recall?cues=2&delay=30")
    parser.add_argument("--cell", default="elstm", help="the core's cell (rtrl train --cell)")
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per mode and repeat")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="write the table to docs/STREAMING.md")
    args = parser.parse_args()
    bad = [(name, v) for name, v in vars(args).items()
           if name in ("hidden_size", "num_envs", "steps", "repeats") and v < 1] + \
          ([("warmup", args.warmup)] if args.warmup < 0 else [])
    if bad:
        parser.error("bad " + ", ".join(f"--{n.replace('_', '-')}={v}" for n, v in bad) +
                     "; accepted: positive integers (--warmup: 0 or more)")
    torch.set_num_threads(1)
    cfg = resolve_config("stream", overrides=dict(env=args.env, cell=args.cell, hidden_size=args.hidden_size,
                                                  num_envs=args.num_envs))
    spec = EnvSpec.probe(cfg.env, cfg.env_options)
    rates = {mode: [] for mode in MODES}
    for repeat in range(args.repeats):
        for mode in MODES:
            rates[mode].append(steps_per_second(cfg, spec, mode, args.steps, args.warmup))
        print(f"repeat {repeat + 1}/{args.repeats}: " +
              ", ".join(f"{mode} {rates[mode][-1]:.0f}" for mode in MODES), file=sys.stderr)
    rows = ["| gradients | steps/s (median) | per repeat | time per step, × the closed form's (median) |",
            "|---|---:|---|---:|"]
    for mode in MODES:
        ratios = [c / r for c, r in zip(rates["closed form"], rates[mode])]
        rows.append(f"| {mode} | {statistics.median(rates[mode]):.0f} | "
                    f"{', '.join(f'{r:.0f}' for r in rates[mode])} | {statistics.median(ratios):.2f} |")
    table = "\n".join(rows)
    print(table)
    if args.record:
        section = (f"### What a step costs, by how the gradients are taken ({cfg.cell})\n\n- date: {utc_stamp()}\n"
                   f"- machine: {machine_description()}\n- command: `{command_line()}`\n\n"
                   f"{cfg.env}, the `stream` preset, cell {cfg.cell}, N = {cfg.hidden_size}, {cfg.num_envs} stream(s), "
                   f"{args.steps} timed steps per mode and repeat after {args.warmup}, {args.repeats} repeats, "
                   f"modes in turn within each repeat.\n\n{table}\n")
        name = "bench/stream_step.py" + ("" if args.cell == "elstm" else f" --cell {args.cell}")   # one per cell
        write_section(ROOT / "docs" / "STREAMING.md", name, section, "")
    return 0


if __name__ == "__main__":
    sys.exit(script_main(main))
