"""fxsplit: fast, lazy graph splitting for piecewise torch.compile."""

from .capture import capture_graph
from .lazy import LazyGraphModule
from .ops import SplittingOp, matcher
from .plan import PartitionCycleError
from .split import SplitItem, split_graph, split_module

__all__ = [
    "LazyGraphModule",
    "PartitionCycleError",
    "SplitItem",
    "SplittingOp",
    "capture_graph",
    "matcher",
    "split_graph",
    "split_module",
]
