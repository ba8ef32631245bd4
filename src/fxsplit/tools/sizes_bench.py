"""``fxsplit bench --compile --sizes 4,8,16,32``: cold start with ``compile_sizes``,
compiled in this process against worker processes.

Each run is a fresh process with empty Inductor and fxsplit caches, on the built-in
model (hidden 256), its first call at 128 tokens:

* ``no sizes``: the general version of each distinct piece only;
* ``0 workers``: every listed size too, all compiled in the calling process;
* ``workers``: every listed size too, on the default ``compile_workers``.

Each figure runs from ``torch.compile`` (Dynamo's trace included) to the end of the
first call, then to the end of the first call at each listed size, which must compile
nothing more.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from .compile_bench import MODEL_SIZES, TOKENS
from .fresh import run_fresh
from .targets import Check, ratio_check

RUNS = ("no sizes", "0 workers", "workers")


@dataclass
class SizesResult:
    run: str
    layers: int
    workers: int  # worker processes used (0: none)
    first_call_s: float  # torch.compile to the end of the first call
    compiler_calls: int
    later_compiler_calls: int  # during the calls at each listed size, after the first call
    at_size_s: dict[str, float] = field(default_factory=dict)  # to the end of the first call at each size


def _worker(run: str, layers: int, sizes: list[int]) -> SizesResult:
    import torch

    from ..compilation import workers
    from ..compilation.backend import PiecewiseBackend
    from . import models

    model, inputs = models.build(layers, tokens=TOKENS, **MODEL_SIZES)
    listed = [] if run == "no sizes" else sizes
    backend = PiecewiseBackend(
        splitting_ops=[models.ATTENTION_OP_NAME],
        compile_sizes=listed,
        compile_workers=0 if run == "0 workers" else None,
    )
    at_size = {}
    with torch.no_grad():
        started = time.perf_counter()
        backend.start_workers()  # as the README says: their start-up overlaps with Dynamo's trace
        compiled = torch.compile(model, backend=backend, dynamic=True)
        expected = model(*inputs)
        torch.testing.assert_close(compiled(*inputs), expected, rtol=1e-4, atol=1e-4)
        first = time.perf_counter() - started
        calls = backend.report.compiler_calls
        for size in sizes:
            ids, positions = models.example_inputs(model.config, size)
            out = compiled(ids, positions)
            at_size[str(size)] = time.perf_counter() - started
            torch.testing.assert_close(out, model(ids, positions), rtol=1e-4, atol=1e-4)
    return SizesResult(
        run,
        layers,
        workers.shared_workers(),
        first,
        calls,
        backend.report.compiler_calls - calls,
        at_size,
    )


def run(layers: int, sizes: Sequence[int], progress: bool = True) -> list[SizesResult]:
    results = []
    for name in RUNS:
        if progress:
            print(f"cold start with sizes: {name} at {layers} layers ...", file=sys.stderr, flush=True)
        measured = run_fresh("fxsplit.tools.sizes_bench", name, str(layers), ",".join(map(str, sizes)))
        results.append(SizesResult(**measured))
    return results


def target_checks(results: Sequence[SizesResult]) -> list[Check]:
    """The targets of issue #12 on this machine."""
    by = {r.run: r for r in results}
    here, workers = by["0 workers"], by["workers"]
    ratio = workers.first_call_s / here.first_call_s
    sizes = len(workers.at_size_s)
    later = sum(r.later_compiler_calls for r in results)
    return [
        ratio_check(f"{sizes} sizes: default workers", ratio, 0.7, "in-process"),
        (f"no compile after the first call ({later} compiler calls)", later == 0),
    ]


def format_table(results: Sequence[SizesResult]) -> str:
    sizes = list(results[0].at_size_s)
    lines = [
        f"cold start with compile_sizes: the built-in model at {results[0].layers} layers (hidden "
        f"{MODEL_SIZES['hidden']}), first call at {TOKENS} tokens; Inductor; fresh process and caches each",
        f"{'run':10} {'workers':>7} {'1st call s':>10} {'compiler calls':>14}  "
        + " ".join(f"{'at ' + s + ' s':>8}" for s in sizes),
    ]
    for r in results:
        at = " ".join(f"{r.at_size_s[s]:8.2f}" for s in sizes)
        lines.append(f"{r.run:10} {r.workers:>7} {r.first_call_s:10.2f} {r.compiler_calls:>14}  {at}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one cold start with sizes (run by fxsplit bench --compile --sizes)")
    parser.add_argument("run", choices=RUNS)
    parser.add_argument("layers", type=int)
    parser.add_argument("sizes")
    options = parser.parse_args()
    result = _worker(options.run, options.layers, [int(s) for s in options.sizes.split(",")])
    print(json.dumps(asdict(result)))
