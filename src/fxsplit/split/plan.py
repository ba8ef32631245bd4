"""From a node-to-partition assignment to a split plan: what each piece holds, takes
and gives.

This is the analysis half of a split. It reads the source graph once, snapshots every
node it will copy (so that pieces built later, on demand, are exactly what the graph
was at split time), and works out for each piece its inputs and outputs, including the
SymInt bindings that its inputs' shapes use and the grad-mode/autocast state it must
re-enter. Building graphs and modules from the plan is :mod:`fxsplit.split.pieces`' job.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sympy
import torch
from sympy.logic.boolalg import BooleanAtom
from torch.fx import Graph, Node
from torch.fx.experimental.symbolic_shapes import free_symbols
from torch.fx.node import map_arg

from .. import _compat

# Nodes whose effect is global state: when a piece boundary cuts through their region,
# later pieces re-enter it (and earlier ones leave it), as torch's split_module does.
GRAD_MODE_OPS, AUTOCAST_ENTER, AUTOCAST_EXIT = _compat.global_state_ops()
GLOBAL_STATE_OPS = tuple(op for op in (*GRAD_MODE_OPS, AUTOCAST_ENTER, AUTOCAST_EXIT) if op is not None)


class PartitionCycleError(RuntimeError):
    """The assignment makes two partitions need each other's values."""


class NodeRecord(NamedTuple):
    """What a node was at split time: enough to recreate it in a piece."""

    node: Node
    op: str
    target: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    type: Any
    meta: dict[str, Any]


@dataclass(eq=False)
class SizeDim:
    """A symbolic dimension of a full ``x.size()`` that crosses a piece boundary.

    A ``torch.Size`` must not cross a boundary (AOTAutograd cannot return one from a
    compiled piece), so the piece that computes ``x.size()`` also returns
    ``aten.sym_size.int(x, dim)`` for each symbolic dim, and the using piece sees a tuple.
    """

    tensor: Node
    dim: int
    name: str
    meta: dict[str, Any]


Value = Node | SizeDim


@dataclass(eq=False)
class PiecePlan:
    name: str
    submod_name: str
    records: list[NodeRecord | SizeDim] = field(default_factory=list)
    inputs: dict[Value, None] = field(default_factory=dict)
    outputs: dict[Value, None] = field(default_factory=dict)
    # full x.size() nodes used here but computed elsewhere, seen as tuples of dims
    size_views: dict[Node, tuple[SizeDim | int, ...]] = field(default_factory=dict)
    dependencies: dict[str, None] = field(default_factory=dict)
    dependents: dict[str, None] = field(default_factory=dict)
    prelude: list[Node] = field(default_factory=list)
    epilogue: list[tuple[Node, Node]] = field(default_factory=list)  # (exit, its enter)
    is_splitting: bool = False
    # scalar nodes this piece computes for itself (see ``plan_split``'s ``recompute``)
    recomputed: set[Node] = field(default_factory=set)


@dataclass(eq=False)
class SplitPlan:
    pieces: list[PiecePlan]  # in the order the stitching graph calls them
    leaves: list[NodeRecord]  # placeholders and get_attr nodes, in graph order
    snapshot: dict[Node, NodeRecord]  # every node as it was at split time
    output_args: Any  # the source output's args[0], in source nodes
    output_uses: list[Node]  # the source nodes the output returns
    size_dims: dict[Node, tuple[SizeDim | int, ...]]
    # scalars the output returns that no piece hands over: the stitching graph computes them
    output_records: list[NodeRecord] = field(default_factory=list)

    @property
    def placeholders(self) -> list[NodeRecord]:
        return [r for r in self.leaves if r.op == "placeholder"]

    @property
    def attributes(self) -> list[NodeRecord]:
        """get_attr nodes, which stay in the stitching graph."""
        return [r for r in self.leaves if r.op == "get_attr"]


def example_value(node: Node) -> Any:
    meta = node.meta
    value = meta.get("example_value")
    return meta.get("val") if value is None else value


def _free_symbols(value: Any) -> set[sympy.Symbol]:
    """torch's ``free_symbols``, three times faster on the common cases (a strided
    tensor or a SymInt), which a split asks about hundreds of times."""
    if isinstance(value, torch.Tensor) and value.layout == torch.strided:
        parts: tuple[Any, ...] = (*value.shape, *value.stride(), value.storage_offset())
    elif isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        parts = (value,)
    else:
        return set(free_symbols(value))
    found: set[sympy.Symbol] = set()
    for part in parts:
        if isinstance(part, (torch.SymInt, torch.SymFloat, torch.SymBool)):
            found |= part.node.expr.free_symbols
    return found


_NOT_CONSTANT = object()


def constant_scalar(value: Any) -> Any:
    """The Python value of a scalar whose expression is a constant (a SymFloat that an
    op specialised, a plain number), else ``_NOT_CONSTANT``."""
    if isinstance(value, (bool, int, float)):
        return value
    if not isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return _NOT_CONSTANT
    expr = value.node.expr
    if isinstance(value, torch.SymBool):
        return bool(expr) if isinstance(expr, BooleanAtom) else _NOT_CONSTANT
    if not isinstance(expr, sympy.Number):
        return _NOT_CONSTANT
    return int(expr) if isinstance(value, torch.SymInt) else float(expr)


def _full_size_dims(node: Node) -> tuple[SizeDim | int, ...] | None:
    """Per-dim values of ``node`` if it is a full ``x.size()`` with a known shape."""
    if node.op != "call_method" or node.target != "size" or len(node.args) != 1 or node.kwargs:
        return None
    tensor = node.args[0]
    value = example_value(tensor) if isinstance(tensor, Node) else None
    if not isinstance(value, torch.Tensor):
        return None
    assert isinstance(tensor, Node)
    return tuple(
        SizeDim(tensor, i, f"{node.name}_dim{i}", {"example_value": d, "val": d})
        if isinstance(d, torch.SymInt)
        else int(d)
        for i, d in enumerate(value.shape)
    )


def plan_split(
    source: Graph,
    assign: Callable[[Node], Hashable],
    *,
    name_of: Callable[[Hashable], str] = str,
    topological: bool = False,
    decompose_sizes: bool = False,
    splitting: Callable[[Hashable], bool] | None = None,
    recompute: Callable[[Node], bool] | None = None,
) -> SplitPlan:
    """Plan a split of ``source``; ``assign(node)`` gives each computing node its partition.

    ``assign`` is called exactly once per node other than placeholders, ``get_attr``,
    the output and the nodes ``recompute`` selects. Pieces are called in order of first
    appearance, or in topological order (torch's ``split_module`` order) with
    ``topological=True``.

    ``recompute(node)`` selects scalar nodes that no piece hands to another: each piece
    that uses one computes it itself from its inputs (as a ``sym_size`` is), and one
    whose value is a constant (a float an op specialised) becomes that constant in the
    node that uses it. Scalars then never cross a piece boundary, so each piece compiles
    on its own as it would inside the whole graph.
    """
    pieces: dict[str, PiecePlan] = {}
    piece_by_key: dict[Hashable, PiecePlan] = {}
    piece_of: dict[Node, PiecePlan] = {}
    snapshot: dict[Node, NodeRecord] = {}
    leaves: list[NodeRecord] = []
    symbol_binder: dict[sympy.Symbol, Node] = {}
    symbols_of: dict[Value, list[sympy.Symbol]] = {}
    size_dims: dict[Node, tuple[SizeDim | int, ...]] = {}
    output_node: Node | None = None

    grad_regions: dict[Node, list[str]] = {}
    autocast_regions: dict[Node, list[str]] = {}
    autocast_exits: dict[Node, Node] = {}
    keys_in_order: list[Hashable] = []
    active_grad: Node | None = None
    active_autocasts: dict[Node, None] = {}
    recomputable: dict[Node, NodeRecord] = {}
    constants: dict[Node, Any] = {}
    output_records: list[NodeRecord] = []
    output_recomputed: set[Node] = set()

    def symbols(value: Value) -> list[sympy.Symbol]:
        found = symbols_of.get(value)
        if found is None:
            v = value.meta.get("example_value") if isinstance(value, SizeDim) else example_value(value)
            # torch orders by str(symbol); a Symbol's name is that string, without the printer
            found = sorted(_free_symbols(v), key=operator.attrgetter("name")) if v is not None and symbol_binder else []
            symbols_of[value] = found
        return found

    def link(value: Value, producer: PiecePlan | None, user: PiecePlan | None) -> None:
        """``user`` (None: the graph output) needs ``value`` made by ``producer``."""
        if producer is not None:
            producer.outputs[value] = None
            if user is not None:
                producer.dependents[user.name] = None
        if user is None:
            return
        if producer is not None:
            user.dependencies[producer.name] = None
        if value in user.inputs:
            return
        user.inputs[value] = None
        for symbol in symbols(value):
            binder = symbol_binder.get(symbol)
            if binder is None:
                continue
            if binder in recomputable:
                use(binder, user)
                continue
            binder_piece = piece_of.get(binder)
            if binder_piece is user:
                continue
            user.inputs.setdefault(binder)
            if binder_piece is not None:
                binder_piece.outputs[binder] = None
                binder_piece.dependents[user.name] = None
                user.dependencies[binder_piece.name] = None

    def with_constants(record: NodeRecord) -> NodeRecord:
        if not any(arg in constants for arg in record.node.all_input_nodes):
            return record

        def substitute(arg: Node) -> Any:
            return constants.get(arg, arg)

        return record._replace(args=map_arg(record.args, substitute), kwargs=map_arg(record.kwargs, substitute))

    def recompute_in(node: Node, user: PiecePlan | None) -> None:
        """``user`` (None: the stitching graph) computes the scalar ``node`` itself."""
        done = user.recomputed if user is not None else output_recomputed
        if node in done:
            return
        done.add(node)
        for arg in node.all_input_nodes:
            use(arg, user)
        record = with_constants(recomputable[node])
        (user.records if user is not None else output_records).append(record)

    def use(value: Node, user: PiecePlan | None) -> None:
        if value in recomputable:
            if value not in constants:
                recompute_in(value, user)
            return
        producer = piece_of.get(value)
        if producer is user:
            return
        dims = size_dims.get(value) if decompose_sizes else None
        if dims is None and decompose_sizes and producer is not None:
            dims = _full_size_dims(value)
            if dims is not None:
                size_dims[value] = dims
                producer.records.extend(d for d in dims if isinstance(d, SizeDim))
        if dims is None:
            link(value, producer, user)
            return
        if user is not None:
            user.size_views[value] = dims
        for dim in dims:
            if isinstance(dim, SizeDim):
                link(dim, producer, user)

    for node in source.nodes:
        op = node.op
        meta = node.meta
        value = meta.get("example_value")
        if value is not None and isinstance(value, (torch.SymInt, torch.SymFloat)):
            expr = value.node.expr
            if isinstance(expr, sympy.Symbol) and expr not in symbol_binder:
                symbol_binder[expr] = node
        if op == "output":
            output_node = node
            for arg in node.all_input_nodes:
                use(arg, None)
            continue
        snapshot[node] = record = NodeRecord(node, op, node.target, node.args, node.kwargs, node.type, meta.copy())
        if op == "placeholder" or op == "get_attr":
            leaves.append(record)
            continue
        if recompute is not None and recompute(node):
            recomputable[node] = record
            constant = constant_scalar(example_value(node))
            if constant is not _NOT_CONSTANT:
                constants[node] = constant
            continue

        key = assign(node)
        keys_in_order.append(key)
        piece = piece_by_key.get(key)
        if piece is None:
            name = name_of(key)
            piece = pieces.get(name)
            if piece is None:
                piece = pieces[name] = PiecePlan(name, f"submod_{name}")
                piece.is_splitting = splitting(key) if splitting is not None else False
            piece_by_key[key] = piece
        piece_of[node] = piece
        name = piece.name

        target = node.target
        if op == "call_function" and target in GLOBAL_STATE_OPS:
            if target in GRAD_MODE_OPS:
                active_grad = node
                grad_regions[node] = [name]
            elif target is AUTOCAST_ENTER:
                if any(isinstance(a, Node) for a in node.args):
                    raise ValueError(
                        f"autocast node {node.name!r} takes graph values; split_module needs constants there"
                    )
                active_autocasts[node] = None
                autocast_regions[node] = [name]
            else:
                enter = node.args[0]
                if not isinstance(enter, Node) or enter not in autocast_regions:
                    raise ValueError(f"autocast exit {node.name!r} does not name the autocast node it closes")
                autocast_regions[enter].append(name)
                active_autocasts.pop(enter, None)
                autocast_exits[enter] = node
        else:
            for arg in node.all_input_nodes:
                if piece_of.get(arg) is not piece:
                    use(arg, piece)
        piece.records.append(with_constants(record) if constants else record)
        if active_grad is not None:
            grad_regions[active_grad].append(name)
        for enter in active_autocasts:
            autocast_regions[enter].append(name)

    if active_autocasts:
        raise ValueError(f"autocast region {next(iter(active_autocasts)).name!r} is never exited")
    if output_node is None:
        raise ValueError("the graph has no output node")

    if (grad_regions or autocast_regions) and _decreasing(keys_in_order):
        raise ValueError(
            "autocast or set_grad_enabled regions need partitions in increasing order, as in torch's "
            "split_module; assign every node a partition no lower than the one before it"
        )
    _add_region_bounds(pieces, grad_regions, autocast_regions, autocast_exits)

    order = _topological_order(pieces) if topological else _checked_original_order(pieces)
    output_args = output_node.args[0]
    if constants:
        output_args = map_arg(output_args, lambda arg: constants.get(arg, arg))
    return SplitPlan(
        pieces=[pieces[n] for n in order],
        leaves=leaves,
        snapshot=snapshot,
        output_args=output_args,
        output_uses=[n for n in output_node.all_input_nodes if n not in constants],
        size_dims=size_dims,
        output_records=output_records,
    )


def _decreasing(keys: list[Hashable]) -> bool:
    """Whether partition keys ever go down; keys that do not order are compared by
    first appearance."""
    try:
        return any(a > b for a, b in zip(keys, keys[1:]))  # type: ignore[operator]
    except TypeError:
        position = {key: i for i, key in enumerate(dict.fromkeys(keys))}
        return any(position[a] > position[b] for a, b in zip(keys, keys[1:]))


def _add_region_bounds(
    pieces: dict[str, PiecePlan],
    grad_regions: dict[Node, list[str]],
    autocast_regions: dict[Node, list[str]],
    autocast_exits: dict[Node, Node],
) -> None:
    """Re-enter each global-state region in the later pieces it spans; leave autocast
    at the end of the earlier ones (in reverse order of entry)."""
    for regions in (autocast_regions, grad_regions):
        for node, names in regions.items():
            for name in _later(names):
                pieces[name].prelude.append(node)
    for enter in reversed(autocast_regions):
        for name in _earlier(autocast_regions[enter]):
            pieces[name].epilogue.append((autocast_exits[enter], enter))


def _later(names: list[str]) -> list[str]:
    """Distinct region pieces after the first, in order."""
    unique = list(dict.fromkeys(names))
    return unique[1:]


def _earlier(names: list[str]) -> list[str]:
    """Distinct region pieces before the last, in order."""
    unique = list(dict.fromkeys(names))
    return unique[:-1]


def _topological_order(pieces: dict[str, PiecePlan]) -> list[str]:
    """torch ``split_module``'s partition order (a stack over ready partitions)."""
    waiting = {name: dict(p.dependencies) for name, p in pieces.items()}
    ready = [name for name, deps in waiting.items() if not deps]
    order: list[str] = []
    while ready:
        name = ready.pop()
        order.append(name)
        for dependent in pieces[name].dependents:
            waiting[dependent].pop(name, None)
            if not waiting[dependent]:
                ready.append(dependent)
    if len(order) != len(pieces):
        _raise_cycle(pieces, [n for n in pieces if n not in set(order)])
    return order


def _checked_original_order(pieces: dict[str, PiecePlan]) -> list[str]:
    seen: set[str] = set()
    for name, piece in pieces.items():
        for dependency in piece.dependencies:
            if dependency not in seen and dependency != name:
                _topological_order(pieces)  # names the cycle if there is one
                raise PartitionCycleError(
                    f"partition {name!r} uses values from partition {dependency!r}, which comes "
                    f"later in the graph; assign nodes so that partitions only use values "
                    f"from partitions that appear before them, or split in topological order"
                )
        seen.add(name)
    return list(pieces)


def _raise_cycle(pieces: dict[str, PiecePlan], stuck: list[str]) -> None:
    # Walk dependencies among the stuck partitions until one repeats: that is a cycle.
    path = [stuck[0]]
    stuck_set = set(stuck)
    while True:
        nxt = next(d for d in pieces[path[-1]].dependencies if d in stuck_set)
        if nxt in path:
            cycle = path[path.index(nxt) :] + [nxt]
            break
        path.append(nxt)
    steps = []
    for user, producer in zip(cycle, cycle[1:]):
        value = next(v for v in pieces[producer].outputs if v in pieces[user].inputs)
        steps.append(f"partition {user!r} uses {value.name!r} from partition {producer!r}")
    raise PartitionCycleError(
        "cycle exists between partitions: "
        + "; ".join(steps)
        + ". Change split_callback so that no two partitions need each other's values."
    )


def is_getitem_of_producer(node: Node) -> bool:
    """A ``getitem`` on a computed value: it must live with its producer."""
    return (
        node.op == "call_function"
        and node.target is operator.getitem
        and isinstance(node.args[0], Node)
        and node.args[0].op != "placeholder"
    )
