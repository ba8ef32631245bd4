"""From a split plan to modules: lazy piece modules and the stitching module that calls
them.

Nothing here runs during a split but cheap bookkeeping: each piece's graph is built by
a closure over its plan the first time someone asks for it, and its code is generated
(or shared with an identical sibling) on its first call. The stitching graph is small
and built at once. Graph layout and naming follow torch's ``split_module`` exactly, so
that the drop-in replacement prints the same code.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import torch
from torch.fx import Graph, GraphModule, Node
from torch.fx.node import map_arg

from .lazy import CodeShare, make_lazy_module
from .plan import NodeRecord, PiecePlan, SizeDim, SplitPlan, Value
from .structure import arg_key, args_key, target_key

SYM_SIZE = torch.ops.aten.sym_size.int


@dataclass(frozen=True)
class NamingOptions:
    """torch ``split_module``'s naming and layout switches."""

    keep_original_order: bool = False
    keep_original_node_name: bool = False
    keep_original_input_name: bool = True
    tuple_return: bool = False


def lookup_attr(module: torch.nn.Module, qualname: str) -> Any:
    value: Any = module
    for atom in qualname.split("."):
        if not hasattr(value, atom):
            raise AttributeError(f"node target {qualname!r} not found on {type(module).__name__}")
        value = getattr(value, atom)
    return value


class _PieceBuilder:
    """Everything needed to build one piece's graph later, and to key its structure."""

    def __init__(
        self, piece: PiecePlan, snapshot: dict[Node, NodeRecord], module_attrs: dict[Node, Any], options: NamingOptions
    ) -> None:
        self.piece = piece
        self.snapshot = snapshot
        self.options = options
        self.attrs: dict[str, Any] = {}
        self.placeholder_inputs: list[Value] = []
        self.attr_inputs: list[Node] = []
        for value in piece.inputs:
            if isinstance(value, Node) and value in module_attrs:
                self.attr_inputs.append(value)
                self.attrs[str(value.target)] = module_attrs[value]
            else:
                self.placeholder_inputs.append(value)

    def build(self) -> Graph:
        piece, options = self.piece, self.options
        graph = Graph()
        env: dict[Any, Any] = {}
        for enter in piece.prelude:
            state = self.snapshot[enter]
            node = graph.create_node(state.op, state.target, tuple(state.args), {}, type_expr=state.type)
            node.meta = state.meta.copy()
            env[enter] = node
        for counter, value in enumerate(self.placeholder_inputs):
            name = value.name if options.keep_original_input_name else f"arg_{counter}"
            if isinstance(value, SizeDim):
                node = graph.placeholder(name)
                node.meta = value.meta.copy()
            else:
                source = self.snapshot[value]
                node = graph.placeholder(name, type_expr=source.type)
                node.meta = source.meta.copy()
            env[value] = node
        for value in self.attr_inputs:
            node = graph.get_attr(str(value.target))
            node.meta = self.snapshot[value].meta.copy()
            env[value] = node
        for size_node, dims in piece.size_views.items():
            env[size_node] = tuple(env[d] if isinstance(d, SizeDim) else d for d in dims)

        for record in piece.records:
            if isinstance(record, SizeDim):
                dim_name = record.name if options.keep_original_node_name else None
                node = graph.create_node("call_function", SYM_SIZE, (env[record.tensor], record.dim), name=dim_name)
                node.meta = record.meta.copy()
                env[record] = node
                continue
            target = record.target
            if record.op == "call_module":
                target = target.replace(".", "_")
            node = graph.create_node(
                record.op,
                target,
                map_arg(record.args, env.__getitem__),
                map_arg(record.kwargs, env.__getitem__),
                name=record.node.name if options.keep_original_node_name else None,
                type_expr=record.type,
            )
            node.meta = record.meta.copy()
            env[record.node] = node
        for exit_node, enter in piece.epilogue:
            state = self.snapshot[exit_node]
            node = graph.create_node(state.op, state.target, (env[enter],), {}, type_expr=state.type)
            node.meta = state.meta.copy()
        outputs = tuple(env[v] for v in piece.outputs)
        graph.output(outputs[0] if len(outputs) == 1 and not options.tuple_return else outputs)
        return graph

    def node_count(self) -> int:
        piece = self.piece
        inputs = len(self.placeholder_inputs) + len(self.attr_inputs)
        return len(piece.prelude) + inputs + len(piece.records) + len(piece.epilogue) + 1

    def structure_key(self) -> Hashable:
        """Equal for pieces whose generated code differs at most in local names."""
        piece = self.piece
        refs: dict[Any, int] = {}
        parts: list[Hashable] = [len(self.placeholder_inputs), tuple(str(v.target) for v in self.attr_inputs)]
        for enter in piece.prelude:
            state = self.snapshot[enter]
            refs[enter] = len(refs)
            parts.append((target_key(state.target), arg_key(state.args, refs)))
        for value in (*self.placeholder_inputs, *self.attr_inputs):
            refs[value] = len(refs)
        for size_node, dims in piece.size_views.items():
            parts.append(("size", refs.setdefault(size_node, len(refs)), arg_key(dims, refs)))
        for record in piece.records:
            if isinstance(record, SizeDim):
                parts.append(("sym_size", arg_key(record.tensor, refs), record.dim))
                refs[record] = len(refs)
                continue
            parts.append(
                (
                    record.op,
                    target_key(record.target),
                    args_key(record.args, refs),
                    arg_key(record.kwargs, refs) if record.kwargs else None,
                    target_key(record.type),
                )
            )
            refs[record.node] = len(refs)
        parts.append(tuple(arg_key(e, refs) for _, e in piece.epilogue))
        parts.append((arg_key(tuple(piece.outputs), refs), self.options.tuple_return))
        return tuple(parts)


def build_split_module(
    plan: SplitPlan,
    root: torch.nn.Module,
    options: NamingOptions,
    qualname_map: dict[str, str] | None = None,
) -> GraphModule:
    """The stitching module over lazy pieces, laid out as torch's ``split_module`` does.

    The stitching graph is lazy too: the module holds its pieces and attributes at
    once, and builds the graph that calls them when it is first needed.
    """
    attributes = plan.attributes
    attr_values = {r.node: lookup_attr(root, r.target) for r in attributes}
    module_attrs = {n: v for n, v in attr_values.items() if isinstance(v, torch.nn.Module)}

    share: CodeShare = {}
    modules: dict[str, GraphModule] = {}
    builders: list[_PieceBuilder] = []
    for piece in plan.pieces:
        builder = _PieceBuilder(piece, plan.snapshot, module_attrs, options)
        for record in piece.records:
            if isinstance(record, NodeRecord) and record.op == "call_module":
                flat = record.target.replace(".", "_")
                builder.attrs[flat] = lookup_attr(root, record.target)
                if qualname_map is not None:
                    qualname_map[f"{piece.submod_name}.{flat}"] = record.target
        modules[piece.submod_name] = make_lazy_module(
            builder.build,
            builder.attrs,
            share=share,
            structure_key=builder.structure_key,
            node_count=builder.node_count(),
        )
        builders.append(builder)

    if options.keep_original_order and builders:
        # torch only brings in the attributes that pieces or the output use
        used = {v for p in plan.pieces for v in p.inputs} | set(plan.output_uses)
        attrs = {r.target: attr_values[r.node] for r in attributes if r.node in used}
    else:
        attrs = {r.target: attr_values[r.node] for r in attributes}
    split = make_lazy_module(lambda: _stitching_graph(plan, builders, options), {**attrs, **modules})
    split.meta["partition_names"] = {p.submod_name for p in plan.pieces}
    return split


def _stitching_graph(plan: SplitPlan, builders: list[_PieceBuilder], options: NamingOptions) -> Graph:
    graph = Graph()
    env: dict[Any, Node] = {}

    def construct(record: NodeRecord) -> None:
        if record.node in env:
            return
        if record.op == "placeholder":
            default = record.args[0] if record.args else inspect.Signature.empty
            if options.keep_original_node_name:
                args: tuple[Any, ...] = () if default is inspect.Signature.empty else (default,)
                node = graph.create_node("placeholder", record.node.name, args=args, type_expr=record.type)
            else:
                node = graph.placeholder(record.target, type_expr=record.type, default_value=default)
        else:
            node = graph.get_attr(record.target)
        node.meta = record.meta.copy()
        env[record.node] = node

    attribute_records = {r.node: r for r in plan.attributes}
    if not options.keep_original_order or not builders:
        for record in plan.leaves:
            construct(record)
    else:
        for record in plan.placeholders:
            construct(record)
    for builder in builders:
        piece = builder.piece
        if options.keep_original_order:
            for value in piece.inputs:
                if value in attribute_records:
                    construct(attribute_records[value])
        call = graph.call_module(piece.submod_name, tuple(env[v] for v in builder.placeholder_inputs))
        outputs = list(piece.outputs)
        if len(outputs) > 1 or (outputs and options.tuple_return):
            for i, value in enumerate(outputs):
                env[value] = graph.call_function(operator.getitem, (call, i))
        elif outputs:
            env[outputs[0]] = call

    def output_value(node: Node) -> Any:
        dims = plan.size_dims.get(node)
        if dims is not None:
            return graph.call_function(torch.Size, ([env[d] if isinstance(d, SizeDim) else d for d in dims],))
        if node in attribute_records:  # an attribute only the output uses
            construct(attribute_records[node])
        return env[node]

    for record in plan.output_records:
        node = graph.create_node(
            record.op,
            record.target,
            map_arg(record.args, output_value),
            map_arg(record.kwargs, output_value),
            name=record.node.name,
            type_expr=record.type,
        )
        node.meta = record.meta.copy()
        env[record.node] = node
    graph.output(map_arg(plan.output_args, output_value))
    return graph
