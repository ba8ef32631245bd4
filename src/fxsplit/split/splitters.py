"""The two public splitters.

* :func:`split_graph` cuts a Dynamo graph at splitting ops, the contract of vLLM's
  ``split_graph``, for piecewise compilation.
* :func:`split_module` is a drop-in replacement for
  ``torch.fx.passes.split_module.split_module``: same arguments, same result, faster.

Both return lazy modules (see :mod:`fxsplit.split.lazy`) and never touch the input graph.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.fx import Graph, GraphModule, Node
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

from .._compat import OpOverload, OpOverloadPacket
from .ops import SplittingOp, matcher, packet_name
from .pieces import NamingOptions, build_split_module
from .plan import plan_split
from .values import example_value, is_getitem_of_producer

log = logging.getLogger(__name__)

_EMPTY_FUNCTIONS = (torch.empty, torch.empty_like, torch.empty_strided)
_EMPTY_METHODS = ("new_empty",)
_EMPTY_PREFIXES = ("aten::empty", "aten::new_empty")

_SCALARS = (torch.SymInt, torch.SymFloat, torch.SymBool, bool, int, float)

# The first torch whose split_module takes tuple_return; vLLM passes it from there on,
# so that is split_graph's default too.
_TUPLE_RETURN_SINCE = (2, 12)


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
    """Whether ``node`` only allocates (any ``empty*`` or ``new_empty*``), as vLLM counts it."""
    target = node.target
    if node.op == "call_method":
        return target in _EMPTY_METHODS
    if node.op != "call_function":
        return False
    if target in _EMPTY_FUNCTIONS:
        return True
    if isinstance(target, OpOverload):
        target = target.overloadpacket
    return isinstance(target, OpOverloadPacket) and packet_name(target).startswith(_EMPTY_PREFIXES)


def _torch_release() -> tuple[int, ...]:
    return tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])


def _is_recomputable_scalar(node: Node) -> bool:
    """A scalar that each piece using it can compute for itself: a SymInt, SymFloat or
    SymBool (or a plain number) made by a call from sizes, other such scalars or a
    lifted float's ``.item()``. Data-dependent (unbacked) values stay where they are made."""
    if node.op not in ("call_function", "call_method"):
        return False
    value = example_value(node)
    return isinstance(value, _SCALARS) and not free_unbacked_symbols(value)


def _assign_pieces(
    graph: Graph, is_splitting_op: Callable[[Node], bool], recomputed: Container[Node] = ()
) -> tuple[dict[Node, int], set[int]]:
    """Node -> piece id, and the ids of splitting pieces.

    Splitting ops start a piece of their own (ops adjacent in the graph share it); a
    getitem stays with the value it unpacks; a compute piece that only allocates
    (empty*) folds into the previous compute piece when its inputs are available there.
    Nodes in ``recomputed`` get no piece: the pieces using them compute them.
    """
    pieces: list[list[Node]] = []
    splitting: list[bool] = []
    index: dict[Node, int] = {}
    # for recomputed scalars: the last piece that makes one of the values they need
    ready: dict[Node, int] = {}
    for node in graph.nodes:
        if node.op in ("placeholder", "get_attr", "output"):
            continue
        if node in recomputed:
            ready[node] = max((index.get(a, ready.get(a, -1)) for a in node.all_input_nodes), default=-1)
            continue
        if is_getitem_of_producer(node):
            producer = node.args[0]
            assert isinstance(producer, Node)
            i = index[producer]
        else:
            kind = is_splitting_op(node)
            if not pieces or splitting[-1] != kind or (kind and not _adjacent(pieces[-1][-1], node, recomputed)):
                pieces.append([])
                splitting.append(kind)
            i = len(pieces) - 1
        pieces[i].append(node)
        index[node] = i

    for i, nodes in enumerate(pieces):
        if splitting[i] or not all(_is_empty_alloc(n) for n in nodes):
            continue
        target = next((j for j in range(i - 1, -1, -1) if not splitting[j] and pieces[j]), None)
        if target is None or any(index.get(a, ready.get(a, -1)) > target for n in nodes for a in n.all_input_nodes):
            continue
        pieces[target].extend(nodes)
        for n in nodes:
            index[n] = target
        nodes.clear()

    piece_id = {i: new_id for new_id, i in enumerate(i for i, nodes in enumerate(pieces) if nodes)}
    splitting_ids = {piece_id[i] for i in piece_id if splitting[i]}
    return {node: piece_id[i] for node, i in index.items()}, splitting_ids


def _adjacent(earlier: Node, later: Node, recomputed: Container[Node]) -> bool:
    """Whether only recomputed scalars lie between two nodes of the graph."""
    node = earlier.next
    while node is not later:
        if node not in recomputed:
            return False
        node = node.next
    return True


def split_graph(
    gm: GraphModule, splitting_ops: Iterable[SplittingOp], *, tuple_return: bool | None = None
) -> tuple[GraphModule, list[SplitItem]]:
    """Cut ``gm`` at ``splitting_ops`` into compute pieces and splitting pieces.

    Returns the stitching module (its ``submod_<i>`` children are the pieces) and one
    :class:`SplitItem` per piece, in order. Pieces keep the original node order and
    every node's ``meta``; inside a piece, nodes are named as torch's ``split_module``
    names them for vLLM (within the piece), so that identical pieces are identical
    graphs. A full ``x.size()`` never crosses a piece boundary (the using piece gets
    per-dim SymInts); each piece receives the SymInts that its
    inputs' shapes use. No Python code is generated until a piece is used as Python.

    ``splitting_ops`` mixes op names (``"ns::op"``, ``"ns::op.overload"``), op objects,
    torch functions and predicates on nodes (see :func:`fxsplit.matcher`);
    an empty list means no split. As in vLLM, a name of an op that is not registered
    matches nothing (vLLM's default list names ops that only some models register);
    ``PiecewiseBackend`` and the CLI, which take names from users, refuse one. With
    ``tuple_return``, every piece returns a tuple, even of one value, as
    ``aot_autograd``-based compilers require; by default it is on from torch 2.12, as
    in vLLM.

    No scalar crosses a piece boundary: a SymInt, SymFloat or SymBool computed from
    sizes or lifted floats (``s0 * s1``, a float's ``.item()``) is recomputed by each
    piece that uses it, and one whose value is already a constant (a float that an op
    specialised) is used as that constant. Each piece then compiles on its own.

    Example::

        split_gm, items = fxsplit.split_graph(gm, ["vllm::unified_attention"])
        compute = [item.graph for item in items if not item.is_splitting_graph]
    """
    _require_graph_module(gm, "split_graph")
    if tuple_return is None:
        tuple_return = _torch_release() >= _TUPLE_RETURN_SINCE
    # vLLM's contract: its default list names ops that only some models' code registers
    is_splitting_op = matcher(splitting_ops, strict=False)
    recomputed = {n for n in gm.graph.nodes if _is_recomputable_scalar(n) and not is_splitting_op(n)}
    assignment, splitting_ids = _assign_pieces(gm.graph, is_splitting_op, recomputed)
    if not splitting_ids and not is_splitting_op.empty:
        log.warning(
            "none of the splitting ops (%s) occurs in the graph; it stays one compute piece",
            ", ".join(is_splitting_op.described),
        )
    plan = plan_split(gm.graph, assignment, decompose_sizes=True, splitting=splitting_ids, recomputed=recomputed)
    # named as vLLM's call of torch's split_module names them: inside a piece, nodes take names of
    # their own (``linear``, ``linear_1``), so identical layers are identical graphs to anything that
    # hashes them, node names included (vLLM's dedup, AOTAutograd's and Inductor's caches)
    options = NamingOptions(keep_original_order=True, keep_original_node_name=False, tuple_return=tuple_return)
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

    # torch's contract: the callback is called once per computing node, in graph order
    assignment = {n: split_callback(n) for n in m.graph.nodes if n.op not in ("placeholder", "get_attr", "output")}
    plan = plan_split(m.graph, assignment, name_of=name_of, topological=not keep_original_order)
    options = NamingOptions(
        keep_original_order=bool(keep_original_order),
        keep_original_node_name=bool(keep_original_node_name),
        keep_original_input_name=keep_original_input_name,
        tuple_return=tuple_return,
    )
    return build_split_module(plan, m, options, qualname_map)
