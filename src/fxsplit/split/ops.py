"""Which graph nodes are splitting ops.

Users name splitting ops the way they think of them; graphs record them the way the
tracer saw them. A matcher is built once per split from any mix of:

* op names, ``"ns::op"`` (every overload) or ``"ns::op.overload"``; an aten op also
  matches the torch function of its name that Dynamo records for it
  (``aten::scaled_dot_product_attention`` matches a call of
  ``F.scaled_dot_product_attention``), where it has only that overload;
* ``OpOverload`` and ``OpOverloadPacket`` objects;
* torch's Python callables, matched as Dynamo records them: a function of
  ``torch.nn.functional`` also matches the builtin of the same name it calls
  (in torch's C extension or ``torch``), so ``F.scaled_dot_product_attention`` matches
  however the graph spells it;
* predicates ``Callable[[Node], bool]``: any other callable.

Only ``call_function`` nodes are matched by op; predicates see every node.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.fx import Node

from .. import _compat
from .._compat import OpOverload, OpOverloadPacket

log = logging.getLogger(__name__)

SplittingOp = str | OpOverload | OpOverloadPacket | Callable[..., Any]


def packet_name(packet: OpOverloadPacket) -> str:
    namespace, _, name = str(packet).partition(".")
    return f"{namespace}::{name}"


def overload_name(op: OpOverload) -> str:
    """``ns::op.overload``, with ``.default`` spelled out (``OpOverload.name()`` omits it)."""
    name = op.name()
    return name if "." in name.partition("::")[2] else f"{name}.default"


def _resolve_name(name: str) -> OpOverload | OpOverloadPacket:
    namespace, sep, rest = name.partition("::")
    op_name, _, overload = rest.partition(".")
    if not sep or not namespace or not op_name:
        raise ValueError(
            f"splitting op {name!r} is not an op name: write it as 'namespace::op' or 'namespace::op.overload'"
        )
    try:
        packet = getattr(getattr(torch.ops, namespace), op_name)
        return getattr(packet, overload) if overload else packet
    except (AttributeError, RuntimeError):
        raise ValueError(
            f"splitting op {name!r} is not a registered op; check the spelling, and import the "
            f"module that registers it (torch.library) before splitting"
        ) from None


def _aliases(fn: Callable[..., Any]) -> list[Callable[..., Any]]:
    """The callables Dynamo may record for a call to ``fn``."""
    names = {fn}
    if isinstance(fn, types.FunctionType) and fn.__module__ == "torch.nn.functional":
        names.update(_builtins_named(fn.__name__))
    return list(names)


def _builtins_named(name: str) -> list[Callable[..., Any]]:
    """The builtins called ``name`` where ``torch.nn.functional``'s live."""
    found = (getattr(home, name, None) for home in _compat.builtin_homes())
    return [builtin for builtin in found if isinstance(builtin, types.BuiltinFunctionType)]


def _functions_of(packet: OpOverloadPacket) -> list[Callable[..., Any]]:
    """The torch functions Dynamo may record instead of the aten op ``packet``, which
    is what traced graphs record: ``aten::scaled_dot_product_attention`` is also the
    builtin that ``F.scaled_dot_product_attention`` calls."""
    namespace, _, name = packet_name(packet).partition("::")
    if namespace != "aten":
        return []
    functional = getattr(torch.nn.functional, name, None)
    return [*_builtins_named(name), *([functional] if isinstance(functional, types.FunctionType) else [])]


def _is_torch_callable(fn: Any) -> bool:
    return isinstance(fn, types.BuiltinFunctionType) or str(getattr(fn, "__module__", "")).startswith("torch")


@dataclass
class OpMatcher:
    """Decides whether a node is a splitting op; build it with :func:`matcher`."""

    targets: set[Any] = field(default_factory=set)
    packet_names: set[str] = field(default_factory=set)
    overload_names: set[str] = field(default_factory=set)
    predicates: list[Callable[[Node], bool]] = field(default_factory=list)
    described: list[str] = field(default_factory=list)

    def __call__(self, node: Node) -> bool:
        if node.op == "call_function":
            target = node.target
            if target in self.targets:
                return True
            if isinstance(target, OpOverload):
                if (
                    overload_name(target) in self.overload_names
                    or packet_name(target.overloadpacket) in self.packet_names
                ):
                    return True
            elif isinstance(target, OpOverloadPacket) and packet_name(target) in self.packet_names:
                return True
        for predicate in self.predicates:
            verdict = predicate(node)
            if not isinstance(verdict, bool):
                raise TypeError(
                    f"splitting-op predicate {predicate!r} returned {type(verdict).__name__} for node "
                    f"{node.name!r}, not bool; callables that are not torch functions are treated as "
                    f"predicates on fx.Node"
                )
            if verdict:
                return True
        return False

    @property
    def empty(self) -> bool:
        return not (self.targets or self.packet_names or self.overload_names or self.predicates)


def matcher(splitting_ops: Iterable[SplittingOp], *, strict: bool = True) -> OpMatcher:
    """Build an :class:`OpMatcher`; raises ``ValueError`` for names of unknown ops, or,
    with ``strict=False``, lets such a name match nothing, as vLLM's split does with the
    ops of its default list that no imported model code has registered.

    Example::

        is_attention = matcher(["vllm::unified_attention", F.scaled_dot_product_attention])
        splitting_nodes = [n for n in gm.graph.nodes if is_attention(n)]
    """
    if isinstance(splitting_ops, (str, OpOverload, OpOverloadPacket)) or callable(splitting_ops):
        splitting_ops = [splitting_ops]
    m = OpMatcher()
    for spec in splitting_ops:
        if isinstance(spec, str):
            name = spec
            try:
                spec = _resolve_name(name)
            except ValueError:
                if strict or "::" not in name:
                    raise
                log.debug("splitting op %r is not registered (yet); it matches nothing", name)
                continue
        if isinstance(spec, OpOverload):
            m.targets.add(spec)
            m.overload_names.add(overload_name(spec))
            # A packet call, or a torch function, can only dispatch to this overload if it is the only one.
            if len(spec.overloadpacket.overloads()) == 1:
                m.targets.add(spec.overloadpacket)
                m.targets.update(_functions_of(spec.overloadpacket))
            m.described.append(overload_name(spec))
        elif isinstance(spec, OpOverloadPacket):
            m.targets.add(spec)
            m.targets.update(_functions_of(spec))
            m.packet_names.add(packet_name(spec))
            m.described.append(packet_name(spec))
        elif callable(spec) and _is_torch_callable(spec):
            m.targets.update(_aliases(spec))
            m.described.append(f"{getattr(spec, '__module__', '?')}.{getattr(spec, '__name__', spec)}")
        elif callable(spec):
            m.predicates.append(spec)
            m.described.append(f"predicate {getattr(spec, '__name__', spec)!r}")
        else:
            raise TypeError(
                f"splitting op {spec!r} has type {type(spec).__name__}; give an op name "
                f"('ns::op[.overload]'), an OpOverload/OpOverloadPacket, a torch function, or a "
                f"predicate Callable[[fx.Node], bool]"
            )
    return m
