"""The piecewise ``torch.compile`` backend.

Dynamo hands the backend one graph of the whole model. The backend splits it at the
splitting ops (no code is generated for pieces that will be compiled), compiles each
*distinct* compute piece once for the general, dynamic shape, and hands the same
compiled callable to all of that piece's structural twins. Splitting pieces run
eagerly. At run time each compute piece dispatches on its first SymInt input: to a
version specialised for that size when ``compile_sizes`` lists it (compiled on first
use, from the real arguments), else to the general one.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import BrokenExecutor, Executor, Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.fx import GraphModule

from .. import _compat
from ..runtime.cudagraphs import CapturedPiece, CudaDevice, GraphDevice, capture_all, check_mode
from ..runtime.layout import InputLayouts
from ..runtime.runner import PieceRunner, SizeAt
from ..runtime.signature import Signature
from ..runtime.sizes import SizeKey, SizeTable, named, order
from ..runtime.stitching import install_direct_stitching
from ..split.lazy import node_count
from ..split.ops import SplittingOp, matcher
from ..split.splitters import SplitItem, split_graph
from .cache import DEFAULT_CACHE_DIR, DEFAULT_MAX_BYTES, PieceCache, cache_root
from .compilers import Compiler, resolve_compiler
from .dedup import digest, dispatch_symbol, persistent_key, piece_key, piece_structure
from .dump import readable_code, write_dump
from .examples import describe, fake_inputs
from .graph_bytes import graph_to_bytes
from .report import CompileReport, PieceRow, Progress, Specialisation
from .workers import CompileWorkers, SizeJob, WorkerDied, compile_general, compile_size, default_workers, shared_pool

log = logging.getLogger(__name__)


def _sdpa_ops() -> tuple[SplittingOp, ...]:
    names = [
        "scaled_dot_product_attention",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable",
    ]
    return (F.scaled_dot_product_attention, *(getattr(torch.ops.aten, n) for n in names if hasattr(torch.ops.aten, n)))


DEFAULT_SPLITTING_OPS: tuple[SplittingOp, ...] = _sdpa_ops()
"""Scaled-dot-product attention as Dynamo records it (the function) and as traced
graphs do (every aten overload this torch has)."""


class PieceCompileError(RuntimeError):
    """A compute piece failed to compile; the message says which and where its code is."""


class PiecewiseBackend:
    """A ``torch.compile`` backend that compiles a model piece by piece.

    Identical pieces (the layers of a deep model) are compiled once and share the
    result, so deep models compile in about the time of shallow ones.

    Args:
        splitting_ops: where to cut (see :func:`fxsplit.split_graph`); splitting pieces
            run eagerly. Default: scaled-dot-product attention.
        compiler: ``"inductor"``, ``"aot_eager"``, ``"eager"`` (pieces run as their
            Python code) or a callable ``(GraphModule, example_inputs) -> callable``.
        compile_sizes: sizes for which each piece gets a version compiled for that
            size alone, during the first call (or on first use of the size, with
            ``lazy``), so that no later call compiles. An entry may also be a range
            ``(lo, hi)``, both ends included: one version for every size in it. An
            exact size wins over a range; a size in neither runs the general
            version. The size is the first dynamic dimension
            of the model's inputs, in Dynamo's order (the token count of a flat
            batch; the batch of a (batch, sequence) input); every other dimension
            stays dynamic. Dynamo specialises sizes 0 and 1: a call of size 1
            compiles a graph of its own and never reaches this dispatch.
        lazy: compile each size of ``compile_sizes`` when a call of that size first
            arrives, instead of during the first call.
        compile_workers: where the distinct pieces' general versions and the sizes of
            ``compile_sizes`` are compiled (Inductor only; a general version whose
            compile in a worker assumes anything about the sizes, which only Dynamo's
            trace could guard, is compiled here instead): a
            number of worker processes (0: all in this process), any
            ``concurrent.futures.Executor`` (a ``ProcessPoolExecutor``, Dask's
            ``Client.get_executor()``; not a ``ThreadPoolExecutor``, as Inductor
            compiles in one thread at a time), or None: one process per job, at most one per
            core but this one's. This process compiles the jobs no worker has started.
            Workers start with the first graph (see :meth:`start_workers`) and are
            reused by every later compilation in the process.
        cudagraph: ``"piecewise"`` replays each compute piece as a CUDA graph per size
            of ``cudagraph_sizes``, captured during the first call (one memory pool,
            largest size first); a call of another size is padded to the next
            capture size, and one above the largest runs without graphs. Needs a
            CUDA device: elsewhere it is refused with a clear error. Padding assumes
            that compute pieces treat tokens independently, as a decoder's do
            between attention calls.
        cudagraph_sizes: the token counts to capture, such as ``[1, 2, 4, 8]``; without
            ``cudagraph`` a ValueError (it would do nothing).
        cudagraph_debug: check at each replay that no weight has moved.
        dedup: share compiled artifacts between structurally identical pieces.
        cache_dir: where to keep compiled pieces between processes (Inductor only):
            ``$FXSPLIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/fxsplit``, else
            ``~/.cache/fxsplit`` by default; None (or ``FXSPLIT_DISABLE_CACHE=1``)
            turns it off. Needs ``dedup``, whose keys name the entries. Inductor's
            own cache files for the pieces (on CPU, the kernel libraries) go to its
            ``inductor/`` folder, so a warm start needs nothing else.
        cache_max_bytes: size past which least recently used entries are evicted.
        dump_dir: if given, each compilation writes there the original graph, the
            split graph, every piece's readable code and ``report.json`` (with the
            source files Inductor generated, where it exposes them).

    After a compilation, ``report`` (:class:`fxsplit.CompileReport`) says what was
    split and compiled, and how long it took, over every graph compiled (``reports``
    has one per graph); each graph's report is also logged at INFO.

    Example::

        backend = fxsplit.PiecewiseBackend(compiler="inductor", compile_sizes=[8, 32])
        model = torch.compile(model, backend=backend, dynamic=True)
        model(*inputs)
        print(backend.report.format())
    """

    def __init__(
        self,
        splitting_ops: Iterable[SplittingOp] = DEFAULT_SPLITTING_OPS,
        compiler: str | Compiler = "inductor",
        compile_sizes: Iterable[SizeKey] = (),
        lazy: bool = False,
        compile_workers: CompileWorkers = None,
        cudagraph: str | None = None,
        cudagraph_sizes: Iterable[int] = (),
        cudagraph_debug: bool = False,
        dedup: bool = True,
        cache_dir: str | os.PathLike[str] | None = DEFAULT_CACHE_DIR,
        cache_max_bytes: int = DEFAULT_MAX_BYTES,
        dump_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.splitting_ops = list(splitting_ops)
        matcher(self.splitting_ops)  # a misspelt op name fails here, not at the first call
        self.compiler_name, self.compiler = resolve_compiler(compiler)
        self.compile_sizes = SizeTable(compile_sizes)
        self.lazy = lazy
        self.dedup = dedup
        self._persistent = _compat.persistent_compiler() if compiler == "inductor" and dedup else None
        if isinstance(compile_workers, int) and compile_workers < 0:
            raise ValueError(f"compile_workers={compile_workers}: give a number of processes >= 0, an Executor or None")
        if isinstance(compile_workers, ThreadPoolExecutor):
            raise ValueError(
                "compile_workers: a ThreadPoolExecutor compiles in threads of this process, and Inductor cannot "
                "compile in two threads at once; give a number of processes, a ProcessPoolExecutor or a cluster's "
                "executor"
            )
        self.compile_workers = compile_workers
        self.cudagraph_sizes = check_mode(cudagraph, cudagraph_sizes, cudagraph_debug)
        self.cudagraph_debug = cudagraph_debug
        self._graph_device: GraphDevice | None = CudaDevice() if cudagraph is not None else None
        root = cache_root(cache_dir)
        self.cache = PieceCache(root, cache_max_bytes) if root is not None and self._persistent else None
        self.dump_dir = dump_dir
        self.reports: list[CompileReport] = []
        # compiled runners by sharing key, kept across compilations of this backend
        self._runners: dict[Hashable, tuple[str, PieceRunner]] = {}
        # the bytes of every piece compiled with Inductor, by id of the compiled callable
        self._blobs: dict[int, tuple[Callable[..., Any], bytes]] = {}

    def __call__(self, gm: GraphModule, example_inputs: Sequence[Any]) -> GraphModule:
        global _last
        _last = (self.reports, self.compiler_name)  # the reports, not the backend and its compiled pieces
        report = CompileReport(compiler=self.compiler_name, trace_seconds=_compat.dynamo_trace_seconds())
        start = time.perf_counter()
        split, items = split_graph(gm, self.splitting_ops, tuple_return=True)
        report.split_seconds = time.perf_counter() - start
        report.pieces = len(items)

        # Top-level inputs are compiled from what Dynamo passed in, not from their fake
        # values: scalars lifted to tensors keep what `.item()` needs there.
        top_level = {n.name: v for n, v in zip(gm.graph.find_nodes(op="placeholder"), example_inputs)}
        dispatch = dispatch_symbol(gm)
        runners: dict[Hashable, tuple[str, PieceRunner]] = {}
        compute = [item for item in items if not item.is_splitting_graph]
        report.compute_pieces = len(compute)
        traced = f"Dynamo traced the model in {report.trace_seconds:.1f} s; " if report.trace_seconds else ""
        progress = Progress(len(compute), prefix=traced)
        sized: list[_SizeWork] = []
        try:
            report.probe_seconds = self._probe_cpu()
            for item in items:
                if item.is_splitting_graph:
                    report.rows.append(PieceRow(item.submod_name, "splitting", node_count(item.graph)))
                    continue
                progress.step(item.submod_name)
                row, runner = self._compile_piece(item, top_level, dispatch, runners, report, sized)
                report.rows.append(row)
                split.__dict__[item.submod_name] = runner
            self._finish_sizes(sized, report)
            if self._graph_device is not None and self.cudagraph_sizes:
                self._capture(split, [i for i in items if not i.is_splitting_graph], top_level, dispatch)
        finally:
            progress.close()
            for work in sized:
                if work.future is not None:
                    work.future.cancel()
        self._runners.update(runners)
        report.compile_seconds = time.perf_counter() - start - report.split_seconds
        self.reports.append(report)
        log.info("%s", report.format())
        if self.dump_dir is not None:
            self._dump(gm, split, items, report)
        install_direct_stitching(split)
        _time_first_call(split, report)
        return split

    def _probe_cpu(self) -> float:
        """Run Inductor's CPU probe before the first piece's compile, where that compile
        would run it (Inductor on a machine without CUDA), so that the report can say
        what it cost: ten gcc builds on a cold cache, once per process. Its libraries
        and answers go to the cache's compiler files, as the compiles' do."""
        if self.compiler_name != "inductor" or torch.cuda.is_available():
            return 0.0
        started = time.perf_counter()
        with self.cache.compiler_context() if self.cache is not None else nullcontext():
            _compat.probe_cpu()
        return time.perf_counter() - started

    @property
    def report(self) -> CompileReport:
        """What this backend compiled, over every graph Dynamo handed it (a batch of 1,
        which Dynamo specialises, makes a second graph); ``reports`` has one per graph."""
        return CompileReport.combine(self.reports, self.compiler_name)

    def _dump(self, gm: GraphModule, split: GraphModule, items: list[SplitItem], report: CompileReport) -> None:
        directory = Path(self.dump_dir) / f"graph_{len(self.reports) - 1}"  # type: ignore[arg-type]
        generated = {
            item.submod_name: _generated_source(_runner_of(split.__dict__[item.submod_name]).general)
            for item in items
            if not item.is_splitting_graph
        }
        write_dump(directory, gm, split, items, {**report.to_dict(), "generated_code": generated})
        log.info("fxsplit: wrote graphs, pieces and report to %s", directory)

    def _compile_piece(
        self,
        item: SplitItem,
        top_level: dict[str, Any],
        dispatch: str | None,
        runners: dict[Hashable, tuple[str, PieceRunner]],
        report: CompileReport,
        sized: list[_SizeWork],
    ) -> tuple[PieceRow, PieceRunner]:
        piece = item.graph
        structure = piece_structure(piece) if self.dedup else None  # read before the graph is built
        fakes, inputs = self._example_inputs(item, top_level)
        # the key compares symbolic shapes, which only the fake values carry
        key = piece_key(structure, fakes, dispatch) if structure is not None else None
        row = PieceRow(item.submod_name, "compute", node_count(piece), hash=digest(key) if key is not None else None)
        known = None
        if key is not None:
            known = runners.get(key) or self._runners.get(key)
        if known is not None:
            row.shared_with = known[0]
            return row, known[1]

        started = time.perf_counter()
        size_at = _size_at(fakes, dispatch)
        signature = describe(fakes)
        # the general version, then the sizes, go to the workers first, so that they compile while this
        # process compiles what no worker has taken
        general_job = self._submit_general(item, signature, key, row, len(sized))
        work = (
            []
            if self.lazy or size_at is None or dispatch is None
            else self._submit_sizes(item, signature, key, dispatch, len(sized) + len(general_job))
        )

        def specialise(size: SizeKey) -> Callable[..., Any]:
            assert dispatch is not None
            return self._specialise(item, signature, report, key, dispatch, size) or runner.general

        runner = PieceRunner(
            item.submod_name, _not_compiled, size_at, self.compile_sizes, specialise, InputLayouts(signature)
        )
        for w in (*general_job, *work):
            w.runner = runner
        if general_job:
            general_job[0].inputs = inputs
        else:
            runner.general = self._general_here(item, inputs, key, report)
        sized.extend((*general_job, *work))
        row.seconds = time.perf_counter() - started
        if key is not None:
            runners[key] = (item.submod_name, runner)
        return row, runner

    def _general_here(self, item: SplitItem, inputs: list[Any], key: Hashable | None, report: CompileReport) -> Any:
        """The piece's general version, compiled (or loaded) here, from Dynamo's trace."""
        piece = item.graph
        return self._compiled(
            item,
            report,
            key,
            None,
            in_memory=partial(self.compiler, piece, inputs),
            persistent=lambda store: store.compile(piece, inputs),
        )

    def _capture(
        self, split: GraphModule, compute: list[SplitItem], top_level: dict[str, Any], dispatch: str | None
    ) -> None:
        """Every compute piece of ``split`` captured as CUDA graphs (see
        :mod:`fxsplit.runtime.cudagraphs`), each instance with its own weights."""
        assert self._graph_device is not None
        if dispatch is None:
            log.warning("fxsplit: the model has no dynamic size to capture CUDA graphs for; it runs without them")
            return
        reaching_output = _pieces_reaching_output(split)
        pieces = []
        for item in compute:
            fakes, inputs = self._example_inputs(item, top_level)
            signature = describe(fakes)
            if signature is None:
                log.info("fxsplit: %s runs without CUDA graphs: its inputs cannot be described", item.submod_name)
                continue
            outputs = item.graph.graph.find_nodes(op="output")[0].args[0]
            outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
            pieces.append(
                CapturedPiece(
                    item.submod_name,
                    split.__dict__[item.submod_name],
                    signature,
                    dispatch,
                    {i: v for i, v in enumerate(inputs) if isinstance(v, torch.nn.Parameter)},
                    [_token_dim(node, dispatch) for node in outputs],
                    self._graph_device,
                    keep_outputs=item.submod_name in reaching_output,
                    debug=self.cudagraph_debug,
                )
            )
        capture_all(pieces, self.cudagraph_sizes, self._graph_device)
        for piece in pieces:
            if piece.graphs:
                split.__dict__[piece.name] = piece

    def start_workers(self) -> None:
        """Start the worker processes of ``compile_workers`` now rather than with the
        first graph, so that their start-up (importing torch and Inductor and, without
        CUDA, Inductor's CPU probe: seconds) overlaps with the caller's own work, such
        as Dynamo's trace, and the caller's first compile finds the probe done. Does nothing
        where no worker would be used (0 workers, a compiler other than Inductor)."""
        self._workers(max(2, len(self.compile_sizes)))

    def _workers(self, jobs: int) -> Executor | None:
        """Where ``jobs`` jobs compile, started or grown for them; None: here."""
        store = self._persistent
        if store is None or store.compile_with is None or jobs < 1:
            return None
        if isinstance(self.compile_workers, Executor):
            return self.compile_workers
        wanted = min(default_workers(), jobs) if self.compile_workers is None else self.compile_workers
        assert isinstance(wanted, int)
        return shared_pool(wanted, self._cache_root) if wanted > 0 else None

    @property
    def _cache_root(self) -> str | None:
        """The cache's directory as a job names it (None: no cache)."""
        return str(self.cache.root) if self.cache is not None else None

    def _submit_general(
        self, item: SplitItem, signature: Signature | None, key: Hashable | None, row: PieceRow, submitted: int
    ) -> list[_SizeWork]:
        """The piece's general version sent to a worker, where one can compile it: not
        one the cache holds (it loads here), nor one whose inputs cannot be described
        outside Dynamo. A lifted float is read at run time there (see
        :mod:`fxsplit.compilation.examples`), where here Dynamo may specialise it."""
        cache = self.cache
        if signature is None:
            return []
        if cache is not None and key is not None and self._cached(cache, key, None):
            return []
        executor = self._workers(submitted + 2)  # this piece and the one this process compiles meanwhile
        if executor is None:
            return []
        work = _SizeWork(item, signature, key, "", None, row=row)
        work.submitted = time.perf_counter()
        job = SizeJob(
            item.submod_name, graph_to_bytes(item.graph), signature, {}, self._cache_root, torch.is_grad_enabled()
        )
        work.future = executor.submit(compile_general, job)
        return [work]

    def _submit_sizes(
        self, item: SplitItem, signature: Signature | None, key: Hashable | None, symbol: str, submitted: int
    ) -> list[_SizeWork]:
        """The sizes of ``compile_sizes`` for one piece, each sent to a worker where one
        compiles it (not a size the cache already holds, which loads here)."""
        work = [_SizeWork(item, signature, key, symbol, size) for size in self.compile_sizes]
        cache = self.cache
        if signature is None:  # cannot be made outside Dynamo: _specialise says so, here
            return work
        jobs = [w for w in work if cache is None or key is None or not self._cached(cache, key, w.size)]
        executor = self._workers(submitted + len(jobs))
        if executor is None or not jobs:
            return work
        graph = graph_to_bytes(item.graph)  # here, not in the executor's thread, while this one compiles the graph
        root, grad = self._cache_root, torch.is_grad_enabled()
        for w in jobs:
            assert w.size is not None
            w.submitted = time.perf_counter()
            w.future = executor.submit(
                compile_size, SizeJob(item.submod_name, graph, signature, {symbol: w.size}, root, grad)
            )
        return work

    def _finish_sizes(self, sized: list[_SizeWork], report: CompileReport) -> None:
        """Every version sent to the workers compiled: here, the jobs no worker has
        started (the last first, as workers take the first), then the workers' results."""
        for work in reversed(sized):
            if work.future is None or work.future.cancel():
                work.future = None
                self._size_here(work, report)
        for work in sized:
            if work.future is not None:
                self._size_from_worker(work, report)
        for work in sized:  # a size that fell back to a general version not compiled yet at the time
            runner = work.runner
            if runner is not None and work.size is not None and runner.specialised.get(work.size) is _not_compiled:
                runner.specialised[work.size] = runner.general
        report.specialisations.sort(key=lambda s: (s.piece, order(s.size)))

    def _size_here(self, work: _SizeWork, report: CompileReport) -> None:
        runner = work.runner
        assert runner is not None
        if work.size is None:
            assert work.row is not None and work.inputs is not None
            started = time.perf_counter()
            runner.general = self._general_here(work.item, work.inputs, work.key, report)
            work.row.seconds += time.perf_counter() - started
            return
        version = self._specialise(work.item, work.signature, report, work.key, work.symbol, work.size)
        runner.specialised[work.size] = version or runner.general

    def _size_from_worker(self, work: _SizeWork, report: CompileReport) -> None:
        assert work.future is not None and work.runner is not None and self._persistent is not None
        name, size = work.item.submod_name, work.size
        what = "its general version" if size is None else named(size)
        try:
            blob = work.future.result()
        except (WorkerDied, BrokenExecutor) as error:
            log.warning("fxsplit: the worker compiling %s for %s died (%s); compiling it here", name, what, error)
            self._size_here(work, report)
            return
        except Exception as error:
            if size is None:  # refused (an assumption only Dynamo's trace can guard) or failed there: here, it may not
                log.info("fxsplit: %s's general version compiles here, not in a worker: %s", name, error)
                self._size_here(work, report)
                return
            path = _write_code(work.item)
            raise PieceCompileError(
                f"{self.compiler_name} failed to compile {name} for {what} in a worker: {error}. Its code is in {path}"
            ) from error
        cache = self.cache
        with cache.compiler_context() if cache is not None else nullcontext():
            compiled = self._persistent.deserialize(blob)
        if size is None:
            work.runner.general = compiled
        else:
            work.runner.specialised[size] = compiled
        report.compiler_calls += 1
        entry = self._entry(work.key, size) if work.key is not None else None
        if cache is not None and entry is not None:
            report.cache_misses += 1
            self._save(cache, entry, work.item, blob, size)
        self._keep(compiled, blob)
        seconds = time.perf_counter() - work.submitted
        if work.row is not None:
            work.row.seconds, work.row.worker = seconds, True
        else:
            report.specialisations.append(Specialisation(name, size, seconds, worker=True))  # type: ignore[arg-type]

    def _cached(self, cache: PieceCache, key: Hashable, size: SizeKey | None) -> bool:
        entry = self._entry(key, size)
        return entry is not None and entry in cache

    def _entry(self, key: Hashable, size: SizeKey | None) -> str | None:
        """The persistent cache's key for a piece compiled for ``size`` (None: general)."""
        return persistent_key(key, self.compiler_name, torch.__version__, sys.version_info[:2], size)

    @staticmethod
    def _example_inputs(item: SplitItem, top_level: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        """The piece's inputs as Dynamo's fake values, and as the compiler should get them."""
        fakes, inputs = [], []
        for node in item.graph.graph.find_nodes(op="placeholder"):
            if "example_value" not in node.meta:
                raise PieceCompileError(
                    f"input {node.name!r} of {item.submod_name} has no example value (meta['example_value']); "
                    f"PiecewiseBackend compiles graphs captured by Dynamo: use it through torch.compile"
                )
            fakes.append(node.meta["example_value"])
            inputs.append(top_level.get(node.name, node.meta["example_value"]))
        return fakes, inputs

    def _specialise(
        self,
        item: SplitItem,
        signature: Signature | None,
        report: CompileReport,
        key: Hashable | None,
        symbol: str,
        size: SizeKey,
    ) -> Callable[..., Any] | None:
        """The piece compiled for ``symbol == size`` (or ``lo <= symbol <= hi``), every
        other size symbolic; None (and a warning) where its inputs cannot be made again
        outside Dynamo."""
        made = fake_inputs(signature, {symbol: size}) if signature is not None else None
        if made is None:
            log.warning(
                "fxsplit: cannot compile %s for %s on its own (its inputs cannot be made outside Dynamo); "
                "it runs the general version",
                item.submod_name,
                named(size),
            )
            return None
        fake_mode, examples = made
        piece = item.graph
        started = time.perf_counter()
        hits = report.cache_hits

        def in_memory() -> Callable[..., Any]:
            with _compat.tracing_with(fake_mode):
                return self.compiler(piece, examples)

        def persistent(store: _compat.PersistentCompiler) -> Any:
            assert store.compile_with is not None
            return store.compile_with(piece, examples, fake_mode)

        can_save = self._persistent is not None and self._persistent.compile_with is not None
        compiled = self._compiled(item, report, key, size, in_memory, persistent if can_save else None)
        seconds = time.perf_counter() - started
        report.specialisations.append(Specialisation(item.submod_name, size, seconds, report.cache_hits > hits))
        return compiled

    def _compiled(
        self,
        item: SplitItem,
        report: CompileReport,
        key: Hashable | None,
        size: SizeKey | None,
        in_memory: Callable[[], Callable[..., Any]],
        persistent: Callable[[_compat.PersistentCompiler], Any] | None,
    ) -> Callable[..., Any]:
        """A piece compiled for the general shape (``size`` None) or for one size.

        With Inductor's compile-to-bytes (``persistent``): from the persistent cache
        when it has the piece, else compiled and saved there; the bytes are kept
        (``blob``) for whole-model artifacts. Otherwise by ``in_memory``.
        """
        # a specialised compile runs outside Dynamo's trace: no restart can happen there
        restarts = size is None
        store = self._persistent
        if store is None or persistent is None:
            return self._call_compiler(item, in_memory, report, restarts)
        cache = self.cache
        entry = None
        if cache is not None and key is not None:
            entry = self._entry(key, size)
        # the kernels a loaded artifact needs are built, or found, where the cache is
        with cache.compiler_context() if cache is not None else nullcontext():
            if cache is not None and entry is not None:
                started = time.perf_counter()
                loaded = cache.load(entry, partial(_loaded, store))
                if loaded is not None:
                    report.cache_hits += 1
                    report.load_seconds += time.perf_counter() - started
                    return self._keep(*loaded)
                report.cache_misses += 1
            compiled = self._call_compiler(item, partial(persistent, store), report, restarts)
        blob = store.serialize(compiled)
        if cache is not None and entry is not None:
            self._save(cache, entry, item, blob, size)
        return self._keep(compiled, blob)

    def _keep(self, compiled: Callable[..., Any], blob: bytes) -> Callable[..., Any]:
        self._blobs[id(compiled)] = (compiled, blob)
        return compiled

    def blob(self, compiled: Any) -> bytes | None:
        """The bytes of a piece this backend compiled with Inductor, else None."""
        kept = self._blobs.get(id(compiled))
        return kept[1] if kept is not None and kept[0] is compiled else None

    def _call_compiler(
        self, item: SplitItem, compile_piece: Callable[[], Any], report: CompileReport, restarts: bool = True
    ) -> Any:
        report.compiler_calls += 1
        try:
            if not restarts:
                return compile_piece()
            return _compat.compile_without_needless_restarts(compile_piece, *_float_symbols(item.graph))
        except _compat.dynamo_restart_exceptions():
            raise
        except Exception as error:
            path = _write_code(item)
            raise PieceCompileError(
                f"{self.compiler_name} failed to compile {item.submod_name} "
                f"({node_count(item.graph)} nodes): {type(error).__name__}: {error}. Its code is in {path}"
            ) from error

    def _save(self, cache: PieceCache, entry: str, item: SplitItem, blob: bytes, size: SizeKey | None) -> None:
        """Keep a compiled piece for later processes; failing to is worth a warning, not a crash."""
        description = {
            "piece": item.submod_name,
            "compiler": self.compiler_name,
            "torch": torch.__version__,
            "size": size,
        }
        try:
            cache.store(entry, lambda path: path.write_bytes(blob), description)
        except (OSError, RuntimeError) as error:
            log.warning(
                "fxsplit: could not save %s to the cache (%s); it will be compiled again next time",
                item.submod_name,
                error,
            )


@dataclass
class _SizeWork:
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


_last: tuple[list[CompileReport], str] | None = None


def _not_compiled(*args: Any) -> Any:
    raise AssertionError("fxsplit: a piece ran before its general version was compiled")


def last_report() -> CompileReport | None:
    """The report of the backend that compiled last in this process, such as the one
    ``torch.compile(model, backend="fxsplit")`` made, which has no object of its own to
    ask; None before any compile. It is complete once the first call has returned.

    Example::

        compiled = torch.compile(model, backend="fxsplit", dynamic=True)
        compiled(*inputs)
        print(fxsplit.last_report().format())
    """
    return CompileReport.combine(*_last) if _last is not None else None


def _time_first_call(split: GraphModule, report: CompileReport) -> None:
    """Record in ``report`` how long the first call of ``split`` ran, then forget it:
    the hook removes itself, so later calls take nothing from it."""
    started: list[float] = []

    def before(module: Any, args: Any) -> None:
        started.append(time.perf_counter())

    def after(module: Any, args: Any, output: Any) -> None:
        report.first_call_seconds = time.perf_counter() - started[0]
        handles[0].remove()
        handles[1].remove()

    handles = [split.register_forward_pre_hook(before), split.register_forward_hook(after)]


def _loaded(store: _compat.PersistentCompiler, blob: bytes) -> tuple[Callable[..., Any], bytes]:
    return store.deserialize(blob), blob


def compile_with_defaults(gm: GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
    """``torch.compile(model, backend="fxsplit")``: a :class:`PiecewiseBackend` with its
    defaults. torch finds it under the ``torch_dynamo_backends`` entry points, so the
    name works without importing fxsplit.

    Example::

        compiled = torch.compile(model, backend="fxsplit", dynamic=True)
    """
    return PiecewiseBackend()(gm, example_inputs)


def _runner_of(piece: PieceRunner | CapturedPiece) -> PieceRunner:
    """A compute piece's runner, also where CUDA graphs replay it."""
    return piece.run if isinstance(piece, CapturedPiece) else piece  # type: ignore[return-value]


def _pieces_reaching_output(split: GraphModule) -> set[str]:
    """The pieces whose outputs the split graph returns (directly or through getitem)."""
    names: set[str] = set()
    for node in split.graph.find_nodes(op="output")[0].all_input_nodes:
        while node.op == "call_function" and node.all_input_nodes:
            node = node.all_input_nodes[0]
        if node.op == "call_module":
            names.add(str(node.target))
    return names


def _token_dim(node: Any, symbol: str) -> int | None:
    """The dimension of a piece's output that holds the token count, if any."""
    return _dim_of(node.meta.get("example_value") if isinstance(node, torch.fx.Node) else None, symbol)


def _dim_of(value: Any, symbol: str) -> int | None:
    """The first dimension of a fake tensor whose size is exactly ``symbol``, if any."""
    if isinstance(value, torch.Tensor):
        for dim, size in enumerate(value.shape):
            if isinstance(size, torch.SymInt) and str(size.node.expr) == symbol:
                return dim
    return None


def _size_at(fakes: Sequence[Any], symbol: str | None) -> SizeAt | None:
    """Where a piece's inputs hold the dispatch size: a SymInt input, else a tensor
    dimension; None when the piece does not depend on it."""
    if symbol is None:
        return None
    for index, value in enumerate(fakes):
        if isinstance(value, torch.SymInt) and str(value.node.expr) == symbol:
            return index, None
    for index, value in enumerate(fakes):
        dim = _dim_of(value, symbol)
        if dim is not None:
            return index, dim
    return None


def _float_symbols(piece: GraphModule) -> tuple[set[str], set[str]]:
    """Names of the SymFloat symbols a piece's values use (its lifted Python floats),
    and of those among them that no size or integer in the piece depends on."""
    floats: set[str] = set()
    in_sizes: set[str] = set()
    for node in piece.graph.nodes:
        value = node.meta.get("example_value")
        memo = getattr(value, "item_memo", None)
        for scalar in (value, memo):
            if isinstance(scalar, torch.SymFloat):
                floats |= {str(s) for s in scalar.node.expr.free_symbols}
        for size in _sizes(value):
            in_sizes |= {str(s) for s in size.node.expr.free_symbols}
    return floats, floats - in_sizes


def _sizes(value: Any) -> list[torch.SymInt | torch.SymBool]:
    """The symbolic integers and booleans in an example value: its shape, stride and
    storage offset if it is a tensor, those of its items if it is a tuple or list, else
    the value itself."""
    if isinstance(value, (torch.SymInt, torch.SymBool)):
        return [value]
    if isinstance(value, (tuple, list)):
        return [size for item in value for size in _sizes(item)]
    if not isinstance(value, torch.Tensor):
        return []
    numbers = [*value.shape, *value.stride(), value.storage_offset()]
    return [n for n in numbers if isinstance(n, torch.SymInt)]


def _generated_source(compiled: Any) -> str | None:
    """The source file Inductor generated for a compiled piece, where it exposes one:
    the code of the ``current_callable`` found through the wrappers around it."""
    for _ in range(4):
        code = getattr(getattr(compiled, "current_callable", None), "__code__", None)
        if code is not None:
            return str(code.co_filename)
        compiled = (
            next(
                (
                    vars(compiled)[name]
                    for name in ("inner_fn", "compiled_fn", "_compiled_fn")
                    if name in vars(compiled)
                ),
                None,
            )
            if hasattr(compiled, "__dict__")
            else None
        )
        if compiled is None:
            return None
    return None


def _write_code(item: SplitItem) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="fxsplit-failed-"))
    path = directory / f"{item.submod_name}.py"
    path.write_text(readable_code(item.graph))
    return path
