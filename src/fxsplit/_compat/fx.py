"""FX graphs, modules and ops: lazy GraphModules, torch's split, pytrees, op registries."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import torch

from . import lookup

if TYPE_CHECKING:
    from torch._ops import OpOverload, OpOverloadPacket
else:
    # the classes of every registered op, reached through public objects
    OpOverloadPacket = type(torch.ops.aten.add)
    OpOverload = type(torch.ops.aten.add.Tensor)


def global_state_ops() -> tuple[tuple[Any, ...], Any, Any]:
    """``(grad-mode setters, autocast enter, autocast exit)`` as FX graphs record them;
    None for the ones this torch does not have (its graphs then cannot contain them)."""
    grad = lookup.private("torch._C", "_set_grad_enabled")
    enter = lookup.private("torch.amp", "_enter_autocast")
    exit_ = lookup.private("torch.amp", "_exit_autocast")
    return ((grad,) if grad is not None else ()), enter, exit_


def builtin_homes() -> tuple[Any, ...]:
    """Where the builtins behind ``torch.nn.functional`` functions live, which is what
    Dynamo records for a call to one of them."""
    nn = lookup.private("torch._C", "_nn")
    return (nn, torch) if nn is not None else (torch,)


def lazy_graph_module_base() -> type[torch.fx.GraphModule]:
    """The class fxsplit's lazy modules derive from.

    torch's own passes recognise ``_LazyGraphModule`` (``force_recompile`` before
    retracing, Dynamo and Inductor fast paths), so deriving from it makes fxsplit's
    modules first-class citizens there. fxsplit implements the laziness itself and
    only needs a ``GraphModule``.
    """
    base = lookup.private("torch.fx._lazy_graph_module", "_LazyGraphModule")
    if isinstance(base, type) and issubclass(base, torch.fx.GraphModule):
        return base
    return torch.fx.GraphModule


def reduce_graph_module(
    module: torch.fx.GraphModule, state: dict[str, Any], python_code: Any
) -> tuple[Any, tuple[Any, ...]]:
    """``__reduce__`` for a GraphModule whose code is ``python_code`` and state ``state``.

    Unpickles to a plain ``GraphModule``, as torch's lazy modules do.
    """
    rebuild = lookup.private("torch.fx.graph_module", "reduce_graph_module")
    import_block = lookup.private("torch.fx.graph_module", "_format_import_block")
    importer = lookup.private("torch.package", "sys_importer")
    if rebuild is not None and import_block is not None and importer is not None:
        return rebuild, (state, import_block(python_code.globals, importer))
    plain = torch.fx.GraphModule(module, module.graph)
    plain.meta = state.get("meta", {})
    return plain.__reduce__()


def split_module_simple() -> Callable[..., torch.fx.GraphModule] | None:
    """torch's private ``split_module_simple`` where it exists (benchmarks compare it)."""
    return lookup.private("torch.fx.passes.split_module", "split_module_simple")


@contextlib.contextmanager
def torch_lazy_graph_modules() -> Iterator[bool]:
    """Make torch build ``_LazyGraphModule`` s, the way vLLM speeds up ``split_module``.

    Yields whether the switch exists on this torch; where it does not, torch builds
    ordinary modules and the block runs unchanged.
    """
    switch = lookup.private("torch.fx._lazy_graph_module", "_use_lazy_graph_module")
    if switch is None:
        yield False
        return
    with switch(True):
        yield True


def has_own_hooks(module: torch.nn.Module) -> bool:
    """Whether forward hooks are registered on ``module`` itself; True where this torch
    keeps them elsewhere, so that the module is called with ``nn.Module.__call__``."""
    hooks = [getattr(module, name, None) for name in ("_forward_hooks", "_forward_pre_hooks")]
    return any(h is None or bool(h) for h in hooks)


def pytree_functions() -> tuple[Callable[[Any], tuple[list[Any], Any]], Callable[[list[Any], Any], Any]]:
    """``(flatten, unflatten)`` for nested outputs (a ModelOutput, tuples, dicts);
    without torch's pytree, a value is one leaf."""
    flatten = lookup.private("torch.utils._pytree", "tree_flatten")
    unflatten = lookup.private("torch.utils._pytree", "tree_unflatten")
    if flatten is None or unflatten is None:
        return (lambda value: ([value], None)), (lambda leaves, spec: leaves[0])
    return flatten, unflatten


# resolved once, here: Dynamo traces a call to them, and cannot trace the lookup
tree_flatten, tree_unflatten = pytree_functions()


def op_module(qualname: str) -> str | None:
    """The module whose import registers the custom op ``ns::op`` (one defined with
    ``torch.library.custom_op``), where torch can say; else None."""
    opdefs = lookup.private("torch._library.custom_ops", "OPDEFS")
    opdef = opdefs.get(qualname) if isinstance(opdefs, MutableMapping) else None
    module = getattr(getattr(opdef, "_init_fn", None), "__module__", None)
    return module if isinstance(module, str) else None
