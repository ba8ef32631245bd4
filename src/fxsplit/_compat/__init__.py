"""The one place where fxsplit touches private torch APIs, one module per torch subsystem.

Each private name is looked up at call time (:func:`lookup.private`), behind feature
detection, with a fallback that uses public API only, so fxsplit keeps working
(perhaps a little slower) on torch versions that move or drop them. Tests exercise
every branch by monkeypatching the lookups.

- :mod:`.fx`: lazy GraphModules, torch's ``split_module``, pytrees, op registries;
- :mod:`.dynamo`: backends, restarts, nested compile regions, global state, trace time;
- :mod:`.aot_compile`: Dynamo's ahead-of-time compile of a whole function, its guards;
- :mod:`.aot_autograd`: the direct entry to Inductor's code beneath AOTAutograd's wrapper;
- :mod:`.inductor`: Inductor's cache directory and compile-to-bytes;
- :mod:`.cpu_probe`: Inductor's CPU instruction-set probe;
- :mod:`.fake`: fake tensors and shape environments;
- :mod:`.kernels`: HuggingFace's ``kernels``, where it wraps a module's forward.
"""

from . import lookup
from .aot_autograd import direct_entry
from .aot_compile import aot_compiled_function, guard_failure, register_serializable, unserializable_guard_types
from .cpu_probe import isa_probe_answers, isa_probe_machine, probe_cpu
from .dynamo import (
    compile_without_needless_restarts,
    dynamo_backend,
    dynamo_restart_exceptions,
    dynamo_trace_seconds,
    flat_regions,
    global_state,
)
from .fake import fresh_fake_mode, is_plain_tensor, new_size_symbol, size_hints, tracing_with
from .fx import (
    OpOverload,
    OpOverloadPacket,
    builtin_homes,
    global_state_ops,
    has_own_hooks,
    lazy_graph_module_base,
    op_module,
    pytree_functions,
    reduce_graph_module,
    split_module_simple,
    torch_lazy_graph_modules,
    tree_flatten,
    tree_unflatten,
)
from .inductor import PersistentCompiler, inductor_cache_at, persistent_compiler
from .kernels import kernel_installed, unrouted_forward

__all__ = [
    "OpOverload",
    "OpOverloadPacket",
    "PersistentCompiler",
    "aot_compiled_function",
    "builtin_homes",
    "compile_without_needless_restarts",
    "direct_entry",
    "dynamo_backend",
    "dynamo_restart_exceptions",
    "dynamo_trace_seconds",
    "flat_regions",
    "fresh_fake_mode",
    "global_state",
    "global_state_ops",
    "guard_failure",
    "has_own_hooks",
    "inductor_cache_at",
    "is_plain_tensor",
    "isa_probe_answers",
    "isa_probe_machine",
    "kernel_installed",
    "lazy_graph_module_base",
    "lookup",
    "new_size_symbol",
    "op_module",
    "persistent_compiler",
    "probe_cpu",
    "pytree_functions",
    "reduce_graph_module",
    "register_serializable",
    "size_hints",
    "split_module_simple",
    "torch_lazy_graph_modules",
    "tracing_with",
    "tree_flatten",
    "tree_unflatten",
    "unrouted_forward",
    "unserializable_guard_types",
]
