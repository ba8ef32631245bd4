"""Which compute pieces can share one compiled artifact.

Two pieces share when they compute the same function (their structure keys are equal,
see :mod:`fxsplit.split.structure`) of inputs that look the same to a compiler: dtype,
device, shape, stride and storage offset, with symbolic sizes compared as expressions
up to the names of their symbols. Dynamo gives each layer's KV cache sizes symbols of
their own, so that identical layers differ only in those names; a piece is compiled
for its inputs' symbols, so a renaming that keeps which sizes are equal, which one
the pieces dispatch on and what range each may take changes nothing a compiler sees.
The key is an exact value compared by equality, so a hash collision cannot make two
different pieces share; :func:`digest` gives a short stable name for reports and files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from typing import Any

import sympy
import torch
from torch.fx import GraphModule

from .._compat import OpOverload, OpOverloadPacket
from ..split.lazy import structure_key
from ..split.structure import Identity


def input_signature(value: Any, rename: dict[sympy.Symbol, sympy.Symbol] | None = None) -> Hashable:
    """What a compiler sees of one example input, its size symbols renamed by ``rename``."""

    def text(size: Any) -> str:
        if rename and isinstance(size, (torch.SymInt, torch.SymFloat, torch.SymBool)):
            return str(size.node.expr.xreplace(rename))
        return str(size)

    if isinstance(value, torch.Tensor):
        strided = value.layout == torch.strided
        return (
            "tensor",
            value.dtype,
            value.device.type,
            tuple(text(d) for d in value.shape),
            tuple(text(s) for s in value.stride()) if strided else None,
            text(value.storage_offset()) if strided else None,
            value.requires_grad,
        )
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return (type(value).__name__, text(value))
    return (type(value).__name__, repr(value))


def _canonical_symbols(example_inputs: Sequence[Any], dispatch: str | None) -> dict[sympy.Symbol, sympy.Symbol]:
    """Each size symbol of the inputs named by where it first appears (``dispatch``,
    the one the pieces dispatch on, by a name of its own): a renaming, one to one, so
    that equal keys mean equal signatures up to it. The names cannot be Dynamo's."""
    rename: dict[sympy.Symbol, sympy.Symbol] = {}
    for size in _sizes(example_inputs):
        for symbol in sorted(size.node.expr.free_symbols, key=str):
            if symbol not in rename:
                name = "<dispatch>" if symbol.name == dispatch else f"<{len(rename)}>"
                rename[symbol] = sympy.Symbol(name, **symbol.assumptions0)
    return rename


def piece_structure(piece: GraphModule) -> Hashable | None:
    """What a piece computes, read before its graph is built; None if it must not share."""
    structure = structure_key(piece)
    if structure is None:
        return None
    return (structure, tuple(sorted((name, Identity(value)) for name, value in _attributes(piece))))


def piece_key(structure: Hashable, example_inputs: Sequence[Any], dispatch: str | None = None) -> Hashable:
    """The sharing key: what a piece computes and what its inputs look like, its size
    symbols named by where they appear and ``dispatch`` (the symbol the pieces
    dispatch on) apart from the others."""
    rename = _canonical_symbols(example_inputs, dispatch)
    ranges = _ranges(example_inputs, rename)
    return (structure, tuple(input_signature(v, rename) for v in example_inputs), ranges)


def _ranges(example_inputs: Sequence[Any], rename: dict[sympy.Symbol, sympy.Symbol]) -> tuple[tuple[str, str], ...]:
    """The range each renamed symbol may take, as Dynamo's trace left it: what a
    compiler may assume of a size without a guard of its own."""
    shape_env = next((s.node.shape_env for s in _sizes(example_inputs)), None)
    known = getattr(shape_env, "var_to_range", {})
    return tuple((new.name, str(known.get(old, "?"))) for old, new in rename.items())


def _sizes(example_inputs: Sequence[Any]) -> list[Any]:
    """Every symbolic size of the inputs, in order: sizes, then strides, then offsets."""
    found: list[Any] = []
    for value in example_inputs:
        if isinstance(value, torch.Tensor) and value.layout == torch.strided:
            found += [*value.shape, *value.stride(), value.storage_offset()]
        elif isinstance(value, torch.Tensor):
            found += value.shape
        else:
            found.append(value)
    return [s for s in found if isinstance(s, (torch.SymInt, torch.SymFloat, torch.SymBool))]


def _attributes(piece: GraphModule) -> list[tuple[str, Any]]:
    """Submodules, parameters and buffers a piece reaches through ``self``: identical
    code over different weights must not share an artifact that may have baked them in."""
    return [*piece.named_children(), *piece.named_parameters(), *piece.named_buffers()]


HASH_NOTE = "hash: what the piece computes and how its inputs look, dynamic sizes named by where they appear"
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
