"""Pieces that compile in the background while the model already runs.

A deep model's graph holds one piece per layer boundary, all of them twins, and the
pieces before the first layer and after the last (the embedding and the mask code,
the final norm and the head), each run once per call. Compiling those before the
first call costs as much as compiling the layers: on two cores it doubles the wait
for it. So the backend compiles only the pieces the layers share before the first
call, and sends the once-per-call pieces to a worker; until a worker's version is
done, such a piece runs as its own code, as regional compilation runs everything
outside its layers for good. The first call after the version is done loads it
(:meth:`fxsplit.runtime.runner.PieceRunner.wait`), so a process that runs on
reaches whole-graph speed, and at the interpreter's exit fxsplit waits for what is
still compiling, so that the cache (and ``fxsplit.compile``'s saved model) holds it
for the next process: what the first call no longer waits for is waited for once, at
the end, never twice.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import CancelledError, Executor, Future
from typing import Any

from ..split.splitters import SplitItem
from .report import CompileReport, PieceRow
from .versions import Versions
from .workers import GuardedCompile, WorkerPool

log = logging.getLogger(__name__)


class InBackground:
    """A piece's general version compiling in a worker (``future``), loaded by
    :meth:`result`. A version the worker could not make (it refused a compile that
    assumed something about the sizes, which only Dynamo's trace could have guarded,
    or it died) leaves the piece running as its code, with a warning. At the
    interpreter's exit a job that another executor has not started is cancelled, as
    nothing says it ever will; fxsplit's own workers run every job they hold."""

    def __init__(
        self,
        future: Future[bytes],
        executor: Executor,
        item: SplitItem,
        key: Hashable | None,
        row: PieceRow,
        versions: Versions,
        report: CompileReport,
    ) -> None:
        self.future, self.item, self.key, self.row = future, item, key, row
        self.versions, self.report = versions, report
        self.ours = isinstance(executor, WorkerPool)
        self.submitted = time.perf_counter()

    def done(self) -> bool:
        return self.future.done()

    def result(self) -> Callable[..., Any] | None:
        name = self.item.submod_name
        if _exiting and not self.ours:
            self.future.cancel()  # not started: it may never be
        try:
            blob = self.future.result()
        except (Exception, CancelledError) as error:
            lines = str(error).strip().splitlines()
            first = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
            refused = isinstance(error, GuardedCompile) or str(error).startswith(GuardedCompile.__name__)
            if refused:  # only Dynamo's trace can guard what it assumed: there, in later processes
                self.versions.remember_in_trace(self.item, self.key)
            log.warning(
                "fxsplit: %s did not compile in the background (%s); it runs as its own code%s. With "
                "background=False it compiles before the first call",
                name,
                first,
                "; a later process with this cache compiles it before the first call" if refused else "",
            )
            return None
        if _exiting:  # Inductor's own threads have stopped: it loads nothing more
            return self.versions.unloaded(blob, self.item, self.key, self.report)
        compiled = self.versions.loaded(blob, self.item, self.key, None, self.report)
        self.row.seconds = time.perf_counter() - self.submitted
        return compiled


_waits: list[Callable[[], Any]] = []
_lock = threading.Lock()
_registered = False
_exiting = False


def wait_at_exit(wait: Callable[[], Any]) -> None:
    """Run ``wait`` (once) at the interpreter's exit, unless :func:`waited` says it ran before."""
    global _registered
    with _lock:
        if not _registered:
            atexit.register(_wait_all)
            _registered = True
        if wait not in _waits:
            _waits.append(wait)


def waited(wait: Callable[[], Any]) -> None:
    """``wait`` has run: the exit has nothing left to do for it."""
    with _lock:
        if wait in _waits:
            _waits.remove(wait)


def wait_compiled() -> None:
    """Wait for every piece that compiles in the background in this process, for every
    backend (those ``backend="fxsplit"`` makes too) and every ``fxsplit.compile``, and
    run each compiled from now on; saved models that waited for them are saved. Time
    a model's steady state after this.

    Example::

        model = torch.compile(model, backend="fxsplit", dynamic=True)
        model(*inputs)  # the first call: the pieces run once per call may still be compiling
        fxsplit.wait_compiled()  # from here on, every piece runs compiled
    """
    with _lock:
        waits = list(_waits)
    for wait in waits:
        wait()


def _wait_all() -> None:
    global _exiting
    with _lock:
        waits = list(_waits)
        _waits.clear()
        _exiting = True
    for wait in waits:
        try:
            wait()
        except KeyboardInterrupt:
            log.warning("fxsplit: interrupted while waiting for pieces compiling in the background; they are not saved")
            return
        except Exception as error:  # the exit goes on; what it could not save is compiled again next time
            log.warning("fxsplit: at exit, could not save what compiled in the background (%r)", error)
