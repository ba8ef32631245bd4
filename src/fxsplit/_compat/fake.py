"""Fake tensors and shape environments: fresh ones, and symbols made in them."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from . import lookup


def size_hints(shape_env: Any) -> dict[Any, Any]:
    """The value each backed symbol of a shape environment had when it was made."""
    hints = getattr(shape_env, "backed_var_to_val", None)
    if hints is None:
        hints = getattr(shape_env, "var_to_val", None)
    return dict(hints) if isinstance(hints, dict) else {}


def fresh_fake_mode() -> tuple[Any, Any] | None:
    """``(fake_mode, shape_env)``: fake values in a shape environment of their own, so
    that compiling with them adds no guard to Dynamo's. None where this torch lacks the
    fake-tensor mode."""
    fake_tensor_mode = lookup.private("torch._subclasses.fake_tensor", "FakeTensorMode")
    if fake_tensor_mode is None or lookup.private("torch._dynamo.source", "ConstantSource") is None:
        return None
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    shape_env = ShapeEnv()
    return fake_tensor_mode(shape_env=shape_env), shape_env


def new_size_symbol(shape_env: Any, name: str, hint: int, bounds: tuple[int, int] | None = None) -> Any:
    """A fresh dynamic size symbol in ``shape_env`` (never unified with an equal one),
    known to lie in ``bounds`` (both ends included) where given and this torch can
    say so; without, the code compiled for it is as general as for any size."""
    from torch.fx.experimental.symbolic_shapes import DimDynamic

    constant_source = lookup.private("torch._dynamo.source", "ConstantSource")
    symbol = shape_env.create_symbol(hint, constant_source(name), dynamic_dim=DimDynamic.DYNAMIC)
    constrain = getattr(shape_env, "constrain_symbol_range", None)
    if bounds is not None and constrain is not None:
        constrain(symbol, compiler_min=bounds[0], compiler_max=bounds[1])
    return symbol


def tracing_with(fake_mode: Any) -> contextlib.AbstractContextManager[Any]:
    """A tracing context over ``fake_mode``, where compilers look for the fake mode of
    their example inputs."""
    context = lookup.private("torch._guards", "TracingContext")
    tracing = lookup.private("torch._guards", "tracing")
    if context is None or tracing is None:
        return contextlib.nullcontext()
    return tracing(context(fake_mode))


def is_plain_tensor(tensor: Any) -> bool:
    """A tensor, parameter or fake tensor: not a subclass with semantics of its own."""
    fake = lookup.private("torch._subclasses.fake_tensor", "FakeTensor")
    return type(tensor) in (torch.Tensor, torch.nn.Parameter) or (fake is not None and type(tensor) is fake)
