"""background: in a graph whose layers share a compiled piece, the pieces run once per
call compile in a worker while the first call runs them as their code; the first call
after one is done, wait() or the interpreter's exit loads it, and fxsplit.compile
saves the model once they are loaded."""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import Executor, Future

import pytest
import torch
from conftest import hf_llama, logits_of
from test_model import model_entries, run_worker

import fxsplit
from fxsplit.compilation import background
from fxsplit.compilation.workers import WorkerError
from fxsplit.tools import models

ATTENTION = models.ATTENTION_OP_NAME


class Held(Executor):
    """Holds each job until :meth:`release` runs it here, as a worker would: the
    backend cancels and compiles itself what it waits for, and leaves the rest."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Future, object, tuple]] = []

    def submit(self, fn, /, *args, **kwargs):
        future: Future = Future()
        self.jobs.append((future, fn, args))
        return future

    def release(self, fail: bool | BaseException = False) -> None:
        for future, fn, args in self.jobs:
            if future.set_running_or_notify_cancel():
                if fail:
                    error = fail if isinstance(fail, BaseException) else RuntimeError("the worker ran out of memory")
                    future.set_exception(error)
                else:
                    future.set_result(fn(*args))  # type: ignore[operator]


def compiled_stack(layers: int, cache_dir=None, **options):
    """(model, its compiled forward, the backend, inputs of n tokens)"""
    # each test compiles the built-in model's frame anew: past Dynamo's recompile limit it would run
    # eagerly, in this file's later tests and in other files'
    torch.compiler.reset()
    model, _ = models.build(layers)
    backend = fxsplit.PiecewiseBackend([ATTENTION], cache_dir=cache_dir, **options)
    forward = torch.compile(model, backend=backend, dynamic=True)
    return model, forward, backend, lambda n: models.example_inputs(model.config, n)


def check(model, forward, inputs, n):
    with torch.no_grad():
        torch.testing.assert_close(forward(*inputs(n)), model(*inputs(n)), rtol=1e-4, atol=1e-4)


def test_the_pieces_run_once_per_call_compile_while_the_first_call_runs_them_as_code():
    held = Held()
    model, forward, backend, inputs = compiled_stack(4, compile_workers=held)
    check(model, forward, inputs, 8)
    report = backend.report
    compute = [r.name for r in report.rows if r.kind == "compute"]
    assert [r.name for r in report.rows if r.background] == [compute[0], compute[-1]]
    assert report.compiler_calls == 1 and backend.compiling  # only the layers' shared piece was waited for
    check(model, forward, inputs, 11)  # as code, at a size it was not compiled for

    held.release()
    assert not backend.compiling
    check(model, forward, inputs, 11)  # the first call after they are done loads them
    assert report.compiler_calls == 3 and all(r.seconds > 0 for r in report.rows if r.background)
    check(model, forward, inputs, 5)


def test_wait_loads_what_the_workers_compiled():
    model, forward, backend, inputs = compiled_stack(4)  # the default workers
    check(model, forward, inputs, 8)
    backend.wait()
    assert not backend.compiling and backend.report.compiler_calls == 3
    check(model, forward, inputs, 6)


@pytest.mark.parametrize("layers, options", [(4, {"background": False}), (2, {})], ids=["off", "no-shared-piece"])
def test_every_piece_is_waited_for_without_background_or_a_shared_piece(layers, options):
    held = Held()
    model, forward, backend, inputs = compiled_stack(layers, compile_workers=held, **options)
    check(model, forward, inputs, 8)
    assert not any(r.background for r in backend.report.rows) and not backend.compiling
    assert backend.report.compiler_calls == 3


def test_a_piece_that_fails_in_the_background_runs_as_its_code_and_says_so(caplog):
    held = Held()
    model, forward, backend, inputs = compiled_stack(4, compile_workers=held)
    check(model, forward, inputs, 8)
    held.release(fail=True)
    with caplog.at_level(logging.WARNING, logger="fxsplit"):
        check(model, forward, inputs, 9)
    assert "did not compile in the background (RuntimeError: the worker ran out of memory)" in caplog.text
    assert "With background=False it compiles before the first call" in caplog.text
    assert backend.report.compiler_calls == 1 and not backend.compiling
    check(model, forward, inputs, 10)


def test_a_piece_a_worker_refuses_compiles_in_the_trace_in_the_next_process(tmp_path, caplog):
    # a compile that assumed something about the sizes: only Dynamo's trace can guard it
    held = Held()
    model, forward, backend, inputs = compiled_stack(4, tmp_path, compile_workers=held)
    check(model, forward, inputs, 8)
    held.release(fail=WorkerError("GuardedCompile: the compile of submod_8 assumed 2*s0 < 32767"))
    with caplog.at_level(logging.WARNING, logger="fxsplit"):
        check(model, forward, inputs, 9)
    assert "a later process with this cache compiles it before the first call" in caplog.text
    model, forward, again, inputs = compiled_stack(4, tmp_path, compile_workers=Held())
    check(model, forward, inputs, 8)
    assert not any(r.background for r in again.report.rows) and not again.compiling


def test_a_runner_waiting_for_its_version_does_not_pickle():
    held = Held()
    model, forward, backend, inputs = compiled_stack(4, compile_workers=held)
    check(model, forward, inputs, 8)
    (runner, *_) = backend._background
    with pytest.raises(RuntimeError, match="still compiling in the background; wait\\(\\) for it first"):
        runner.__getstate__()
    held.release()
    assert backend.wait() and runner.__getstate__()


def test_at_exit_a_job_another_executor_never_started_is_cancelled_not_waited_for(monkeypatch, caplog):
    held = Held()
    model, forward, backend, inputs = compiled_stack(4, compile_workers=held)
    check(model, forward, inputs, 8)
    monkeypatch.setattr(background, "_waits", [backend.wait])
    monkeypatch.setattr(background, "_exiting", False)
    with caplog.at_level(logging.WARNING, logger="fxsplit"):
        background._wait_all()  # as the interpreter's exit runs it: it returns
    assert caplog.text.count("did not compile in the background (CancelledError") == 2
    check(model, forward, inputs, 9)


@pytest.mark.parametrize("fail", [False, True], ids=["compiled", "failed"])
def test_fxsplit_compile_saves_once_the_background_is_loaded_and_not_where_it_failed(tmp_path, caplog, fail):
    held = Held()
    model, _ = models.build(4)
    ids, positions = models.example_inputs(model.config, 8)
    with torch.no_grad():
        compiled = fxsplit.compile(
            model, (ids, positions), splitting_ops=[ATTENTION], compile_workers=held, cache_dir=tmp_path
        )
        torch.testing.assert_close(compiled(ids, positions), model(ids, positions), rtol=1e-4, atol=1e-4)
        assert model_entries(tmp_path) == []  # not saved while pieces compile
        held.release(fail=fail)
        with caplog.at_level(logging.WARNING, logger="fxsplit"):
            torch.testing.assert_close(compiled(ids, positions), model(ids, positions), rtol=1e-4, atol=1e-4)
    if fail:
        assert model_entries(tmp_path) == [] and "the model is not saved, as a piece did not compile" in caplog.text
    else:
        assert len(model_entries(tmp_path)) == 1 and "save" in compiled.report.stages


def test_at_exit_what_compiled_is_saved_unloaded_and_the_next_process_loads_it(tmp_path, monkeypatch):
    held = Held()
    model, _ = models.build(4)
    ids, positions = models.example_inputs(model.config, 8)
    with torch.no_grad():
        compiled = fxsplit.compile(
            model,
            example_kwargs={"input_ids": ids, "positions": positions},  # as model_worker.py compiles it
            splitting_ops=[ATTENTION],
            compile_workers=held,
            cache_dir=tmp_path,
        )
        compiled(input_ids=ids, positions=positions)
    held.release()
    versions = compiled._backend._versions

    def refuse(blob):  # as Inductor at exit, whose threads are shut down by then
        raise RuntimeError("cannot schedule new futures after shutdown")

    monkeypatch.setattr(versions, "persistent", dataclasses.replace(versions.persistent, deserialize=refuse))
    monkeypatch.setattr(background, "_waits", [compiled._backend.wait, compiled.wait])
    monkeypatch.setattr(background, "_exiting", False)
    background._wait_all()
    assert len(model_entries(tmp_path)) == 1
    warm = run_worker(tmp_path, "synthetic", "--layers", "4", "--calls", "8,11")
    assert warm["origin"] == "loaded" and (warm["graphs"], warm["compiler_calls"], warm["fallback_calls"]) == (0, 0, 0)


def test_a_process_that_ends_while_pieces_compile_saves_them_for_the_next(tmp_path):
    cold = run_worker(tmp_path, "synthetic", "--layers", "4", "--calls", "8")
    assert cold["origin"] == "compiled"
    warm = run_worker(tmp_path, "synthetic", "--layers", "4", "--calls", "8,11")
    assert warm["origin"] == "loaded" and (warm["graphs"], warm["aot"], warm["compiler_calls"]) == (0, 0, 0)
    assert warm["outputs"][0] == pytest.approx(cold["outputs"][0], abs=1e-3)


def test_wait_compiled_waits_for_the_backend_that_backend_fxsplit_made():
    model = hf_llama(4).eval()
    forward = torch.compile(logits_of(model), backend="fxsplit", dynamic=True)
    ids = torch.randint(0, 128, (1, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(forward(ids), logits_of(model)(ids), rtol=1e-4, atol=1e-4)
        fxsplit.wait_compiled()
        report = fxsplit.last_report()
        assert report is not None and sum(r.background for r in report.rows) == 2
        assert report.compiler_calls == 3 and all(r.seconds > 0 for r in report.rows if r.background)
        other = torch.randint(0, 128, (1, 11), generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(forward(other), logits_of(model)(other), rtol=1e-4, atol=1e-4)
