"""The versions of a graph's pieces that compile outside Dynamo's trace, side by side:
sent to the workers (:mod:`fxsplit.compilation.workers`) as the backend reaches each
piece, then collected once it has reached them all.

A piece's general version goes to a worker where one can compile it (not one the
cache holds, which loads here, nor one whose inputs cannot be described outside
Dynamo); so do the sizes of ``compile_sizes``. Meanwhile this process compiles what
no worker took. At the end it compiles the jobs no worker has started (the last
first, as workers take the first), then loads the workers' results. A general version
a worker refused (its compile assumed something about the sizes that only Dynamo's
trace could guard) or a worker that died is compiled here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from concurrent.futures import BrokenExecutor, Executor, Future
from dataclasses import dataclass
from typing import Any

import torch

from ..runtime.runner import PieceRunner
from ..runtime.signature import Signature
from ..runtime.sizes import SizeKey, SizeTable, named, order
from ..split.lazy import runnable_forward
from ..split.splitters import SplitItem
from .background import InBackground
from .dump import write_failed_code
from .graph_bytes import graph_to_bytes
from .report import CompileReport, PieceRow, Specialisation
from .versions import PieceCompileError, Versions
from .workers import CompileWorkers, SizeJob, WorkerDied, compile_general, compile_size, default_workers, shared_pool

log = logging.getLogger(__name__)


@dataclass
class VersionJob:
    """One version of a piece to compile, in a worker (``future``) or here: for one
    size, or the general version (``size`` None, with its ``row`` and ``inputs``)."""

    item: SplitItem
    signature: Signature | None
    key: Hashable | None
    symbol: str
    size: SizeKey | None
    future: Future[bytes] | None = None
    submitted: float = 0.0
    runner: PieceRunner | None = None  # the piece's runner, which gets the compiled version
    row: PieceRow | None = None
    inputs: list[Any] | None = None
    background: bool = False  # a general version the first call does not wait for (see .background)
    executor: Executor | None = None  # where it went


def not_compiled(*args: Any) -> Any:
    """A runner's general version until it is compiled."""
    raise AssertionError("fxsplit: a piece ran before its general version was compiled")


def executor_for(
    compile_workers: CompileWorkers, versions: Versions, jobs: int, cache_root: str | None
) -> Executor | None:
    """Where ``jobs`` jobs compile, started or grown for them; None: here (0 workers, or
    a compiler that cannot compile outside Dynamo's trace)."""
    store = versions.persistent
    if store is None or store.compile_with is None or jobs < 1:
        return None
    if isinstance(compile_workers, Executor):
        return compile_workers
    wanted = min(default_workers(), jobs) if compile_workers is None else compile_workers
    assert isinstance(wanted, int)
    return shared_pool(wanted, cache_root) if wanted > 0 else None


class VersionJobs:
    """The jobs of one graph, from submission to the runners that get their versions."""

    def __init__(
        self,
        versions: Versions,
        workers: Callable[[int], Executor | None],
        cache_root: str | None,
        compile_sizes: SizeTable,
        report: CompileReport,
    ) -> None:
        self.versions, self.workers, self.cache_root = versions, workers, cache_root
        self.compile_sizes, self.report = compile_sizes, report
        self.jobs: list[VersionJob] = []

    def submit(
        self,
        item: SplitItem,
        signature: Signature | None,
        key: Hashable | None,
        row: PieceRow,
        symbol: str | None,
        runner: PieceRunner,
        inputs: list[Any],
        background: bool = False,
    ) -> bool:
        """Send a piece's general version (where it can go) and then its sizes (where
        ``symbol`` names the size they fix) to the workers, or keep them for
        :meth:`finish`; whether the general version went. A general version sent
        with ``background`` is not waited for: see :mod:`.background`."""
        general = self._general(item, signature, key, row)
        sizes = self._sizes(item, signature, key, symbol, len(general)) if symbol is not None else []
        for job in (*general, *sizes):
            job.runner = runner
        for job in general:
            job.inputs, job.background = inputs, background
        self.jobs.extend((*general, *sizes))
        return bool(general)

    def _general(
        self, item: SplitItem, signature: Signature | None, key: Hashable | None, row: PieceRow
    ) -> list[VersionJob]:
        """A lifted float is read at run time in a worker (see
        :mod:`fxsplit.compilation.examples`), where here Dynamo may specialise it."""
        if signature is None or self.versions.cached(key, None):
            return []
        executor = self.workers(len(self.jobs) + 2)  # this piece and the one this process compiles meanwhile
        if executor is None:
            return []
        job = VersionJob(item, signature, key, "", None, row=row, submitted=time.perf_counter(), executor=executor)
        job.future = executor.submit(
            compile_general,
            SizeJob(
                item.submod_name, graph_to_bytes(item.graph), signature, {}, self.cache_root, torch.is_grad_enabled()
            ),
        )
        return [job]

    def _sizes(
        self, item: SplitItem, signature: Signature | None, key: Hashable | None, symbol: str, queued: int
    ) -> list[VersionJob]:
        work = [VersionJob(item, signature, key, symbol, size) for size in self.compile_sizes]
        if signature is None:  # cannot be made outside Dynamo: Versions.specialise says so, here
            return work
        jobs = [w for w in work if not self.versions.cached(key, w.size)]
        executor = self.workers(len(self.jobs) + queued + len(jobs))
        if executor is None or not jobs:
            return work
        graph = graph_to_bytes(item.graph)  # here, not in the executor's thread, while this one compiles the graph
        grad = torch.is_grad_enabled()
        for w in jobs:
            assert w.size is not None
            w.submitted = time.perf_counter()
            w.future = executor.submit(
                compile_size, SizeJob(item.submod_name, graph, signature, {symbol: w.size}, self.cache_root, grad)
            )
        return work

    def finish(self) -> list[PieceRunner]:
        """Every job compiled: here, the jobs no worker has started (the last first, as
        workers take the first), then the workers' results; a background job is left
        to its worker, its runner running the piece's code meanwhile. The runners
        that wait for a background job."""
        waiting = self._to_background()
        for job in reversed(self.jobs):
            if job.future is None or job.future.cancel():
                job.future = None
                self._here(job)
        for job in self.jobs:
            if job.future is not None:
                self._from_worker(job)
        for job in self.jobs:  # a size that fell back to a general version not compiled yet at the time
            runner = job.runner
            if runner is not None and job.size is not None and runner.specialised.get(job.size) is not_compiled:
                runner.specialised[job.size] = runner.general
        self.report.specialisations.sort(key=lambda s: (s.piece, order(s.size)))
        return waiting

    def _to_background(self) -> list[PieceRunner]:
        """Hand each background job to its runner, and take it off the list of jobs to
        compile or cancel here."""
        waiting = []
        for job in [j for j in self.jobs if j.background]:
            assert job.future is not None and job.executor is not None
            assert job.runner is not None and job.row is not None
            job.row.worker = job.row.background = True
            job.runner.defer(
                runnable_forward(job.item.graph),
                InBackground(job.future, job.executor, job.item, job.key, job.row, self.versions, self.report),
            )
            waiting.append(job.runner)
            self.jobs.remove(job)
        return waiting

    def cancel(self) -> None:
        """Cancel what no worker has started (after a failure: nothing will collect it)."""
        for job in self.jobs:
            if job.future is not None:
                job.future.cancel()

    def _here(self, job: VersionJob) -> None:
        runner = job.runner
        assert runner is not None
        if job.size is None:
            assert job.row is not None and job.inputs is not None
            started = time.perf_counter()
            runner.general = self.versions.general(job.item, job.inputs, job.key, self.report)
            job.row.seconds += time.perf_counter() - started
            return
        version = self.versions.specialise(job.item, job.signature, self.report, job.key, job.symbol, job.size)
        runner.specialised[job.size] = version or runner.general

    def _from_worker(self, job: VersionJob) -> None:
        assert job.future is not None and job.runner is not None
        name, size = job.item.submod_name, job.size
        what = "its general version" if size is None else named(size)
        try:
            blob = job.future.result()
        except (WorkerDied, BrokenExecutor) as error:
            log.warning("fxsplit: the worker compiling %s for %s died (%s); compiling it here", name, what, error)
            self._here(job)
            return
        except Exception as error:
            if size is None:  # refused (an assumption only Dynamo's trace can guard) or failed there: here, it may not
                log.info("fxsplit: %s's general version compiles here, not in a worker: %s", name, error)
                self._here(job)
                return
            path = write_failed_code(job.item)
            raise PieceCompileError(
                f"{self.versions.compiler_name} failed to compile {name} for {what} in a worker: {error}. "
                f"Its code is in {path}"
            ) from error
        compiled = self.versions.loaded(blob, job.item, job.key, size, self.report)
        if size is None:
            job.runner.general = compiled
        else:
            job.runner.specialised[size] = compiled
        seconds = time.perf_counter() - job.submitted
        if job.row is not None:
            job.row.seconds, job.row.worker = seconds, True
        else:
            self.report.specialisations.append(Specialisation(name, size, seconds, worker=True))  # type: ignore[arg-type]
