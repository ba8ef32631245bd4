"""``fxsplit bench --anchors``: fxsplit against what a well-informed user picks instead.

A HuggingFace ``LlamaForCausalLM`` (random weights; hidden 256, 4 heads, 2 KV heads,
intermediate 512, vocab 512, SDPA), called as ``model(input_ids=ids,
use_cache=False).logits`` with ids of shape (1, 16), without grad, on one thread,
compiled five ways:

* ``whole-graph``: ``torch.compile(model, dynamic=True)``;
* ``regional``: torch's regional-compilation recipe, ``layer.compile(dynamic=True)``
  for each decoder layer;
* ``backend``: ``torch.compile(model, backend="fxsplit", dynamic=True)``;
* ``fxsplit.compile``: ``fxsplit.compile(model, ...)``.

Each mode runs cold in a fresh process with empty Inductor and fxsplit caches, then
warm in a second fresh process sharing those caches. Figures are the first call,
compile included. For fxsplit's modes the cold process also reports where the time
went: Dynamo's trace, Inductor's CPU probe, compile, save. Then one more process per
depth loads every mode warm from its caches and times the steady state at 2, 8 and 64
tokens, the modes interleaved as ``fxsplit bench --steady`` does (each repeat times
every mode and size once; the minimum over repeats of the mean of a batch of calls),
so that a change in the machine's load moves every mode alike.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..compilation.cache import DEFAULT_CACHE_DIR
from .fresh import run_fresh
from .steady_bench import interleaved_ms, own_frame
from .targets import Check, ratio_check

MODES = ("whole-graph", "regional", "backend", "fxsplit.compile")
LAYERS = (2, 28)
STEADY_TOKENS = (2, 8, 64)
SIZES = {"hidden": 256, "intermediate": 512, "vocab": 512, "max_positions": 128}


@dataclass
class AnchorResult:
    mode: str
    layers: int
    run: str  # "cold", "warm" or "steady" (the steady process, whose first call loads from the caches)
    first_call_s: float
    steady_ms: dict[int, float] = field(default_factory=dict)  # tokens -> ms (steady runs)
    stages: dict[str, float] = field(default_factory=dict)  # fxsplit's modes: where the first call went


def _compiled(mode: str, model: Any, ids: Any, cache_dir: str = DEFAULT_CACHE_DIR) -> tuple[Any, Any]:
    """(a function of token ids to logits, what reports on it: a backend or a compiled
    model); fxsplit's modes keep their pieces in ``cache_dir``.
    Whole-graph and backend compile a frame of their own, so that in one process
    neither checks the other's guards."""
    import torch

    import fxsplit

    if mode == "whole-graph":
        whole = torch.compile(own_frame(model, "whole_graph"), dynamic=True)
        return lambda ids: whole(input_ids=ids, use_cache=False).logits, None
    if mode == "regional":
        for layer in model.model.layers:
            layer.compile(dynamic=True)
        return lambda ids: model(input_ids=ids, use_cache=False).logits, None
    if mode == "backend":
        backend = fxsplit.PiecewiseBackend(cache_dir=cache_dir)
        piecewise = torch.compile(own_frame(model, "piecewise"), backend=backend, dynamic=True)
        return lambda ids: piecewise(input_ids=ids, use_cache=False).logits, backend
    saved = fxsplit.compile(model, (), {"input_ids": ids, "use_cache": False}, cache_dir=cache_dir)
    return lambda ids: saved(input_ids=ids, use_cache=False).logits, saved


def _stages(reporter: Any) -> dict[str, float]:
    if reporter is None:
        return {}
    report = reporter.report
    stages = dict(report.stages)
    if report.trace_seconds is not None:
        stages.setdefault("trace", report.trace_seconds)
    stages.setdefault("compile", report.compile_seconds)
    stages["of which the CPU probe"] = report.probe_seconds
    return stages


def _worker(mode: str, layers: int, run: str) -> AnchorResult:
    """One mode's first call, cold or warm, in this (fresh) process."""
    import torch

    from . import models

    torch.set_num_threads(1)
    model = models.hf_llama(layers, **SIZES)
    ids = _ids(16, torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(input_ids=ids, use_cache=False).logits
        started = time.perf_counter()
        forward, reporter = _compiled(mode, model, ids)
        out = forward(ids)
        first = time.perf_counter() - started
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    return AnchorResult(mode, layers, run, first, stages=_stages(reporter))


def _steady(layers: int, caches: str) -> list[AnchorResult]:
    """Every mode loaded warm from its caches under ``caches`` (one folder per mode),
    checked against eager at every size, then timed interleaved."""
    import torch

    from ..compilation.background import wait_compiled
    from . import models

    torch.set_num_threads(1)
    model = models.hf_llama(layers, **SIZES)
    generator = torch.Generator().manual_seed(0)
    ids = _ids(16, generator)
    sizes = {tokens: _ids(tokens, generator) for tokens in STEADY_TOKENS}
    results, forwards = {}, {}
    with torch.no_grad():
        expected = {tokens: model(input_ids=other, use_cache=False).logits for tokens, other in sizes.items()}
        for mode in MODES:
            # the compiles, and the loads at the first call, find this mode's own Inductor files
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(caches, mode, "inductor")
            started = time.perf_counter()
            forward, _ = _compiled(mode, copy.deepcopy(model), ids, os.path.join(caches, mode, "fxsplit"))
            forward(ids)
            results[mode] = AnchorResult(mode, layers, "steady", time.perf_counter() - started)
            for tokens, other in sizes.items():
                torch.testing.assert_close(forward(other), expected[tokens], rtol=1e-4, atol=1e-4)
            forwards[mode] = forward
        wait_compiled()  # a piece the caches missed may compile in the background
        timed = interleaved_ms(forwards, {tokens: (other,) for tokens, other in sizes.items()})
        for mode, result in results.items():
            result.steady_ms = timed[mode]
    return list(results.values())


def _ids(tokens: int, generator: Any) -> Any:
    import torch

    return torch.randint(0, SIZES["vocab"], (1, tokens), generator=generator)


def run(layers: Sequence[int] = LAYERS, modes: Sequence[str] = MODES, progress: bool = True) -> list[AnchorResult]:
    """Every mode at every depth, cold then warm, each in a fresh process."""
    results = []
    for n in layers:
        with tempfile.TemporaryDirectory(prefix="fxsplit-anchors-") as caches:
            for mode in modes:
                for which in ("cold", "warm"):
                    if progress:
                        print(f"anchors: {mode} at {n} layers, {which} ...", file=sys.stderr, flush=True)
                    measured = run_fresh(
                        "fxsplit.tools.anchors_bench",
                        mode,
                        str(n),
                        which,
                        fxsplit_cache=os.path.join(caches, mode, "fxsplit"),
                        inductor_cache=os.path.join(caches, mode, "inductor"),
                    )
                    results.append(AnchorResult(**measured))
            if progress:
                print(f"anchors: every mode at {n} layers, steady, interleaved ...", file=sys.stderr, flush=True)
            for measured in run_fresh("fxsplit.tools.anchors_bench", "steady", str(n), caches)["results"]:
                measured["steady_ms"] = {int(k): v for k, v in measured["steady_ms"].items()}
                results.append(AnchorResult(**measured))
    return results


def target_checks(results: Sequence[AnchorResult]) -> list[Check]:
    """Issue 20's targets, for the depths measured."""
    by = {(r.mode, r.layers, r.run): r for r in results}
    depths = sorted({r.layers for r in results})
    deep = 28 if 28 in depths else depths[-1]
    checks: list[Check] = []

    def ratio(mode: str, run: str, limit: float, other: str, layers: int = deep, other_layers: int = deep) -> None:
        ours, theirs = by.get((mode, layers, run)), by.get((other, other_layers, run))
        if ours and theirs:
            subject, reference = f"{layers} layers: {mode} {run}", f"{other} at {other_layers} layers {run}"
            checks.append(ratio_check(subject, ours.first_call_s / theirs.first_call_s, limit, reference))

    ratio("fxsplit.compile", "cold", 1.0, "regional")
    if depths[0] != deep:
        ratio("fxsplit.compile", "cold", 1.3, "fxsplit.compile", other_layers=depths[0])
    ratio("backend", "cold", 1.5, "regional")
    ratio("fxsplit.compile", "warm", 0.5, "regional")
    for mode in ("backend", "fxsplit.compile"):
        for other, limit in (("whole-graph", 1.05), ("regional", 0.85)):
            ours, theirs = by.get((mode, deep, "steady")), by.get((other, deep, "steady"))
            for tokens in (2, 8):
                if ours and theirs and tokens in ours.steady_ms and tokens in theirs.steady_ms:
                    subject = f"{deep} layers: {mode} steady at {tokens} tokens"
                    value = ours.steady_ms[tokens] / theirs.steady_ms[tokens]
                    checks.append(ratio_check(subject, value, limit, other))
    for mode in ("fxsplit.compile", "backend"):
        if 80 in depths and deep != 80:
            ratio(mode, "cold", 1.3, mode, layers=80)
    return checks


def format_table(results: Sequence[AnchorResult]) -> str:
    by = {(r.mode, r.layers, r.run): r for r in results}
    lines = [
        "HuggingFace Llama (hidden 256, 4 heads, 2 KV heads), ids (1, 16), one thread; first call in s, "
        "fresh processes (cold: empty caches; warm: the cold run's caches)",
        "| layers | mode | cold | warm | cold / regional | cold / whole-graph | steady ms (interleaved) at "
        + " / ".join(str(t) for t in STEADY_TOKENS)
        + " tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for layers in sorted({r.layers for r in results}):
        regional, whole = by.get(("regional", layers, "cold")), by.get(("whole-graph", layers, "cold"))
        for mode in MODES:
            cold, warm = by.get((mode, layers, "cold")), by.get((mode, layers, "warm"))
            if cold is None or warm is None:
                continue
            versus = [f"{cold.first_call_s / r.first_call_s:.2f}x" if r else "-" for r in (regional, whole)]
            timed = by.get((mode, layers, "steady"))
            steady = " / ".join(f"{timed.steady_ms[t]:.2f}" for t in STEADY_TOKENS) if timed else "-"
            lines.append(
                f"| {layers} | {mode} | {cold.first_call_s:.1f} | {warm.first_call_s:.1f} | "
                f"{versus[0]} | {versus[1]} | {steady} |"
            )
    for r in results:
        if r.run == "cold" and r.stages:
            stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in r.stages.items())
            lines.append(f"{r.mode} cold at {r.layers} layers went to: {stages}")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one anchors measurement (run by fxsplit bench --anchors)")
    parser.add_argument("mode", choices=[*MODES, "steady"])
    parser.add_argument("layers", type=int)
    parser.add_argument("run", help="cold or warm; for steady, the folder of every mode's caches")
    options = parser.parse_args()
    if options.mode == "steady":
        print(json.dumps({"results": [asdict(r) for r in _steady(options.layers, options.run)]}))
    else:
        print(json.dumps(asdict(_worker(options.mode, options.layers, options.run))))
