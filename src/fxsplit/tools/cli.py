"""The ``fxsplit`` command line."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from .targets import Check, format_checks, results_json


def _layer_list(text: str) -> list[int]:
    try:
        layers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers takes comma-separated integers, got {text!r}") from None
    if not layers or any(n < 1 for n in layers):
        raise argparse.ArgumentTypeError(f"--layers needs positive layer counts, got {text!r}")
    return layers


def _bench(args: argparse.Namespace) -> int:
    if args.warm:
        return _warm_bench(args)
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
    _print_results(results, bench.target_checks(results), bench.format_table(results), args.json)
    if args.plot:
        bench.plot(results, args.plot)
        if not args.json:
            print(f"\nplot written to {args.plot}")
    return 0


def _warm_bench(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from . import compile_bench

    layers = (args.layers or [28])[0]
    if not args.json:
        print(f"cold then warm start of fxsplit at {layers} layers ...", file=sys.stderr, flush=True)
    runs = compile_bench.warm_start(layers)
    if args.json:
        print(json.dumps({name: asdict(r) for name, r in runs.items()}, indent=2))
    else:
        print(compile_bench.format_warm(layers, runs))
    return 0


def _compile_bench(args: argparse.Namespace) -> int:
    from . import compile_bench

    if args.plot:
        raise SystemExit("fxsplit: --plot draws the split benchmark; it does not apply to --compile")
    results = compile_bench.run(args.layers or [2, 8, 28], progress=not args.json)
    _print_results(results, compile_bench.target_checks(results), compile_bench.format_table(results), args.json)
    return 0


def _print_results(results: Sequence[Any], checks: list[Check], table: str, as_json: bool) -> None:
    """A benchmark's results and its targets, as a table or as JSON."""
    if as_json:
        print(results_json(results, checks))
        return
    print(table)
    if checks:
        print("\n" + format_checks(checks))


def _load_factory(spec: str) -> Any:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise SystemExit(f"fxsplit: --model takes module:factory, got {spec!r}")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise SystemExit(f"fxsplit: cannot load --model {spec!r}: {error}") from None


def _inspect(args: argparse.Namespace) -> int:
    import torch

    from ..compile.backend import DEFAULT_SPLITTING_OPS
    from ..compile.dump import write_dump
    from ..split.splitters import split_graph
    from . import inspection, models
    from .capture import capture_graph

    if args.model:
        built = _load_factory(args.model)()
        if not (isinstance(built, tuple) and len(built) == 2):
            raise SystemExit("fxsplit: the --model factory must return (model, example_inputs)")
        model, inputs = built
        default_ops: list[Any] = list(DEFAULT_SPLITTING_OPS)
    else:
        model, inputs = models.build(args.layers)
        default_ops = [models.ATTENTION_OP_NAME]
    with torch.no_grad():
        gm, _ = capture_graph(model, inputs)
    split, items = split_graph(gm, args.splitting_ops or default_ops)
    rows = inspection.describe(items)
    if args.json:
        print(json.dumps({"pieces": inspection.rows_as_dicts(rows), "split_graph": split.code}, indent=2))
    else:
        print(inspection.format_table(rows))
        print("\nsplit graph:")
        print(split.code)
    if args.dump:
        where = write_dump(args.dump, gm, split, items, {"pieces": inspection.rows_as_dicts(rows)})
        print(f"wrote {len(items) + 2} code files and report.json to {where}", file=sys.stderr)
    return 0


def _cache(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..compile.cache import PieceCache, default_cache_dir

    root = Path(args.dir) if args.dir else default_cache_dir()
    if root is None:
        print("fxsplit cache is disabled (FXSPLIT_DISABLE_CACHE=1); pass --dir to name one")
        return 1
    cache = PieceCache(root)
    if args.action == "clear":
        print(f"removed {cache.clear()} entries from {root}")
    else:
        info = cache.info()
        print(f"{info.root}: {info.entries} entries, {info.bytes / 2**20:.1f} MiB")
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
    bench.add_argument(
        "--warm", action="store_true", help="fxsplit's cold start against a warm one from its cache (default 28 layers)"
    )
    bench.add_argument("--reps", type=int, default=7, help="timed repetitions per variant (default 7)")
    bench.add_argument("--json", action="store_true", help="print machine-readable results")
    bench.add_argument("--plot", metavar="FILE.png", help="draw split time against layers (needs matplotlib)")
    bench.set_defaults(run=_bench)

    inspect = commands.add_parser("inspect", help="show how a model splits: pieces, twins and the split graph")
    source = inspect.add_mutually_exclusive_group()
    source.add_argument("--layers", type=int, default=4, help="layers of the built-in synthetic model (default 4)")
    source.add_argument("--model", metavar="MODULE:FACTORY", help="a function returning (model, example_inputs)")
    inspect.add_argument(
        "--splitting-ops", nargs="+", metavar="OP", help="op names to split at (default: the model's attention)"
    )
    inspect.add_argument("--dump", metavar="DIR", help="write the graphs, each piece's code and report.json here")
    inspect.add_argument("--json", action="store_true", help="print machine-readable results")
    inspect.set_defaults(run=_inspect)

    cache = commands.add_parser("cache", help="show or empty the cache of compiled pieces")
    cache.add_argument("action", choices=["info", "clear"])
    cache.add_argument("--dir", help="the cache directory (default: $FXSPLIT_CACHE_DIR or ~/.cache/fxsplit)")
    cache.set_defaults(run=_cache)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if getattr(args, "reps", 1) < 1:
        raise SystemExit("fxsplit: --reps must be at least 1")
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
