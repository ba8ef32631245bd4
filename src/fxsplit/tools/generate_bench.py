"""``fxsplit bench --generate``: HuggingFace ``generate()`` with a compiled forward.

A random-weight ``LlamaForCausalLM`` (hidden 128, 4 heads, 2 KV heads) generates
greedily from a 16-token prompt, with the default (dynamic) KV cache and with a static
one, at each depth. Three modes: ``eager``; ``inductor``, whole-graph
``torch.compile(dynamic=True)``; ``fxsplit``, the same with ``backend="fxsplit"``, as
the README shows. Each (depth, cache) runs in a fresh process with empty caches; its
first ``generate`` per mode is the cold one (compiles included) and must give eager's
tokens. Once fxsplit's pieces compiling in the background are loaded
(:func:`fxsplit.wait_compiled`), the modes take turns, and each keeps its fastest time to the first token
(the prefill's forward) and per decoded token (the time from the first token to the
last over the tokens between), stamped by a logits processor that sees every token.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import models
from .steady_bench import own_frame
from .targets import Check, ratio_check

LAYERS = (4, 28)
CACHES = ("dynamic", "static")
MODES = ("eager", "inductor", "fxsplit")
REFERENCE = "inductor"
PROMPT, NEW_TOKENS, REPEATS = 16, 24, 7


@dataclass
class GenerateResult:
    layers: int
    cache: str
    first_generate_s: dict[str, float] = field(default_factory=dict)  # mode -> seconds, compiles included
    first_token_ms: dict[str, float] = field(default_factory=dict)  # mode -> the prefill, warm
    per_token_ms: dict[str, float] = field(default_factory=dict)  # mode -> each later token, warm

    def ratio(self, measure: str, mode: str) -> float:
        times: dict[str, float] = getattr(self, measure)
        return times[mode] / times[REFERENCE]


def _compiled(mode: str, model: Any) -> Any:
    import torch

    if mode == "eager":
        return model
    model = copy.deepcopy(model)
    backend = "fxsplit" if mode == "fxsplit" else "inductor"
    # a frame of its own per mode (see steady_bench.own_frame), with the signature generate() reads
    forward = functools.wraps(model.forward)(own_frame(model.forward, f"forward_{mode}"))
    model.forward = torch.compile(forward, backend=backend, dynamic=True)
    return model


def _timed_generate(model: Any, ids: Any, options: dict[str, Any]) -> tuple[Any, float, float]:
    """``(tokens, seconds to the first token, seconds per later token)``."""
    import transformers

    stamps: list[float] = []

    class Stamp(transformers.LogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            stamps.append(time.perf_counter())
            return scores

    started = time.perf_counter()
    tokens = model.generate(ids, logits_processor=transformers.LogitsProcessorList([Stamp()]), **options)
    return tokens, stamps[0] - started, (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def measure(layers: int, cache: str, repeats: int = REPEATS) -> GenerateResult:
    """One (depth, cache) in this process, with its torch threads: see the module's docstring."""
    import torch

    from ..compilation.background import wait_compiled

    result = GenerateResult(layers, cache)
    model = models.hf_llama(layers, hidden=128, intermediate=256, vocab=512, max_positions=256)
    ids = torch.randint(1, 512, (1, PROMPT), generator=torch.Generator().manual_seed(0))
    options: dict[str, Any] = dict(max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)
    if cache == "static":
        options["cache_implementation"] = "static"
    with torch.no_grad():
        expected = model.generate(ids, **options)
        compiled = {}
        for mode in MODES:
            compiled[mode] = _compiled(mode, model)
            started = time.perf_counter()
            tokens, _, _ = _timed_generate(compiled[mode], ids, options)
            result.first_generate_s[mode] = time.perf_counter() - started
            if not torch.equal(tokens, expected):
                raise AssertionError(f"{mode} generated other tokens than eager at {layers} layers, {cache} cache")
        wait_compiled()  # fxsplit's pieces run once per call may still compile in the background
        result.first_token_ms = dict.fromkeys(MODES, float("inf"))
        result.per_token_ms = dict.fromkeys(MODES, float("inf"))
        for repeat in range(repeats):
            for mode in MODES[repeat % len(MODES) :] + MODES[: repeat % len(MODES)]:
                _, first, per_token = _timed_generate(compiled[mode], ids, options)
                result.first_token_ms[mode] = min(result.first_token_ms[mode], first * 1e3)
                result.per_token_ms[mode] = min(result.per_token_ms[mode], per_token * 1e3)
    return result


def run(layers: Sequence[int] = LAYERS, progress: bool = True) -> list[GenerateResult]:
    """Every (depth, cache), each in a fresh process with empty caches."""
    from .fresh import run_fresh

    results = []
    for depth in layers:
        for cache in CACHES:
            if progress:
                print(f"generate: {depth} layers, {cache} cache (fresh process) ...", file=sys.stderr, flush=True)
            found = run_fresh("fxsplit.tools.generate_bench", str(depth), cache)
            results.append(GenerateResult(**found))
    return results


def target_checks(results: Sequence[GenerateResult]) -> list[Check]:
    """Issue #21's target: a decoded token <= 1.05x whole-graph Inductor's."""
    return [
        ratio_check(
            f"{r.layers} layers, {r.cache} cache: fxsplit per token",
            r.ratio("per_token_ms", "fxsplit"),
            1.05,
            "inductor",
        )
        for r in results
    ]


def format_table(results: Sequence[GenerateResult]) -> str:
    lines = [
        f"generate(): a {PROMPT}-token prompt, {NEW_TOKENS} new tokens, greedy, one thread; warm times are the "
        f"minimum of {REPEATS} generates, modes taking turns (x whole-graph inductor)",
        f"{'layers':>6} {'cache':8} {'mode':9} {'first generate s':>17} {'first token ms':>16} {'per token ms':>15}",
    ]
    for r in results:
        for mode in MODES:
            first = f"{r.first_token_ms[mode]:.2f} ({r.ratio('first_token_ms', mode):.2f}x)"
            per = f"{r.per_token_ms[mode]:.3f} ({r.ratio('per_token_ms', mode):.2f}x)"
            lines.append(f"{r.layers:>6} {r.cache:8} {mode:9} {r.first_generate_s[mode]:>17.2f} {first:>16} {per:>15}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one cell of fxsplit bench --generate, printed as JSON")
    parser.add_argument("layers", type=int)
    parser.add_argument("cache", choices=CACHES)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    result = measure(args.layers, args.cache)
    print(json.dumps(result.__dict__))


if __name__ == "__main__":
    main()
