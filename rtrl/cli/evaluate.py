"""`rtrl eval DIR`: one flag per ``EvalConfig`` setting (and ``--sample``, the same as ``--greedy false``)."""
from __future__ import annotations

import argparse

from rtrl.cli.flags import add_flags, config_from_flags
from rtrl.eval.evaluation import EvalConfig, evaluate
from rtrl.eval.protocols import summary_lines


def register(subcommands) -> None:
    parser = subcommands.add_parser(
        "eval", help="evaluate a trained run: episodes from a zero state -> eval.json",
        description="Play a trained run's agent from a zero state (the recurrent state carried through each "
                    "episode) and write DIR/eval.json: mean, std and per-episode returns, or the paper's protocol.")
    parser.add_argument("run_dir", help="run directory written by `rtrl train`")
    add_flags(parser, EvalConfig)
    parser.add_argument("--sample", dest="greedy", action="store_false", default=argparse.SUPPRESS,
                        help="sample actions from the policy instead of taking the most probable one")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = evaluate(args.run_dir, config_from_flags(args, EvalConfig))   # errors: rtrl.cli.main
    if summary.get("protocol", "none") != "none":
        print("\n".join(summary_lines(summary)))
    else:
        line = (f"{summary['episodes']} episodes ({'greedy' if summary['greedy'] else 'sampled'}): "
                f"mean return {summary['mean_return']:.3f} ± {summary['std_return']:.3f}")
        if "success_rate" in summary:
            line += f", success rate {summary['success_rate']:.3f}"
        print(line)
    if "video" in summary:
        print(f"wrote {summary['video']}")
    print(f"wrote {args.run_dir}/eval.json")
    return 0
