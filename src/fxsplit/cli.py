"""The ``fxsplit`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def _layer_list(text: str) -> list[int]:
    try:
        layers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers takes comma-separated integers, got {text!r}") from None
    if not layers or any(n < 1 for n in layers):
        raise argparse.ArgumentTypeError(f"--layers needs positive layer counts, got {text!r}")
    return layers


def _bench(args: argparse.Namespace) -> int:
    if args.compile:
        return _compile_bench(args)
    from . import bench

    if args.plot:
        bench.require_matplotlib()
    results = []
    for layers in args.layers or [28]:
        if not args.json:
            print(f"capturing and splitting the synthetic model at {layers} layers ...", file=sys.stderr, flush=True)
        results.append(bench.bench_depth(layers, args.reps))
    checks = bench.target_checks(results)
    if args.json:
        print(bench.to_json(results, checks))
    else:
        print(bench.format_table(results))
        if checks:
            print("\ntargets:")
            for text, met in checks:
                print(f"  [{'met' if met else 'MISSED'}] {text}")
    if args.plot:
        bench.plot(results, args.plot)
        if not args.json:
            print(f"\nplot written to {args.plot}")
    return 0


def _compile_bench(args: argparse.Namespace) -> int:
    from . import compile_bench

    if args.plot:
        raise SystemExit("fxsplit: --plot draws the split benchmark; it does not apply to --compile")
    results = compile_bench.run(args.layers or [2, 8, 28], progress=not args.json)
    checks = compile_bench.target_checks(results)
    if args.json:
        print(compile_bench.to_json(results, checks))
        return 0
    print(compile_bench.format_table(results))
    if checks:
        print("\ntargets:")
        for text, met in checks:
            print(f"  [{'met' if met else 'MISSED'}] {text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fxsplit", description="Fast, lazy FX graph splitting for piecewise torch.compile."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="time fxsplit's splitter against torch's on the built-in synthetic model")
    bench.add_argument(
        "--layers",
        type=_layer_list,
        help="decoder layers, or a comma-separated sweep (default 28; 2,8,28 with --compile)",
    )
    bench.add_argument(
        "--compile",
        action="store_true",
        help="cold Inductor compile time, whole-graph against piecewise, each in a fresh process and cache",
    )
    bench.add_argument("--reps", type=int, default=7, help="timed repetitions per variant (default 7)")
    bench.add_argument("--json", action="store_true", help="print machine-readable results")
    bench.add_argument("--plot", metavar="FILE.png", help="draw split time against layers (needs matplotlib)")
    bench.set_defaults(run=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if getattr(args, "reps", 1) < 1:
        raise SystemExit("fxsplit: --reps must be at least 1")
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
