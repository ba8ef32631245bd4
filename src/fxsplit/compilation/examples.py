"""Example inputs for compiling a piece outside Dynamo's trace.

A piece's inputs are described as plain data (dtype, device, symbolic sizes and
strides, and the value each size symbol had when Dynamo traced), then made again as
fake values in a shape environment of their own, where chosen symbols take fixed
values: the size a specialised version is compiled for. Nothing done there can add a
guard to Dynamo's shape environment, and the description pickles, so another process
can compile from it too.

A lifted float arrives as a 0-d tensor whose ``.item()`` is, there, a data-dependent
value: Inductor turns it into tensor compute, or reads it at run time, as it does for
any ``.item()``, and never bakes the value in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sympy
import torch

from .. import _compat
from ..runtime.signature import InputSpec, Signature, SizeSpec, TensorSpec
from ..runtime.sizes import SizeKey


def _expr(value: int | torch.SymInt) -> sympy.Expr:
    return value.node.expr if isinstance(value, torch.SymInt) else sympy.Integer(value)


def describe(values: Sequence[Any]) -> Signature | None:
    """The signature of example values (Dynamo's fake tensors and SymInts); None when
    one of them cannot be described: a float or bool symbol, a tensor subclass, a
    layout other than strided."""
    specs: list[InputSpec] = []
    shape_env = None
    for value in values:
        if isinstance(value, torch.SymInt):
            specs.append(SizeSpec(value.node.expr))
            shape_env = shape_env or value.node.shape_env
        elif isinstance(value, torch.Tensor) and value.layout == torch.strided and _compat.is_plain_tensor(value):
            specs.append(
                TensorSpec(
                    value.dtype,
                    value.device,
                    tuple(_expr(d) for d in value.shape),
                    tuple(_expr(s) for s in value.stride()),
                    _expr(value.storage_offset()),
                    value.requires_grad,
                )
            )
            shape_env = shape_env or getattr(getattr(value, "fake_mode", None), "shape_env", None)
        else:
            return None
    symbols = set().union(*(_free_symbols(spec) for spec in specs))
    known = _compat.size_hints(shape_env)
    if any(symbol not in known for symbol in symbols):
        return None
    hints = tuple(sorted(((s, int(known[s])) for s in symbols), key=lambda pair: pair[0].name))
    return Signature(tuple(specs), hints)


def _free_symbols(spec: InputSpec) -> set[sympy.Symbol]:
    if isinstance(spec, SizeSpec):
        return set(spec.expr.free_symbols)
    exprs = (*spec.size, *spec.stride, spec.storage_offset)
    return set().union(*(e.free_symbols for e in exprs))


def fake_inputs(signature: Signature, fixed: Mapping[str, SizeKey]) -> tuple[Any, list[Any]] | None:
    """``(fake_mode, inputs)`` for ``signature`` in a fresh shape environment, with the
    symbols named in ``fixed`` replaced by their values, or by a symbol of their own
    bounded to their range ``(lo, hi)``; None where this torch cannot make one."""
    made = _compat.fresh_fake_mode()
    if made is None:
        return None
    fake_mode, shape_env = made
    hints = {symbol: _hint(fixed.get(symbol.name, hint)) for symbol, hint in signature.hints}
    replacement: dict[sympy.Symbol, sympy.Expr] = {}
    for symbol, hint in hints.items():
        value = fixed.get(symbol.name)
        if isinstance(value, int):
            replacement[symbol] = sympy.Integer(value)
        else:
            replacement[symbol] = _compat.new_size_symbol(shape_env, f"fxsplit_{symbol.name}", hint, bounds=value)

    def size(expr: sympy.Expr) -> int | torch.SymInt:
        new = expr.xreplace(replacement)
        if new.is_number:
            return int(new)
        hint = int(expr.xreplace({s: sympy.Integer(h) for s, h in hints.items()}))
        return shape_env.create_symintnode(new, hint=hint)

    inputs: list[Any] = []
    for spec in signature.inputs:
        if isinstance(spec, SizeSpec):
            inputs.append(size(spec.expr))
            continue
        with fake_mode:
            tensor = torch.empty_strided(
                [size(d) for d in spec.size], [size(s) for s in spec.stride], dtype=spec.dtype, device=spec.device
            )
            offset = size(spec.storage_offset)
            if offset != 0:
                tensor = tensor.as_strided(tensor.shape, tensor.stride(), offset)
        inputs.append(tensor.requires_grad_(spec.requires_grad))
    return fake_mode, inputs


def _hint(value: SizeKey) -> int:
    """The value a symbol takes while compiling: the size, or the lower end of a range."""
    return value if isinstance(value, int) else value[0]
