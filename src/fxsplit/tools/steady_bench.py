"""``fxsplit bench --steady``: how fast a compiled model runs once it is compiled.

At serving's small sizes (decoding: a few tokens) a forward is mostly per-call
overhead, where splitting a model into dozens of pieces can cost more than compiling
buys. For the built-in model (its default sizes) at several token counts, warm, each
forward timed as the minimum over repeats of the mean of a batch of calls, the modes
interleaved:

* ``eager``; ``inductor``: whole-graph ``torch.compile``;
* ``piecewise``: every piece compiled on its own (``dedup=False``), as vLLM does;
* ``fxsplit``: :class:`~fxsplit.PiecewiseBackend` with Inductor;
* ``fxsplit, python``: the same split, pieces run as their Python code.

And the cost of calling one compiled piece: a model of N pieces that do almost
nothing, whose time per added piece, less the eager splitting op's, is what calling
a compiled piece costs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .targets import Check, ratio_check

SIZES = (2, 8, 64, 512)
MODES = ("eager", "inductor", "piecewise", "fxsplit", "fxsplit, python")
REFERENCE = "inductor"
REPEATS, CALLS = 15, 10  # on a noisy machine, more short batches find the quiet moments
TINY_PIECES = (16, 64)


@dataclass
class SteadyResult:
    layers: int
    threads: int
    forward_ms: dict[str, dict[int, float]] = field(default_factory=dict)  # mode -> tokens -> ms
    piece_call_us: float = 0.0
    splitting_op_us: float = 0.0

    def ratio(self, mode: str, tokens: int) -> float:
        return self.forward_ms[mode][tokens] / self.forward_ms[REFERENCE][tokens]


def _time_per_call(fn: Callable[[], Any], repeats: int = REPEATS, calls: int = CALLS) -> float:
    """Seconds per call: the minimum over ``repeats`` of the mean of ``calls`` calls."""
    for _ in range(3):
        fn()
    best = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best.append((time.perf_counter() - started) / calls)
    return min(best)


def interleaved_ms(
    forwards: dict[str, Callable[..., Any]], inputs: dict[int, tuple[Any, ...]]
) -> dict[str, dict[int, float]]:
    """Milliseconds per call of each forward at each size of ``inputs`` (its argument
    tuples), timed interleaved: each of ``REPEATS`` rounds times every forward and size
    once, and the minimum over rounds is kept, so that a change in the machine's load
    moves every forward alike."""
    best = {name: {size: float("inf") for size in inputs} for name in forwards}
    for _ in range(REPEATS):
        for name, forward in forwards.items():
            for size, args in inputs.items():
                ms = _time_per_call(partial(forward, *args), repeats=1) * 1e3
                best[name][size] = min(best[name][size], ms)
    return best


def own_frame(model: Any, name: str) -> Callable[..., Any]:
    """``model`` called from a function with a code object of its own: Dynamo caches
    compiled code per code object, so each mode keeps its own cache and no mode's
    guards are checked before another's."""
    import types

    def call(*args: Any, **kwargs: Any) -> Any:
        return model(*args, **kwargs)

    return types.FunctionType(call.__code__.replace(co_name=name), call.__globals__, name, None, call.__closure__)


def _compiled(mode: str, model: Any, splitting_ops: list[Any]) -> Any:
    import torch

    from ..compilation.backend import PiecewiseBackend

    if mode == "eager":
        return model
    function = own_frame(model, "forward_" + "".join(c if c.isalnum() else "_" for c in mode))
    if mode == "inductor":
        return torch.compile(function, dynamic=True)
    compiler = "eager" if mode == "fxsplit, python" else "inductor"
    backend = PiecewiseBackend(splitting_ops, compiler=compiler, dedup=mode != "piecewise", cache_dir=None)
    return torch.compile(function, backend=backend, dynamic=True)


def measure(layers: int, threads: int, sizes: Sequence[int] = SIZES, progress: bool = True) -> SteadyResult:
    """Every mode compiled and checked against eager first, then timed interleaved
    (each repeat times every mode and size once), so that a change in the machine's
    load moves every mode alike."""
    import sys

    import torch

    from ..compilation.background import wait_compiled
    from . import models

    result = SteadyResult(layers, threads)
    model, _ = models.build(layers)
    inputs = {n: models.example_inputs(model.config, n) for n in sizes}
    with torch.no_grad():
        expected = {n: model(*inputs[n]) for n in sizes}
        torch.compiler.reset()
        compiled = {}
        for mode in MODES:
            if progress:
                print(f"steady state: compiling {mode} at {layers} layers ...", file=sys.stderr, flush=True)
            compiled[mode] = _compiled(mode, model, [models.ATTENTION_OP_NAME])
            for n in sizes:
                torch.testing.assert_close(compiled[mode](*inputs[n]), expected[n], rtol=1e-4, atol=1e-4)
        wait_compiled()  # fxsplit's pieces run once per call may still compile in the background
        if progress:
            print("steady state: timing every mode, interleaved ...", file=sys.stderr, flush=True)
        result.forward_ms = interleaved_ms(compiled, inputs)
        result.piece_call_us, result.splitting_op_us = _piece_call_cost()
    return result


def _piece_call_cost() -> tuple[float, float]:
    """(µs to call one compiled piece, µs of the eager splitting op between two), from
    the difference between models of two depths, each timed interleaved with the others."""
    import torch

    from . import models

    x = torch.randn(4)
    timed: dict[tuple[int, str], Callable[[], Any]] = {}
    for pieces in TINY_PIECES:
        tiny = models.TinyPieces(pieces)
        timed[pieces, "forward"] = partial(_compiled("fxsplit", tiny, [models.MARK_OP_NAME]), x)
        timed[pieces, "splitting"] = partial(tiny.marks_only, x)
    best = dict.fromkeys(timed, float("inf"))
    for _ in range(REPEATS):
        for key, call in timed.items():
            best[key] = min(best[key], _time_per_call(call, repeats=1, calls=200))
    added = TINY_PIECES[1] - TINY_PIECES[0]
    low, high = TINY_PIECES
    per_layer = (best[high, "forward"] - best[low, "forward"]) / added
    per_op = (best[high, "splitting"] - best[low, "splitting"]) / added
    return (per_layer - per_op) * 1e6, per_op * 1e6


def target_checks(result: SteadyResult) -> list[Check]:
    """The steady-state targets (issue #11)."""
    checks: list[Check] = []
    for n in sorted(result.forward_ms["fxsplit"]):
        limit = 1.15 if n <= 8 else 1.05
        ratio = result.ratio("fxsplit", n)
        checks.append(ratio_check(f"{n} tokens: fxsplit", ratio, limit, "whole-graph inductor"))
    checks.append((f"one compiled piece's call <= 10 µs ({result.piece_call_us:.1f} µs)", result.piece_call_us <= 10))
    return checks


def format_table(result: SteadyResult) -> str:
    sizes = sorted(result.forward_ms[REFERENCE])
    lines = [
        f"steady-state forward, the built-in model at {result.layers} layers; ms per forward "
        f"(x whole-graph inductor); minimum of {REPEATS} x {CALLS} calls",
        f"{'mode':16}" + "".join(f"{f'{n} tokens':>20}" for n in sizes),
    ]
    for mode, times in result.forward_ms.items():
        cells = "".join(f"{f'{times[n]:.2f} ({result.ratio(mode, n):.2f}x)':>20}" for n in sizes)
        lines.append(f"{mode:16}{cells}")
    lines.append(
        f"calling one compiled piece: {result.piece_call_us:.1f} µs (a model of {TINY_PIECES[0]} and "
        f"{TINY_PIECES[1]} pieces, less the eager splitting op's {result.splitting_op_us:.1f} µs a piece)"
    )
    return "\n".join(lines)
