"""A piece's graph as bytes, node for node, for a compile job in another process.

A ``GraphModule`` pickles as its Python code, and unpickling traces that code again.
That trace is not the graph it came from: whatever does not depend on an input runs
for real (``torch.arange(1)[:, None]`` in a HuggingFace mask becomes one tensor
constant), and each such tensor becomes an attribute, which Inductor then takes as
one more input. A version compiled from it would not take the arguments that the
general version takes. So a job ships the nodes themselves: op, name, target,
arguments (nodes by name) and the module attributes that ``get_attr`` and
``call_module`` nodes read; ops are named, as the pickle module cannot pickle them,
with the module that registers a custom op, for a worker that has not imported it.
Node ``meta`` is left out: the worker records fake values of its own.
"""

from __future__ import annotations

import importlib
import io
import pickle
from typing import Any

import torch
from torch import fx

from .. import _compat
from .._compat import OpOverload, OpOverloadPacket
from ..split.ops import overload_name, packet_name


class _NodeRef:
    """An argument that is another node, by name."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        return _NodeRef, (self.name,)


def _op(name: str, module: str | None) -> Any:
    """The op ``ns::op`` or ``ns::op.overload``, registered first by importing
    ``module`` where this process does not have it yet (a model's custom op, such as
    transformers' MoE kernels, exists only once its module is imported)."""
    op = _registered(name)
    if op is None and module is not None:
        importlib.import_module(module)
        op = _registered(name)
    if op is None:
        raise RuntimeError(
            f"the op {name} is not registered in this process; import the module that registers it "
            f"(torch.library) where the compile job runs"
        )
    return op


def _registered(name: str) -> Any:
    namespace, _, rest = name.partition("::")
    op, _, overload = rest.partition(".")
    try:
        packet = getattr(getattr(torch.ops, namespace), op)
        return getattr(packet, overload) if overload else packet
    except AttributeError:
        return None


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, OpOverload):
            return _op, (overload_name(obj), _compat.op_module(packet_name(obj.overloadpacket)))
        if isinstance(obj, OpOverloadPacket):
            return _op, (packet_name(obj), _compat.op_module(packet_name(obj)))
        return NotImplemented


def graph_to_bytes(gm: fx.GraphModule) -> bytes:
    """``gm``'s graph and the attributes its nodes read, exactly, as bytes."""
    nodes = []
    attributes: dict[str, Any] = {}
    for node in gm.graph.nodes:
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: _NodeRef(n.name))  # type: ignore[arg-type,return-value]
        nodes.append((node.op, node.name, node.target, args, kwargs, node.type))
        if node.op in ("get_attr", "call_module"):
            attributes[str(node.target)] = _attribute(gm, str(node.target))
    buffer = io.BytesIO()
    _Pickler(buffer).dump((nodes, attributes))
    return buffer.getvalue()


def graph_from_bytes(data: bytes) -> fx.GraphModule:
    """The GraphModule that :func:`graph_to_bytes` made ``data`` of."""
    nodes, attributes = pickle.loads(data)
    graph = fx.Graph()
    made: dict[str, fx.Node] = {}

    def resolve(value: Any) -> Any:
        if isinstance(value, _NodeRef):
            return made[value.name]
        if isinstance(value, (tuple, list)):
            return type(value)(resolve(v) for v in value)
        if isinstance(value, slice):
            return slice(resolve(value.start), resolve(value.stop), resolve(value.step))
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    for op, name, target, args, kwargs, type_ in nodes:
        node = graph.create_node(op, target, resolve(args), resolve(kwargs), name=name, type_expr=type_)
        made[name] = node
    return fx.GraphModule(attributes, graph)


def _attribute(gm: fx.GraphModule, target: str) -> Any:
    value: Any = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value
