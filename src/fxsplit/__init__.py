"""fxsplit: fast, lazy graph splitting for piecewise torch.compile.

The public names below load on first use, so that ``import fxsplit`` (and the
``fxsplit`` command's ``--help`` and ``--version``) does not import torch.
``torch.compile(model, backend="fxsplit")`` needs no import at all: the backend is
registered under torch's ``torch_dynamo_backends`` entry points.

Example::

    import fxsplit

    split_gm, items = fxsplit.split_graph(gm, ["vllm::unified_attention"])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# public name -> the module that defines it
_HOMES = {
    "ArtifactError": ".compilation.model",
    "COMPILER_NAMES": ".compilation.compilers",
    "DEFAULT_SPLITTING_OPS": ".compilation.backend",
    "CompileReport": ".compilation.report",
    "LazyGraphModule": ".split.lazy",
    "NotACacheDirError": ".compilation.cache",
    "PartitionCycleError": ".split.order",
    "PieceCompileError": ".compilation.versions",
    "PieceRow": ".compilation.report",
    "PiecewiseBackend": ".compilation.backend",
    "SplitItem": ".split.splitters",
    "SplittingOp": ".split.ops",
    "UnsafeCacheDirError": ".compilation.cache",
    "capture_graph": ".tools.capture",
    "compile": ".compilation.model",
    "last_report": ".compilation.report",
    "CompiledModel": ".compilation.model",
    "matcher": ".split.ops",
    "split_graph": ".split.splitters",
    "split_module": ".split.splitters",
    "wait_compiled": ".compilation.background",
}

__all__ = [
    "COMPILER_NAMES",
    "DEFAULT_SPLITTING_OPS",
    "ArtifactError",
    "CompileReport",
    "CompiledModel",
    "LazyGraphModule",
    "NotACacheDirError",
    "PartitionCycleError",
    "PieceCompileError",
    "PieceRow",
    "PiecewiseBackend",
    "SplitItem",
    "SplittingOp",
    "UnsafeCacheDirError",
    "__version__",
    "capture_graph",
    "compile",
    "last_report",
    "matcher",
    "split_graph",
    "split_module",
    "wait_compiled",
]

if TYPE_CHECKING:
    from .compilation.backend import DEFAULT_SPLITTING_OPS, PiecewiseBackend
    from .compilation.background import wait_compiled
    from .compilation.cache import NotACacheDirError, UnsafeCacheDirError
    from .compilation.compilers import COMPILER_NAMES
    from .compilation.model import ArtifactError, CompiledModel, compile
    from .compilation.report import CompileReport, PieceRow, last_report
    from .compilation.versions import PieceCompileError
    from .split.lazy import LazyGraphModule
    from .split.ops import SplittingOp, matcher
    from .split.order import PartitionCycleError
    from .split.splitters import SplitItem, split_graph, split_module
    from .tools.capture import capture_graph


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'fxsplit' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
