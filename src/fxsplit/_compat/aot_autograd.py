"""AOTAutograd's runtime wrapper, and the direct entry to Inductor's code beneath it."""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable
from typing import Any

import torch

from . import lookup


def direct_entry(compiled: Any, mark_outputs: bool = False) -> Callable[..., Any]:
    """What calling ``compiled``, a piece from :class:`PersistentCompiler`, comes down
    to, for a caller that runs outside Dynamo (a backend's output does; fxsplit's
    stitching disables Dynamo once for a whole forward).

    Where AOTAutograd's runtime wrapper has nothing to do for this piece but turn grad
    off around it (see :func:`_inductor_call`), that is Inductor's generated ``call``:
    about 10 µs less per piece than the artifact. With ``mark_outputs``, for a piece
    whose outputs the model returns, the entry also marks the outputs' dynamic dims
    with the wrapper's own function, as the wrapper does, so that a later Dynamo graph
    that reads them knows them dynamic. Otherwise it is AOTAutograd's function under
    the artifact's pass-through wrappers and Dynamo's ``disable`` (about 1.5 µs less).
    Anything else is returned as it is. Ask again after the first call: only then has
    the wrapper run its first-call checks.
    """
    artifact = lookup.private("torch._inductor.standalone_compile", "AOTCompiledArtifact")
    bundled = lookup.private("torch._dynamo.aot_compile_types", "BundledAOTAutogradSerializableCallable")
    if artifact is None or bundled is None or type(compiled) is not artifact:
        return compiled
    inner = vars(compiled).get("inner_fn")
    if type(inner) is not bundled:
        return compiled
    function = vars(inner).get("compiled_fn")
    while getattr(function, "_torchdynamo_disable", False) and callable(getattr(function, "__wrapped__", None)):
        function = function.__wrapped__
    if not callable(function):
        return compiled
    found = _inductor_call(function)
    if found is None:
        return function
    entry, marks = found
    if not mark_outputs or marks == []:
        return entry
    return function if marks is None else _marking(entry, marks)


def _closure(function: Any) -> dict[str, Any]:
    """The variables ``function`` closes over, by name."""
    code = getattr(function, "__code__", None)
    found: dict[str, Any] = {}
    for name, cell in zip(code.co_freevars if code else (), getattr(function, "__closure__", None) or ()):
        with contextlib.suppress(ValueError):  # a cell not yet filled
            found[name] = cell.cell_contents
    return found


# all that AOTAutograd's generated runtime wrapper names when it only turns grad off,
# checks the number of outputs and marks their dynamic dims (``_dyn_dims_<i>``)
_PLAIN_RUNTIME_WRAPPER_NAMES = frozenset(
    {
        "torch",
        "is_grad_enabled",
        "_C",
        "_set_grad_enabled",
        "isinstance",
        "tuple",
        "list",
        "len",
        "AssertionError",
        "_mark_dynamic_",
    }
)


# the dynamic dims AOTAutograd's wrapper marks on a piece's outputs: (mark, [(output, dims)]);
# [] when it marks none, None when what it marks cannot be read
_OutputMarks = tuple[Callable[[Any, Any], None], list[tuple[int, Any]]] | list[Any] | None


def _inductor_call(aot_function: Any) -> tuple[Callable[..., Any], _OutputMarks] | None:
    """An entry to Inductor's generated ``call`` inside AOTAutograd's function
    ``aot_function``, where what lies between does little the piece's caller needs:
    the forward of an inference graph, without parameters of its own, subclasses,
    mutated inputs it must copy back, outputs it must rebuild as aliases, a grad mode
    it changes or effect tokens, whose first call has run (on it, the wrapper checks
    custom ops' aliasing). The entry takes the inputs as arguments, turns grad off
    and, for inputs the graph mutates in place, bumps their version counters with
    the wrapper's own function, as the wrapper does. The wrapper's other work,
    marking the outputs' dynamic dims for a later Dynamo graph that reads them, is
    returned beside the entry, as torch's function and what it marks ([] when there
    is nothing to mark, None when the marks cannot be read). None otherwise.

    The layers between differ with how the piece was made (compiled, with
    AOTAutograd's cache or without, or loaded from bytes): AOTAutograd's ``forward``,
    which only lists its arguments, then ``SerializableCompiledFunction`` s, which
    only pass them on, around the runtime wrapper and around Inductor's graph.
    """
    graph_class = lookup.private("torch._inductor.output_code", "CompiledFxGraph")
    serializable_class = lookup.private(
        "torch._functorch._aot_autograd.runtime_wrappers", "SerializableCompiledFunction"
    )
    functorch_config = lookup.private("torch._functorch", "config")
    if graph_class is None or serializable_class is None:
        return None

    def unwrapped(function: Any) -> Any:
        while type(function) is serializable_class:
            function = vars(function).get("compiled_fn")
        return function

    outer = _closure(aot_function)
    if set(outer) - {"compiled_fn", "params_buffers_flat"} or outer.get("params_buffers_flat", []) != []:
        return None
    wrapper = _closure(unwrapped(outer.get("compiled_fn")))
    graph, first_call = unwrapped(wrapper.get("_inner_compiled_fn")), wrapper.get("_first_invocation_ctx")
    generated = getattr(wrapper.get("_codegen_runtime_wrapper"), "__code__", None)
    if type(graph) is not graph_class or generated is None or not getattr(graph, "_boxed_call", False):
        return None
    names = {name for name in generated.co_names if not name.startswith("_dyn_dims_")}
    if not names <= _PLAIN_RUNTIME_WRAPPER_NAMES | {"_increment_version_"}:
        return None
    if getattr(first_call, "_is_first", True) and getattr(functorch_config, "check_custom_op_aliasing", True):
        return None
    try:
        entry = aot_function.serialize()  # AOTAutograd's cache entry, as bytes on some versions
        if isinstance(entry, bytes):
            entry = pickle.loads(entry)
        meta = entry.runtime_metadata
        plain = (
            entry.compiled_bw is None
            and entry.maybe_subclass_meta is None
            and meta.num_mutated_inp_runtime_indices == 0
            and meta.num_outputs_aliased == 0
            and meta.num_intermediate_bases == 0
            and meta.grad_enabled_mutation is None
            and not meta.tokens
        )
        # inputs the graph mutates in place, whose version counters the wrapper bumps for autograd
        bumped = tuple(meta.mutated_graph_handled_indices_seen_by_autograd) if "_increment_version_" in names else ()
    except Exception:  # anything unexpected: keep torch's wrapper
        return None
    call = getattr(graph, "current_callable", None)
    if not plain or not callable(call):
        return None
    runtime_wrapper = wrapper.get("_codegen_runtime_wrapper")
    bump = getattr(runtime_wrapper, "__globals__", {}).get("_increment_version_")
    if not bumped:
        return _without_grad(call), _output_marks(generated, runtime_wrapper)
    if not callable(bump):
        return None
    entry = _bumping(_without_grad(call), bump, bumped)
    return entry, _output_marks(generated, runtime_wrapper)


def _output_marks(generated: Any, wrapper: Any) -> _OutputMarks:
    """What the generated runtime wrapper marks on the outputs, read from its globals."""
    dims = [name for name in generated.co_names if name.startswith("_dyn_dims_")]
    if not dims:
        return []
    names = getattr(wrapper, "__globals__", {})
    mark = names.get("_mark_dynamic_")
    if not callable(mark) or any(name not in names for name in dims):
        return None
    return mark, [(int(name.removeprefix("_dyn_dims_")), names[name]) for name in dims]


def _bumping(entry: Callable[..., Any], bump: Callable[[Any], None], mutated: tuple[int, ...]) -> Callable[..., Any]:
    """``entry`` that first bumps the version counters of the inputs at ``mutated``, as
    AOTAutograd's wrapper does for inputs its graph mutates in place."""

    def bump_and_call(*args: Any) -> Any:
        bump(tuple(args[i] for i in mutated))
        return entry(*args)

    return bump_and_call


def _marking(entry: Callable[..., Any], marks: _OutputMarks) -> Callable[..., Any]:
    """``entry`` that marks its outputs' dynamic dims as AOTAutograd's wrapper does."""
    assert isinstance(marks, tuple)
    mark, dims = marks

    def call_and_mark(*args: Any) -> Any:
        outputs = entry(*args)
        for index, output_dims in dims:
            mark(outputs[index], output_dims)
        return outputs

    return call_and_mark


def _without_grad(call: Callable[[list[Any]], Any]) -> Callable[..., Any]:
    """``call`` taking its inputs as arguments, with grad off around it, as
    AOTAutograd runs an inference graph."""
    grad_enabled = torch.is_grad_enabled
    set_grad_enabled = lookup.private("torch._C", "_set_grad_enabled") or torch.set_grad_enabled

    def call_inductor(*args: Any) -> Any:
        if not grad_enabled():
            return call(list(args))
        set_grad_enabled(False)
        try:
            return call(list(args))
        finally:
            set_grad_enabled(True)

    return call_inductor
