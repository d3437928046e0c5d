"""`rtrl bench BENCHMARK`: flags from each benchmark's config dataclass; tables printed and optionally recorded."""
from __future__ import annotations

import argparse
import sys

import rtrl.bench as bench_package
from rtrl.bench import cells, layers, suite, suite_report, throughput
from rtrl.cli.flags import add_flags, config_from_flags, given, render_error
from rtrl.records.reports import command_line
from rtrl.runtime.config import TrainConfig
from rtrl.settings import SettingError


def register(subcommands) -> None:
    parser = subcommands.add_parser("bench", help="run a benchmark and print (and optionally record) its table",
                                    description=bench_package.__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    benchmarks.required = True

    p = benchmarks.add_parser("cells", help="the RTRL engine against this machine's floor and autograd BPTT (eLSTM; --cells rtu clru: the paired cells beside it)",
                              description=cells.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, cells.CellsBenchConfig)
    p.add_argument("--no-memory", dest="memory", action="store_false", default=argparse.SUPPRESS,
                   help="do not measure peak memory (the same as --memory false)")
    p.set_defaults(func=run_cells, _parser=p)

    p = benchmarks.add_parser("layers", help="exact multi-layer RTRL vs per-layer RTRL vs BPTT (stacked eLSTMs)",
                              description=layers.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, layers.LayersBenchConfig)
    p.set_defaults(func=run_layers, _parser=p)

    p = benchmarks.add_parser("throughput", help="steps/s of rtrl train for each core and backend",
                              description=throughput.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, throughput.ThroughputBenchConfig)
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="further flags for rtrl train (after --)")
    p.set_defaults(func=run_throughput, _parser=p)

    p = benchmarks.add_parser("suite", help="the memory suite: cores x tasks x seeds at a fixed budget, resumable; "
                              "writes docs/MEMORY_SUITE.md", description=suite.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, suite.SuiteConfig)
    p.add_argument("train_args", nargs=argparse.REMAINDER,
                   help="further rtrl train settings for every run, after -- (e.g. -- --hidden-size 64)")
    p.set_defaults(func=run_suite, _parser=p)


def _config(args, cls):
    try:
        return config_from_flags(args, cls)
    except SettingError as error:
        args._parser.error(render_error(error))


def run_cells(args: argparse.Namespace) -> int:
    cells.run(_config(args, cells.CellsBenchConfig))
    return 0


def run_layers(args: argparse.Namespace) -> int:
    layers.run(_config(args, layers.LayersBenchConfig))
    return 0


def run_throughput(args: argparse.Namespace) -> int:
    cfg = _config(args, throughput.ThroughputBenchConfig)
    extra = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    try:
        throughput.check_train_args(cfg, _train_overrides(args))   # every run's settings, before the first starts
    except SettingError as error:
        args._parser.error(render_error(error))
    try:
        throughput.run(cfg, extra)
    except throughput.ChildFailed as error:   # the child's own message is on stderr already
        print(f"rtrl bench throughput: {error}", file=sys.stderr)
        return error.code
    return 0


def _train_overrides(args) -> dict:
    """The rtrl train flags after ``--``, as settings (a bad one: the usage error of the suite's parser)."""
    extra = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    parser = argparse.ArgumentParser(prog="rtrl bench suite ... --", add_help=False)
    add_flags(parser, TrainConfig)
    namespace, unknown = parser.parse_known_args(extra)
    if unknown:
        args._parser.error(f"unknown rtrl train flags after --: {' '.join(unknown)}")
    return given(namespace, TrainConfig)


def run_suite(args: argparse.Namespace) -> int:
    cfg = _config(args, suite.SuiteConfig)
    overrides = _train_overrides(args)
    try:
        results = suite.run(cfg, overrides)
    except SettingError as error:
        args._parser.error(render_error(error))
    if cfg.doc and not results:   # a section written before from runs this machine does not have is kept
        print(f"no finished runs in {cfg.runs}" + (f" or {cfg.results}" if cfg.results else "")
              + f": {cfg.doc} left as it is")
    elif cfg.doc:
        suite_report.write_report(cfg, command_line(), DOC_HEADER, overrides)
        print(f"wrote {cfg.doc}")
    return 0


DOC_HEADER = """# The memory suite

Written by `rtrl bench suite` (rtrl/bench/suite.py); each tier's section below is replaced when the command
runs again, the rest of the file is kept.
"""
