"""compile_workers: every listed size compiled during the first call, in worker
processes, in any Executor, or here; and every way a job can fail."""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import worker_jobs

import fxsplit
from fxsplit import _compat
from fxsplit.compilation.cache import PieceCache
from fxsplit.compilation.workers import WorkerDied, WorkerError, WorkerPool, compile_size, warm_up
from fxsplit.runtime.signature import TensorSpec
from fxsplit.tools import models

ATTENTION = models.ATTENTION_OP_NAME
SIZES = [4, (6, 12)]  # a size and a range
CALLS = (8, 4, 6, 12, 9, 13, 5)  # the first call, the size, sizes in the range, sizes in neither


@pytest.fixture(scope="module")
def pool():
    pool = WorkerPool(1)
    yield pool
    pool.shutdown()


def test_a_pool_runs_jobs_in_another_process(pool):
    assert pool.submit(worker_jobs.pid).result(timeout=120) in pool.pids()
    assert pool.submit(worker_jobs.pid).result(timeout=120) != os.getpid()


def test_a_job_that_raises_reports_the_workers_error(pool):
    with pytest.raises(WorkerError, match=r"ValueError: no such piece(.|\n)*Traceback"):
        pool.submit(worker_jobs.fail, "no such piece").result(timeout=120)


def test_a_dead_worker_is_replaced_and_its_job_run_again_once(pool, tmp_path):
    before = pool.pids()
    assert pool.submit(worker_jobs.die_once, str(tmp_path / "marker")).result(timeout=120) not in before
    with pytest.raises(WorkerDied, match="died twice"):
        pool.submit(worker_jobs.die).result(timeout=120)
    assert pool.submit(worker_jobs.pid).result(timeout=120) in pool.pids()  # the pool still works


def test_a_job_not_started_can_be_cancelled(pool):
    first = pool.submit(worker_jobs.pid)
    queued = [pool.submit(worker_jobs.pid) for _ in range(5)]
    first.result(timeout=120)
    assert any(f.cancel() for f in queued[1:]) or all(f.done() for f in queued)
    assert all(f.cancelled() or f.result(timeout=120) for f in queued)


def test_each_process_runs_the_initializer_before_its_jobs_replacements_too(tmp_path):
    pool = WorkerPool(1, initializer=worker_jobs.remember, initargs=("warm",))
    try:
        assert pool.submit(worker_jobs.remembered).result(timeout=120) == ["warm"]
        assert pool.submit(worker_jobs.die_once, str(tmp_path / "marker")).result(timeout=120)
        assert pool.submit(worker_jobs.remembered).result(timeout=120) == ["warm"]  # the replacement's own
    finally:
        pool.shutdown()


def test_a_failing_initializer_is_logged_and_the_process_still_takes_jobs(caplog):
    pool = WorkerPool(1, initializer=worker_jobs.fail, initargs=("no compiler",))
    try:
        with caplog.at_level(logging.WARNING, logger="fxsplit"):
            assert pool.submit(worker_jobs.pid).result(timeout=120) in pool.pids()
    finally:
        pool.shutdown()
    assert "ValueError: no compiler" in caplog.text


def test_a_warm_up_probes_the_cpu_into_the_cache_where_there_is_no_cuda(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(_compat, "probe_cpu", lambda: seen.append(os.environ["TORCHINDUCTOR_CACHE_DIR"]))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cache = PieceCache(tmp_path)  # the caller's, made before its workers start
    warm_up(str(tmp_path))
    assert seen == [str(cache.compiler_files())]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # pieces compile for the GPU: no probe
    warm_up(str(tmp_path))
    assert len(seen) == 1


def test_started_workers_probe_the_cpu_before_any_graph(tmp_path):
    # the caller traces meanwhile; its first compile finds the probe's libraries built, and a
    # later process the answers
    script = (
        "import sys, time, fxsplit\n"
        "from pathlib import Path\n"
        "backend = fxsplit.PiecewiseBackend(compile_sizes=[4], cache_dir=sys.argv[1])\n"
        "backend.start_workers()\n"
        "probes = Path(sys.argv[1], 'inductor', 'fxsplit-isa-probes.json')\n"
        "deadline = time.monotonic() + 240\n"
        "while not probes.exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.2)\n"
        "print(probes.read_text())\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout)
    assert list(answers) == [_compat.isa_probe_machine()] and answers[_compat.isa_probe_machine()]


def test_a_worker_whose_parent_exits_mid_job_ends_without_a_traceback():
    # the parent exits while its worker still runs the initializer; the answer meets a closed pipe
    script = (
        "import worker_jobs\n"
        "from fxsplit.compilation.workers import WorkerPool\n"
        "WorkerPool(1, initializer=worker_jobs.nap, initargs=(3,))\n"
        "import time; time.sleep(1)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(worker_jobs.__file__).parent)}
    # the worker holds the same stderr: run() returns once the worker has ended too
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr


def test_workers_never_run_the_callers_script_again(tmp_path):
    # multiprocessing's spawn imports the caller's __main__ in each worker: a script without a
    # main guard would run once more per worker
    script = tmp_path / "no_guard.py"
    script.write_text(
        "import worker_jobs\n"
        "from fxsplit.compilation.workers import WorkerPool\n"
        "print('script ran', flush=True)\n"
        "pool = WorkerPool(1)\n"
        "assert pool.submit(worker_jobs.pid).result(timeout=120)\n"
        "pool.shutdown()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(worker_jobs.__file__).parent)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("script ran") == 1


def inputs(model, n):
    return models.example_inputs(model.config, n)


def compile_with(workers, cache_dir=None, sizes=SIZES, calls=CALLS):
    """A 2-layer model compiled with ``sizes`` on ``workers`` and called at ``calls``
    tokens, the first call first; (model, outputs by tokens, backend)"""
    torch.manual_seed(0)
    model, _ = models.build(2)
    backend = fxsplit.PiecewiseBackend([ATTENTION], compile_sizes=sizes, compile_workers=workers, cache_dir=cache_dir)
    compiled = torch.compile(model, backend=backend, dynamic=True)
    with torch.no_grad():
        outputs = {n: compiled(*inputs(model, n)) for n in calls}
        for n, out in outputs.items():
            torch.testing.assert_close(out, model(*inputs(model, n)), rtol=1e-4, atol=1e-4)
    return model, outputs, backend


@pytest.fixture(scope="module")
def in_process():
    return compile_with(0)


def test_in_process_compiles_every_size_during_the_first_call(in_process):
    _, _, backend = in_process
    report = backend.report
    # 3 distinct pieces, each for the general shape, size 4 and sizes 6 to 12; none of it in a worker
    assert report.compiler_calls == 9
    assert [(s.size, s.worker) for s in report.specialisations] == [(4, False), ((6, 12), False)] * 3


class Keep(Executor):
    """Keeps each job and never starts it: the backend then compiles it itself."""

    def __init__(self):
        self.jobs = []

    def submit(self, fn, /, *args, **kwargs):
        self.jobs.append(args[0])
        return Future()


def test_a_job_compiles_in_the_grad_mode_of_the_call_that_made_it(monkeypatch):
    # a worker starts with grad on: compiled so, a piece called under no_grad would also
    # get a backward compiled, twice the work
    kept = Keep()
    linear = torch.nn.Linear(8, 8)  # weights that require grad: one piece
    backend = fxsplit.PiecewiseBackend([ATTENTION], compile_sizes=[4], compile_workers=kept, cache_dir=None)
    with torch.no_grad():
        torch.compile(linear, backend=backend, dynamic=True)(torch.randn(6, 8))
    store = _compat.persistent_compiler()
    modes = []

    def recording(gm, inputs, fake_mode):
        modes.append(torch.is_grad_enabled())
        return store.compile_with(gm, inputs, fake_mode)

    monkeypatch.setattr(_compat, "persistent_compiler", lambda: dataclasses.replace(store, compile_with=recording))
    assert torch.is_grad_enabled()
    compile_size(kept.jobs[0])  # as a worker runs it
    assert modes == [False]  # the model was called under no_grad
    assert [list(job.fixed.values()) for job in kept.jobs] == [[], [4]]  # the general version, then size 4


def test_default_workers_compile_the_sizes_and_nothing_after_the_first_call(in_process, tmp_path):
    model, outputs, backend = compile_with(None, cache_dir=tmp_path / "cache")
    report = backend.report
    assert report.compiler_calls == 9  # counted after every call: none compiled after the first
    assert sorted(s.piece for s in report.specialisations) == sorted(["submod_0", "submod_2", "submod_4"] * 2)
    assert any(s.worker for s in report.specialisations)
    for n, out in outputs.items():
        torch.testing.assert_close(out, in_process[1][n], rtol=0, atol=0)
    # what a worker compiled is in the cache: a second backend loads every size
    _, _, again = compile_with(None, cache_dir=tmp_path / "cache")
    assert again.report.compiler_calls == 0 and all(s.cached for s in again.report.specialisations)


def test_a_process_pool_executor_compiles_the_sizes(in_process):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as executor:
        _, outputs, backend = compile_with(executor)
    assert backend.report.compiler_calls == 9
    for n, out in outputs.items():
        torch.testing.assert_close(out, in_process[1][n], rtol=0, atol=0)


def test_a_dask_cluster_compiles_the_sizes(in_process):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        _, outputs, backend = compile_with(client.get_executor())
    assert backend.report.compiler_calls == 9
    for n, out in outputs.items():
        torch.testing.assert_close(out, in_process[1][n], rtol=0, atol=0)


class Failing(Executor):
    """An executor whose every job fails with ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        future.set_running_or_notify_cancel()
        future.set_exception(self.error)
        return future


def test_a_failing_job_names_the_piece_and_the_size():
    # Dynamo passes fxsplit.PieceCompileError on inside its own BackendCompilerFailed
    with pytest.raises(
        Exception,
        match=r"PieceCompileError: inductor failed to compile submod_\d for (size 4|sizes 6 to 12) in a "
        r"worker: cannot lower this\. Its code is in",
    ):
        compile_with(Failing(RuntimeError("cannot lower this")))


def test_a_job_whose_worker_died_is_compiled_here(in_process, caplog):
    with caplog.at_level(logging.WARNING, logger="fxsplit"):
        _, outputs, backend = compile_with(Failing(WorkerDied("a worker process died twice")))
    assert "died" in caplog.text and "compiling it here" in caplog.text
    assert backend.report.compiler_calls == 9 and not any(s.worker for s in backend.report.specialisations)
    for n, out in outputs.items():
        torch.testing.assert_close(out, in_process[1][n], rtol=0, atol=0)


def test_compile_workers_must_be_a_count_an_executor_or_none():
    with pytest.raises(ValueError, match="compile_workers=-1"):
        fxsplit.PiecewiseBackend(compile_workers=-1)
    with ThreadPoolExecutor(1) as threads, pytest.raises(ValueError, match="Inductor cannot compile in two threads"):
        fxsplit.PiecewiseBackend(compile_workers=threads)


def test_a_worker_without_the_callers_cache_compiles_in_its_own_and_creates_nothing(tmp_path):
    kept = Keep()
    cache = tmp_path / "cache"
    backend = fxsplit.PiecewiseBackend([ATTENTION], compile_sizes=[4], compile_workers=kept, cache_dir=cache)
    linear = torch.nn.Linear(8, 8).eval()
    with torch.no_grad():
        torch.compile(linear, backend=backend, dynamic=True)(torch.randn(6, 8))
    _, job = kept.jobs  # the general version, then size 4
    assert job.cache_root == str(cache) and job.fixed
    elsewhere = tmp_path / "another machine's view"
    remote = dataclasses.replace(job, cache_root=str(elsewhere / "cache"))
    x = torch.randn(4, 8)
    by_shape = {(8, 8): linear.weight, (8,): linear.bias, (4, 8): x}
    sizes = {symbol: 4 for symbol, _ in job.signature.hints}
    args = [
        by_shape[tuple(int(e.subs(sizes)) for e in spec.size)] if isinstance(spec, TensorSpec) else 4
        for spec in job.signature.inputs
    ]
    with torch.no_grad():
        compiled = _compat.persistent_compiler().deserialize(compile_size(remote))
        torch.testing.assert_close(compiled(*args)[0], linear(x))
    assert not elsewhere.exists()


def test_the_general_versions_compile_in_workers_beside_this_process(tmp_path):
    # three distinct pieces, a worker started and idle: it takes the first, this process the last
    from fxsplit.compilation.workers import shared_pool

    shared_pool(1, None).submit(os.getpid).result(timeout=300)
    model, outputs, backend = compile_with(None, cache_dir=tmp_path / "cache", sizes=[])
    compiled = [row for row in backend.report.rows if row.kind == "compute" and not row.shared_with]
    assert len(compiled) == 3 and compiled[0].worker and not compiled[-1].worker
    assert backend.report.compiler_calls == 3 and backend.report.cache_misses == 3
    assert "w, compiled in a worker" in backend.report.format()


def test_a_general_version_that_assumed_a_size_compiles_here(monkeypatch, caplog):
    from fxsplit.compilation import workers

    def guarded(job):
        raise workers.GuardedCompile(f"the compile of {job.piece} assumed Eq(s0, 16)")

    kept = Keep()
    linear = torch.nn.Linear(8, 8).eval()
    backend = fxsplit.PiecewiseBackend([ATTENTION], compile_workers=kept, cache_dir=None)
    monkeypatch.setattr(Keep, "submit", lambda self, fn, job: _failed(guarded, job, self.jobs))
    with caplog.at_level(logging.INFO, logger="fxsplit"), torch.no_grad():
        x = torch.randn(6, 8)
        torch.testing.assert_close(torch.compile(linear, backend=backend, dynamic=True)(x), linear(x))
    assert len(kept.jobs) == 1 and not kept.jobs[0].fixed
    assert "general version compiles here, not in a worker: the compile of submod_0 assumed Eq(s0, 16)" in caplog.text
    (row,) = backend.report.rows
    assert not row.worker and backend.report.compiler_calls == 1


def _failed(fn, job, jobs):
    jobs.append(job)
    future = Future()
    future.set_running_or_notify_cancel()  # started: this process waits for it rather than take it
    try:
        fn(job)
    except Exception as error:
        future.set_exception(error)
    return future


def test_a_general_compile_that_assumes_nothing_is_accepted_and_one_that_does_is_refused(monkeypatch):
    from fxsplit.compilation import workers

    kept = Keep()
    linear = torch.nn.Linear(8, 8).eval()
    with torch.no_grad():
        torch.compile(
            linear, backend=fxsplit.PiecewiseBackend([ATTENTION], compile_workers=kept, cache_dir=None), dynamic=True
        )(torch.randn(6, 8))
    (job,) = kept.jobs
    assert workers.compile_general(job)  # a linear layer assumes nothing about its size
    real = workers._compiled

    def assuming(job):
        blob, shape_env = real(job)
        (symbol,) = shape_env.var_to_val
        shape_env.guards.append(type("Guard", (), {"expr": symbol > 4})())
        return blob, shape_env

    monkeypatch.setattr(workers, "_compiled", assuming)
    with pytest.raises(workers.GuardedCompile, match=r"the compile of submod_0 assumed s\d+ > 4"):
        workers.compile_general(job)


class GeneralOnly(Executor):
    """Runs the general versions at once, as a worker that is done; leaves the sizes to
    the caller (a pending job, which it cancels and compiles itself)."""

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        if fn.__name__ == "compile_general":
            future.set_running_or_notify_cancel()
            future.set_result(fn(*args))
        return future


def test_a_size_that_falls_back_to_a_general_version_compiled_in_a_worker_runs_it(monkeypatch):
    backend = fxsplit.PiecewiseBackend([ATTENTION], compile_sizes=[4], compile_workers=GeneralOnly(), cache_dir=None)
    monkeypatch.setattr(backend._versions, "specialise", lambda *args: None)  # as where a size's inputs cannot be made
    linear = torch.nn.Linear(8, 8).eval()
    compiled = torch.compile(linear, backend=backend, dynamic=True)
    with torch.no_grad():
        for n in (6, 4):
            x = torch.randn(n, 8)
            torch.testing.assert_close(compiled(x), linear(x))
    (row,) = backend.report.rows
    assert row.worker
