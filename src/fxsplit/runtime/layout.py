"""Input layouts that a compiled piece expects, and the repair of those that differ.

A compiled piece checks the sizes and strides of its tensor inputs against the ones
it was compiled for (Dynamo's fake values). Inside one compiled graph the two always
agree; between pieces they need not: a compiled piece may return a layout other than
eager's (Inductor returns ``cat([x, empty])`` with ``x``'s strides), and an eager
splitting piece such as attention passes its input's layout on. Such an input is
copied into the expected layout. The check costs nothing until a piece first refuses
an input; from then on only the inputs found wrong are looked at.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sympy
import torch

from .signature import Signature, SizeSpec, TensorSpec


class InputLayouts:
    """The strides a piece's tensor inputs must have, from its signature (None: a
    piece whose inputs could not be described, whose layouts are never repaired)."""

    def __init__(self, signature: Signature | None) -> None:
        self._specs = signature.inputs if signature is not None else ()
        # where each size symbol can be read from the arguments: (symbol, input, dim or None)
        self._symbols: list[tuple[sympy.Symbol, int, int | None]] = []
        seen: set[sympy.Symbol] = set()
        for index, spec in enumerate(self._specs):
            places = [(spec.expr, None)] if isinstance(spec, SizeSpec) else list(zip(spec.size, range(len(spec.size))))
            for expr, dim in places:
                if isinstance(expr, sympy.Symbol) and expr not in seen:
                    seen.add(expr)
                    self._symbols.append((expr, index, dim))
        # input index -> {shape: expected strides}
        self.watched: dict[int, dict[tuple[int, ...], tuple[int, ...]]] = {}

    def _expected(self, index: int, args: Sequence[Any]) -> tuple[int, ...]:
        spec = self._specs[index]
        assert isinstance(spec, TensorSpec)
        values = {s: args[i] if dim is None else args[i].shape[dim] for s, i, dim in self._symbols}
        return tuple(int(stride.xreplace(values)) for stride in spec.stride)

    def repair(self, args: Sequence[Any]) -> list[Any] | None:
        """``args`` with every tensor of the wrong layout copied into the right one
        (and those inputs watched from now on); None when all were right."""
        fixed = None
        for index, spec in enumerate(self._specs):
            arg = args[index]
            if not isinstance(spec, TensorSpec) or not isinstance(arg, torch.Tensor):
                continue
            expected = self._expected(index, args)
            if not _same_layout(arg, expected):
                self.watched.setdefault(index, {})[tuple(arg.shape)] = expected
                fixed = fixed or list(args)
                fixed[index] = _restrided(arg, expected)
        return fixed

    def apply(self, args: Sequence[Any]) -> Sequence[Any]:
        """``args`` with the watched inputs in their expected layout."""
        fixed = None
        for index, by_shape in self.watched.items():
            arg = args[index]
            shape = tuple(arg.shape)
            expected = by_shape.get(shape)
            if expected is None:
                expected = by_shape[shape] = self._expected(index, args)
            if not _same_layout(arg, expected):
                fixed = fixed or list(args)
                fixed[index] = _restrided(arg, expected)
        return args if fixed is None else fixed


def _same_layout(tensor: torch.Tensor, stride: tuple[int, ...]) -> bool:
    """Whether ``tensor`` has ``stride`` where it matters: a dimension of size 1 can
    have any stride, and so can every dimension of an empty tensor."""
    if tensor.numel() == 0:
        return True
    return all(size == 1 or actual == wanted for size, actual, wanted in zip(tensor.shape, tensor.stride(), stride))


def _restrided(tensor: torch.Tensor, stride: tuple[int, ...]) -> torch.Tensor:
    out = torch.empty_strided(tensor.shape, stride, dtype=tensor.dtype, device=tensor.device)
    return out.copy_(tensor)
