"""The one place where fxsplit touches private torch APIs.

Each private name is looked up at call time, behind feature detection, with a fallback
that uses public API only, so fxsplit keeps working (perhaps a little slower) on torch
versions that move or drop them. Tests exercise every branch by monkeypatching the
lookups below.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import json
import os
import pickle
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar

import torch

if TYPE_CHECKING:
    from torch._ops import OpOverload, OpOverloadPacket
else:
    # the classes of every registered op, reached through public objects
    OpOverloadPacket = type(torch.ops.aten.add)
    OpOverload = type(torch.ops.aten.add.Tensor)

T = TypeVar("T")


def _private(module: str, name: str) -> Any:
    """``module.name`` if this torch has it, else None."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def global_state_ops() -> tuple[tuple[Any, ...], Any, Any]:
    """``(grad-mode setters, autocast enter, autocast exit)`` as FX graphs record them;
    None for the ones this torch does not have (its graphs then cannot contain them)."""
    grad = _private("torch._C", "_set_grad_enabled")
    enter = _private("torch.amp", "_enter_autocast")
    exit_ = _private("torch.amp", "_exit_autocast")
    return ((grad,) if grad is not None else ()), enter, exit_


def builtin_homes() -> tuple[Any, ...]:
    """Where the builtins behind ``torch.nn.functional`` functions live, which is what
    Dynamo records for a call to one of them."""
    nn = _private("torch._C", "_nn")
    return (nn, torch) if nn is not None else (torch,)


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


def dynamo_backend(name: str) -> Callable[..., Any]:
    """Dynamo's registered backend ``name`` as ``(gm, example_inputs) -> callable``.

    Without the registry, fall back to the public ``torch.compile`` of the module,
    which compiles on first call instead of now.
    """
    lookup = _private("torch._dynamo", "lookup_backend")
    if lookup is not None:
        return lookup(name)

    def compile_on_first_call(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        return torch.compile(gm, backend=name, dynamic=True)

    return compile_on_first_call


def dynamo_restart_exceptions() -> tuple[type[BaseException], ...]:
    """Exceptions by which Dynamo asks to trace the frame again: a backend must let
    them through untouched."""
    restart = _private("torch._dynamo.exc", "RestartAnalysis")
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
    state = _private("torch._dynamo.symbolic_convert", "TensorifyState")
    restart = _private("torch._dynamo.exc", "TensorifyScalarRestartAnalysis")
    context = _private("torch._guards", "TracingContext")
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
    symbol_is_type = _private("torch.utils._sympy.symbol", "symbol_is_type")
    float_type = getattr(_private("torch.utils._sympy.symbol", "SymT"), "FLOAT", None)
    if symbol_is_type is not None and float_type is not None:
        return lambda symbol: bool(symbol_is_type(symbol, float_type))
    return lambda symbol: str(symbol).startswith("zf")


def inductor_cache_at(directory: str) -> contextlib.AbstractContextManager[Any]:
    """Inductor's own cache (generated code, and on CPU the kernel libraries that gcc
    builds) inside ``directory`` for the block, the way Inductor loads unpacked
    artifacts. Without torch's helper, Inductor's cache stays where it is, and a warm
    start on CPU rebuilds the kernels unless that cache survived too.
    """
    scoped = _private("torch._inductor.runtime.cache_dir_utils", "temporary_cache_dir")
    return scoped(directory) if scoped is not None else contextlib.nullcontext()


def isa_probe_machine() -> str | None:
    """What the answers of Inductor's CPU instruction-set probe depend on, beyond the
    probe's own library (its name holds the code, the flags and the compiler): the
    CPU's instruction sets, the torch and the Python that load it. None where this
    torch has no such probe."""
    checker = _private("torch._inductor.cpu_vec_isa", "x86_isa_checker")
    if checker is None or _private("torch._inductor.cpu_vec_isa", "VecISA") is None:
        return None
    return json.dumps([platform.machine(), sorted(checker()), torch.__version__, sys.executable])


def probe_cpu() -> None:
    """Run Inductor's CPU instruction-set probe now, as the first CPU compile of the
    process would: each instruction set the CPU reports in a thread of its own, since
    each is a chain of compiler runs and loads in child processes (10 here, about 17 s
    one after another on a cold cache). Without torch's per-set checks it runs the
    probe as torch does; without a probe at all it does nothing."""
    valid_vec_isa_list = _private("torch._inductor.cpu_vec_isa", "valid_vec_isa_list")
    if valid_vec_isa_list is None:
        return
    checker = _private("torch._inductor.cpu_vec_isa", "x86_isa_checker")
    candidates = _private("torch._inductor.cpu_vec_isa", "supported_vec_isa_list")
    if checker is not None and candidates is not None:
        reported = set(checker())
        # the sets valid_vec_isa_list would check: those whose every flag the CPU reports
        threads = [
            threading.Thread(target=bool, args=(isa,), name="fxsplit-cpu-probe", daemon=True)
            for isa in candidates
            if reported.issuperset(str(isa).split())
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    valid_vec_isa_list()


_probe_lock = threading.Lock()
_probe_answers: list[MutableMapping[str, bool]] = []  # of every block open, in any thread
_probe: list[Callable[[Any, str], bool]] = []  # torch's own, while it is replaced


@contextlib.contextmanager
def isa_probe_answers(answers: MutableMapping[str, bool]) -> Iterator[None]:
    """Inductor's CPU instruction-set probe answered from ``answers`` in the block, and
    what it had to probe added to them.

    The first CPU compile or kernel load of a process probes each instruction set: it
    builds a small library (kept in Inductor's cache) and loads it in a child process,
    about 0.2 s each and 2 s on this machine, which a warm start pays in full. The
    answer for one library (keyed by its file name) on one machine
    (:func:`isa_probe_machine`) does not change, so it is kept rather than probed
    again; the build still runs or is found, so a compiler that rejects the flags is
    still seen. Without torch's probe, the block runs as it is.
    """
    vec_isa = _private("torch._inductor.cpu_vec_isa", "VecISA")
    if getattr(vec_isa, "_probe_load", None) is None:
        yield
        return
    with _probe_lock:
        if not _probe_answers:
            _probe.append(vec_isa._probe_load)
            vec_isa._probe_load = _answered
        _probe_answers.append(answers)
    try:
        yield
    finally:
        with _probe_lock:
            _probe_answers.remove(answers)
            if not _probe_answers:
                vec_isa._probe_load = _probe.pop()


def _answered(isa: Any, library: str) -> bool:
    name = os.path.basename(library)
    with _probe_lock:
        known = next((answers[name] for answers in _probe_answers if name in answers), None)
        probe = _probe[0]
    if known is not None:
        return known
    answer = bool(probe(isa, library))
    with _probe_lock:
        for answers in _probe_answers:
            answers[name] = answer
    return answer


def has_own_hooks(module: torch.nn.Module) -> bool:
    """Whether forward hooks are registered on ``module`` itself; True where this torch
    keeps them elsewhere, so that the module is called with ``nn.Module.__call__``."""
    hooks = [getattr(module, name, None) for name in ("_forward_hooks", "_forward_pre_hooks")]
    return any(h is None or bool(h) for h in hooks)


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
    artifact = _private("torch._inductor.standalone_compile", "AOTCompiledArtifact")
    bundled = _private("torch._dynamo.aot_compile_types", "BundledAOTAutogradSerializableCallable")
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
    graph_class = _private("torch._inductor.output_code", "CompiledFxGraph")
    serializable_class = _private("torch._functorch._aot_autograd.runtime_wrappers", "SerializableCompiledFunction")
    functorch_config = _private("torch._functorch", "config")
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
    set_grad_enabled = _private("torch._C", "_set_grad_enabled") or torch.set_grad_enabled

    def call_inductor(*args: Any) -> Any:
        if not grad_enabled():
            return call(list(args))
        set_grad_enabled(False)
        try:
            return call(list(args))
        finally:
            set_grad_enabled(True)

    return call_inductor


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
    standalone = _private("torch._inductor", "standalone_compile")
    artifact = _private("torch._inductor.standalone_compile", "AOTCompiledArtifact")
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


def size_hints(shape_env: Any) -> dict[Any, Any]:
    """The value each backed symbol of a shape environment had when it was made."""
    hints = getattr(shape_env, "backed_var_to_val", None)
    if hints is None:
        hints = getattr(shape_env, "var_to_val", None)
    return dict(hints) if isinstance(hints, dict) else {}


def fresh_fake_mode() -> tuple[Any, Any] | None:
    """``(fake_mode, shape_env)``: fake values in a shape environment of their own, so
    that compiling with them adds no guard to Dynamo's. None where this torch lacks the
    fake-tensor mode."""
    fake_tensor_mode = _private("torch._subclasses.fake_tensor", "FakeTensorMode")
    if fake_tensor_mode is None or _private("torch._dynamo.source", "ConstantSource") is None:
        return None
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    shape_env = ShapeEnv()
    return fake_tensor_mode(shape_env=shape_env), shape_env


def new_size_symbol(shape_env: Any, name: str, hint: int, bounds: tuple[int, int] | None = None) -> Any:
    """A fresh dynamic size symbol in ``shape_env`` (never unified with an equal one),
    known to lie in ``bounds`` (both ends included) where given and this torch can
    say so; without, the code compiled for it is as general as for any size."""
    from torch.fx.experimental.symbolic_shapes import DimDynamic

    constant_source = _private("torch._dynamo.source", "ConstantSource")
    symbol = shape_env.create_symbol(hint, constant_source(name), dynamic_dim=DimDynamic.DYNAMIC)
    constrain = getattr(shape_env, "constrain_symbol_range", None)
    if bounds is not None and constrain is not None:
        constrain(symbol, compiler_min=bounds[0], compiler_max=bounds[1])
    return symbol


def tracing_with(fake_mode: Any) -> contextlib.AbstractContextManager[Any]:
    """A tracing context over ``fake_mode``, where compilers look for the fake mode of
    their example inputs."""
    context = _private("torch._guards", "TracingContext")
    tracing = _private("torch._guards", "tracing")
    if context is None or tracing is None:
        return contextlib.nullcontext()
    return tracing(context(fake_mode))


def is_plain_tensor(tensor: Any) -> bool:
    """A tensor, parameter or fake tensor: not a subclass with semantics of its own."""
    fake = _private("torch._subclasses.fake_tensor", "FakeTensor")
    return type(tensor) in (torch.Tensor, torch.nn.Parameter) or (fake is not None and type(tensor) is fake)


def aot_compiled_function() -> Any:
    """torch's ``AOTCompiledFunction`` (a whole function compiled ahead of time, which
    saves with its guards and bytecode and loads without Dynamo), where this torch
    has it, else None."""
    function = _private("torch._dynamo.aot_compile", "AOTCompiledFunction")
    base = _private("torch._dynamo.aot_compile_types", "SerializableCallable")
    if function is None or base is None or not hasattr(function, "deserialize"):
        return None
    return function


def flat_regions() -> contextlib.AbstractContextManager[Any] | None:
    """Dynamo's settings under which a region marked with
    ``torch.compiler.nested_compile_region`` is traced once and reused by every call
    whose guards it passes, yet reaches the backend inlined, as one flat graph (the
    splitter cuts inside it); floats specialised, as regions cannot take a lifted
    float (torch 2.13 passes one as a Python float and fails). None where this torch
    lacks either setting."""
    config = _private("torch._dynamo", "config")
    if config is None or not hasattr(config, "inline_invoke_subgraph") or not hasattr(config, "specialize_float"):
        return None
    patch: contextlib.AbstractContextManager[Any] = config.patch(inline_invoke_subgraph=True, specialize_float=True)
    return patch


def register_serializable(cls: type) -> None:
    """Let torch's ahead-of-time compile accept ``cls`` as a serializable compiled
    graph (it implements ``serialize_compile_artifacts`` and
    ``deserialize_compile_artifacts``)."""
    base = _private("torch._dynamo.aot_compile_types", "SerializableCallable")
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
    manager = _private("torch._dynamo.guards", "CheckFunctionManager")
    kinds = getattr(manager, "UNSUPPORTED_SERIALIZATION_GUARD_TYPES", None)
    return frozenset(kinds) if kinds else _UNSERIALIZABLE_GUARDS


def pytree_functions() -> tuple[Callable[[Any], tuple[list[Any], Any]], Callable[[list[Any], Any], Any]]:
    """``(flatten, unflatten)`` for nested outputs (a ModelOutput, tuples, dicts);
    without torch's pytree, a value is one leaf."""
    flatten = _private("torch.utils._pytree", "tree_flatten")
    unflatten = _private("torch.utils._pytree", "tree_unflatten")
    if flatten is None or unflatten is None:
        return (lambda value: ([value], None)), (lambda leaves, spec: leaves[0])
    return flatten, unflatten


# resolved once, here: Dynamo traces a call to them, and cannot trace the lookup
tree_flatten, tree_unflatten = pytree_functions()


def guard_failure(function: Any, args: tuple[Any, ...]) -> str:
    """Why an ``AOTCompiledFunction``'s guards reject ``args``, as torch words it."""
    manager = getattr(getattr(function, "_artifacts", None), "guard_manager", None)
    verbose = getattr(manager, "check_verbose", None)
    if verbose is None:
        return "the reason is not available on this torch"
    return str(getattr(verbose(function.prepare_f_locals(*args)), "verbose_code_parts", "")) or "unknown"


def global_state() -> dict[str, Any]:
    """The global settings that Dynamo's ``GLOBAL_STATE`` guard checks (grad mode,
    autocast, torch threads, default dtype, deterministic algorithms, TF32 and reduced
    precision reductions), as torch itself records them where it can say; else the
    same settings read through their public functions."""
    guard = _private("torch._C._dynamo.guards", "GlobalStateGuard")
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


def op_module(qualname: str) -> str | None:
    """The module whose import registers the custom op ``ns::op`` (one defined with
    ``torch.library.custom_op``), where torch can say; else None."""
    opdefs = _private("torch._library.custom_ops", "OPDEFS")
    opdef = opdefs.get(qualname) if isinstance(opdefs, MutableMapping) else None
    module = getattr(getattr(opdef, "_init_fn", None), "__module__", None)
    return module if isinstance(module, str) else None


def dynamo_trace_seconds() -> float | None:
    """How long Dynamo has been compiling the frame whose graph a backend now gets (its
    bytecode trace, mostly), where torch says; None outside Dynamo's compile."""
    metrics_context = _private("torch._dynamo.utils", "get_metrics_context")
    context = metrics_context() if metrics_context is not None else None
    start = getattr(context, "_start_time_ns", None)
    in_progress = getattr(context, "in_progress", None)
    if isinstance(start, int) and start > 0 and callable(in_progress) and in_progress():
        return (time.time_ns() - start) / 1e9
    return None
