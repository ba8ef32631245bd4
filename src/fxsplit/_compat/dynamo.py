"""Dynamo: its backends, restarts, nested compile regions, global state and trace time."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from . import lookup

T = TypeVar("T")


def dynamo_backend(name: str) -> Callable[..., Any]:
    """Dynamo's registered backend ``name`` as ``(gm, example_inputs) -> callable``.

    Without the registry, fall back to the public ``torch.compile`` of the module,
    which compiles on first call instead of now.
    """
    registered = lookup.private("torch._dynamo", "lookup_backend")
    if registered is not None:
        return registered(name)

    def compile_on_first_call(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        return torch.compile(gm, backend=name, dynamic=True)

    return compile_on_first_call


def dynamo_restart_exceptions() -> tuple[type[BaseException], ...]:
    """Exceptions by which Dynamo asks to trace the frame again: a backend must let
    them through untouched."""
    restart = lookup.private("torch._dynamo.exc", "RestartAnalysis")
    return (restart,) if isinstance(restart, type) else ()


def compile_without_needless_restarts(compile_piece: Callable[[], T], own_floats: set[str], shape_free: set[str]) -> T:
    """Run ``compile_piece`` (one piece of a Dynamo graph) so that torch's tensorify
    pass restarts Dynamo only where a restart changes the result.

    With ``dynamic=True`` Dynamo lifts Python floats to graph inputs, and the tensorify
    pass asks Dynamo to restart (re-trace the whole model, specialising the floats) for
    every float symbol of the frame that the compiled graph does not turn into tensor
    compute. Two kinds of such floats need no restart:

    * the floats of sibling pieces (all but ``own_floats``): a piece never uses them.
      They count as handled while the piece compiles;
    * floats of this piece that compilation dropped without looking at their value,
      such as ``nn.Embedding``'s ``norm_type`` when ``max_norm`` is None. A float
      qualifies only when it is in ``shape_free`` (no size in the piece depends on
      it) and no guard or replacement of the shape environment mentions it; a float
      that an op specialised to its value has a guard and still restarts Dynamo. The
      piece is compiled once more with such floats counted as handled, which costs
      one trace of the piece instead of a re-trace of the model. torch's authors call
      these restarts avoidable (pytorch/pytorch#140346).

    Every mark set here is removed afterwards, so the floats stay graph inputs.
    Without the private state, restarts happen as they would.
    """
    state = lookup.private("torch._dynamo.symbolic_convert", "TensorifyState")
    restart = lookup.private("torch._dynamo.exc", "TensorifyScalarRestartAnalysis")
    context = lookup.private("torch._guards", "TracingContext")
    tracing = context.try_get() if context is not None else None
    shape_env = getattr(getattr(tracing, "fake_mode", None), "shape_env", None)
    marks = getattr(state, "force_specializations", None)
    if (
        shape_env is None
        or not isinstance(marks, set)
        or not (isinstance(restart, type) and issubclass(restart, Exception))
    ):
        return compile_piece()
    is_float = _float_symbol_test()
    floats = {str(s): s for s in shape_env.backed_var_to_val if is_float(s)}
    earlier = set(marks)
    handled = set(floats) - own_floats - earlier
    marks |= handled
    try:
        try:
            return compile_piece()
        except restart:
            requested = marks - handled - earlier
            if not requested or not all(_dropped(floats.get(name), shape_free, shape_env) for name in requested):
                raise
        handled |= requested
        return compile_piece()
    finally:
        marks -= handled


def _dropped(symbol: Any, shape_free: set[str], shape_env: Any) -> bool:
    """Whether a float symbol of the piece being compiled was dropped unread."""
    if symbol is None or str(symbol) not in shape_free:
        return False
    replacements = getattr(shape_env, "replacements", None)
    guards = getattr(shape_env, "guards", None)
    if not isinstance(replacements, dict) or not isinstance(guards, list):
        return False
    if symbol in replacements or any(symbol in e.free_symbols for e in replacements.values()):
        return False
    return not any(symbol in getattr(g.expr, "free_symbols", (symbol,)) for g in guards)


def _float_symbol_test() -> Callable[[Any], bool]:
    """Whether a shape-environment symbol stands for a float (torch names them ``zf…``)."""
    symbol_is_type = lookup.private("torch.utils._sympy.symbol", "symbol_is_type")
    float_type = getattr(lookup.private("torch.utils._sympy.symbol", "SymT"), "FLOAT", None)
    if symbol_is_type is not None and float_type is not None:
        return lambda symbol: bool(symbol_is_type(symbol, float_type))
    return lambda symbol: str(symbol).startswith("zf")


def flat_regions() -> contextlib.AbstractContextManager[Any] | None:
    """Dynamo's settings under which a region marked with
    ``torch.compiler.nested_compile_region`` is traced once and reused by every call
    whose guards it passes, yet reaches the backend inlined, as one flat graph (the
    splitter cuts inside it); floats specialised, as regions cannot take a lifted
    float (torch 2.13 passes one as a Python float and fails). None where this torch
    lacks either setting."""
    config = lookup.private("torch._dynamo", "config")
    if config is None or not hasattr(config, "inline_invoke_subgraph") or not hasattr(config, "specialize_float"):
        return None
    patch: contextlib.AbstractContextManager[Any] = config.patch(inline_invoke_subgraph=True, specialize_float=True)
    return patch


def global_state() -> dict[str, Any]:
    """The global settings that Dynamo's ``GLOBAL_STATE`` guard checks (grad mode,
    autocast, torch threads, default dtype, deterministic algorithms, TF32 and reduced
    precision reductions), as torch itself records them where it can say; else the
    same settings read through their public functions."""
    guard = lookup.private("torch._C._dynamo.guards", "GlobalStateGuard")
    if guard is not None:
        try:
            state = json.loads(guard().__getstate__())
        except (TypeError, ValueError, AttributeError):
            state = None
        if isinstance(state, dict):
            return state
    matmul = torch.backends.cuda.matmul
    return {
        "grad_mode": torch.is_grad_enabled(),
        "num_threads": torch.get_num_threads(),
        "default_dtype": str(torch.get_default_dtype()),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_algorithms_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "allow_tf32": matmul.allow_tf32,
        "allow_fp16_reduce": matmul.allow_fp16_reduced_precision_reduction,
        "allow_bf16_reduce": matmul.allow_bf16_reduced_precision_reduction,
    }


def dynamo_trace_seconds() -> float | None:
    """How long Dynamo has been compiling the frame whose graph a backend now gets (its
    bytecode trace, mostly), where torch says; None outside Dynamo's compile."""
    metrics_context = lookup.private("torch._dynamo.utils", "get_metrics_context")
    context = metrics_context() if metrics_context is not None else None
    start = getattr(context, "_start_time_ns", None)
    in_progress = getattr(context, "in_progress", None)
    if isinstance(start, int) and start > 0 and callable(in_progress) and in_progress():
        return (time.time_ns() - start) / 1e9
    return None
