"""Dynamo's ahead-of-time compile of a whole function: what saves, and its guards."""

from __future__ import annotations

from typing import Any

from . import lookup


def aot_compiled_function() -> Any:
    """torch's ``AOTCompiledFunction`` (a whole function compiled ahead of time, which
    saves with its guards and bytecode and loads without Dynamo), where this torch
    has it, else None."""
    function = lookup.private("torch._dynamo.aot_compile", "AOTCompiledFunction")
    base = lookup.private("torch._dynamo.aot_compile_types", "SerializableCallable")
    if function is None or base is None or not hasattr(function, "deserialize"):
        return None
    return function


def register_serializable(cls: type) -> None:
    """Let torch's ahead-of-time compile accept ``cls`` as a serializable compiled
    graph (it implements ``serialize_compile_artifacts`` and
    ``deserialize_compile_artifacts``)."""
    base = lookup.private("torch._dynamo.aot_compile_types", "SerializableCallable")
    if base is not None and not issubclass(cls, base):
        base.register(cls)


# Guard kinds that name objects by identity, which no other process can check; this
# torch's own list is used where it has one.
_UNSERIALIZABLE_GUARDS = frozenset(
    {
        "DICT_VERSION",
        "NN_MODULE",
        "ID_MATCH",
        "FUNCTION_MATCH",
        "CLASS_MATCH",
        "MODULE_MATCH",
        "CLOSURE_MATCH",
        "WEAKREF_ALIVE",
    }
)


def unserializable_guard_types() -> frozenset[str]:
    manager = lookup.private("torch._dynamo.guards", "CheckFunctionManager")
    kinds = getattr(manager, "UNSUPPORTED_SERIALIZATION_GUARD_TYPES", None)
    return frozenset(kinds) if kinds else _UNSERIALIZABLE_GUARDS


def guard_failure(function: Any, args: tuple[Any, ...]) -> str:
    """Why an ``AOTCompiledFunction``'s guards reject ``args``, as torch words it."""
    manager = getattr(getattr(function, "_artifacts", None), "guard_manager", None)
    verbose = getattr(manager, "check_verbose", None)
    if verbose is None:
        return "the reason is not available on this torch"
    return str(getattr(verbose(function.prepare_f_locals(*args)), "verbose_code_parts", "")) or "unknown"
