"""The two public splitters.

* :func:`split_graph` cuts a Dynamo graph at splitting ops, the contract of vLLM's
  ``split_graph``, for piecewise compilation.
* :func:`split_module` is a drop-in replacement for
  ``torch.fx.passes.split_module.split_module``: same arguments, same result, faster.

Both return lazy modules (see :mod:`fxsplit.lazy`) and never touch the input graph.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.fx import Graph, GraphModule, Node

from ._compat import OpOverload
from .ops import SplittingOp, matcher
from .pieces import NamingOptions, build_split_module
from .plan import is_getitem_of_producer, plan_split

log = logging.getLogger(__name__)

_EMPTY_PACKETS = (torch.ops.aten.empty, torch.ops.aten.empty_like, torch.ops.aten.new_empty)
_EMPTY_FUNCTIONS = (torch.empty, torch.empty_like)
_EMPTY_METHODS = ("new_empty",)


@dataclass
class SplitItem:
    """One piece of a split: its submodule name, its integer id (order), whether it holds
    splitting ops (run eagerly), and its module."""

    submod_name: str
    graph_id: int
    is_splitting_graph: bool
    graph: GraphModule


def _require_graph_module(gm: Any, caller: str) -> None:
    if not isinstance(gm, GraphModule):
        raise TypeError(
            f"{caller} takes a torch.fx.GraphModule, got {type(gm).__name__}; capture the model "
            f"first (torch.fx.symbolic_trace, or a torch.compile backend, or fxsplit.capture_graph)"
        )


def _is_empty_alloc(node: Node) -> bool:
    target = node.target
    if node.op == "call_method":
        return target in _EMPTY_METHODS
    if node.op != "call_function":
        return False
    if isinstance(target, OpOverload):
        target = target.overloadpacket
    return target in _EMPTY_PACKETS or target in _EMPTY_FUNCTIONS


def _assign_pieces(graph: Graph, is_splitting_op: Callable[[Node], bool]) -> tuple[dict[Node, int], set[int]]:
    """Node -> piece id, and the ids of splitting pieces.

    Splitting ops start a piece of their own (consecutive ones share it); a getitem
    stays with the value it unpacks; a compute piece that only allocates (empty*) folds
    into the previous compute piece when its inputs are available there.
    """
    pieces: list[list[Node]] = []
    splitting: list[bool] = []
    index: dict[Node, int] = {}
    for node in graph.nodes:
        if node.op in ("placeholder", "get_attr", "output"):
            continue
        if is_getitem_of_producer(node):
            producer = node.args[0]
            assert isinstance(producer, Node)
            i = index[producer]
        else:
            kind = is_splitting_op(node)
            if not pieces or splitting[-1] != kind:
                pieces.append([])
                splitting.append(kind)
            i = len(pieces) - 1
        pieces[i].append(node)
        index[node] = i

    for i, nodes in enumerate(pieces):
        if splitting[i] or not all(_is_empty_alloc(n) for n in nodes):
            continue
        target = next((j for j in range(i - 1, -1, -1) if not splitting[j] and pieces[j]), None)
        if target is None or any(index.get(a, -1) > target for n in nodes for a in n.all_input_nodes):
            continue
        pieces[target].extend(nodes)
        for n in nodes:
            index[n] = target
        nodes.clear()

    piece_id: dict[int, int] = {}
    splitting_ids: set[int] = set()
    next_id = -1
    previous_splitting = False
    for i, nodes in enumerate(pieces):
        if not nodes:
            continue
        if not (splitting[i] and previous_splitting):
            next_id += 1
        piece_id[i] = next_id
        previous_splitting = splitting[i]
        if splitting[i]:
            splitting_ids.add(next_id)
    return {node: piece_id[i] for node, i in index.items()}, splitting_ids


def split_graph(
    gm: GraphModule, splitting_ops: Iterable[SplittingOp], *, tuple_return: bool = False
) -> tuple[GraphModule, list[SplitItem]]:
    """Cut ``gm`` at ``splitting_ops`` into compute pieces and splitting pieces.

    Returns the stitching module (its ``submod_<i>`` children are the pieces) and one
    :class:`SplitItem` per piece, in order. Pieces keep the original node order and
    names and every node's ``meta``; a full ``x.size()`` never crosses a piece boundary
    (the using piece gets per-dim SymInts); each piece receives the SymInts that its
    inputs' shapes use. No Python code is generated until a piece is used as Python.

    ``splitting_ops`` mixes op names (``"ns::op"``, ``"ns::op.overload"``), op objects,
    torch functions and predicates on nodes (see :func:`fxsplit.ops.matcher`);
    an empty list means no split. With ``tuple_return``, every piece returns a tuple,
    even of one value, as ``aot_autograd``-based compilers require.

    Example::

        split_gm, items = fxsplit.split_graph(gm, ["vllm::unified_attention"])
        compute = [item.graph for item in items if not item.is_splitting_graph]
    """
    _require_graph_module(gm, "split_graph")
    is_splitting_op = matcher(splitting_ops)
    assignment, splitting_ids = _assign_pieces(gm.graph, is_splitting_op)
    if not splitting_ids and not is_splitting_op.empty:
        log.warning(
            "none of the splitting ops (%s) occurs in the graph; it stays one compute piece",
            ", ".join(is_splitting_op.described),
        )
    plan = plan_split(
        gm.graph,
        assignment.__getitem__,
        decompose_sizes=True,
        splitting=splitting_ids.__contains__,
    )
    options = NamingOptions(keep_original_order=True, keep_original_node_name=True, tuple_return=tuple_return)
    split = build_split_module(plan, gm, options)
    items = [
        SplitItem(piece.submod_name, int(piece.name), piece.is_splitting, getattr(split, piece.submod_name))
        for piece in plan.pieces
    ]
    return split, items


def split_module(
    m: GraphModule,
    root_m: torch.nn.Module | None,
    split_callback: Callable[[Node], int],
    qualname_map: dict[str, str] | None = None,
    keep_original_order: bool | None = False,
    keep_original_node_name: bool | None = False,
    keep_original_input_name: bool = True,
    *,
    partition_affix: str | None = None,
    tuple_return: bool = False,
) -> GraphModule:
    """Drop-in replacement for ``torch.fx.passes.split_module.split_module``.

    Same arguments, same submodules, names, order and generated code (get_attr and
    call_module targets, grad-mode and autocast regions, ``qualname_map``,
    ``partition_affix``, ``tuple_return``), but built lazily: no code is generated
    until a module is called or printed. ``split_callback`` is called once per node.
    ``root_m`` is unused, as in torch. A callback that makes partitions depend on each
    other raises :class:`fxsplit.PartitionCycleError` (a ``RuntimeError``) naming them.

    Example::

        from fxsplit import split_module  # instead of torch.fx.passes.split_module
        split = split_module(gm, None, lambda node: partition_of[node])
    """
    _require_graph_module(m, "split_module")

    def name_of(partition: Any) -> str:
        return f"{partition_affix}_{partition}" if partition_affix is not None else str(partition)

    plan = plan_split(m.graph, split_callback, name_of=name_of, topological=not keep_original_order)
    options = NamingOptions(
        keep_original_order=bool(keep_original_order),
        keep_original_node_name=bool(keep_original_node_name),
        keep_original_input_name=keep_original_input_name,
        tuple_return=tuple_return,
    )
    return build_split_module(plan, m, options, qualname_map)
