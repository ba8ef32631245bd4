"""Every option that changes the compile path, with Inductor, on real architectures:
a dense Llama, an MoE model, GPT-2 (lifted floats) and Gemma 3 (sliding and full
layers), each equal to eager at a size it was compiled for and at one it was not.

The cases of one architecture share one fxsplit cache, in this order: the cold case
fills it, the fresh process reads it (a warm start), and the later cases load the
general versions from it and compile sizes of their own, so every size they list
goes through their own compile path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from options_worker import run_case
from test_model import run_worker

pytest.importorskip("transformers")

WORKER = Path(__file__).with_name("options_worker.py")
ARCHITECTURES = ["llama", "qwen2_moe", "gpt2", "gemma3_text"]
SIZES = [8, [10, 16]]  # an exact size and a range
CALLS = (8, 12, 5)  # the size, a size in the range, a size in neither
PIECES = 3  # distinct compute pieces of a 2-layer decoder: first, middle, last


@pytest.fixture(scope="module", params=ARCHITECTURES)
def arch(request, tmp_path_factory):
    """(architecture, its cache, the cold case's dump directory), the cold case run:
    the default workers, compile_sizes with a size and a range, dump_dir."""
    root = tmp_path_factory.mktemp(request.param)
    options = {"compile_sizes": SIZES, "cache_dir": str(root / "cache"), "dump_dir": str(root / "dump")}
    result = run_case(request.param, options, CALLS)
    return request.param, root, options, result


def test_sizes_on_the_default_workers_cold(arch):
    name, root, _, result = arch
    first, last = result["first"], result["last"]
    pieces = result["compute_pieces"] and len({piece for piece, *_ in first["sizes"]})
    assert first["sizes"] and {size for _, size, *_ in first["sizes"]} == {"8", "(10, 16)"}
    assert any(worker for *_, worker, _ in first["sizes"]), "no size compiled in a worker"
    assert len(first["sizes"]) == 2 * pieces <= 2 * PIECES + 2
    assert first["cache_misses"] > 0 and first["cache_hits"] == 0
    assert last["compiler_calls"] == first["compiler_calls"], "a call after the first compiled"
    report = json.loads((root / "dump" / "graph_0" / "report.json").read_text())
    assert report["generated_code"] and all(Path(p).exists() for p in report["generated_code"].values())


def test_the_cache_warm_in_a_fresh_process(arch):
    name, root, options, cold = arch
    done = subprocess.run(
        [sys.executable, str(WORKER), name, json.dumps({**options, "dump_dir": None}), ",".join(map(str, CALLS))],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    warm = json.loads(done.stdout.strip().splitlines()[-1])["last"]
    assert warm["compiler_calls"] == 0
    assert warm["cache_hits"] == cold["first"]["cache_misses"] and warm["cache_misses"] == 0
    assert all(cached for *_, cached in warm["sizes"])
    assert "Traceback" not in done.stderr, done.stderr[-4000:]


def test_sizes_compiled_in_this_process(arch):
    name, root, options, _ = arch
    result = run_case(
        name, {**options, "dump_dir": None, "compile_sizes": [6, [17, 24]], "compile_workers": 0}, (6, 20, 5)
    )
    sizes = result["first"]["sizes"]
    assert {size for _, size, *_ in sizes} == {"6", "(17, 24)"}
    assert not any(worker or cached for *_, worker, cached in sizes)
    assert result["last"]["compiler_calls"] == result["first"]["compiler_calls"] == len(sizes)  # general: the cache's


def test_lazy_sizes_compile_when_their_first_call_arrives(arch):
    name, root, options, _ = arch
    result = run_case(name, {**options, "dump_dir": None, "compile_sizes": [7], "lazy": True}, (5, 7))
    assert result["first"]["sizes"] == [] and result["first"]["compiler_calls"] == 0
    sizes = result["last"]["sizes"]
    assert sizes and {size for _, size, *_ in sizes} == {"7"} and result["last"]["compiler_calls"] == len(sizes)


def test_a_saved_model_loads_in_a_fresh_process(arch):
    name, root, *_ = arch
    cache = root / "saved"
    cold = run_worker(cache, name, "--sizes", "8", "--calls", "8,11")
    warm = run_worker(cache, name, "--sizes", "8", "--calls", "8,11")
    assert cold["origin"] == "compiled" and warm["origin"] == "loaded"
    assert warm["compiler_calls"] == 0 and warm["aot"] == 0 and warm["outputs"] == cold["outputs"]
