"""What a compiled piece's inputs look like, as plain data that pickles: dtype, device,
symbolic sizes and strides, and the value each size symbol had when traced.

Made from Dynamo's fake values by :func:`fxsplit.compilation.examples.describe`; read
at run time to find the layout a piece expects, and at compile time to make fake
inputs again outside Dynamo.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy
import torch


@dataclass(frozen=True)
class TensorSpec:
    dtype: torch.dtype
    device: torch.device
    size: tuple[sympy.Expr, ...]
    stride: tuple[sympy.Expr, ...]
    storage_offset: sympy.Expr
    requires_grad: bool


@dataclass(frozen=True)
class SizeSpec:
    """A SymInt input, such as the token count."""

    expr: sympy.Expr


InputSpec = TensorSpec | SizeSpec


@dataclass(frozen=True)
class Signature:
    """A piece's inputs, and the value each size symbol in them had when traced."""

    inputs: tuple[InputSpec, ...]
    hints: tuple[tuple[sympy.Symbol, int], ...]

    @property
    def symbols(self) -> set[str]:
        return {symbol.name for symbol, _ in self.hints}
