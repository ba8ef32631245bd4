"""fxsplit: fast, lazy graph splitting for piecewise torch.compile."""

from collections.abc import Callable as _Callable
from typing import Any as _Any

from torch.fx import GraphModule as _GraphModule

from . import _compat
from .compile.backend import DEFAULT_SPLITTING_OPS, PieceCompileError, PiecewiseBackend
from .compile.cache import UnsafeCacheDirError
from .compile.compilers import COMPILER_NAMES
from .compile.report import CompileReport, PieceRow
from .split.lazy import LazyGraphModule
from .split.ops import SplittingOp, matcher
from .split.plan import PartitionCycleError
from .split.splitters import SplitItem, split_graph, split_module
from .tools.capture import capture_graph

__all__ = [
    "COMPILER_NAMES",
    "DEFAULT_SPLITTING_OPS",
    "CompileReport",
    "LazyGraphModule",
    "PartitionCycleError",
    "PieceCompileError",
    "PieceRow",
    "PiecewiseBackend",
    "SplitItem",
    "SplittingOp",
    "UnsafeCacheDirError",
    "capture_graph",
    "matcher",
    "split_graph",
    "split_module",
]


def _default_backend(gm: _GraphModule, example_inputs: list[_Any]) -> _Callable[..., _Any]:
    """``torch.compile(model, backend="fxsplit")``: PiecewiseBackend with its defaults."""
    return PiecewiseBackend()(gm, example_inputs)


_compat.register_dynamo_backend("fxsplit", _default_backend)
