"""One version of a compute piece, compiled or loaded: its general version, from
Dynamo's trace, or a version for one size of ``compile_sizes``, from inputs made
outside it.

With Inductor's compile-to-bytes each version comes from the persistent cache when it
holds it, else is compiled and saved there, and its bytes are kept for whole-model
artifacts (``fxsplit.compile``); otherwise the compiler is called as it is. A failed
compile raises :class:`PieceCompileError`, naming the piece and where its code is.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Hashable
from contextlib import nullcontext
from functools import partial
from typing import Any

import torch

from .. import _compat
from ..runtime.dynamic import float_symbols
from ..runtime.signature import Signature
from ..runtime.sizes import SizeKey, named
from ..split.lazy import node_count
from ..split.splitters import SplitItem
from .cache import PieceCache
from .compilers import Compiler
from .dedup import persistent_key
from .dump import write_failed_code
from .examples import fake_inputs
from .report import CompileReport, Specialisation

log = logging.getLogger(__name__)


class PieceCompileError(RuntimeError):
    """A compute piece failed to compile; the message says which and where its code is."""


class Versions:
    """Compiles (or loads) versions of pieces with one compiler and cache, and keeps
    the bytes of each version compiled with Inductor."""

    def __init__(
        self,
        compiler_name: str,
        compiler: Compiler,
        persistent: _compat.PersistentCompiler | None,
        cache: PieceCache | None,
    ) -> None:
        self.compiler_name, self.compiler = compiler_name, compiler
        self.persistent, self.cache = persistent, cache
        # the bytes of every piece compiled with Inductor, by id of the compiled callable
        self._blobs: dict[int, tuple[Callable[..., Any], bytes]] = {}

    def general(self, item: SplitItem, inputs: list[Any], key: Hashable | None, report: CompileReport) -> Any:
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

    def specialise(
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

        can_save = self.persistent is not None and self.persistent.compile_with is not None
        compiled = self._compiled(item, report, key, size, in_memory, persistent if can_save else None)
        seconds = time.perf_counter() - started
        report.specialisations.append(Specialisation(item.submod_name, size, seconds, report.cache_hits > hits))
        return compiled

    def loaded(
        self, blob: bytes, item: SplitItem, key: Hashable | None, size: SizeKey | None, report: CompileReport
    ) -> Any:
        """A version a worker compiled, from its bytes, saved to the cache as this
        process's compiles are."""
        assert self.persistent is not None
        cache = self.cache
        with cache.compiler_context() if cache is not None else nullcontext():
            compiled = self.persistent.deserialize(blob)
        return self._kept_from_worker(compiled, blob, item, key, size, report)

    def unloaded(self, blob: bytes, item: SplitItem, key: Hashable | None, report: CompileReport) -> Callable[..., Any]:
        """A general version a worker compiled, saved to the cache as :meth:`loaded`
        does but not loaded: a stand-in that holds its bytes, for a saved model, at the
        interpreter's exit, where Inductor can load nothing more (its threads are gone)."""
        return self._kept_from_worker(_Unloaded(item.submod_name), blob, item, key, None, report)

    def _kept_from_worker(
        self,
        compiled: Callable[..., Any],
        blob: bytes,
        item: SplitItem,
        key: Hashable | None,
        size: SizeKey | None,
        report: CompileReport,
    ) -> Callable[..., Any]:
        report.compiler_calls += 1
        entry = self.entry(key, size) if key is not None else None
        if self.cache is not None and entry is not None:
            report.cache_misses += 1
            self._save(self.cache, entry, item, blob, size)
        return self._keep(compiled, blob)

    def _compiled(
        self,
        item: SplitItem,
        report: CompileReport,
        key: Hashable | None,
        size: SizeKey | None,
        in_memory: Callable[[], Callable[..., Any]],
        persistent: Callable[[_compat.PersistentCompiler], Any] | None,
    ) -> Callable[..., Any]:
        """A piece compiled for the general shape (``size`` None) or for one size:
        through ``persistent`` (from the cache, else compiled and saved) where Inductor
        compiles to bytes, else by ``in_memory``."""
        # a specialised compile runs outside Dynamo's trace: no restart can happen there
        restarts = size is None
        store = self.persistent
        if store is None or persistent is None:
            return self._call_compiler(item, in_memory, report, restarts)
        cache = self.cache
        entry = None
        if cache is not None and key is not None:
            entry = self.entry(key, size)
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
        """The bytes of a piece compiled here with Inductor, else None."""
        kept = self._blobs.get(id(compiled))
        return kept[1] if kept is not None and kept[0] is compiled else None

    def cached(self, key: Hashable | None, size: SizeKey | None) -> bool:
        """Whether the persistent cache holds the piece of ``key`` compiled for ``size``."""
        entry = self.entry(key, size) if key is not None else None
        return self.cache is not None and entry is not None and entry in self.cache

    def compiles_in_trace(self, key: Hashable | None) -> bool:
        """Whether a process found that this piece's general version compiles only in
        Dynamo's trace (:meth:`remember_in_trace`), so that it is not sent to the background."""
        entry = self._in_trace_entry(key)
        return self.cache is not None and entry is not None and entry in self.cache

    def remember_in_trace(self, item: SplitItem, key: Hashable | None) -> None:
        """Keep in the cache that a worker refused this piece's general version (its
        compile assumed something about the sizes, which only Dynamo's trace can guard)."""
        entry = self._in_trace_entry(key)
        if self.cache is None or entry is None:
            return
        description = {"piece": item.submod_name, "compiler": self.compiler_name, "compiles": "in the trace"}
        try:
            self.cache.store(entry, lambda path: path.write_bytes(b""), description)
        except (OSError, RuntimeError) as error:
            log.warning(
                "fxsplit: could not note in the cache that %s compiles in the trace (%s)", item.submod_name, error
            )

    def _in_trace_entry(self, key: Hashable | None) -> str | None:
        if key is None:
            return None
        return persistent_key(key, self.compiler_name, torch.__version__, sys.version_info[:2], "in the trace")

    def entry(self, key: Hashable, size: SizeKey | None) -> str | None:
        """The persistent cache's key for a piece compiled for ``size`` (None: general)."""
        return persistent_key(key, self.compiler_name, torch.__version__, sys.version_info[:2], size)

    def _call_compiler(
        self, item: SplitItem, compile_piece: Callable[[], Any], report: CompileReport, restarts: bool = True
    ) -> Any:
        report.compiler_calls += 1
        try:
            if not restarts:
                return compile_piece()
            return _compat.compile_without_needless_restarts(compile_piece, *float_symbols(item.graph))
        except _compat.dynamo_restart_exceptions():
            raise
        except Exception as error:
            path = write_failed_code(item)
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


class _Unloaded:
    """A compiled piece known by its bytes only (see :meth:`Versions.unloaded`)."""

    def __init__(self, piece: str) -> None:
        self.piece = piece

    def __call__(self, *args: Any) -> Any:
        raise RuntimeError(f"fxsplit: {self.piece} was compiled at the interpreter's exit and cannot run")


def _loaded(store: _compat.PersistentCompiler, blob: bytes) -> tuple[Callable[..., Any], bytes]:
    return store.deserialize(blob), blob
