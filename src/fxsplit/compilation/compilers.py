"""The compilers a piece can be handed to: a name or any ``(gm, example_inputs) -> callable``."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch.fx import GraphModule

from .. import _compat

Compiler = Callable[[GraphModule, list[Any]], Callable[..., Any]]

COMPILER_NAMES = ("inductor", "aot_eager", "eager")


def _eager(gm: GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
    """Run the piece as its own Python code (generated lazily, shared between twins)."""
    return gm


def _registered(name: str, gm: GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
    """A compiler registered with Dynamo, looked up when first used: importing
    Inductor costs a second, which a process that only loads compiled pieces saves."""
    return _compat.dynamo_backend(name)(gm, example_inputs)


def resolve_compiler(spec: str | Compiler) -> tuple[str, Compiler]:
    """``(name, compiler)`` for a compiler name or callable.

    Example::

        name, compile_piece = resolve_compiler("aot_eager")
        runnable = compile_piece(piece, example_inputs)
    """
    if callable(spec):
        return getattr(spec, "__name__", type(spec).__name__), spec
    if spec == "eager":
        return "eager", _eager
    if spec in COMPILER_NAMES:
        return spec, partial(_registered, spec)
    raise ValueError(
        f"unknown compiler {spec!r}; use one of {', '.join(repr(n) for n in COMPILER_NAMES)}, "
        f"or a callable (GraphModule, example_inputs) -> callable"
    )
