"""Structural identity of graph pieces, computed without generating code.

Two pieces with equal keys compute the same function of their inputs: same ops on the
same targets, same constants, same wiring. Local names do not count, so the 28 layers
of a model give one key. Keys hold the objects they compare (targets by identity,
constants by type and exact value), so equal keys are never a hash collision.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from torch.fx import Node

_EXACT_TYPES = frozenset(
    {type(None), bool, int, str, type(Ellipsis), torch.dtype, torch.device, torch.layout, torch.memory_format}
)


class Identity:
    """Compares and hashes by object identity (for callables and opaque constants)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identity) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __repr__(self) -> str:
        return f"Identity({self.obj!r})"


def target_key(target: Any) -> Hashable:
    return target if target is None or isinstance(target, str) else Identity(target)


def args_key(args: tuple[Any, ...], refs: Mapping[Any, int]) -> Hashable:
    """:func:`arg_key` of a node's args, with the common case (a Node) inlined."""
    return tuple([refs[a] if type(a) is Node else arg_key(a, refs) for a in args])


def arg_key(arg: Any, refs: Mapping[Any, int]) -> Hashable:
    """Key of an argument tree; values found in ``refs`` become their local index.

    A bare int in a key is always a reference: constants carry their type.
    """
    kind = type(arg)
    if kind in _EXACT_TYPES:
        return (kind, arg)
    if kind is tuple or kind is list or isinstance(arg, (tuple, list)):
        return (kind, tuple([arg_key(a, refs) for a in arg]))
    if isinstance(arg, dict):
        return (kind, tuple([(k, arg_key(v, refs)) for k, v in arg.items()]))
    if isinstance(arg, (float, complex)):
        # repr keeps -0.0 apart from 0.0 and distinguishes every float exactly
        return (kind, repr(arg))
    if isinstance(arg, slice):
        return (slice, arg_key(arg.start, refs), arg_key(arg.stop, refs), arg_key(arg.step, refs))
    try:
        index = refs.get(arg)
    except TypeError:  # unhashable constant
        index = None
    return index if index is not None else Identity(arg)
