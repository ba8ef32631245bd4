"""Which compute pieces can share one compiled artifact.

Two pieces share when they compute the same function (their structure keys are equal,
see :mod:`fxsplit.split.structure`) of inputs that look the same to a compiler: dtype,
device, shape, stride and storage offset, with symbolic sizes compared as expressions.
The key is an exact value compared by equality, so a hash collision cannot make two
different pieces share; :func:`digest` gives a short stable name for reports and files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from typing import Any

import torch
from torch.fx import GraphModule

from .._compat import OpOverload, OpOverloadPacket
from ..split.lazy import structure_key
from ..split.structure import Identity


def input_signature(value: Any) -> Hashable:
    """What a compiler sees of one example input."""
    if isinstance(value, torch.Tensor):
        return (
            "tensor",
            value.dtype,
            value.device.type,
            tuple(str(d) for d in value.shape),
            tuple(str(s) for s in value.stride()) if value.layout == torch.strided else None,
            str(value.storage_offset()) if value.layout == torch.strided else None,
            value.requires_grad,
        )
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return (type(value).__name__, str(value.node.expr))
    return (type(value).__name__, repr(value))


def piece_structure(piece: GraphModule) -> Hashable | None:
    """What a piece computes, read before its graph is built; None if it must not share."""
    structure = structure_key(piece)
    if structure is None:
        return None
    return (structure, tuple(sorted((name, Identity(value)) for name, value in _attributes(piece))))


def piece_key(structure: Hashable, example_inputs: Sequence[Any]) -> Hashable:
    """The sharing key: what a piece computes and what its inputs look like."""
    return (structure, tuple(input_signature(v) for v in example_inputs))


def _attributes(piece: GraphModule) -> list[tuple[str, Any]]:
    """Submodules, parameters and buffers a piece reaches through ``self``: identical
    code over different weights must not share an artifact that may have baked them in."""
    return [*piece.named_children(), *piece.named_parameters(), *piece.named_buffers()]


HASH_NOTE = (
    "hash: what the piece computes and how its inputs look, dynamic sizes named as in this trace (s0, s1, ...): "
    "another trace may hash it otherwise"
)
"""What a piece's :func:`digest` covers, for tables that show it."""


def digest(key: Hashable) -> str:
    """A short name for a key that is the same in every process (for reports)."""
    return hashlib.sha256(_stable(key, strict=False).encode()).hexdigest()[:16]


def persistent_key(key: Hashable, *parts: Any) -> str | None:
    """A key for the on-disk cache, or None when ``key`` holds something that cannot be
    named the same way in another process (a lambda, an opaque constant, a weight)."""
    try:
        text = _stable((key, parts), strict=True)
    except _Unstable:
        return None
    return hashlib.sha256(text.encode()).hexdigest()


class _Unstable(Exception):
    pass


def _stable(value: Any, strict: bool) -> str:
    if isinstance(value, Identity):
        obj = value.obj
        if isinstance(obj, (OpOverload, OpOverloadPacket)):
            return f"op:{obj}"
        name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        module = getattr(obj, "__module__", None)
        named = callable(obj) and name is not None and module is not None and "<" not in name
        if strict and not named:
            raise _Unstable(repr(obj))
        return f"obj:{module}.{name}" if name else f"obj:{type(obj).__qualname__}"
    if isinstance(value, tuple):
        return "(" + ",".join(_stable(v, strict) for v in value) + ")"
    if isinstance(value, type):
        return f"type:{value.__module__}.{value.__qualname__}"
    return repr(value)
