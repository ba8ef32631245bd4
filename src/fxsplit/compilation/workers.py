"""Compiling pieces in worker processes: the sizes of ``compile_sizes``, and the
general versions of a graph's distinct pieces, side by side.

A piece compiled for one size is a job of its own: the piece's graph, the description
of its inputs (:class:`~fxsplit.runtime.signature.Signature`, which pickles) and the
size. :func:`compile_size` runs one anywhere fxsplit is installed and returns the
compiled piece as bytes; the parent loads them. A general version is the same job
with no size fixed (:func:`compile_general`), refused where its compile assumed
anything about the sizes, which only Dynamo's trace could have guarded. So any ``concurrent.futures.Executor``
can run the jobs (a ``ProcessPoolExecutor``, Dask's ``Client.get_executor()``), and
:class:`WorkerPool` is fxsplit's own: processes started with ``python -m`` that never
import the caller's ``__main__`` (as multiprocessing's spawn would, running a script
without a main guard once more in every worker), started early so that their own
start-up overlaps with the parent's work, and reused. fxsplit's workers start by
importing Inductor and, on a machine without CUDA, running its CPU probe
(:func:`warm_up`), the largest cost of a cold process's first CPU compile, while the
parent is still in Dynamo's trace; the parent's own first compile then finds the
probe's libraries built.

The kernel libraries a worker builds land in the fxsplit cache's ``inductor/`` folder
when the job names one, where the parent looks for them on one machine; a worker on
another machine hands back code that the parent's load builds again.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Executor, Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch.fx import GraphModule
from torch.fx.passes.fake_tensor_prop import FakeTensorProp

from .. import _compat
from ..runtime.signature import Signature
from ..runtime.sizes import SizeKey
from .cache import NotACacheDirError, PieceCache
from .examples import fake_inputs
from .graph_bytes import graph_from_bytes

log = logging.getLogger("fxsplit")

CompileWorkers = int | Executor | None
"""``compile_workers``: a number of worker processes (0: compile in the calling
process), an executor, or None for the default."""


class WorkerDied(RuntimeError):
    """A worker process ended while it ran a job, twice."""


class GuardedCompile(RuntimeError):
    """A piece's general version assumed something about its sizes in a worker, where
    no guard would check it; it must compile in the caller, inside Dynamo's trace."""


class WorkerError(RuntimeError):
    """A job raised in a worker; the message holds the worker's error and traceback."""


@dataclass(frozen=True)
class SizeJob:
    """One piece compiled for one size, as plain data that pickles."""

    piece: str
    graph: bytes  # the piece's graph (graph_to_bytes), made once for all of its sizes
    signature: Signature
    fixed: dict[str, SizeKey]  # size symbol -> the size, or the range (lo, hi)
    cache_root: str | None  # the caller's fxsplit cache: the kernel libraries go there where it exists
    grad: bool  # the caller's grad mode: off, AOTAutograd compiles no backward


def compile_size(job: SizeJob) -> bytes:
    """The piece of ``job`` compiled with Inductor for its size, as the bytes that
    ``_compat.persistent_compiler().deserialize`` loads."""
    return _compiled(job)[0]


def compile_general(job: SizeJob) -> bytes:
    """The piece of ``job`` compiled with Inductor for every size (``job.fixed``
    empty), as :func:`compile_size` does, refused (:class:`GuardedCompile`) where the
    compile assumed anything about the sizes: compiled in Dynamo's trace, as the
    caller would otherwise compile it, that assumption would be a guard of Dynamo's,
    checked at every call; here nothing would check it."""
    blob, shape_env = _compiled(job)
    guards = getattr(shape_env, "guards", None)
    if guards is None or guards:
        assumed = ", ".join(str(getattr(g, "expr", g)) for g in guards) if guards else "unknown: no guard list"
        raise GuardedCompile(f"the compile of {job.piece} assumed {assumed}")
    return blob


def _compiled(job: SizeJob) -> tuple[bytes, Any]:
    """(the compiled piece as bytes, the shape environment it was compiled in)"""
    store = _compat.persistent_compiler()
    made = fake_inputs(job.signature, job.fixed)
    if store is None or store.compile_with is None or made is None:
        raise RuntimeError("this torch cannot compile a piece outside Dynamo (no standalone_compile with fake_mode)")
    fake_mode, examples = made
    graph = graph_from_bytes(job.graph)
    _with_example_values(graph, fake_mode, examples)
    with _compiler_context(job.cache_root), torch.set_grad_enabled(job.grad):
        return store.serialize(store.compile_with(graph, examples, fake_mode)), fake_mode.shape_env


def warm_up(cache_root: str | None) -> None:
    """A worker's start: Inductor imported and, where there is no CUDA device (the
    pieces compile for the CPU), its CPU probe run (:func:`fxsplit._compat.probe_cpu`)
    in the cache's compiler context, so that the probe's libraries land where the
    parent's compiles, and later processes, look for them, with its answers."""
    _compat.persistent_compiler()
    if torch.cuda.is_available():
        return
    with _compiler_context(cache_root):
        _compat.probe_cpu()


def _compiler_context(cache_root: str | None) -> AbstractContextManager[Any]:
    """The compiler context of the fxsplit cache at ``cache_root`` where this machine
    has that cache (a worker on another machine creates nothing at the caller's
    path); otherwise Inductor's own cache as the process has it."""
    if not cache_root:
        return nullcontext()
    try:
        return PieceCache(Path(cache_root), create=False).compiler_context()
    except (FileNotFoundError, NotACacheDirError):
        return nullcontext()


def _with_example_values(graph: GraphModule, fake_mode: Any, examples: list[Any]) -> None:
    """Give each node the fake value Dynamo would have recorded (``example_value``):
    a shipped graph has none, and AOTAutograd's cache, without which a compiled piece
    cannot be saved as bytes, refuses a method call on a value it knows nothing of."""
    FakeTensorProp(graph, fake_mode).propagate_dont_convert_inputs(*examples)
    for node in graph.graph.nodes:
        if "val" in node.meta:
            node.meta["example_value"] = node.meta["val"]


def default_workers() -> int:
    """Worker processes by default: every core but the caller's."""
    return max(0, (os.cpu_count() or 1) - 1)


class WorkerPool(Executor):
    """Worker processes that run pickled calls sent over their standard input.

    Each process is served by a thread of the parent that takes the next job, sends
    it, and waits for the answer; a job not yet taken can still be cancelled (the
    caller then runs it itself). A process that dies during a job is replaced and the
    job sent again once; if it dies again, the job's future raises
    :class:`WorkerDied`. As with ``ProcessPoolExecutor``, each process, replacements
    included, first runs ``initializer(*initargs)``; its failure is logged, and the
    process still takes jobs.
    """

    def __init__(
        self, workers: int = 0, initializer: Callable[..., Any] | None = None, initargs: tuple[Any, ...] = ()
    ) -> None:
        self._initializer = initializer
        self._initargs = initargs
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.grow(workers)

    @property
    def workers(self) -> int:
        return len(self._threads)

    def pids(self) -> list[int]:
        """The process ids of the workers running now."""
        with self._lock:
            return [p.pid for p in self._processes if p.poll() is None]

    def grow(self, workers: int) -> None:
        """Start processes until there are ``workers`` of them."""
        with self._lock:
            while len(self._threads) < workers and not self._closed:
                process = self._start()
                thread = threading.Thread(target=self._serve, args=(process,), daemon=True, name="fxsplit-worker")
                self._threads.append(thread)
                thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._closed:
            raise RuntimeError("this WorkerPool is shut down")
        if kwargs:
            raise TypeError("WorkerPool.submit takes positional arguments only")
        future: Future[Any] = Future()
        self._jobs.put((future, fn, args))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job[0].cancel()
        for _ in threads:
            self._jobs.put(None)
        if wait:
            for thread in threads:
                thread.join()

    def _start(self) -> subprocess.Popen[bytes]:
        # the parent's import path, so that a job's function resolves in the worker as it does here
        path = [os.path.abspath(p or os.curdir) for p in sys.path]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        # the pool is the parallelism: Inductor's own pool of compile processes in every worker would
        # only compete with it for the cores, and start more processes that import torch
        env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
        process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self._processes.append(process)
        return process

    def _replace(self, process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        process.kill()
        process.wait()
        with self._lock:
            self._processes.remove(process)
            return self._start()

    def _initialised(self, process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        """``process`` once it has run the pool's initializer."""
        if self._initializer is None:
            return process
        try:
            assert process.stdin is not None and process.stdout is not None
            _send(process.stdin, pickle.dumps((self._initializer, self._initargs)))
            ok, value = pickle.loads(_receive(process.stdout))
        except (OSError, EOFError, pickle.UnpicklingError) as error:
            # its first job finds it dead, and replaces it
            log.warning("fxsplit: a worker process died running %s (%s)", _name(self._initializer), error)
            return process
        if not ok:
            log.warning("fxsplit: a worker process's %s failed: %s", _name(self._initializer), value)
        return process

    def _serve(self, process: subprocess.Popen[bytes]) -> None:
        process = self._initialised(process)
        while True:
            job = self._jobs.get()
            if job is None:
                break
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            request = pickle.dumps((fn, args))
            for attempt in range(2):
                try:
                    assert process.stdin is not None and process.stdout is not None
                    _send(process.stdin, request)
                    ok, value = pickle.loads(_receive(process.stdout))
                except (OSError, EOFError, pickle.UnpicklingError):
                    process = self._initialised(self._replace(process))
                    if attempt == 1:
                        future.set_exception(WorkerDied(f"a worker process died twice running {_name(fn)}"))
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(WorkerError(value))
                break
        with self._lock:
            self._processes.remove(process)
        if process.stdin is not None:
            process.stdin.close()
        process.wait()


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", repr(fn))


def _send(stream: IO[bytes], data: bytes) -> None:
    message = memoryview(struct.pack("<Q", len(data)) + data)
    while message:  # an unbuffered stream may take part of it
        message = message[stream.write(message) or 0 :]
    stream.flush()


def _receive(stream: IO[bytes]) -> bytes:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the other end closed")
    (length,) = struct.unpack("<Q", head)
    data = stream.read(length)
    if len(data) < length:
        raise EOFError("the other end closed mid-message")
    return data


def _worker_main() -> None:
    """A worker: answers each pickled ``(fn, args)`` on stdin with ``(ok, value)``.

    It ends quietly when its parent goes away: at the end of its requests, or when
    the pipe it answers on is closed (the parent exited while a job ran). Ctrl-C in a
    terminal reaches the whole process group; the parent decides what stops, so a
    worker ignores it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # unbuffered: an answer the closed pipe refused leaves nothing to flush at exit
    requests, answers = sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # what a job prints must not reach the pipe
    while True:
        try:
            fn, args = pickle.loads(_receive(requests))
        except EOFError:
            return
        try:
            answer: tuple[bool, Any] = (True, fn(*args))
        except BaseException as error:  # every failure goes back to the parent
            answer = (False, f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
        try:
            data = pickle.dumps(answer)
        except Exception as error:
            data = pickle.dumps((False, f"the result cannot be pickled: {type(error).__name__}: {error}"))
        try:
            _send(answers, data)
        except BrokenPipeError:
            return


_shared: WorkerPool | None = None
_shared_lock = threading.Lock()


def shared_pool(workers: int, cache_root: str | None) -> WorkerPool:
    """The process's own pool, with at least ``workers`` processes, each warmed up
    (:func:`warm_up`) for ``cache_root`` the first time; every backend of the process
    reuses it (a warm process's probe is answered for every cache)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = WorkerPool(initializer=warm_up, initargs=(cache_root,))
        _shared.grow(workers)
        return _shared


def shared_workers() -> int:
    """How many processes the process's own pool has (0: none started)."""
    with _shared_lock:
        return _shared.workers if _shared is not None else 0


if __name__ == "__main__":
    _worker_main()
