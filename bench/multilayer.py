"""What depth buys, measured (docs/MULTILAYER.md): two experiments with stacked eLSTM layers.

(a) delayed recall with a learned stem (D=30 > T=10): one eLSTM layer under a learned MLP stem (which gets
    gradients from inside a rollout only) against two eLSTM layers over the raw observation (the lower
    layer takes the stem's job) trained by exact RTRL and by per-layer RTRL; several seeds, greedy eval.
(b) the copy task scored on both bits: 1 vs 2 layers, exact vs per-layer RTRL vs LSTM-BPTT, at several L,
    the same wall-clock budget per model.

Runs one process at a time with one torch thread, the inline backend (no actor processes). Resumable: a
run whose result file exists is skipped, so a second call only adds what is missing and rewrites the
report from every finished run.

    python bench/multilayer.py --runs /work/runs-12/multilayer                 # both parts
    python bench/multilayer.py --part copy --copy-budget 60 --lengths 10       # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtrl.bench.child import check_child, script_main  # noqa: E402
from rtrl.records.metrics import read_metrics  # noqa: E402
from rtrl.records.plots import Panel, Series, plot_panels, smooth_series  # noqa: E402
from rtrl.records.reports import command_line, record_section  # noqa: E402

RECALL_ENV = "memory:delayed_recall?cues=2&delay=30"
# label -> extra flags of `rtrl train --preset memory`
RECALL_MODELS = {
    "1 layer, --stem mlp": ["--num-layers", "1", "--stem", "mlp"],
    "1 layer, --stem identity (reference)": ["--num-layers", "1", "--stem", "identity"],
    "2 layers exact, --stem identity": ["--num-layers", "2", "--multilayer", "exact", "--stem", "identity"],
    "2 layers per-layer, --stem identity": ["--num-layers", "2", "--multilayer", "per-layer", "--stem", "identity"],
    "2 layers exact, --stem mlp": ["--num-layers", "2", "--multilayer", "exact", "--stem", "mlp"],
}
# label -> (model, layers, multilayer)
COPY_MODELS = {
    "eLSTM-RTRL, 1 layer": ("elstm-rtrl", 1, "exact"),
    "eLSTM-RTRL, 2 layers exact": ("elstm-rtrl", 2, "exact"),
    "eLSTM-RTRL, 2 layers per-layer": ("elstm-rtrl", 2, "per-layer"),
    "LSTM-BPTT, 1 layer": ("lstm-bptt", 1, "exact"),
    "LSTM-BPTT, 2 layers": ("lstm-bptt", 2, "exact"),
}


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).replace("--", "-").strip("-")


def rtrl(*args: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    check_child([sys.executable, "-m", "rtrl", *args], cwd=ROOT, env=env)


def run_recall(args) -> dict:
    results = {}
    for label, flags in RECALL_MODELS.items():
        for seed in args.seeds:
            out = Path(args.runs) / "recall" / f"{slug(label)}-seed{seed}"
            if not (out / "eval.json").exists() and not args.report_only:
                start = time.monotonic()
                rtrl("train", "--preset", "memory", "--env", RECALL_ENV, *flags, "--seed", str(seed),
                     "--total-steps", str(args.recall_steps), "--num-actors", "0", "--learner-threads", "1",
                     "--out", str(out), "--force", "--no-progress", "--no-plot")
                (out / "minutes.txt").write_text(f"{(time.monotonic() - start) / 60:.2f}\n")
                rtrl("eval", str(out), "--episodes", str(args.episodes), "--seed", "123")
            if (out / "eval.json").exists():
                success = json.loads((out / "eval.json").read_text())["success_rate"]
                sampled = read_metrics(out)["success_rate"][-1]   # training episodes: sampled actions
                results[(label, seed)] = (success, float((out / "minutes.txt").read_text()), out, sampled)
                print(f"recall {label} seed {seed}: greedy success {success:.3f}", flush=True)
    return results


def recall_report(results: dict, args, doc: Path) -> None:
    figure = doc.with_name("multilayer_recall.png")
    panels = []
    for label in RECALL_MODELS:   # one panel per model, a line per seed
        series = []
        for seed in args.seeds:
            if (label, seed) in results:
                columns = read_metrics(results[(label, seed)][2])
                series.append(Series(f"seed {seed}", columns["step"], smooth_series(columns["success_rate"], 3)))
        if series:
            panels.append(Panel(series, xlabel="agent steps", ylabel="training success (moving avg. of 3)",
                                title=label, ylim=(0.4, 1.0), legend_loc="upper left"))
    if panels:
        plot_panels(panels, figure, panel_size=(4.2, 3.4))
    rows = []
    for label in RECALL_MODELS:
        rates = [results[(label, s)][0] if (label, s) in results else None for s in args.seeds]
        done = [r for r in rates if r is not None]
        minutes = [results[(label, s)][1] for s in args.seeds if (label, s) in results]
        cells = ["not run" if (label, s) not in results else
                 f"{results[(label, s)][0]:.3f} ({results[(label, s)][3]:.2f})" for s in args.seeds]
        rows.append(f"| {label} | " + " | ".join(cells)
                    + f" | {statistics.mean(done):.3f} | {statistics.mean(minutes):.1f} |" if done else
                    f"| {label} | " + " | ".join("not run" for _ in rates) + " | | |")
    body = f"""Task `{RECALL_ENV}` (cue shown once, D=30 blank steps, then the query; chance 0.5), unroll T=10 < D.
Settings: the `memory` preset (batch 32, N=32 per layer, forget bias 3, lr 2e-3 decayed linearly, RMSprop,
V-trace) with the inline backend and one torch thread; {args.recall_steps:,} agent steps per run (the budget
that fits this machine's shared single core; minutes per run in the table); success = greedy evaluation over {args.episodes}
episodes from a zero state (`rtrl eval RUN --episodes {args.episodes} --seed 123`); in brackets the training
success rate at the end (last 200 episodes, actions sampled from the policy). Run directories:
`{Path(args.runs) / 'recall'}`.

| model | """ + " | ".join(f"seed {s}" for s in args.seeds) + " | mean (greedy) | minutes per run |\n|---|" \
        + "---:|" * (len(args.seeds) + 2) + "\n" + "\n".join(rows) + """

![training success rate](multilayer_recall.png)

The curves are the training success rate (mean over the last 200 episodes, sampled actions)."""
    record_section(doc, "Experiment (a): delayed recall with a learned stem", body, command_line())


def run_copy(args) -> list[dict]:
    runs = []
    for length in args.lengths:
        for label, (model, layers, multilayer) in COPY_MODELS.items():
            out = Path(args.runs) / "copy" / f"L{length}-{slug(label)}"
            if not (out / "results.json").exists() and not args.report_only:
                flags = ["copy-task", "--model", model, "--length", str(length), "--num-layers", str(layers),
                         "--hidden-size", str(args.copy_hidden), "--batch-size", str(args.copy_batch),
                         "--time-budget", str(args.copy_budget), "--eval-every", str(args.copy_eval_every),
                         "--threads", "1", "--seed", "0", "--out", str(out), "--no-progress"]
                if model == "elstm-rtrl":
                    flags += ["--multilayer", multilayer]
                rtrl(*flags)
            if (out / "results.json").exists():
                result = json.loads((out / "results.json").read_text())
                curve = read_metrics(out)
                runs.append(dict(label=label, length=length, result=result, curve=curve))
                print(f"copy L={length} {label}: test seq acc {result['test']['seq_acc']:.3f}", flush=True)
    return runs


def copy_report(runs: list[dict], args, doc: Path) -> None:
    figure = doc.with_name("multilayer_copy.png")
    panels = []
    for length in args.lengths:
        series = [Series(r["label"], [t / 60 for t in r["curve"]["wall_time"]],
                         [100 * a for a in r["curve"]["valid_seq_acc"]], marker=".")
                  for r in runs if r["length"] == length]
        if series:
            panels.append(Panel(series, xlabel="wall time (min, 1 CPU thread)", ylabel="valid sequence acc. (%)",
                                title=f"copy task, L={length}", ylim=(0, 101), legend_loc="upper left"))
    if panels:
        plot_panels(panels, figure, panel_size=(5.5, 4))
    found = {(r["length"], r["label"]): r for r in runs}
    rows = []
    for length in args.lengths:
        for label in COPY_MODELS:
            r = found.get((length, label))
            if r is None:
                rows.append(f"| {length} | {label} | not run | | | | | |")
                continue
            res = r["result"]
            rows.append(f"| {length} | {label} | {100 * res['test']['seq_acc']:.1f} | {100 * res['test']['bit_acc']:.1f} "
                        f"| {100 * res['best_valid']['valid_seq_acc']:.1f} | {res['sequences']:,} | {res['steps']:,} "
                        f"| {res['train_time_s']:.0f} |")
    body = f"""Each model trains for the same wall-clock budget of {args.copy_budget:g} s (one torch thread; the budget
that fits this machine's shared single core) or until 100% validation sequence accuracy: hidden size
{args.copy_hidden} per layer, batch {args.copy_batch} (eLSTM-RTRL: {args.copy_batch} sequences side by side,
one Adam step after every token; LSTM-BPTT: one step per batch of whole sequences), the CLI's default
learning rates, seed 0, validation every {args.copy_eval_every} training sequences (inside the budget).
Scored on both bits of the output phase (docs/COPY_TASK.md); the test accuracy is of the best validation
checkpoint. Run directories: `{Path(args.runs) / 'copy'}`.

| L | model | test seq. acc. (%) | test bit acc. (%) | best valid seq. acc. (%) | training sequences | optimizer steps | seconds |
|---:|---|---:|---:|---:|---:|---:|---:|
""" + "\n".join(rows) + """

![validation sequence accuracy against wall time](multilayer_copy.png)"""
    record_section(doc, "Experiment (b): copy task, 1 vs 2 layers", body, command_line())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", nargs="+", choices=["recall", "copy"], default=["recall", "copy"])
    parser.add_argument("--runs", default=str(ROOT / "runs" / "multilayer"), help="where the run directories go")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "MULTILAYER.md"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--recall-steps", type=int, default=1_000_000, help="agent steps per recall run")
    parser.add_argument("--episodes", type=int, default=500, help="greedy evaluation episodes per recall run")
    parser.add_argument("--lengths", nargs="+", type=int, default=[10, 50], help="copy-task L")
    parser.add_argument("--copy-budget", type=float, default=150.0, help="seconds of training per copy model")
    parser.add_argument("--copy-hidden", type=int, default=64)
    parser.add_argument("--copy-batch", type=int, default=32)
    parser.add_argument("--copy-eval-every", type=int, default=2000)
    parser.add_argument("--report-only", action="store_true", help="no new runs: rewrite the report from those done")
    args = parser.parse_args()
    doc = Path(args.doc)
    if "recall" in args.part:
        recall_report(run_recall(args), args, doc)
    if "copy" in args.part:
        copy_report(run_copy(args), args, doc)
    print(f"wrote {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(script_main(main))
