"""A saved model on disk: its key, and one cache entry holding a header (checked
before anything is unpickled) and the payload (Dynamo's guards and bytecode with the
compiled program, and the spec of the model's output).

A saved model is used only when its header names this format, fxsplit, torch and
Python, the code Dynamo traced is unchanged (its checksums), it loads, and its
guards accept the example inputs; otherwise :class:`Stale` says why.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import pickle
import re
import sys
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from .. import __version__, _compat
from ..split.ops import SplittingOp, matcher
from .cache import PieceCache
from .layers import reads_forward_code
from .program import PiecewiseProgram
from .report import CompileReport

if TYPE_CHECKING:
    from .backend import PiecewiseBackend

log = logging.getLogger(__name__)


FORMAT = 2  # 2: compile_sizes may hold ranges
MAGIC = b"FXSPLIT-MODEL\n"


class Stale(Exception):
    """A saved model that must not be used; the message says why."""


def artifact_key(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    splitting_ops: list[SplittingOp],
    backend: PiecewiseBackend,
    dynamic: bool,
) -> str:
    """The cache key of a saved model: everything that decides what it compiles to."""
    weights = [
        (name, tuple(t.shape), str(t.dtype), t.device.type, t.requires_grad)
        for name, t in (*model.named_parameters(), *model.named_buffers())
    ]
    leaves, spec = _compat.tree_flatten((args, kwargs))
    inputs = [
        ("tensor", str(v.dtype), v.device.type, v.dim(), v.requires_grad)
        if isinstance(v, torch.Tensor)
        else (type(v).__qualname__, repr(v))
        for v in leaves
    ]
    autocast = [
        (device, torch.is_autocast_enabled(device), str(torch.get_autocast_dtype(device))) for device in ("cpu", "cuda")
    ]
    parts = {
        "format": FORMAT,
        "versions": [__version__, torch.__version__, list(sys.version_info[:2])],
        "model": f"{type(model).__module__}.{type(model).__qualname__}",
        "weights": hashlib.sha256(repr(weights).encode()).hexdigest(),
        "inputs": [str(spec), inputs],
        "splitting_ops": matcher(splitting_ops).described,
        "compiler": backend.compiler_name,
        "compile_sizes": backend.compile_sizes.described(),
        "dynamic": dynamic,
        "grad": torch.is_grad_enabled(),
        "autocast": autocast,
        # everything Dynamo's global-state guard checks, torch's thread count among them: one entry each
        "global_state": _compat.global_state(),
    }
    return hashlib.sha256(("model:" + json.dumps(parts, sort_keys=True)).encode()).hexdigest()


def serializable_guards(guards: Sequence[Any]) -> list[bool]:
    """Keep every guard another process can check: shapes, dtypes, values. Guards on
    object identity (a module object, a decorator's closure) mean nothing there, nor
    do paths into a forward's own closure and defaults, which fxsplit's trace changes
    (see :func:`~fxsplit.compilation.layers.reads_forward_code`), nor anything
    about an object whose class is defined inside a function or a class (such as the
    module that ``kernels``, which transformers 5.25 installs, makes of a HuggingFace
    function like ``apply_rotary_pos_emb``): torch cannot save its type, and a saved
    path through that type finds none of its closures when loaded. Such a class is
    made anew in every process, by source whose checksums the saved model keeps."""
    unsupported = _compat.unserializable_guard_types()
    nested = [re.escape(g.name) for g in guards if _matches_a_nested_type(g)]
    # the object's own source, or one that goes on from it (not a longer name: a.b, not a.bc)
    through = re.compile(f"(?:{'|'.join(nested)})(?!\\w)") if nested else None
    return [
        g.guard_type not in unsupported
        and not unsupported.intersection(g.derived_guard_types)
        and not reads_forward_code(g.name)
        and not (through is not None and through.search(g.name))
        for g in guards
    ]


def _matches_a_nested_type(guard: Any) -> bool:
    """A guard on an object's type where the type's qualified name is not its name,
    which torch refuses to save (its TYPE_MATCH rule)."""
    if guard.guard_type not in ("TYPE_MATCH", "BUILTIN_MATCH") or not guard.has_value:
        return False
    kind = type(guard.value)
    return kind.__qualname__ != kind.__name__


def save_artifact(
    function: Any, aot: Any, spec: Any, report: CompileReport, cache: PieceCache, key: str, model_name: str
) -> None:
    """Save a compiled model under ``key``; failing to is a warning: it runs, and is compiled again next time."""
    try:
        payload = pickle.dumps({"function": aot.serialize(function).serialized_data, "spec": spec})
    except Exception as error:  # a piece that cannot be saved, such as an aot_eager one
        log.warning(
            "fxsplit.compile: could not save the compiled model (%s); it runs, and is compiled again next time", error
        )
        return
    header = {
        "format": FORMAT,
        "fxsplit": __version__,
        "torch": torch.__version__,
        "python": list(sys.version_info[:2]),
        "sources": [
            [s.module, s.firstlineno, s.lastlineno, s.checksum]
            for s in sorted(function.source_info().inlined_sources, key=lambda s: (s.module, s.firstlineno))
        ],
        "report": report.to_dict(),
    }
    data = MAGIC + json.dumps(header).encode() + b"\n" + payload
    try:
        cache.store(key, lambda path: path.write_bytes(data), {"model": model_name, "fxsplit": __version__})
    except (OSError, RuntimeError) as error:
        log.warning("fxsplit.compile: could not save the compiled model (%s); it is compiled again next time", error)


def load_artifact(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    data: bytes,
    cache: PieceCache,
    traced_globals: dict[str, Any],
    started: float,
) -> tuple[Any, Any, CompileReport]:
    """The saved model in ``data``: the compiled function (whose code was traced in
    ``traced_globals``), the spec of its output and its report; raises :class:`Stale`,
    saying why, where it must not be used."""
    header, payload = _header(data)
    aot = _compat.aot_compiled_function()
    if aot is None:
        raise Stale("this torch has no ahead-of-time compile to load it with")
    for module_name, first, last, checksum in header["sources"]:
        if _source_checksum(module_name, first, last) != checksum:
            raise Stale(f"the model's code changed since it was compiled ({module_name}, lines {first}-{last})")
    read = time.perf_counter()
    try:
        with warnings.catch_warnings():  # torch's own deprecation, raised by unpickling its TreeSpec
            warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
            saved = pickle.loads(payload)
        _compat.register_serializable(PiecewiseProgram)
        fake_mode, _ = _compat.fresh_fake_mode() or (None, None)
        # unpickling the guards can record a guard (torch's ImportSource does), which needs a tracing context
        with cache.compiler_context(), _compat.tracing_with(fake_mode):
            function = aot.deserialize(saved["function"], traced_globals)
    except Exception as error:
        raise Stale(f"it does not load ({type(error).__name__}: {error})") from error
    loaded = time.perf_counter()
    if not function.guard_check(model, args, kwargs):
        raise Stale(f"its guards reject the example inputs ({_compat.guard_failure(function, (model, args, kwargs))})")
    # what was compiled, as the first process did it; nothing compiled here
    report = CompileReport.from_dict(header["report"])
    report.compiler_calls = report.cache_hits = report.cache_misses = 0
    report.compile_seconds, report.load_seconds = 0.0, loaded - read
    report.origin = "loaded"
    report.stages = {"read": read - started, "load": loaded - read, "guards": time.perf_counter() - loaded}
    log.info("fxsplit.compile: loaded the compiled model in %.2f s", time.perf_counter() - started)
    return function, saved["spec"], report


def _header(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The header of a saved model, checked before anything in it is unpickled."""
    if not data.startswith(MAGIC):
        raise Stale("it is not a saved fxsplit model")
    end = data.index(b"\n", len(MAGIC))
    header = json.loads(data[len(MAGIC) : end])
    theirs = (header.get("format"), header.get("fxsplit"), header.get("torch"), header.get("python"))
    ours = (FORMAT, __version__, torch.__version__, list(sys.version_info[:2]))
    if theirs != ours:
        raise Stale(f"it was saved by format/fxsplit/torch/python {theirs}, and this is {ours}")
    return header, data[end + 1 :]


def _source_checksum(module_name: str, first: int, last: int) -> str | None:
    """The checksum Dynamo keeps of traced code, of the same lines as they are now."""
    try:
        lines = inspect.getsourcelines(importlib.import_module(module_name))[0][first - 1 : last - 1]
    except (ImportError, OSError, TypeError):
        return None
    return hashlib.sha256("".join(lines).encode()).hexdigest()
