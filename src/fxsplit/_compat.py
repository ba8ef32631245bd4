"""The one place where fxsplit touches private torch APIs.

Each private name is looked up at call time, behind feature detection, with a fallback
that uses public API only, so fxsplit keeps working (perhaps a little slower) on torch
versions that move or drop them. Tests exercise every branch by monkeypatching the
lookups below.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from typing import Any

import torch


def _private(module: str, name: str) -> Any:
    """``module.name`` if this torch has it, else None."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def lazy_graph_module_base() -> type[torch.fx.GraphModule]:
    """The class fxsplit's lazy modules derive from.

    torch's own passes recognise ``_LazyGraphModule`` (``force_recompile`` before
    retracing, Dynamo and Inductor fast paths), so deriving from it makes fxsplit's
    modules first-class citizens there. fxsplit implements the laziness itself and
    only needs a ``GraphModule``.
    """
    base = _private("torch.fx._lazy_graph_module", "_LazyGraphModule")
    if isinstance(base, type) and issubclass(base, torch.fx.GraphModule):
        return base
    return torch.fx.GraphModule


def reduce_graph_module(
    module: torch.fx.GraphModule, state: dict[str, Any], python_code: Any
) -> tuple[Any, tuple[Any, ...]]:
    """``__reduce__`` for a GraphModule whose code is ``python_code`` and state ``state``.

    Unpickles to a plain ``GraphModule``, as torch's lazy modules do.
    """
    rebuild = _private("torch.fx.graph_module", "reduce_graph_module")
    import_block = _private("torch.fx.graph_module", "_format_import_block")
    importer = _private("torch.package", "sys_importer")
    if rebuild is not None and import_block is not None and importer is not None:
        return rebuild, (state, import_block(python_code.globals, importer))
    plain = torch.fx.GraphModule(module, module.graph)
    plain.meta = state.get("meta", {})
    return plain.__reduce__()


def split_module_simple() -> Callable[..., torch.fx.GraphModule] | None:
    """torch's private ``split_module_simple`` where it exists (benchmarks compare it)."""
    return _private("torch.fx.passes.split_module", "split_module_simple")


@contextlib.contextmanager
def torch_lazy_graph_modules() -> Iterator[bool]:
    """Make torch build ``_LazyGraphModule`` s, the way vLLM speeds up ``split_module``.

    Yields whether the switch exists on this torch; where it does not, torch builds
    ordinary modules and the block runs unchanged.
    """
    switch = _private("torch.fx._lazy_graph_module", "_use_lazy_graph_module")
    if switch is None:
        yield False
        return
    with switch(True):
        yield True
