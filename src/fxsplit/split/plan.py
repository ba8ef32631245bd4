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
from collections.abc import Callable, Container, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sympy
import torch
from torch.fx import Graph, Node
from torch.fx.node import map_arg

from .. import _compat
from .order import add_region_bounds, checked_original_order, decreasing, topological_order
from .values import NOT_CONSTANT, constant_scalar, example_value, fast_free_symbols

# Nodes whose effect is global state: when a piece boundary cuts through their region,
# later pieces re-enter it (and earlier ones leave it), as torch's split_module does.
GRAD_MODE_OPS, AUTOCAST_ENTER, AUTOCAST_EXIT = _compat.global_state_ops()
GLOBAL_STATE_OPS = tuple(op for op in (*GRAD_MODE_OPS, AUTOCAST_ENTER, AUTOCAST_EXIT) if op is not None)


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
    # scalar nodes this piece computes for itself (see ``plan_split``'s ``recomputed``)
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
    assignment: Mapping[Node, Hashable],
    *,
    name_of: Callable[[Hashable], str] = str,
    topological: bool = False,
    decompose_sizes: bool = False,
    splitting: Container[Hashable] = (),
    recomputed: Container[Node] = (),
) -> SplitPlan:
    """Plan a split of ``source``: ``assignment`` gives each computing node its partition.

    ``assignment`` holds every node other than placeholders, ``get_attr``, the output
    and the nodes in ``recomputed``; partitions in ``splitting`` are splitting pieces.
    Pieces are called in order of first appearance, or in topological order (torch's
    ``split_module`` order) with ``topological=True``.

    Nodes in ``recomputed`` are scalars that no piece hands to another: each piece that
    uses one computes it itself from its inputs (as a ``sym_size`` is), and one whose
    value is a constant (a float an op specialised) becomes that constant in the node
    that uses it. Scalars then never cross a piece boundary, so each piece compiles on
    its own as it would inside the whole graph.

    The plan is made in three phases: each node is read once, in graph order, into the
    piece that holds it (:meth:`_Planner.read`), which records the values it takes
    from other pieces (:meth:`_Planner.use`); then the global-state regions that
    pieces cut through get their re-entries and exits; then the pieces are ordered.
    """
    planner = _Planner(assignment, name_of, decompose_sizes, splitting, recomputed)
    for node in source.nodes:
        planner.read(node)
    return planner.plan(topological)


class _Planner:
    """The state of one plan while its graph is read: the pieces so far, which piece
    makes each node, which node binds each size symbol, and the global-state regions
    open at the node being read."""

    def __init__(
        self,
        assignment: Mapping[Node, Hashable],
        name_of: Callable[[Hashable], str],
        decompose_sizes: bool,
        splitting: Container[Hashable],
        recomputed: Container[Node],
    ) -> None:
        self.assignment, self.name_of, self.splitting, self.recomputed = assignment, name_of, splitting, recomputed
        self.decompose_sizes = decompose_sizes
        self.pieces: dict[str, PiecePlan] = {}
        self.piece_by_key: dict[Hashable, PiecePlan] = {}
        self.piece_of: dict[Node, PiecePlan] = {}
        self.snapshot: dict[Node, NodeRecord] = {}
        self.leaves: list[NodeRecord] = []
        self.symbol_binder: dict[sympy.Symbol, Node] = {}
        self.symbols_of: dict[Value, list[sympy.Symbol]] = {}
        self.size_dims: dict[Node, tuple[SizeDim | int, ...]] = {}
        self.output_node: Node | None = None
        self.keys_in_order: list[Hashable] = []
        # scalars each user computes for itself, and those among them that are constants
        self.recomputable: dict[Node, NodeRecord] = {}
        self.constants: dict[Node, Any] = {}
        self.output_records: list[NodeRecord] = []
        self.output_recomputed: set[Node] = set()
        # global-state regions: the pieces each spans, and the ones open now
        self.grad_regions: dict[Node, list[str]] = {}
        self.autocast_regions: dict[Node, list[str]] = {}
        self.autocast_exits: dict[Node, Node] = {}
        self.active_grad: Node | None = None
        self.active_autocasts: dict[Node, None] = {}

    # phase 1: each node into its piece

    def read(self, node: Node) -> None:
        """Record ``node`` as it is now, in the piece that holds it."""
        op = node.op
        meta = node.meta
        value = meta.get("example_value")
        if value is not None and isinstance(value, (torch.SymInt, torch.SymFloat)):
            expr = value.node.expr
            if isinstance(expr, sympy.Symbol) and expr not in self.symbol_binder:
                self.symbol_binder[expr] = node
        if op == "output":
            self.output_node = node
            for arg in node.all_input_nodes:
                self.use(arg, None)
            return
        self.snapshot[node] = record = NodeRecord(node, op, node.target, node.args, node.kwargs, node.type, meta.copy())
        if op == "placeholder" or op == "get_attr":
            self.leaves.append(record)
        elif node in self.recomputed:
            self.recomputable[node] = record
            constant = constant_scalar(example_value(node))
            if constant is not NOT_CONSTANT:
                self.constants[node] = constant
        else:
            self._place(node, record, self._piece(self.assignment[node]))

    def _piece(self, key: Hashable) -> PiecePlan:
        self.keys_in_order.append(key)
        piece = self.piece_by_key.get(key)
        if piece is None:
            name = self.name_of(key)
            piece = self.pieces.get(name)
            if piece is None:
                piece = self.pieces[name] = PiecePlan(name, f"submod_{name}", is_splitting=key in self.splitting)
            self.piece_by_key[key] = piece
        return piece

    def _place(self, node: Node, record: NodeRecord, piece: PiecePlan) -> None:
        """``node`` into ``piece``, with what it takes from other pieces; a global-state
        node opens or closes a region instead of taking values."""
        self.piece_of[node] = piece
        name = piece.name
        if node.op == "call_function" and node.target in GLOBAL_STATE_OPS:
            self._region_bound(node, name)
        else:
            piece_of = self.piece_of
            for arg in node.all_input_nodes:
                if piece_of.get(arg) is not piece:
                    self.use(arg, piece)
        piece.records.append(self._with_constants(record) if self.constants else record)
        if self.active_grad is not None:
            self.grad_regions[self.active_grad].append(name)
        for enter in self.active_autocasts:
            self.autocast_regions[enter].append(name)

    def _region_bound(self, node: Node, name: str) -> None:
        """A grad-mode setter or an autocast enter or exit, in piece ``name``."""
        target = node.target
        if target in GRAD_MODE_OPS:
            self.active_grad = node
            self.grad_regions[node] = [name]
        elif target is AUTOCAST_ENTER:
            if any(isinstance(a, Node) for a in node.args):
                raise ValueError(f"autocast node {node.name!r} takes graph values; split_module needs constants there")
            self.active_autocasts[node] = None
            self.autocast_regions[node] = [name]
        else:
            enter = node.args[0]
            if not isinstance(enter, Node) or enter not in self.autocast_regions:
                raise ValueError(f"autocast exit {node.name!r} does not name the autocast node it closes")
            self.autocast_regions[enter].append(name)
            self.active_autocasts.pop(enter, None)
            self.autocast_exits[enter] = node

    # the values a piece takes from others

    def use(self, value: Node, user: PiecePlan | None) -> None:
        """``user`` (None: the graph output) needs ``value``: recomputed there if it is a
        recomputed scalar, taken per dimension if it is a full ``x.size()`` made
        elsewhere, else taken as it is."""
        if value in self.recomputable:
            if value not in self.constants:
                self._recompute_in(value, user)
            return
        producer = self.piece_of.get(value)
        if producer is user:
            return
        dims = self.size_dims.get(value) if self.decompose_sizes else None
        if dims is None and self.decompose_sizes and producer is not None:
            dims = _full_size_dims(value)
            if dims is not None:
                self.size_dims[value] = dims
                producer.records.extend(d for d in dims if isinstance(d, SizeDim))
        if dims is None:
            self._link(value, producer, user)
            return
        if user is not None:
            user.size_views[value] = dims
        for dim in dims:
            if isinstance(dim, SizeDim):
                self._link(dim, producer, user)

    def _link(self, value: Value, producer: PiecePlan | None, user: PiecePlan | None) -> None:
        """``user`` (None: the graph output) needs ``value`` made by ``producer``, and
        the symbols its shape uses, from the pieces that bind them."""
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
        for symbol in self._symbols(value):
            binder = self.symbol_binder.get(symbol)
            if binder is None:
                continue
            if binder in self.recomputable:
                self.use(binder, user)
                continue
            binder_piece = self.piece_of.get(binder)
            if binder_piece is user:
                continue
            user.inputs.setdefault(binder)
            if binder_piece is not None:
                binder_piece.outputs[binder] = None
                binder_piece.dependents[user.name] = None
                user.dependencies[binder_piece.name] = None

    def _symbols(self, value: Value) -> list[sympy.Symbol]:
        found = self.symbols_of.get(value)
        if found is None:
            v = value.meta.get("example_value") if isinstance(value, SizeDim) else example_value(value)
            # torch orders by str(symbol); a Symbol's name is that string, without the printer
            bound = v is not None and self.symbol_binder
            found = sorted(fast_free_symbols(v), key=operator.attrgetter("name")) if bound else []
            self.symbols_of[value] = found
        return found

    def _recompute_in(self, node: Node, user: PiecePlan | None) -> None:
        """``user`` (None: the stitching graph) computes the scalar ``node`` itself."""
        done = user.recomputed if user is not None else self.output_recomputed
        if node in done:
            return
        done.add(node)
        for arg in node.all_input_nodes:
            self.use(arg, user)
        record = self._with_constants(self.recomputable[node])
        (user.records if user is not None else self.output_records).append(record)

    def _with_constants(self, record: NodeRecord) -> NodeRecord:
        constants = self.constants
        if not any(arg in constants for arg in record.node.all_input_nodes):
            return record

        def substitute(arg: Node) -> Any:
            return constants.get(arg, arg)

        return record._replace(args=map_arg(record.args, substitute), kwargs=map_arg(record.kwargs, substitute))

    # phases 2 and 3: regions closed, pieces ordered

    def plan(self, topological: bool) -> SplitPlan:
        """The plan, once every node has been read."""
        if self.active_autocasts:
            raise ValueError(f"autocast region {next(iter(self.active_autocasts)).name!r} is never exited")
        output_node = self.output_node
        if output_node is None:
            raise ValueError("the graph has no output node")
        pieces = self.pieces
        if (self.grad_regions or self.autocast_regions) and decreasing(self.keys_in_order):
            raise ValueError(
                "autocast or set_grad_enabled regions need partitions in increasing order, as in torch's "
                "split_module; assign every node a partition no lower than the one before it"
            )
        add_region_bounds(pieces, self.grad_regions, self.autocast_regions, self.autocast_exits)
        order = topological_order(pieces) if topological else checked_original_order(pieces)
        constants = self.constants
        output_args = output_node.args[0]
        if constants:
            output_args = map_arg(output_args, lambda arg: constants.get(arg, arg))
        return SplitPlan(
            pieces=[pieces[n] for n in order],
            leaves=self.leaves,
            snapshot=self.snapshot,
            output_args=output_args,
            output_uses=[n for n in output_node.all_input_nodes if n not in constants],
            size_dims=self.size_dims,
            output_records=self.output_records,
        )
