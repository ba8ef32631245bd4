"""The ``fxsplit`` command line.

Nothing here imports torch until a command runs, so ``--help`` and ``--version``
answer at once. An expected error (a bad argument, a directory that is not a cache)
prints one ``fxsplit: ...`` line naming the problem and the fix, and exits non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from .. import __version__
from .targets import Check, format_checks, format_machine, machine, results_json


class UsageError(Exception):
    """An error in what the user asked for: printed as one line, exit status 2."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _int_list(option: str, minimum: int, what: str) -> Callable[[str], list[int]]:
    """A parser of ``option``'s comma-separated integers, each at least ``minimum``."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} takes comma-separated integers, got {text!r}") from None
        if not values or any(n < minimum for n in values):
            raise argparse.ArgumentTypeError(f"{option} needs {what}, got {text!r}")
        return values

    return parse


_layer_list = _int_list("--layers", 1, "positive layer counts")
_size_list = _int_list("--sizes", 2, "sizes of at least 2 (Dynamo specialises 0 and 1)")


def _bench(args: argparse.Namespace) -> int:
    if args.sizes and not args.compile:
        raise UsageError("--sizes goes with --compile: fxsplit bench --compile --sizes 4,8,16,32")
    if args.vllm_python and not args.vllm:
        raise UsageError("--vllm-python goes with --vllm: fxsplit bench --vllm --vllm-python VENV/bin/python")
    if args.vllm:
        return _vllm_bench(args)
    if args.warm:
        return _warm_bench(args)
    if args.steady:
        return _steady_bench(args)
    if args.generate:
        return _generate_bench(args)
    if args.anchors:
        return _anchors_bench(args)
    if args.compile:
        return _compile_bench(args)
    from . import bench

    if args.plot:
        bench.require_matplotlib()
    _pin_threads(args)
    results = []
    for layers in args.layers or [28]:
        if not args.json:
            print(f"capturing and splitting the synthetic model at {layers} layers ...", file=sys.stderr, flush=True)
        results.append(bench.bench_depth(layers, args.reps))
    _print_results(results, bench.target_checks(results), bench.format_table(results), args)
    if args.plot:
        bench.plot(results, args.plot)
        if not args.json:
            print(f"\nplot written to {args.plot}")
    return 0


def _pin_threads(args: argparse.Namespace) -> None:
    """Run torch with the asked-for threads (the benchmarks' own processes inherit it)."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)


def _warm_bench(args: argparse.Namespace) -> int:
    from . import warm_bench

    layers = (args.layers or [28])[0]
    _pin_threads(args)
    results = warm_bench.warm_start(layers)
    _print_results(results, warm_bench.target_checks(results, layers), warm_bench.format_table(results, layers), args)
    return 0


def _vllm_bench(args: argparse.Namespace) -> int:
    from . import vllm_bench

    python = vllm_bench.find_python(args.vllm_python)
    if python is None:
        print(f"fxsplit: {vllm_bench.INSTALL}", file=sys.stderr)
        return 0
    _pin_threads(args)
    results = vllm_bench.run(python, progress=not args.json)
    _print_results(results, vllm_bench.target_checks(results), vllm_bench.format_table(results), args)
    return 0


def _steady_bench(args: argparse.Namespace) -> int:
    from . import steady_bench

    _pin_threads(args)
    result = steady_bench.measure((args.layers or [28])[0], args.threads, progress=not args.json)
    _print_results([result], steady_bench.target_checks(result), steady_bench.format_table(result), args)
    return 0


def _generate_bench(args: argparse.Namespace) -> int:
    from . import generate_bench

    if args.threads != 1:
        raise UsageError("--generate runs with one thread, as its targets are set; leave out --threads")
    results = generate_bench.run(args.layers or generate_bench.LAYERS, progress=not args.json)
    _print_results(results, generate_bench.target_checks(results), generate_bench.format_table(results), args)
    return 0


def _anchors_bench(args: argparse.Namespace) -> int:
    from . import anchors_bench

    if args.threads != 1:
        raise UsageError("--anchors runs with one thread, as its targets are set; leave out --threads")
    if importlib.util.find_spec("transformers") is None:
        print("fxsplit: --anchors compiles a HuggingFace Llama; pip install transformers", file=sys.stderr)
        return 0
    results = anchors_bench.run(args.layers or anchors_bench.LAYERS, progress=not args.json)
    _print_results(results, anchors_bench.target_checks(results), anchors_bench.format_table(results), args)
    return 0


def _compile_bench(args: argparse.Namespace) -> int:
    from . import compile_bench

    if args.plot:
        raise UsageError("--plot draws the split benchmark; it does not apply to --compile")
    _pin_threads(args)
    if args.sizes:
        from . import sizes_bench

        if len(args.layers or []) > 1:
            raise UsageError("--sizes measures one depth: give --layers a single count")
        with_sizes = sizes_bench.run((args.layers or [28])[0], args.sizes, progress=not args.json)
        _print_results(with_sizes, sizes_bench.target_checks(with_sizes), sizes_bench.format_table(with_sizes), args)
        return 0
    results = compile_bench.run(args.layers or [2, 8, 28], progress=not args.json)
    _print_results(results, compile_bench.target_checks(results), compile_bench.format_table(results), args)
    return 0


def _print_results(results: Sequence[Any], checks: list[Check], table: str, args: argparse.Namespace) -> None:
    """A benchmark's results and its targets, as a table or as JSON, with the machine
    they were measured on."""
    if args.json:
        print(results_json(results, checks, machine(args.threads)))
        return
    print(table)
    if checks:
        print("\n" + format_checks(checks))
    print(format_machine(machine(args.threads)))


def _load_factory(spec: str) -> Any:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"--model takes module:factory, got {spec!r}")
    # as `python -m` does: a module beside the caller comes first
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise UsageError(f"cannot load --model {spec!r}: {error}") from None
    if not callable(factory):
        raise UsageError(
            f"--model {spec!r} names a {type(factory).__name__}, not a function; give a function that returns "
            f"(model, example_inputs)"
        )
    return factory


def _splitting_ops(names: list[str]) -> list[Any]:
    """``--splitting-ops`` as the Python API takes them: op names (``ns::op``) stay
    names; a dotted Python name (``torch.nn.functional.scaled_dot_product_attention``)
    is looked up; an unknown op fails here, before the model is built."""
    from ..split.ops import matcher

    ops: list[Any] = []
    for name in names:
        if "::" in name:
            ops.append(name)
            continue
        module_name, _, attribute = name.rpartition(".")
        try:
            ops.append(getattr(importlib.import_module(module_name), attribute))
        except (ImportError, AttributeError, ValueError):
            raise UsageError(
                f"--splitting-ops: {name!r} is neither an op name ('namespace::op[.overload]') nor a Python "
                f"function fxsplit can import (such as torch.nn.functional.scaled_dot_product_attention)"
            ) from None
    try:
        matcher(ops)
    except (ValueError, TypeError) as error:
        raise UsageError(f"--splitting-ops: {error}") from None
    return ops


def _inspect(args: argparse.Namespace) -> int:
    if args.dump and os.path.exists(args.dump) and not os.path.isdir(args.dump):
        raise UsageError(f"--dump {args.dump!r} is a file; name a directory (it is created if it does not exist)")
    import torch

    from ..compilation.backend import DEFAULT_SPLITTING_OPS
    from ..compilation.dump import write_dump
    from ..runtime.dynamic import dispatch_symbol
    from ..split.splitters import split_graph
    from . import inspection, models
    from .capture import capture_graph

    splitting_ops = _splitting_ops(args.splitting_ops) if args.splitting_ops else None
    if args.model:
        built = _load_factory(args.model)()
        if not (isinstance(built, tuple) and len(built) == 2):
            raise UsageError("the --model factory must return (model, example_inputs)")
        model, inputs = built
        default_ops: list[Any] = list(DEFAULT_SPLITTING_OPS)
    else:
        model, inputs = models.build(args.layers)
        default_ops = [models.ATTENTION_OP_NAME]
    with torch.no_grad():
        gm, _ = capture_graph(model, inputs)
    split, items = split_graph(gm, splitting_ops or default_ops)
    rows = inspection.describe(items, dispatch_symbol(gm))
    code = split.code.strip("\n")
    if args.json:
        print(json.dumps({"pieces": inspection.rows_as_dicts(rows), "split_graph": code}, indent=2))
    else:
        print(inspection.format_table(rows))
        if args.graph:
            print("\nsplit graph:")
            print(code)
        else:
            print("(--graph prints the split graph; --dump DIR writes it and each piece's code)")
    if args.dump:
        where = write_dump(args.dump, gm, split, items, {"pieces": inspection.rows_as_dicts(rows)})
        print(f"wrote {len(items) + 2} code files and report.json to {where}", file=sys.stderr)
    return 0


def _cache(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..compilation.cache import NotACacheDirError, PieceCache, UnsafeCacheDirError, default_cache_dir

    root = Path(args.dir).expanduser() if args.dir else default_cache_dir()
    if root is None:
        raise UsageError("the cache is disabled (FXSPLIT_DISABLE_CACHE=1); pass --dir to name one")
    try:
        # listing loads nothing, so a cache that fxsplit would not load from can still be shown
        cache = PieceCache(root, create=False, loads=args.action != "info")
    except FileNotFoundError:
        print(f"{root}: no fxsplit cache there")
        return 0
    except (NotACacheDirError, UnsafeCacheDirError) as error:
        print(f"fxsplit: {error}", file=sys.stderr)
        return 1
    if args.action == "clear":
        print(f"removed {cache.clear()} entries from {root}")
        return 0
    info = cache.info()
    print(f"{info.root}: {info.entries} entries, {info.bytes / 2**20:.1f} MiB")
    unsafe = cache.unsafe_reason()
    if unsafe is not None:
        print(f"fxsplit: note: {unsafe}, so fxsplit does not load compiled pieces from it", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fxsplit", description="Fast, lazy FX graph splitting for piecewise torch.compile."
    )
    parser.add_argument("--version", action="version", version=f"fxsplit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_bench(commands)
    _add_inspect(commands)
    _add_cache(commands)
    return parser


def _add_bench(commands: Any) -> None:
    bench = commands.add_parser("bench", help="time fxsplit's splitter against torch's on the built-in synthetic model")
    bench.add_argument(
        "--layers",
        type=_layer_list,
        help="decoder layers, or a comma-separated sweep (default 28; 2,8,28 with --compile)",
    )
    # one measurement a run: each mode times a different thing, in processes of its own
    modes = bench.add_mutually_exclusive_group()
    modes.add_argument(
        "--compile",
        action="store_true",
        help="cold Inductor compile time, whole-graph against piecewise, each in a fresh process and cache",
    )
    bench.add_argument(
        "--sizes",
        type=_size_list,
        metavar="4,8,16,32",
        help="with --compile: cold start with these compile_sizes, in-process against worker processes (28 layers)",
    )
    modes.add_argument(
        "--warm",
        action="store_true",
        help="fxsplit.compile's cold start against warm ones from its saved model (default 28 layers)",
    )
    modes.add_argument(
        "--steady",
        action="store_true",
        help="steady-state forward at 2-512 tokens: fxsplit against eager and whole-graph inductor (default 28 layers)",
    )
    modes.add_argument(
        "--generate",
        action="store_true",
        help="HuggingFace generate(): time to the first token and per decoded token, eager, whole-graph inductor "
        "and fxsplit, dynamic and static KV caches (default 4 and 28 layers)",
    )
    modes.add_argument(
        "--vllm",
        action="store_true",
        help="fxsplit inside real vLLM: both splits on vLLM's graph, and vLLM's cold and warm compile, stock "
        "against fxsplit (4 and 28 layers; needs vLLM, see --vllm-python)",
    )
    modes.add_argument(
        "--anchors",
        action="store_true",
        help="a HuggingFace Llama's cold start, warm start and steady state: whole-graph torch.compile, regional "
        "compilation, backend='fxsplit' and fxsplit.compile (default 2 and 28 layers; needs transformers)",
    )
    bench.add_argument("--vllm-python", metavar="PATH", help="with --vllm: a Python that imports vLLM")
    bench.add_argument("--reps", type=_positive, default=7, help="timed repetitions per variant (default 7)")
    bench.add_argument(
        "--threads", type=_positive, default=1, help="torch threads to run with, printed with the results (default 1)"
    )
    bench.add_argument("--json", action="store_true", help="print machine-readable results")
    bench.add_argument("--plot", metavar="FILE.png", help="draw split time against layers (needs matplotlib)")
    bench.set_defaults(run=_bench)


def _add_inspect(commands: Any) -> None:
    inspect = commands.add_parser("inspect", help="show how a model splits: pieces, twins and the split graph")
    source = inspect.add_mutually_exclusive_group()
    source.add_argument(
        "--layers", type=_positive, default=4, help="layers of the built-in synthetic model (default 4)"
    )
    source.add_argument("--model", metavar="MODULE:FACTORY", help="a function returning (model, example_inputs)")
    inspect.add_argument(
        "--splitting-ops",
        nargs="+",
        metavar="OP",
        help="op names (ns::op[.overload]) or Python functions (torch.nn.functional.scaled_dot_product_attention) "
        "to split at (default: the model's attention)",
    )
    inspect.add_argument("--graph", action="store_true", help="print the split graph's code after the table")
    inspect.add_argument("--dump", metavar="DIR", help="write the graphs, each piece's code and report.json here")
    inspect.add_argument("--json", action="store_true", help="print machine-readable results")
    inspect.set_defaults(run=_inspect)


def _add_cache(commands: Any) -> None:
    cache = commands.add_parser(
        "cache",
        help="show or empty the cache of compiled pieces",
        description="info: where the cache is, its entries and size (it writes nothing); clear: remove every "
        "entry fxsplit made there (it removes nothing else, and refuses a directory that is not an fxsplit cache)",
    )
    cache.add_argument("action", choices=["info", "clear"], help="info: show the cache; clear: empty it")
    cache.add_argument(
        "--dir",
        help="the cache directory (default: $FXSPLIT_CACHE_DIR, else $XDG_CACHE_HOME/fxsplit, else ~/.cache/fxsplit)",
    )
    cache.set_defaults(run=_cache)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fxsplit`` command; returns its exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # torch warns at import when NumPy is missing; fxsplit never needs NumPy
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except UsageError as error:
        print(f"fxsplit: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`fxsplit inspect | head`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
