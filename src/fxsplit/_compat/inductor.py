"""Inductor: its cache directory and its compile-to-bytes."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import torch

from . import lookup


def inductor_cache_at(directory: str) -> contextlib.AbstractContextManager[Any]:
    """Inductor's own cache (generated code, and on CPU the kernel libraries that gcc
    builds) inside ``directory`` for the block, the way Inductor loads unpacked
    artifacts. Without torch's helper, Inductor's cache stays where it is, and a warm
    start on CPU rebuilds the kernels unless that cache survived too.
    """
    scoped = lookup.private("torch._inductor.runtime.cache_dir_utils", "temporary_cache_dir")
    return scoped(directory) if scoped is not None else contextlib.nullcontext()


@dataclasses.dataclass(frozen=True)
class PersistentCompiler:
    """Inductor's compile-to-bytes, where this torch has it.

    ``compile(gm, inputs)`` compiles for the shapes in the graph (Dynamo's, with its
    guards); ``compile_with(gm, inputs, fake_mode)`` compiles for example inputs that
    live in a fake mode of their own (None where this torch cannot). Both return a
    callable that ``serialize`` turns into bytes, and ``deserialize`` back.
    """

    compile: Callable[[torch.fx.GraphModule, list[Any]], Any]
    compile_with: Callable[[torch.fx.GraphModule, list[Any], Any], Any] | None
    serialize: Callable[[Any], bytes]
    deserialize: Callable[[bytes], Any]


def persistent_compiler() -> PersistentCompiler | None:
    """Inductor's ``standalone_compile(aot=True)`` and ``AOTCompiledArtifact`` where
    this torch has them: a compiled piece as bytes, which need nothing but Inductor's
    cache directory to run again (on CPU, the kernel libraries stay there).

    Without them, compiled pieces cannot be saved; fxsplit then relies on Inductor's
    own caches and compiles as usual.
    """
    standalone = lookup.private("torch._inductor", "standalone_compile")
    artifact = lookup.private("torch._inductor.standalone_compile", "AOTCompiledArtifact")
    if standalone is None or artifact is None or "aot" not in inspect.signature(standalone).parameters:
        return None

    def compile_(gm: torch.fx.GraphModule, inputs: list[Any]) -> Any:
        return standalone(gm, inputs, dynamic_shapes="from_graph", aot=True)

    def compile_with(gm: torch.fx.GraphModule, inputs: list[Any], fake_mode: Any) -> Any:
        return standalone(gm, inputs, dynamic_shapes="from_example_inputs", fake_mode=fake_mode, aot=True)

    takes_fake_mode = "fake_mode" in inspect.signature(standalone).parameters
    return PersistentCompiler(
        compile_, compile_with if takes_fake_mode else None, lambda compiled: compiled.serialize(), artifact.deserialize
    )
