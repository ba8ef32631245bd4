"""Tracing each of a model's repeated layers once.

Dynamo's trace costs the same for every layer of a stack of identical layers: a
28-layer decoder is traced 28 times over. ``fxsplit.compile`` owns its trace, so for
the length of it each layer of every stack (an ``nn.ModuleList`` holding two or more
modules of one class) is marked as a nested compile region
(``torch.compiler.nested_compile_region``): Dynamo traces the first layer and stamps
that trace out for every later layer whose guards it passes, so every assumption
the trace made about the other layers is checked. A layer that traces otherwise
(Gemma 3's sliding layers, DeepSeek-V3's dense first layers) is traced anew; Dynamo
decides, not fxsplit. The backend still receives one flat graph, as Dynamo inlines
the regions, so splitting, sharing and compiling are as with a full trace. The
model is left as it was found.

Dynamo matches each later layer's call against the trace it keeps by the call's
inputs. Flat positional leaves (tensors, sizes, constants, modules) it reads as they
are; keywords and tuples, which HuggingFace layers take, it flattens by tracing
``pytree.tree_flatten`` anew for every call, which costs about a third of what the
layer's own trace did. So a call whose keywords and tuples hold only leaves enters
the region as one flat row of leaves, with a header of constants that says how to
put them back; any other call (a cache object among the inputs) enters as it is.

A region with a side effect is traced anew for every layer. HuggingFace's
``kernels`` (installed with transformers 5.25) wraps the forward of a Llama's
attention in a routing that sets a global on every call; where no kernel is
installed, the forward it wraps computes the same, so that is the forward for the
length of the trace (see :mod:`fxsplit._compat.kernels`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .. import _compat


def stacked_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The layers of ``model``'s stacks, outermost stacks only (the experts of an MoE
    layer are traced with their layer), in the model's order."""
    layers: list[torch.nn.Module] = []
    stacks: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.ModuleList) or any(name.startswith(f"{s}.") for s in stacks):
            continue
        kinds = Counter(type(m) for m in module)
        stacked = [m for m in module if kinds[type(m)] >= 2]
        if stacked:
            layers += stacked
            stacks.append(name)
    return layers


@contextmanager
def traced_once(model: torch.nn.Module) -> Iterator[str | None]:
    """While open, Dynamo traces each kind of ``model``'s stacked layers once; yields
    what it marked (``"28 LlamaDecoderLayer"``), or None where nothing is marked: no
    stack, or a torch without the means. A layer whose instance holds a ``forward``
    of its own keeps it, and is traced as it is. Other modules of a marked class are
    marked too while it is open; their eager calls run as before (marking changes
    nothing outside a compile)."""
    regions = _compat.flat_regions()
    mark = getattr(torch.compiler, "nested_compile_region", None)
    layers = stacked_layers(model)
    if regions is None or mark is None or not layers:
        yield None
        return
    kinds = Counter(type(layer) for layer in layers)
    # marked on the class, not the instance: a forward in the instance's __dict__ is
    # a source the saved guards would look for there, in processes that never mark it
    own = {kind: vars(kind).get("forward") for kind in kinds}
    for kind, count in kinds.items():
        kind.forward = _marked(mark, kind, count)
    own.update(_unrouted(layers, kinds))
    try:
        with regions:
            yield ", ".join(f"{count} {kind.__name__}" for kind, count in kinds.items())
    finally:
        for kind, forward in own.items():
            if forward is None:
                delattr(kind, "forward")  # inherited: the base's forward shows through again
            else:
                kind.forward = forward


def _unrouted(layers: list[torch.nn.Module], marked: Counter[type]) -> dict[type, Any]:
    """Set the forward that kernels' routing wraps on each class of the layers'
    modules whose forward is that wrapper, where no instance has a kernel installed
    (see :mod:`fxsplit._compat.kernels`); the forward each had."""
    modules = [m for layer in layers for m in layer.modules()]
    replaced: dict[type, Any] = {}
    for kind in {type(m) for m in modules} - set(marked):
        wrapped = _compat.unrouted_forward(kind)
        if wrapped is not None and not any(_compat.kernel_installed(m) for m in modules if type(m) is kind):
            replaced[kind] = vars(kind)["forward"]
            kind.forward = wrapped
    return replaced


def _marked(mark: Callable[..., Any], kind: type[torch.nn.Module], count: int) -> Callable[..., Any]:
    """One forward for every layer of ``kind`` that calls one of two marked regions
    (Dynamo reuses a trace for calls of the same function): flat leaves, or the call
    as it is. The regions are functions of fxsplit's own, as marking sets attributes
    on the function it is given and the class's must stay as it is."""
    forward = kind.forward

    def leaves_in(self: torch.nn.Module, *header_and_leaves: Any) -> Any:
        args, kwargs = _rebuilt(header_and_leaves)
        return forward(self, *args, **kwargs)

    def tree_in(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        return forward(self, *args, **kwargs)

    flat, tree = _region(mark, leaves_in, count), _region(mark, tree_in, count)

    def forward_once(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        laid_out = _laid_out(args, kwargs)
        if laid_out is None:
            return tree(self, *args, **kwargs)
        header, leaves = laid_out
        return flat(self, *header, *leaves)

    return forward_once


def _region(mark: Callable[..., Any], function: Callable[..., Any], count: int) -> Callable[..., Any]:
    try:
        # room for every layer to trace otherwise: past Dynamo's default of 8 it raises
        marked: Callable[..., Any] = mark(function, max_reuse_entries=count)
    except TypeError:  # a torch whose regions take no limit
        marked = mark(function)
    return marked


def _is_leaf(value: Any) -> bool:
    return value is None or isinstance(value, (torch.Tensor, bool, int, float, str, torch.nn.Module))


def _laid_out(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], list[Any]] | None:
    """A call's arguments as (header, leaves): the header holds the positional count,
    the keyword count, the keywords' names and each value's width (-1 a leaf, n a
    tuple of n leaves); None where a value is neither (a cache object, a dict)."""
    widths, leaves = [], []
    for value in (*args, *kwargs.values()):
        if _is_leaf(value):
            widths.append(-1)
            leaves.append(value)
        elif type(value) is tuple and all(_is_leaf(v) for v in value):
            widths.append(len(value))
            leaves.extend(value)
        else:
            return None
    return (len(args), len(kwargs), *kwargs, *widths), leaves


def _rebuilt(header_and_leaves: tuple[Any, ...]) -> tuple[list[Any], dict[str, Any]]:
    """The arguments that :func:`_laid_out` laid out."""
    positional, keywords = header_and_leaves[0], header_and_leaves[1]
    names = header_and_leaves[2 : 2 + keywords]
    widths = header_and_leaves[2 + keywords : 2 + keywords + positional + keywords]
    leaves = header_and_leaves[2 + keywords + positional + keywords :]
    values: list[Any] = []
    at = 0
    for width in widths:
        if width < 0:
            values.append(leaves[at])
            at += 1
        else:
            values.append(tuple(leaves[at : at + width]))
            at += width
    return values[:positional], dict(zip(names, values[positional:]))


# How a guard's source reads a class's forward function itself: its closure cells
# (a decorator's constants, or the regions of a marked forward) or its defaults.
_FORWARDS_CODE = re.compile(r"\['forward'\]\.__(closure|defaults|kwdefaults)__")


def reads_forward_code(source: str) -> bool:
    """Whether a guard's source (its name) reads a class's ``forward`` function itself.
    While fxsplit traces, a stacked layer's forward is marked and a forward that
    kernels routes is unrouted, so in a process that loads the model (where neither
    is) such a path leads elsewhere or nowhere. What such a guard checks is the code's
    (the constants its decorators closed over, its defaults), which the saved model
    checks by the checksums of its source."""
    return _FORWARDS_CODE.search(source) is not None
