"""``fxsplit bench --compile``: cold compile time, whole-graph against piecewise.

Every measurement runs in a fresh Python process with an empty Inductor cache
directory, so no cache from an earlier measurement hides the cost. Three ways to
compile the synthetic model with Inductor:

* ``inductor``: whole-graph ``torch.compile(backend="inductor")``;
* ``piecewise``: split at attention, every compute piece compiled (``dedup=False``),
  as vLLM and SGLang do;
* ``fxsplit``: split at attention, each distinct piece compiled once (``dedup=True``).

For each: the cold first call (Dynamo, compilation and one forward), the next call,
and the steady-state forward (median of several calls), so that the speed of the
compiled model is not traded away for start-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from .fresh import run_fresh
from .targets import Check, ratio_check

MODES = ("inductor", "piecewise", "fxsplit")
# wide enough that compute, not per-call overhead, dominates a forward, as in serving
MODEL_SIZES = {"hidden": 256, "heads": 4, "intermediate": 512}
TOKENS = 128


@dataclass
class CompileResult:
    mode: str
    layers: int
    cold_first_call_s: float
    next_call_ms: float
    steady_forward_ms: float
    compiler_calls: int | None
    cache_hits: int | None = None


def _worker(mode: str, layers: int, steady_reps: int) -> CompileResult:
    import torch

    from ..compilation.backend import PiecewiseBackend
    from . import models

    model, inputs = models.build(layers, tokens=TOKENS, **MODEL_SIZES)
    backend: str | PiecewiseBackend = "inductor"
    if mode != "inductor":
        backend = PiecewiseBackend(
            splitting_ops=[models.ATTENTION_OP_NAME], compiler="inductor", dedup=mode == "fxsplit"
        )
    compiled = torch.compile(model, backend=backend, dynamic=True)
    with torch.no_grad():
        expected = model(*inputs)
        start = time.perf_counter()
        out = compiled(*inputs)
        cold = time.perf_counter() - start
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
        start = time.perf_counter()
        compiled(*inputs)
        next_call = time.perf_counter() - start
        times = []
        for _ in range(steady_reps):
            start = time.perf_counter()
            compiled(*inputs)
            times.append(time.perf_counter() - start)
    if isinstance(backend, PiecewiseBackend):
        report = backend.report
        return CompileResult(
            mode,
            layers,
            cold,
            next_call * 1e3,
            statistics.median(times) * 1e3,
            report.compiler_calls,
            report.cache_hits,
        )
    return CompileResult(mode, layers, cold, next_call * 1e3, statistics.median(times) * 1e3, None)


def measure(mode: str, layers: int, steady_reps: int = 10) -> CompileResult:
    """One measurement in a fresh process, with empty caches."""
    return CompileResult(**run_fresh("fxsplit.tools.compile_bench", mode, str(layers), str(steady_reps)))


def run(layers: Sequence[int], progress: bool = True) -> list[CompileResult]:
    results = []
    for n in layers:
        for mode in MODES:
            if progress:
                print(f"cold compile: {mode} at {n} layers ...", file=sys.stderr, flush=True)
            results.append(measure(mode, n))
    return results


def target_checks(results: Sequence[CompileResult]) -> list[Check]:
    """The backend's targets (issue #3), as (description, met)."""
    by = {(r.mode, r.layers): r for r in results}
    checks = []
    deepest = max(r.layers for r in results)
    shallowest = min(r.layers for r in results)
    ours, whole = by.get(("fxsplit", deepest)), by.get(("inductor", deepest))
    shallow = by.get(("fxsplit", shallowest))
    if ours and shallow and deepest != shallowest:
        ratio = ours.cold_first_call_s / shallow.cold_first_call_s
        checks.append(ratio_check(f"fxsplit at {deepest} layers", ratio, 1.3, f"fxsplit at {shallowest}"))
    if ours and whole:
        ratio = ours.cold_first_call_s / whole.cold_first_call_s
        checks.append(ratio_check(f"fxsplit at {deepest} layers", ratio, 0.3, "whole-graph inductor"))
        ratio = ours.steady_forward_ms / whole.steady_forward_ms
        checks.append(ratio_check(f"steady forward at {deepest} layers", ratio, 1.1, "whole-graph"))
    return checks


def format_table(results: Sequence[CompileResult]) -> str:
    lines = [
        f"synthetic model: hidden {MODEL_SIZES['hidden']}, {TOKENS} tokens; Inductor, fresh process and cache each",
        f"{'layers':>6} {'mode':10} {'cold 1st call s':>15} {'next call ms':>12} "
        f"{'steady fwd ms':>13} {'compiler calls':>14}",
    ]
    for r in results:
        calls = str(r.compiler_calls) if r.compiler_calls is not None else "-"
        lines.append(
            f"{r.layers:>6} {r.mode:10} {r.cold_first_call_s:15.2f} {r.next_call_ms:12.1f} "
            f"{r.steady_forward_ms:13.1f} {calls:>14}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one cold compile measurement (run by fxsplit bench --compile)")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("layers", type=int)
    parser.add_argument("steady_reps", type=int)
    args = parser.parse_args()
    print(json.dumps(asdict(_worker(args.mode, args.layers, args.steady_reps))))
