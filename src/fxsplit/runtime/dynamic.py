"""Where a dynamic size sits: which symbol compiled pieces dispatch on, where a piece's
inputs and outputs hold it, and which symbols a piece's values use.

Dynamo names each dynamic size with a symbol (``s0``) and keeps the fake values of a
graph's nodes in ``meta["example_value"]``; everything here reads those, never a real
tensor, so it runs before anything is compiled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sympy
import torch
from torch.fx import GraphModule

from .runner import SizeAt


def dispatch_symbol(gm: GraphModule) -> str | None:
    """The size that compiled pieces dispatch on: the first dynamic size among the
    graph's inputs, in Dynamo's order (a flat batch's token count; a (batch, sequence)
    input's batch)."""
    for node in gm.graph.find_nodes(op="placeholder"):
        value = node.meta.get("example_value")
        if isinstance(value, torch.SymInt) and isinstance(value.node.expr, sympy.Symbol):
            return value.node.expr.name
    return None


def dim_of(value: Any, symbol: str) -> int | None:
    """The first dimension of a fake tensor whose size is exactly ``symbol``, if any."""
    if isinstance(value, torch.Tensor):
        for dim, size in enumerate(value.shape):
            if isinstance(size, torch.SymInt) and str(size.node.expr) == symbol:
                return dim
    return None


def token_dim(node: Any, symbol: str) -> int | None:
    """The dimension of a piece's output that holds the token count, if any."""
    return dim_of(node.meta.get("example_value") if isinstance(node, torch.fx.Node) else None, symbol)


def size_at(fakes: Sequence[Any], symbol: str | None) -> SizeAt | None:
    """Where a piece's inputs hold the dispatch size: a SymInt input, else a tensor
    dimension; None when the piece does not depend on it."""
    if symbol is None:
        return None
    for index, value in enumerate(fakes):
        if isinstance(value, torch.SymInt) and str(value.node.expr) == symbol:
            return index, None
    for index, value in enumerate(fakes):
        dim = dim_of(value, symbol)
        if dim is not None:
            return index, dim
    return None


def float_symbols(piece: GraphModule) -> tuple[set[str], set[str]]:
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
        for size in symbolic_sizes(value):
            in_sizes |= {str(s) for s in size.node.expr.free_symbols}
    return floats, floats - in_sizes


def symbolic_sizes(value: Any) -> list[torch.SymInt | torch.SymBool]:
    """The symbolic integers and booleans in an example value: its shape, stride and
    storage offset if it is a tensor, those of its items if it is a tuple or list, else
    the value itself."""
    if isinstance(value, (torch.SymInt, torch.SymBool)):
        return [value]
    if isinstance(value, (tuple, list)):
        return [size for item in value for size in symbolic_sizes(item)]
    if not isinstance(value, torch.Tensor):
        return []
    numbers = [*value.shape, *value.stride(), value.storage_offset()]
    return [n for n in numbers if isinstance(n, torch.SymInt)]
