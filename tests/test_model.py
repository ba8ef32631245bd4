"""fxsplit.compile: a whole model saved as one artifact, loaded by a later process
without Dynamo, AOTAutograd or a compiler; and every way a saved model can fail."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import hf_llama

import fxsplit
from fxsplit import _compat
from fxsplit.compilation import artifact as saved_model
from fxsplit.compilation.cache import ARTIFACT, META
from fxsplit.tools import models

WORKER = Path(__file__).with_name("model_worker.py")
ATTENTION = models.ATTENTION_OP_NAME


def run_worker(cache_dir: Path, model: str, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(WORKER), str(cache_dir), model, *extra],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result


def model_entries(cache_dir: Path) -> list[Path]:
    """The cache entries that hold a saved model (the others hold pieces)."""
    return [p for p in cache_dir.glob(f"??/*/{ARTIFACT}") if p.read_bytes().startswith(saved_model.MAGIC)]


def rewrite(artifact: Path, data: bytes) -> None:
    """Replace an entry's bytes as someone tampering with it would, checksum included."""
    import hashlib

    artifact.write_bytes(data)
    meta = json.loads((artifact.parent / META).read_text())
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    (artifact.parent / META).write_text(json.dumps(meta))


def test_cold_then_warm_in_fresh_processes_and_moved(tmp_path):
    cache = tmp_path / "cache"
    cold = run_worker(cache, "synthetic", "--sizes", "8")
    assert cold["origin"] == "compiled" and cold["after_compile"]["graphs"] == 1 and cold["compiler_calls"] == 6
    assert len(model_entries(cache)) == 1

    warm = run_worker(cache, "synthetic", "--sizes", "8", "--calls", "11,8,5")
    assert warm["origin"] == "loaded" and warm["outputs"][0] == cold["outputs"][0]
    # no Dynamo trace, no AOTAutograd, no compiler call, also at sizes never compiled for
    assert (warm["graphs"], warm["aot"], warm["compiler_calls"], warm["fallback_calls"]) == (0, 0, 0, 0)
    # nor Inductor's CPU probe, whose answers the cold process kept (a child Python per instruction set)
    assert warm["python_children"] == 0

    moved = tmp_path / "elsewhere"
    shutil.move(cache, moved)
    moved_warm = run_worker(moved, "synthetic", "--sizes", "8")
    assert moved_warm["origin"] == "loaded" and moved_warm["python_children"] == 0


def test_a_huggingface_model_gives_back_its_model_output_after_a_load(tmp_path):
    cold = run_worker(tmp_path, "llama", "--calls", "5")
    warm = run_worker(tmp_path, "llama", "--calls", "5,13")
    assert cold["types"] == ["CausalLMOutputWithPast"] and warm["types"] == ["CausalLMOutputWithPast"] * 2
    assert warm["origin"] == "loaded" and (warm["graphs"], warm["aot"]) == (0, 0)
    assert warm["outputs"][0] == cold["outputs"][0]


def test_two_processes_compiling_at_once_leave_one_artifact(tmp_path):
    command = [sys.executable, str(WORKER), str(tmp_path), "synthetic"]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
    assert len(model_entries(tmp_path)) == 1
    assert run_worker(tmp_path, "synthetic")["origin"] == "loaded"


def test_changed_model_code_is_never_loaded(tmp_path):
    source = tmp_path / "mymodel.py"
    text = (
        "import torch\n"
        "class Model(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.proj = torch.nn.Linear(8, 8)\n"
        "    def forward(self, x):\n"
        "        q = self.proj(x).view(1, 1, *x.shape)\n"
        "        return torch.nn.functional.scaled_dot_product_attention(q, q, q).view(x.shape) * 2\n"
    )
    source.write_text(text)
    spec = f"{source}:Model"
    cold = run_worker(tmp_path / "cache", spec)
    source.write_text(text.replace("* 2\n", "* 3\n"))
    changed = run_worker(tmp_path / "cache", spec)  # the worker checks the output against the new code
    assert changed["origin"] == "compiled" and changed["outputs"][0] == pytest.approx(
        cold["outputs"][0] * 1.5, abs=0.01
    )
    assert "the model's code changed since it was compiled (mymodel, lines" in changed["stderr"]
    assert run_worker(tmp_path / "cache", spec)["origin"] == "loaded"  # the replacement


def test_a_model_holding_an_object_of_a_nested_class_saves_and_loads(tmp_path):
    # the pattern of the ``kernels`` package (installed by transformers 5.25) on HuggingFace
    # attention: a function made a module of a class defined inside a function, kept in a dict
    source = tmp_path / "nested.py"
    source.write_text(
        "import torch\n"
        "def module_of(func):\n"
        "    class Func(torch.nn.Module):\n"
        "        def forward(self, *args):\n"
        "            return func(*args)\n"
        "    return Func\n"
        "def scale(x, factor=2.0):\n"
        "    return x * factor\n"
        "class Model(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.proj = torch.nn.Linear(8, 8)\n"
        "        self.__dict__['_funcs'] = {'scale': module_of(scale)()}\n"
        "    def forward(self, x):\n"
        "        q = self.proj(x).view(1, 1, *x.shape)\n"
        "        out = torch.nn.functional.scaled_dot_product_attention(q, q, q).view(x.shape)\n"
        "        return self._funcs['scale'](out)\n"
    )
    spec = f"{source}:Model"
    # at the example's size: with 8 features, Dynamo's duck sizing makes 8 tokens one symbol with them
    cold = run_worker(tmp_path / "cache", spec, "--calls", "8")
    warm = run_worker(tmp_path / "cache", spec, "--calls", "8")
    assert cold["origin"] == "compiled" and warm["origin"] == "loaded"
    assert warm["outputs"] == cold["outputs"] and (warm["graphs"], warm["aot"], warm["fallback_calls"]) == (0, 0, 0)


def test_guards_through_an_object_of_a_nested_class_are_left_out_and_no_others():
    def nested():
        class Func:
            pass

        return Func()

    def guard(name, kind="CONSTANT_MATCH", value=None):
        return types.SimpleNamespace(
            name=name, guard_type=kind, derived_guard_types=(), has_value=value is not None, value=value
        )

    guards = [
        guard("L['m'].f", "TYPE_MATCH", nested()),
        guard("L['m'].f.factor"),
        guard("dict(type(L['m'].f).__dict__)['forward'].__name__"),
        guard("L['m'].fx"),  # a longer name, not a path through L['m'].f
        guard("L['m'].g", "TYPE_MATCH", 3),
    ]
    assert saved_model.serializable_guards(guards) == [False, False, False, True, True]


# Failure modes in one process: a model compiled once, its artifact then damaged


class Scaled(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scaling = 0.25  # SDPA bakes it in, under a guard on its value
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.proj(x).view(1, 1, *x.shape)
        return torch.nn.functional.scaled_dot_product_attention(q, q, q, scale=self.scaling).view(x.shape) + x


def compiled_scaled(cache: Path, **options: Any) -> tuple[Scaled, fxsplit.CompiledModel]:
    torch.manual_seed(0)
    model = Scaled().eval()
    with torch.no_grad():
        return model, fxsplit.compile(model, (torch.randn(6, 8),), cache_dir=cache, **options)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("saved")
    assert compiled_scaled(cache)[1].report.origin == "compiled"
    return cache


@pytest.fixture
def cache(saved: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "cache"
    shutil.copytree(saved, copy)
    return copy


def check(model: Scaled, compiled: fxsplit.CompiledModel) -> None:
    x = torch.randn(9, 8)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


def test_a_compile_reports_its_stages(tmp_path):
    _, compiled = compiled_scaled(tmp_path)
    report = compiled.report
    assert list(report.stages) == ["trace", "split", "compile", "save"]
    assert report.stages["compile"] == report.compile_seconds and report.stages["trace"] > 0


def test_an_intact_artifact_loads(cache):
    model, compiled = compiled_scaled(cache)
    assert compiled.report.origin == "loaded" and compiled.report.compiler_calls == 0
    assert set(compiled.report.stages) == {"read", "load", "guards"}
    check(model, compiled)


def damage_truncated(artifact: Path) -> None:
    artifact.write_bytes(artifact.read_bytes()[:1000])


def damage_version(artifact: Path) -> None:
    data = artifact.read_bytes()
    rewrite(artifact, data.replace(f'"fxsplit": "{fxsplit.__version__}"'.encode(), b'"fxsplit": "0.0.1"', 1))


def damage_garbage(artifact: Path) -> None:
    data = artifact.read_bytes()
    end = data.index(b"\n", len(saved_model.MAGIC)) + 1
    rewrite(artifact, data[:end] + b"not a pickle")


@pytest.mark.parametrize(
    "damage, reason",
    [
        (damage_truncated, "damaged: checksum mismatch"),
        (damage_version, f"saved by format/fxsplit/torch/python ({saved_model.FORMAT}, '0.0.1'"),
        (damage_garbage, "it does not load (UnpicklingError"),
    ],
)
def test_an_unusable_artifact_is_reported_compiled_again_and_replaced(cache, caplog, damage, reason):
    (artifact,) = model_entries(cache)
    damage(artifact)
    with caplog.at_level(logging.WARNING, logger="fxsplit"):
        model, compiled = compiled_scaled(cache)
    assert reason in caplog.text
    assert compiled.report.origin == "compiled"
    check(model, compiled)
    (replaced,) = model_entries(cache)
    assert compiled_scaled(cache)[1].report.origin == "loaded"


def test_each_thread_count_has_a_saved_model_of_its_own(cache, caplog):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        with caplog.at_level(logging.WARNING, logger="fxsplit"):
            model, other = compiled_scaled(cache)
        assert other.report.origin == "compiled" and "not usable" not in caplog.text
        check(model, other)
        assert compiled_scaled(cache)[1].report.origin == "loaded"
    finally:
        torch.set_num_threads(threads)
    assert compiled_scaled(cache)[1].report.origin == "loaded"  # the first thread count's, still there
    assert len(model_entries(cache)) == 2


def test_guards_that_fail_at_load_mean_a_compile(cache, caplog):
    torch.manual_seed(0)
    model = Scaled().eval()
    model.scaling = 0.5  # the saved model baked in 0.25
    with caplog.at_level(logging.WARNING, logger="fxsplit"), torch.no_grad():
        compiled = fxsplit.compile(model, (torch.randn(6, 8),), cache_dir=cache)
    assert "its guards reject the example inputs" in caplog.text and "scaling" in caplog.text
    assert compiled.report.origin == "compiled"
    check(model, compiled)


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_load_only_raises_where_it_would_compile(cache, tmp_path, monkeypatch, how):
    options = {"load_only": True} if how == "argument" else {}
    if how == "environment":
        monkeypatch.setenv("FXSPLIT_LOAD_ONLY", "1")
    with pytest.raises(fxsplit.ArtifactError, match="there is no saved model for this key, and load_only"):
        compiled_scaled(tmp_path / "empty", **options)
    damage_version(model_entries(cache)[0])
    with pytest.raises(fxsplit.ArtifactError, match="saved by format/fxsplit/torch/python"):
        compiled_scaled(cache, **options)


def test_inputs_that_break_a_guard_compile_or_raise(saved, cache):
    model, compiled = compiled_scaled(cache)
    one = torch.randn(1, 8)  # Dynamo specialises a size of 1: the saved guards say 2 <= s0
    with torch.no_grad():
        torch.testing.assert_close(compiled(one), model(one))
        assert compiled.fallback_calls == 1
        torch.testing.assert_close(compiled(one.double()).float(), model.double()(one.double()).float())
        model.float()
        model, strict = compiled_scaled(cache, load_only=True)
        with pytest.raises(fxsplit.ArtifactError, match="fail the saved model's guards"):
            strict(one)


def test_the_header_is_checked_before_anything_is_unpickled(cache, tmp_path, caplog):
    (artifact,) = model_entries(cache)
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    header = json.dumps({"format": saved_model.FORMAT, "fxsplit": "0.0.1"}).encode()
    rewrite(artifact, saved_model.MAGIC + header + b"\n" + pickle.dumps(Payload()))
    with caplog.at_level(logging.WARNING, logger="fxsplit"):
        model, compiled = compiled_scaled(cache)
    assert not marker.exists() and compiled.report.origin == "compiled"


def test_without_torchs_ahead_of_time_compile_it_runs_through_torch_compile(tmp_path, monkeypatch):
    lookup = _compat.lookup.private
    monkeypatch.setattr(_compat.lookup, "private", lambda m, n: None if n == "AOTCompiledFunction" else lookup(m, n))
    with pytest.warns(UserWarning, match="this torch has no ahead-of-time compile"):
        model, compiled = compiled_scaled(tmp_path)
    check(model, compiled)
    assert model_entries(tmp_path) == []


def test_a_model_returning_what_cannot_be_saved_runs_through_torch_compile(tmp_path):
    torch.manual_seed(0)
    llama = hf_llama(2).eval()
    ids = torch.randint(0, 128, (2, 6))
    with torch.no_grad(), pytest.warns(UserWarning, match=r"the model returns DynamicCache.*use_cache=False"):
        compiled = fxsplit.compile(llama, example_kwargs={"input_ids": ids, "use_cache": True}, cache_dir=tmp_path)
        out = compiled(input_ids=ids, use_cache=True)
        torch.testing.assert_close(out.logits, llama(input_ids=ids, use_cache=True).logits)
    assert model_entries(tmp_path) == []
    # what the first call compiled, as it did it
    report = compiled.report
    assert report.origin == "compiled" and report.pieces == 5 and report.compiler_calls >= 3
    assert set(report.stages) == {"setup", "first call (trace, compile and run)"}
    assert report.stages["first call (trace, compile and run)"] > report.compile_seconds > 0


def test_the_key_holds_what_decides_the_compiled_code():
    torch.manual_seed(0)
    model = Scaled()
    backend = fxsplit.PiecewiseBackend(cache_dir=None)
    x = torch.randn(6, 8)
    ops = list(fxsplit.DEFAULT_SPLITTING_OPS)

    def key(model=model, args=(x,), kwargs=None, ops=ops, backend=backend, dynamic=True) -> str:
        return saved_model.artifact_key(model, args, kwargs or {}, ops, backend, dynamic)

    base = key()
    assert key() == base and os.sep not in base
    assert key(args=(x.double(),)) != base
    assert key(args=(x[None],)) != base
    assert key(kwargs={"flag": True}) != base
    assert key(ops=[]) != base
    assert key(backend=fxsplit.PiecewiseBackend(compile_sizes=[8], cache_dir=None)) != base
    assert key(dynamic=False) != base
    with torch.no_grad():
        assert key() != base
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)  # Dynamo's global-state guard checks it
        assert key() != base
    finally:
        torch.set_num_threads(threads)
    bigger = Scaled()
    bigger.proj = torch.nn.Linear(8, 8, bias=False)
    assert key(model=bigger) != base
