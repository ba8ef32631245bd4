"""``fxsplit.compile``: a whole model compiled piecewise, saved as one artifact, and
loaded by later processes without Dynamo, AOTAutograd or a compiler.

The first process traces the model with torch's ahead-of-time compile (full graph),
compiles the pieces as :class:`~fxsplit.PiecewiseBackend` does (each distinct piece
once, every listed size up front) and saves, in one cache entry: Dynamo's guards and
bytecode, the stitching code, and each distinct compiled piece. A later process with
the same key loads it and runs: new sizes inside the dynamic range need no compile.

The model's output is flattened into its leaves for tracing and rebuilt after each
call, so that a HuggingFace model gives back its ``ModelOutput``, also after a load.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import torch

from .. import _compat
from ..runtime.sizes import SizeKey
from ..split.ops import SplittingOp
from .artifact import Stale, artifact_key, load_artifact, save_artifact, serializable_guards
from .backend import DEFAULT_SPLITTING_OPS, PiecewiseBackend
from .background import wait_at_exit, waited
from .cache import DEFAULT_CACHE_DIR, PieceCache, cache_root
from .compilers import Compiler
from .layers import traced_once
from .program import PiecewiseProgram
from .report import CompileReport
from .workers import CompileWorkers

log = logging.getLogger(__name__)

LOAD_ONLY_ENV = "FXSPLIT_LOAD_ONLY"


class ArtifactError(RuntimeError):
    """A saved model cannot be used, and ``load_only`` forbids compiling it again."""


def compile(
    model: torch.nn.Module,
    example_args: Sequence[Any] = (),
    example_kwargs: dict[str, Any] | None = None,
    *,
    splitting_ops: Iterable[SplittingOp] = DEFAULT_SPLITTING_OPS,
    compiler: str | Compiler = "inductor",
    compile_sizes: Iterable[SizeKey] = (),
    compile_workers: CompileWorkers = None,
    background: bool = True,
    cache_dir: str | os.PathLike[str] | None = DEFAULT_CACHE_DIR,
    dynamic: bool = True,
    trace_layers_once: bool = True,
    load_only: bool | None = None,
) -> CompiledModel:
    """Compile ``model`` piecewise, or load it as an earlier process compiled it.

    The first call with a given key traces ``model(*example_args, **example_kwargs)``
    with Dynamo, compiles its pieces (see :class:`fxsplit.PiecewiseBackend` for
    ``splitting_ops``, ``compiler``, ``compile_sizes``, ``compile_workers`` and
    ``background``; its workers start before the trace) and saves the result in
    ``cache_dir``, once the pieces compiling in the background are loaded (by a call
    after they are done, by :meth:`CompiledModel.wait`, or at the interpreter's exit).
    A later process loads it in about a second: no trace, no compile.
    The key holds the versions of fxsplit, torch and Python, the model's class and
    the shapes of its weights, what the inputs look like, the options, and the grad
    and autocast modes; never a path, so the directory can be moved.

    With ``trace_layers_once`` Dynamo traces each kind of layer of the model's
    stacks (an ``nn.ModuleList`` of two or more modules of one class: a decoder's
    layers) once and reuses that trace for every layer whose guards it passes (see
    :mod:`fxsplit.compilation.layers`), so that the trace, like the compile, does not
    grow with depth; floats are then specialised, each guarded by its value. Where
    that trace fails, the model is traced whole, with a warning that says why.

    A saved model that cannot be used (damaged, from another version, made from
    model code that has changed since, or whose guards reject the example inputs) is
    reported in a warning, compiled again and replaced; with ``load_only`` (or
    ``FXSPLIT_LOAD_ONLY=1``) it raises :class:`fxsplit.ArtifactError` instead, as a
    deployment that must never compile wants. A call whose inputs the saved guards
    reject (a batch of 1 against a dynamic batch, another dtype) is compiled for
    them, or raises with ``load_only``: never a wrong result.

    Example::

        compiled = fxsplit.compile(model, example_kwargs={"input_ids": ids}, compile_sizes=[8])
        out = compiled(input_ids=other_ids)
        print(compiled.report.format())
    """
    args, kwargs = tuple(example_args), dict(example_kwargs or {})
    if load_only is None:
        load_only = os.environ.get(LOAD_ONLY_ENV) == "1"
    splitting_ops = list(splitting_ops)
    backend = PiecewiseBackend(
        splitting_ops,
        compiler,
        compile_sizes,
        compile_workers=compile_workers,
        background=background,
        cache_dir=cache_dir,
    )
    root = cache_root(cache_dir)
    cache = backend.cache or (PieceCache(root) if root is not None else None)
    key = artifact_key(model, args, kwargs, splitting_ops, backend, dynamic)
    started = time.perf_counter()
    data = cache.read(key) if cache is not None else None
    reason = "there is no saved model for this key" if data is None else ""
    if data is not None:
        assert cache is not None
        try:
            function, spec, report = load_artifact(model, args, kwargs, data, cache, _flat_call.__globals__, started)
            return CompiledModel(model, function, spec, report, backend, dynamic, load_only)
        except Stale as stale:
            reason = str(stale)
            if not load_only:
                cache.discard(key, f"not usable: {reason}")
    if load_only:
        raise ArtifactError(
            f"fxsplit.compile: {reason}, and load_only forbids compiling ({LOAD_ONLY_ENV}=1); compile it once "
            f"without load_only, with the same model, inputs and options, to save it"
        )
    return _compile(model, args, kwargs, backend, cache, key, dynamic, trace_layers_once, started)


class CompiledModel:
    """A model compiled by :func:`fxsplit.compile`; call it as the model itself.

    ``report`` (:class:`fxsplit.CompileReport`) says whether it was compiled or
    loaded (``origin``), and how long each stage took (``stages``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        function: Any,
        spec: Any,
        report: CompileReport,
        backend: PiecewiseBackend,
        dynamic: bool,
        load_only: bool = False,
    ) -> None:
        self.model = model
        self._report = report
        self._function = function
        self._spec = spec
        self._backend = backend
        self._dynamic = dynamic
        self._load_only = load_only
        self._fallback: Callable[..., Any] | None = None
        self.fallback_calls = 0
        self._unsaved: Callable[[], None] | None = None  # the save that waits for the background

    def _save_when_compiled(self, save: Callable[[], None]) -> None:
        """Run ``save`` now, or once no piece compiles in the background any more: after
        the call that finds them done, in :meth:`wait`, or at the interpreter's exit."""
        self._unsaved = save
        if self._backend.compiling:
            wait_at_exit(self.wait)
        else:
            self.wait()

    def wait(self) -> None:
        """Wait for the pieces compiling in the background, run them compiled from now
        on, and save the model if that waited for them (not where one failed to compile).

        Example::

            compiled = fxsplit.compile(model, example_kwargs={"input_ids": ids})
            compiled.wait()  # every piece compiled, and the model saved
        """
        compiled = self._backend.wait()
        save, self._unsaved = self._unsaved, None
        if save is None:
            return
        waited(self.wait)
        if not compiled:
            log.warning(
                "fxsplit.compile: the model is not saved, as a piece did not compile (see the warning before); "
                "it runs, and the next process compiles it again"
            )
            return
        saving = time.perf_counter()
        save()
        self._report.stages["save"] = time.perf_counter() - saving

    @property
    def report(self) -> CompileReport:
        """What was compiled or loaded. A model that could not be saved compiles on its
        first call, through torch.compile: its report is the backend's, as it stands."""
        if self._function is not None:
            return self._report
        report = self._backend.report
        report.origin, report.stages = self._report.origin, self._report.stages
        return report

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        function = self._function
        if function is not None and function.guard_check(self.model, args, kwargs):
            leaves = function.fn(self.model, args, kwargs)
        else:
            leaves = self._compiled_anew(args, kwargs)
        if self._unsaved is not None and not self._backend.compiling:
            self.wait()
        return _compat.tree_unflatten(list(leaves), self._spec)

    def _compiled_anew(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Inputs the saved guards reject run through torch.compile with the same
        backend (Dynamo compiles a graph for them once), or raise in load-only mode;
        a model that could not be saved always runs that way."""
        if self._function is not None and self._load_only:
            reason = _compat.guard_failure(self._function, (self.model, args, kwargs))
            raise ArtifactError(
                f"fxsplit.compile: these inputs fail the saved model's guards ({reason}), and load_only forbids "
                f"compiling for them; compile once with inputs like them, or pass dynamic sizes of at least 2"
            )
        if self._fallback is None:
            if self._function is not None:
                log.warning(
                    "fxsplit.compile: inputs that the saved model's guards reject (such as a size of 1, which "
                    "Dynamo specialises); compiling for them with torch.compile"
                )
            self._fallback = torch.compile(_flat_call, backend=self._backend, dynamic=self._dynamic)
        self.fallback_calls += 1
        if self._function is not None or self.fallback_calls > 1:
            return self._fallback(self.model, args, kwargs)
        started = time.perf_counter()
        leaves = self._fallback(self.model, args, kwargs)
        self._report.stages["first call (trace, compile and run)"] = time.perf_counter() - started
        return leaves


def _flat_call(model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """What is traced and saved: the model's output as a flat tuple of its leaves."""
    return tuple(_compat.tree_flatten(model(*args, **kwargs))[0])


def _compile(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    backend: PiecewiseBackend,
    cache: PieceCache | None,
    key: str,
    dynamic: bool,
    trace_layers_once: bool,
    started: float,
) -> CompiledModel:
    aot = _compat.aot_compiled_function()
    leaves, spec = _compat.tree_flatten(model(*args, **kwargs))
    unsaveable = [type(v).__name__ for v in leaves if not isinstance(v, (torch.Tensor, int, float, bool, type(None)))]
    if aot is None or unsaveable:
        why = "this torch has no ahead-of-time compile" if aot is None else f"the model returns {unsaveable[0]}"
        fix = (
            "; have it return tensors (a HuggingFace model: call it with use_cache=False) to save it"
            if unsaveable
            else ""
        )
        warnings.warn(
            f"fxsplit.compile cannot save this model ({why}); it is compiled with torch.compile and fxsplit's "
            f"backend on its first call instead, and its pieces are cached, but each process traces it again{fix}",
            stacklevel=3,
        )
        return _in_memory(model, backend, spec, dynamic, started)

    _compat.register_serializable(PiecewiseProgram)
    backend.start_workers()  # their start-up overlaps with the trace
    function, once = None, None
    if trace_layers_once:
        with traced_once(model) as once:
            if once is not None:
                function = _traced_once(model, args, kwargs, backend, dynamic, once)
    if function is None:
        once = None
        function = _traced(model, args, kwargs, backend, dynamic)
    report = backend.report
    report.origin = "compiled"
    report.traced_once = once or ""
    backend_seconds = report.split_seconds + report.compile_seconds
    # Dynamo's trace is what the whole took less the backend's split and compile
    report.stages.update(
        trace=time.perf_counter() - started - backend_seconds,
        split=report.split_seconds,
        compile=report.compile_seconds,
    )
    compiled = CompiledModel(model, function, spec, report, backend, dynamic)
    if cache is not None:
        name = f"{type(model).__module__}.{type(model).__qualname__}"
        compiled._save_when_compiled(partial(save_artifact, function, aot, spec, report, cache, key, name))
    log.info("%s", report.format())
    return compiled


def _traced_once(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    backend: PiecewiseBackend,
    dynamic: bool,
    layers: str,
) -> Any:
    """The model traced with each kind of stacked layer traced once, or None (and a
    warning) where Dynamo could not trace it so, before the backend was reached: a
    failure after that is not the layers' and is raised."""
    graphs = len(backend.reports)
    try:
        return _traced(model, args, kwargs, backend, dynamic)
    except Exception as error:
        if len(backend.reports) > graphs:
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        warnings.warn(
            f"fxsplit.compile could not trace each of {layers} once ({type(error).__name__}: {first}); tracing "
            f"the whole model instead, which costs one trace per layer (trace_layers_once=False skips this try)",
            stacklevel=4,
        )
        return None


def _traced(
    model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], backend: PiecewiseBackend, dynamic: bool
) -> Any:
    """The model traced by torch's ahead-of-time compile, compiled by ``backend``."""

    def serializable_backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> PiecewiseProgram:
        return PiecewiseProgram(backend(gm, example_inputs), backend.blob)

    traced = torch.compile(
        _flat_call,
        fullgraph=True,
        dynamic=dynamic,
        backend=serializable_backend,
        options={"guard_filter_fn": serializable_guards},
    )
    for attempt in range(3):
        try:
            return traced.aot_compile(((model, args, kwargs), {}))  # type: ignore[attr-defined]
        except _compat.dynamo_restart_exceptions():
            # a lifted float that must be specialised: Dynamo traces once more, as torch.compile would
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _in_memory(
    model: torch.nn.Module, backend: PiecewiseBackend, spec: Any, dynamic: bool, started: float
) -> CompiledModel:
    """A model run through torch.compile with fxsplit's backend, for what cannot be saved."""
    report = CompileReport(compiler=backend.compiler_name, origin="compiled")
    report.stages["setup"] = time.perf_counter() - started
    return CompiledModel(model, None, spec, report, backend, dynamic)
