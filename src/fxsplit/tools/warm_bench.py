"""``fxsplit bench --warm``: how soon a restarted process runs its model again.

Every run is a fresh process with an empty Inductor cache; runs of one model share
only fxsplit's cache directory, as a service's restarts in fresh containers would.
For the built-in model (hidden 256, 128 tokens) and, where transformers is installed,
a tiny HuggingFace Llama:

* ``cold``: ``fxsplit.compile``'s first run (trace, compile, save);
* ``warm``: its next run, which loads the saved model (no trace, no compile);
* ``backend warm``: ``torch.compile`` with :class:`~fxsplit.PiecewiseBackend`, whose
  pieces the cold run cached (Dynamo still traces);
* ``import torch``: the floor that every process pays.

Each figure runs from the start of the process to the end of the model's first call.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from .compile_bench import MODEL_SIZES, TOKENS
from .fresh import run_fresh
from .targets import Check, ratio_check

RUNS = ("import torch", "cold", "warm", "backend warm")
LLAMA_LAYERS = 4


@dataclass
class WarmResult:
    model: str
    run: str
    seconds: float  # from starting the process to the end of the first call
    first_call_s: float  # the first call alone (for cold and warm: compile or load, then the call)
    compiler_calls: int | None
    origin: str = ""


def _model(name: str, layers: int) -> tuple[Any, tuple[Any, ...], dict[str, Any], list[Any]]:
    """(model, example args, example kwargs, splitting ops)"""
    import torch

    from ..compilation.backend import DEFAULT_SPLITTING_OPS
    from . import models

    if name == "synthetic":
        synthetic, inputs = models.build(layers, tokens=TOKENS, **MODEL_SIZES)
        return synthetic, inputs, {}, [models.ATTENTION_OP_NAME]
    model = models.hf_llama(LLAMA_LAYERS, hidden=32, intermediate=64, vocab=128, max_positions=64)
    ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(0))
    return model, (), {"input_ids": ids, "use_cache": False}, list(DEFAULT_SPLITTING_OPS)


def _worker(run: str, name: str, layers: int, spawned_at: float) -> WarmResult:
    """One run; ``spawned_at`` is the wall-clock time at which the parent started it."""
    import torch

    if run == "import torch":
        return WarmResult(name, run, time.time() - spawned_at, 0.0, None)
    import fxsplit

    model, args, kwargs, ops = _model(name, layers)
    with torch.no_grad():
        started = time.time()
        if run == "backend warm":
            backend = fxsplit.PiecewiseBackend(splitting_ops=ops)
            torch.compile(model, backend=backend, dynamic=True)(*args, **kwargs)
            report = backend.report
        else:
            compiled = fxsplit.compile(model, args, kwargs, splitting_ops=ops)
            compiled(*args, **kwargs)
            report = compiled.report
        done = time.time()
    return WarmResult(name, run, done - spawned_at, done - started, report.compiler_calls, report.origin)


def warm_start(layers: int) -> list[WarmResult]:
    """Every run, for each model, in fresh processes sharing one fxsplit cache per model."""
    names = ["synthetic"] + (["llama"] if importlib.util.find_spec("transformers") else [])
    results = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="fxsplit-warm-") as cache:
            for run in RUNS:
                print(f"warm start: {name}, {run} ...", file=sys.stderr, flush=True)
                measured = run_fresh(
                    "fxsplit.tools.warm_bench", run, name, str(layers), repr(time.time()), fxsplit_cache=cache
                )
                results.append(WarmResult(**measured))
    return results


def target_checks(results: list[WarmResult], layers: int) -> list[Check]:
    """The warm-start targets (issue #10), on the built-in model."""
    runs = {r.run: r for r in results if r.model == "synthetic"}
    cold, warm, floor = runs["cold"].seconds, runs["warm"].seconds, runs["import torch"].seconds
    return [
        ratio_check(f"{layers} layers: warm", warm / cold, 0.1, "cold"),
        (f"{layers} layers: warm - import floor <= 1.5 s ({warm - floor:.2f} s)", warm - floor <= 1.5),
    ]


def format_table(results: list[WarmResult], layers: int) -> str:
    lines = [
        f"warm starts: the built-in model at {layers} layers (hidden {MODEL_SIZES['hidden']}, {TOKENS} tokens) and "
        f"a {LLAMA_LAYERS}-layer HuggingFace Llama; Inductor; fresh processes with empty Inductor caches",
        f"{'model':10} {'run':13} {'start to 1st call end s':>23} {'1st call s':>10} {'compiler calls':>14}  origin",
    ]
    for r in results:
        calls = "-" if r.compiler_calls is None else str(r.compiler_calls)
        lines.append(f"{r.model:10} {r.run:13} {r.seconds:23.2f} {r.first_call_s:10.2f} {calls:>14}  {r.origin or '-'}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one warm-start measurement (run by fxsplit bench --warm)")
    parser.add_argument("run", choices=RUNS)
    parser.add_argument("model", choices=["synthetic", "llama"])
    parser.add_argument("layers", type=int)
    parser.add_argument("spawned_at", type=float)
    options = parser.parse_args()
    print(json.dumps(asdict(_worker(options.run, options.model, options.layers, options.spawned_at))))
