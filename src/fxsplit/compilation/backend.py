"""The piecewise ``torch.compile`` backend.

Dynamo hands the backend one graph of the whole model. The backend splits it at the
splitting ops (no code is generated for pieces that will be compiled), compiles each
*distinct* compute piece once for the general, dynamic shape, and hands the same
compiled callable to all of that piece's structural twins. Splitting pieces run
eagerly. At run time each compute piece dispatches on its first SymInt input: to a
version specialised for that size when ``compile_sizes`` lists it (compiled during
the first call, or on first use with ``lazy``, from inputs made outside Dynamo), else
to the general one.

``PiecewiseBackend.__call__`` is the data path: split (:mod:`fxsplit.split`), key
(:mod:`.dedup`), compile or share (:mod:`.versions`), the versions compiled side by
side (:mod:`.jobs`, :mod:`.workers`; the pieces run once per call in the background,
:mod:`.background`), CUDA-graph capture
(:mod:`fxsplit.runtime.cudagraphs`), then the stitching that calls the pieces
(:mod:`fxsplit.runtime.stitching`).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.fx import GraphModule

from .. import _compat
from ..runtime.cudagraphs import CudaDevice, GraphDevice, capture_split, check_mode
from ..runtime.dynamic import dispatch_symbol, size_at
from ..runtime.layout import InputLayouts
from ..runtime.runner import PieceRunner
from ..runtime.sizes import SizeKey, SizeTable
from ..runtime.stitching import install_direct_stitching
from ..split.lazy import node_count
from ..split.ops import SplittingOp, matcher
from ..split.splitters import SplitItem, split_graph
from .background import wait_at_exit, waited
from .cache import DEFAULT_CACHE_DIR, DEFAULT_MAX_BYTES, PieceCache, cache_root
from .compilers import Compiler, resolve_compiler
from .dedup import digest, piece_key, piece_structure
from .dump import generated_source, write_dump
from .examples import describe
from .jobs import VersionJobs, executor_for, not_compiled
from .report import CompileReport, PieceRow, Progress, remember, time_first_call
from .versions import PieceCompileError, Versions
from .workers import CompileWorkers

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
        background: in a graph whose layers share a compiled piece, compile the
            pieces that run once per call (before the first layer and after the
            last: the embedding and mask code, the head) in a worker without waiting
            for them: until each is done it runs as its own code, as regional
            compilation runs that code for good, and the first call after it is done
            loads it. Only what the layers share is waited for before the first call.
            At the interpreter's exit fxsplit waits for what is still compiling, so
            that the cache holds it; :meth:`wait` waits now. Needs a worker (not
            ``compile_workers=0``); not with ``cudagraph`` or ``dump_dir``, which need
            every piece compiled. The first calls' outputs then differ from later
            ones' by the rounding that compiled code differs from eager code by.
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
        background: bool = True,
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
        self._versions = Versions(self.compiler_name, self.compiler, self._persistent, self.cache)
        self.background = background
        self.reports: list[CompileReport] = []
        # compiled runners by sharing key, kept across compilations of this backend
        self._runners: dict[Hashable, tuple[str, PieceRunner]] = {}
        self._background: list[PieceRunner] = []  # runners whose general version compiled in the background

    def __call__(self, gm: GraphModule, example_inputs: Sequence[Any]) -> GraphModule:
        remember(self.reports, self.compiler_name)
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
        jobs = VersionJobs(self._versions, self._workers, self._cache_root, self.compile_sizes, report)
        keyed = {item.submod_name: self._keyed(item, top_level, dispatch) for item in compute}
        background = self._background_keys([key for key, _, _ in keyed.values()])
        try:
            report.probe_seconds = self._probe_cpu()
            for item in items:
                if item.is_splitting_graph:
                    report.rows.append(PieceRow(item.submod_name, "splitting", node_count(item.graph)))
                    continue
                progress.step(item.submod_name)
                key = keyed[item.submod_name]
                row, runner = self._compile_piece(item, key, dispatch, runners, report, jobs, key[0] in background)
                report.rows.append(row)
                split.__dict__[item.submod_name] = runner
            self._wait_later(jobs.finish())
            if self._graph_device is not None and self.cudagraph_sizes:
                self._capture(split, compute, top_level, dispatch)
        finally:
            progress.close()
            jobs.cancel()
        self._runners.update(runners)
        report.compile_seconds = time.perf_counter() - start - report.split_seconds
        self.reports.append(report)
        log.info("%s", report.format())
        if self.dump_dir is not None:
            self._dump(gm, split, items, report)
        install_direct_stitching(split)
        time_first_call(split, report)
        return split

    def _keyed(
        self, item: SplitItem, top_level: dict[str, Any], dispatch: str | None
    ) -> tuple[Hashable | None, list[Any], list[Any]]:
        """A compute piece's sharing key (None without ``dedup``), and its inputs as
        Dynamo's fake values and as the compiler should get them."""
        structure = piece_structure(item.graph) if self.dedup else None  # read before the graph is built
        fakes, inputs = self._example_inputs(item, top_level)
        # the key compares symbolic shapes, which only the fake values carry
        key = piece_key(structure, fakes, dispatch) if structure is not None else None
        return key, fakes, inputs

    def _background_keys(self, keys: list[Hashable | None]) -> set[Hashable]:
        """The pieces compiled in the background (see ``background``): in a graph where
        some piece stands for two or more, those that stand for one, were not compiled
        for an earlier graph, and were not found to compile only in Dynamo's trace."""
        if not self.background or self._graph_device is not None or self.dump_dir is not None:
            return set()
        counts = Counter(key for key in keys if key is not None)
        if not counts or max(counts.values()) < 2:
            return set()
        return {
            key
            for key, n in counts.items()
            if n == 1 and key not in self._runners and not self._versions.compiles_in_trace(key)
        }

    def _compile_piece(
        self,
        item: SplitItem,
        keyed: tuple[Hashable | None, list[Any], list[Any]],
        dispatch: str | None,
        runners: dict[Hashable, tuple[str, PieceRunner]],
        report: CompileReport,
        jobs: VersionJobs,
        background: bool,
    ) -> tuple[PieceRow, PieceRunner]:
        """A compute piece's runner: a twin's, where one was compiled (in this graph or
        an earlier one), else a new one whose versions compile here or in the workers."""
        key, fakes, inputs = keyed
        row = PieceRow(item.submod_name, "compute", node_count(item.graph))
        row.hash = digest(key) if key is not None else None
        known = None
        if key is not None:
            known = runners.get(key) or self._runners.get(key)
        if known is not None:
            row.shared_with = known[0]
            return row, known[1]

        started = time.perf_counter()
        where = size_at(fakes, dispatch)
        signature = describe(fakes)

        def specialise(size: SizeKey) -> Any:
            assert dispatch is not None
            return self._versions.specialise(item, signature, report, key, dispatch, size) or runner.general

        runner = PieceRunner(
            item.submod_name, not_compiled, where, self.compile_sizes, specialise, InputLayouts(signature)
        )
        # the general version, then the sizes, go to the workers first, so that they compile while this
        # process compiles what no worker has taken
        sizes_now = not self.lazy and where is not None and dispatch is not None
        symbol = dispatch if sizes_now else None
        if not jobs.submit(item, signature, key, row, symbol, runner, inputs, background):
            runner.general = self._versions.general(item, inputs, key, report)
        row.seconds = time.perf_counter() - started
        if key is not None:
            runners[key] = (item.submod_name, runner)
        return row, runner

    def _wait_later(self, runners: list[PieceRunner]) -> None:
        if runners:
            wait_at_exit(self.wait)
        self._background += runners

    def wait(self) -> bool:
        """Wait for the pieces compiling in the background (see ``background``) and
        run them compiled from now on; the first call after one is done does this for
        it, and the interpreter's exit for all. Whether every piece is compiled (False:
        one failed there, and runs as its code, as a warning said).

        Example::

            model = torch.compile(model, backend=backend, dynamic=True)
            model(*inputs)  # the pieces run once per call may still be compiling
            backend.wait()  # from here on, every piece runs compiled
        """
        waited(self.wait)
        return all([runner.wait() for runner in self._background])

    @property
    def compiling(self) -> bool:
        """Whether a piece is still compiling in the background (:meth:`wait` would wait)."""
        return any(runner.background is not None and not runner.background.done() for runner in self._background)

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

    def blob(self, compiled: Any) -> bytes | None:
        """The bytes of a piece this backend compiled with Inductor, else None."""
        return self._versions.blob(compiled)

    def _dump(self, gm: GraphModule, split: GraphModule, items: list[SplitItem], report: CompileReport) -> None:
        directory = Path(self.dump_dir) / f"graph_{len(self.reports) - 1}"  # type: ignore[arg-type]
        generated = {
            item.submod_name: generated_source(split.__dict__[item.submod_name])
            for item in items
            if not item.is_splitting_graph
        }
        write_dump(directory, gm, split, items, {**report.to_dict(), "generated_code": generated})
        log.info("fxsplit: wrote graphs, pieces and report to %s", directory)

    def _capture(
        self, split: GraphModule, compute: list[SplitItem], top_level: dict[str, Any], dispatch: str | None
    ) -> None:
        """Every compute piece of ``split`` captured as CUDA graphs (see
        :mod:`fxsplit.runtime.cudagraphs`), each instance with its own weights."""
        assert self._graph_device is not None
        pieces = []
        for item in compute:
            fakes, inputs = self._example_inputs(item, top_level)
            pieces.append((item.submod_name, describe(fakes), inputs, item.graph))
        capture_split(split, pieces, dispatch, self.cudagraph_sizes, self._graph_device, self.cudagraph_debug)

    def start_workers(self) -> None:
        """Start the worker processes of ``compile_workers`` now rather than with the
        first graph, so that their start-up (importing torch and Inductor and, without
        CUDA, Inductor's CPU probe: seconds) overlaps with the caller's own work, such
        as Dynamo's trace, and the caller's first compile finds the probe done. Does nothing
        where no worker would be used (0 workers, a compiler other than Inductor)."""
        self._workers(max(2, len(self.compile_sizes)))

    def _workers(self, jobs: int) -> Executor | None:
        return executor_for(self.compile_workers, self._versions, jobs, self._cache_root)

    @property
    def _cache_root(self) -> str | None:
        """The cache's directory as a job names it (None: no cache)."""
        return str(self.cache.root) if self.cache is not None else None

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


def compile_with_defaults(gm: GraphModule, example_inputs: Sequence[Any]) -> Any:
    """``torch.compile(model, backend="fxsplit")``: a :class:`PiecewiseBackend` with its
    defaults. torch finds it under the ``torch_dynamo_backends`` entry points, so the
    name works without importing fxsplit.

    Example::

        compiled = torch.compile(model, backend="fxsplit", dynamic=True)
    """
    return PiecewiseBackend()(gm, example_inputs)
