"""Every branch of fxsplit._compat: with torch's private feature, and without it
(simulated by hiding the name from the lookup)."""

from __future__ import annotations

import functools
import json
import pickle
import threading
from typing import Any

import pytest
import torch
from conftest import assert_same, captured
from torch.fx import Graph, GraphModule
from torch.fx.passes.split_module import split_module as torch_split_module

import fxsplit
from fxsplit import _compat
from fxsplit.split.lazy import is_materialized
from fxsplit.tools import models

ATTENTION = models.ATTENTION_OP_NAME


def hide(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make ``_compat`` see a torch without the given private names."""
    lookup = _compat.lookup.private

    def without(module: str, name: str):
        return None if name in names else lookup(module, name)

    monkeypatch.setattr(_compat.lookup, "private", without)


def test_lazy_base_is_torchs_lazy_module_when_present():
    from torch.fx._lazy_graph_module import _LazyGraphModule

    assert _compat.lazy_graph_module_base() is _LazyGraphModule


def test_without_torchs_lazy_module_pieces_are_still_lazy(monkeypatch):
    gm, args = captured(1)
    hide(monkeypatch, "_LazyGraphModule")
    assert _compat.lazy_graph_module_base() is GraphModule
    calls = []
    python_code = Graph.python_code
    monkeypatch.setattr(Graph, "python_code", lambda self, *a, **k: calls.append(self) or python_code(self, *a, **k))
    split, items = fxsplit.split_graph(gm, [ATTENTION])
    from torch.fx._lazy_graph_module import _LazyGraphModule

    assert not isinstance(items[0].graph, _LazyGraphModule)
    assert isinstance(items[0].graph, fxsplit.LazyGraphModule)
    assert calls == [] and not is_materialized(items[0].graph)
    assert_same(split, gm, args)
    assert_same(pickle.loads(pickle.dumps(split)), gm, args)


@pytest.mark.parametrize("hidden", [(), ("_format_import_block",), ("reduce_graph_module",)])
def test_pickling_with_and_without_torchs_private_helpers(monkeypatch, hidden):
    gm, args = captured(1)
    hide(monkeypatch, *hidden)
    split, items = fxsplit.split_graph(gm, [ATTENTION])
    for module in (split, items[1].graph):
        restored = pickle.loads(pickle.dumps(module))
        # unpickling re-traces the code into a plain GraphModule, as torch does
        plain = pickle.loads(pickle.dumps(GraphModule(module, module.graph)))
        assert isinstance(restored, GraphModule) and not isinstance(restored, fxsplit.LazyGraphModule)
        assert restored.code == plain.code
    assert_same(pickle.loads(pickle.dumps(split)), gm, args)


def test_split_module_simple_lookup(monkeypatch):
    assert _compat.split_module_simple() is torch.fx.passes.split_module.split_module_simple
    hide(monkeypatch, "split_module_simple")
    assert _compat.split_module_simple() is None


def test_torch_lazy_switch_present_and_absent(monkeypatch):
    gm = torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Tanh()))
    from torch.fx._lazy_graph_module import _LazyGraphModule

    with _compat.torch_lazy_graph_modules() as switched:
        assert switched
        split = torch_split_module(gm, None, lambda n: 0)
    assert isinstance(split, _LazyGraphModule)
    hide(monkeypatch, "_use_lazy_graph_module")
    with _compat.torch_lazy_graph_modules() as switched:
        assert not switched
        split = torch_split_module(gm, None, lambda n: 0)
    assert not isinstance(split, _LazyGraphModule)


@pytest.mark.parametrize("hidden", ["TensorifyState", "TensorifyScalarRestartAnalysis"])
def test_without_tensorify_state_pieces_still_compile_correctly(monkeypatch, hidden):
    hide(monkeypatch, hidden)
    model, inputs = models.build(2)
    backend = fxsplit.PiecewiseBackend(splitting_ops=[ATTENTION], compiler="aot_eager")
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, dynamic=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs), model(*inputs))
    assert len(backend.reports) == 1


def test_dynamo_backend_lookup_and_its_fallback(monkeypatch):
    assert _compat.dynamo_backend("aot_eager") is torch._dynamo.lookup_backend("aot_eager")
    hide(monkeypatch, "lookup_backend")
    compile_piece = _compat.dynamo_backend("aot_eager")
    gm = torch.fx.symbolic_trace(lambda x: (x.sin() + 1,))
    x = torch.randn(3)
    torch.testing.assert_close(compile_piece(gm, [x])(x), gm(x))


def test_without_standalone_compile_inductor_pieces_are_compiled_but_not_saved(monkeypatch, tmp_path):
    hide(monkeypatch, "standalone_compile")

    def f(x):
        q = (x * 2).view(1, 1, *x.shape)
        return torch.nn.functional.scaled_dot_product_attention(q, q, q).sum() + x.sum()

    backend = fxsplit.PiecewiseBackend(compiler="inductor", cache_dir=tmp_path)
    assert backend.cache is None
    torch._dynamo.reset()
    compiled = torch.compile(f, backend=backend, dynamic=True)
    x = torch.randn(4, 8)
    torch.testing.assert_close(compiled(x), f(x))
    assert (backend.report.cache_hits, backend.report.cache_misses) == (0, 0)
    assert not any(tmp_path.iterdir())


def test_global_state_ops_present_and_absent(monkeypatch):
    grad, enter, exit_ = _compat.global_state_ops()
    assert grad == (torch._C._set_grad_enabled,)
    assert (enter, exit_) == (torch.amp._enter_autocast, torch.amp._exit_autocast)
    hide(monkeypatch, "_set_grad_enabled", "_enter_autocast", "_exit_autocast")
    assert _compat.global_state_ops() == ((), None, None)


def test_builtin_homes_present_and_absent(monkeypatch):
    from fxsplit.split.ops import matcher

    assert _compat.builtin_homes() == (torch._C._nn, torch)
    hide(monkeypatch, "_nn")
    assert _compat.builtin_homes() == (torch,)
    graph = Graph()
    node = graph.call_function(torch.relu, (graph.placeholder("x"),))
    assert matcher([torch.nn.functional.relu])(node)  # its builtin lives in torch itself


def test_op_classes_are_torchs():
    assert isinstance(torch.ops.aten.add, _compat.OpOverloadPacket)
    assert isinstance(torch.ops.aten.add.Tensor, _compat.OpOverload)


def test_float_symbol_test_with_and_without_torchs_helper(monkeypatch):
    import sympy

    float_symbol, size_symbol = sympy.Symbol("zf3"), sympy.Symbol("s3")
    is_float = _compat.dynamo._float_symbol_test()
    assert is_float(float_symbol) and not is_float(size_symbol)
    hide(monkeypatch, "symbol_is_type")
    is_float = _compat.dynamo._float_symbol_test()
    assert is_float(float_symbol) and not is_float(size_symbol)


def test_inductor_cache_moves_into_the_block_and_back(monkeypatch, tmp_path):
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    outside = cache_dir()
    with _compat.inductor_cache_at(str(tmp_path)):
        assert cache_dir() == str(tmp_path)
    assert cache_dir() == outside
    hide(monkeypatch, "temporary_cache_dir")
    with _compat.inductor_cache_at(str(tmp_path)):
        assert cache_dir() == outside


def test_the_cpu_probe_is_answered_from_kept_answers_and_learns_new_ones(monkeypatch):
    from torch._inductor.cpu_vec_isa import VecISA

    probed = []
    monkeypatch.setattr(VecISA, "_probe_load", lambda isa, library: probed.append(library) or True)
    probe = VecISA._probe_load
    kept = {"known.so": False}
    with _compat.isa_probe_answers(kept):
        assert VecISA._probe_load(None, "/any/where/known.so") is False  # kept: not probed
        with _compat.isa_probe_answers(nested := {}):
            assert VecISA._probe_load(None, "/cache/new.so") is True
        assert VecISA._probe_load(None, "/elsewhere/new.so") is True  # learnt once, for every open block
    assert probed == ["/cache/new.so"]
    assert kept == {"known.so": False, "new.so": True} and nested == {"new.so": True}
    assert VecISA._probe_load is probe  # torch's probe again after the block


def test_without_torchs_cpu_probe_the_block_runs_as_it_is(monkeypatch):
    assert json.loads(_compat.isa_probe_machine())[2] == torch.__version__
    hide(monkeypatch, "VecISA")
    assert _compat.isa_probe_machine() is None
    from torch._inductor.cpu_vec_isa import VecISA

    probe = VecISA._probe_load
    kept = {}
    with _compat.isa_probe_answers(kept):
        assert VecISA._probe_load is probe
    assert kept == {}


class _FakeISA:
    """An instruction set whose probe records the thread it ran in."""

    def __init__(self, name: str, probed: list[tuple[str, bool]]) -> None:
        self.name, self.probed = name, probed

    def __str__(self) -> str:
        return self.name

    def __bool__(self) -> bool:
        self.probed.append((self.name, threading.current_thread() is threading.main_thread()))
        return True


def test_the_cpu_probe_runs_each_reported_instruction_set_in_a_thread_of_its_own(monkeypatch):
    from torch._inductor import cpu_vec_isa

    probed: list[tuple[str, bool]] = []
    isas = [_FakeISA(name, probed) for name in ("avx512 amx_tile", "avx512", "avx2", "asimd")]
    monkeypatch.setattr(cpu_vec_isa, "supported_vec_isa_list", isas)
    monkeypatch.setattr(cpu_vec_isa, "x86_isa_checker", lambda: ["avx2", "avx512"])
    monkeypatch.setattr(cpu_vec_isa, "valid_vec_isa_list", lambda: probed.append(("list", True)))
    _compat.probe_cpu()
    # the sets the CPU does not report in full are not probed; torch's list is made last
    assert sorted(probed[:-1]) == [("avx2", False), ("avx512", False)] and probed[-1] == ("list", True)

    probed.clear()
    hide(monkeypatch, "supported_vec_isa_list")  # torch's probe as it is, one set after another
    _compat.probe_cpu()
    assert probed == [("list", True)]

    probed.clear()
    hide(monkeypatch, "supported_vec_isa_list", "valid_vec_isa_list")  # no probe: nothing to run
    _compat.probe_cpu()
    assert probed == []


def test_a_size_symbol_bounded_to_a_range_and_without_torchs_bounds(monkeypatch):
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    _, shape_env = _compat.fresh_fake_mode()
    bounded = _compat.new_size_symbol(shape_env, "tokens", 6, bounds=(6, 12))
    assert (shape_env.var_to_range[bounded].lower, shape_env.var_to_range[bounded].upper) == (6, 12)
    monkeypatch.delattr(ShapeEnv, "constrain_symbol_range")
    _, shape_env = _compat.fresh_fake_mode()
    unbounded = _compat.new_size_symbol(shape_env, "tokens", 6, bounds=(6, 12))
    assert shape_env.var_to_range[unbounded].upper > 10**6  # as general as any size: still correct


def test_size_hints_from_either_name_of_the_table():
    import types

    import sympy

    s0 = sympy.Symbol("s0")
    assert _compat.size_hints(types.SimpleNamespace(backed_var_to_val={s0: 4})) == {s0: 4}
    assert _compat.size_hints(types.SimpleNamespace(var_to_val={s0: 5})) == {s0: 5}  # older torch
    assert _compat.size_hints(None) == {}


def test_fresh_fake_mode_with_and_without_torchs_fake_tensors(monkeypatch):
    fake_mode, shape_env = _compat.fresh_fake_mode()
    symbol = _compat.new_size_symbol(shape_env, "tokens", 7)
    twin = _compat.new_size_symbol(shape_env, "other", 7)
    assert symbol != twin  # equal hints are never unified
    with fake_mode:
        tensor = torch.empty(shape_env.create_symintnode(symbol, hint=7), 3)
    assert isinstance(tensor.shape[0], torch.SymInt) and tensor.shape[1] == 3
    for name in ("FakeTensorMode", "ConstantSource"):
        with monkeypatch.context() as patch:
            hide(patch, name)
            assert _compat.fresh_fake_mode() is None


def test_tracing_with_a_fake_mode_and_without_torchs_tracing_context(monkeypatch):
    fake_mode, _ = _compat.fresh_fake_mode()
    from torch._guards import TracingContext

    with _compat.tracing_with(fake_mode):
        assert TracingContext.get().fake_mode is fake_mode
    hide(monkeypatch, "tracing")
    with _compat.tracing_with(fake_mode):
        assert TracingContext.try_get() is None


def test_persistent_compiler_compiles_with_own_fake_mode_only_where_torch_can(monkeypatch):
    store = _compat.persistent_compiler()
    assert store is not None and store.compile_with is not None

    def older(gm, inputs, *, dynamic_shapes="from_graph", aot=False):
        return gm

    monkeypatch.setattr(torch._inductor, "standalone_compile", older)
    assert _compat.persistent_compiler().compile_with is None
    monkeypatch.setattr(torch._inductor, "standalone_compile", lambda gm, inputs, *, dynamic_shapes="from_graph": gm)
    assert _compat.persistent_compiler() is None  # no artifact that serializes to bytes
    hide(monkeypatch, "standalone_compile")
    assert _compat.persistent_compiler() is None


def test_a_piece_compiled_to_bytes_runs_again_from_them():
    store = _compat.persistent_compiler()
    gm, args = fxsplit.capture_graph(lambda x: (x.sin() * 2,), (torch.randn(5),))
    compiled = store.compile(gm, args)
    again = store.deserialize(store.serialize(compiled))
    torch.testing.assert_close(again(*args), gm(*args))


def test_plain_tensors_with_and_without_torchs_fake_tensors(monkeypatch):
    fake_mode, _ = _compat.fresh_fake_mode()
    with fake_mode:
        fake = torch.empty(2)
    assert _compat.is_plain_tensor(fake) and _compat.is_plain_tensor(torch.nn.Parameter(torch.ones(1)))
    assert not _compat.is_plain_tensor(torch.ones(2).as_subclass(torch.nn.Buffer))
    hide(monkeypatch, "FakeTensor")
    assert not _compat.is_plain_tensor(fake) and _compat.is_plain_tensor(torch.ones(2))


def test_ahead_of_time_compile_support_and_its_absence(monkeypatch):
    from torch._dynamo.aot_compile import AOTCompiledFunction
    from torch._dynamo.aot_compile_types import SerializableCallable

    assert _compat.aot_compiled_function() is AOTCompiledFunction

    class Saveable:
        pass

    _compat.register_serializable(Saveable)
    assert issubclass(Saveable, SerializableCallable)
    for name in ("AOTCompiledFunction", "SerializableCallable"):
        with monkeypatch.context() as patch:
            hide(patch, name)
            assert _compat.aot_compiled_function() is None

    class Other:
        pass

    hide(monkeypatch, "SerializableCallable")
    _compat.register_serializable(Other)  # nothing to register with: a no-op
    assert not issubclass(Other, SerializableCallable)


def test_unserializable_guard_kinds_from_torch_or_the_fallback(monkeypatch):
    from torch._dynamo.guards import CheckFunctionManager

    assert _compat.unserializable_guard_types() == frozenset(CheckFunctionManager.UNSUPPORTED_SERIALIZATION_GUARD_TYPES)
    hide(monkeypatch, "CheckFunctionManager")
    assert "ID_MATCH" in _compat.unserializable_guard_types()


def test_pytree_with_and_without_torchs(monkeypatch):
    flatten, unflatten = _compat.pytree_functions()
    leaves, spec = flatten({"a": torch.ones(1), "b": (torch.zeros(1), None)})
    assert len(leaves) == 3 and set(unflatten(leaves, spec)) == {"a", "b"}
    hide(monkeypatch, "tree_flatten")
    flatten, unflatten = _compat.pytree_functions()
    value = {"a": torch.ones(1)}
    leaves, spec = flatten(value)
    assert leaves == [value] and unflatten(leaves, spec) is value


def test_guard_failure_reason_with_and_without_torchs_details():
    import types

    assert "not available" in _compat.guard_failure(types.SimpleNamespace(), ())


def compiled_piece(function: Any, *args: Any) -> tuple[Any, torch.fx.GraphModule, tuple[Any, ...]]:
    """``function`` captured by Dynamo and compiled as fxsplit compiles a piece."""
    gm, captured_args = fxsplit.capture_graph(function, args)
    return _compat.persistent_compiler().compile(gm, list(captured_args)), gm, captured_args


def enters_inductors_code(entry: Any) -> bool:
    return getattr(entry, "__qualname__", "").endswith("call_inductor")


def test_a_plain_piece_is_entered_at_inductors_code_once_it_has_been_called(monkeypatch):
    compiled, gm, args = compiled_piece(lambda x: (x.sin() * 2,), torch.randn(5))
    before = _compat.direct_entry(compiled)  # the wrapper's first call checks custom ops: not skipped
    assert before is not compiled and not enters_inductors_code(before)
    assert not getattr(before, "_torchdynamo_disable", False)
    compiled(*args)
    entry = _compat.direct_entry(compiled)
    assert enters_inductors_code(entry)
    with torch.enable_grad():  # torch's wrapper runs an inference graph with grad off, and so does this
        out = entry(*args)
        assert torch.is_grad_enabled()
    torch.testing.assert_close(out[0], gm(*args)[0])
    assert _compat.direct_entry(gm) is gm  # not a compiled artifact: called as it is
    hide(monkeypatch, "_set_grad_enabled")  # grad is turned off through the public setter
    with torch.enable_grad():
        torch.testing.assert_close(_compat.direct_entry(compiled)(*args)[0], out[0])
        assert torch.is_grad_enabled()
    for name in ("SerializableCompiledFunction", "CompiledFxGraph"):
        hide(monkeypatch, name)
        assert not enters_inductors_code(_compat.direct_entry(compiled))
    hide(monkeypatch, "AOTCompiledArtifact")
    assert _compat.direct_entry(compiled) is compiled


def test_a_returning_pieces_entry_marks_its_outputs_dynamic_dims_as_torchs_wrapper_does(monkeypatch):
    compiled, gm, args = compiled_piece(lambda x: (x.sin() * 2,), torch.randn(5, 3))
    compiled(*args)
    marks = "_dynamo_propagated_dynamic_indices"
    assert getattr(compiled(*args)[0], marks) == {0, 1}  # what torch's wrapper does
    assert not hasattr(_compat.direct_entry(compiled)(*args)[0], marks)  # a piece inside the model: no marks
    entry = _compat.direct_entry(compiled, mark_outputs=True)
    assert entry.__qualname__.endswith("call_and_mark")
    out = entry(*args)[0]
    assert getattr(out, marks) == {0, 1}
    torch.testing.assert_close(out, gm(*args)[0])
    # marks that cannot be read: the wrapper, which marks them itself
    monkeypatch.setattr(_compat.aot_autograd, "_output_marks", lambda generated, wrapper: None)
    entry = _compat.direct_entry(compiled, mark_outputs=True)
    assert not entry.__qualname__.endswith(("call_and_mark", "call_inductor"))
    assert getattr(entry(*args)[0], marks) == {0, 1}
    assert _compat.direct_entry(compiled).__qualname__.endswith("call_inductor")


def test_a_piece_whose_outputs_alias_its_inputs_keeps_torchs_wrapper_which_rebuilds_them():
    compiled, gm, args = compiled_piece(lambda x: (x.view(-1), x + 1), torch.randn(2, 3))
    compiled(*args)
    entry = _compat.direct_entry(compiled)
    assert not enters_inductors_code(entry)
    (x,) = [a for a in args if isinstance(a, torch.Tensor)]
    view, _ = entry(*args)
    assert view._base is x


def test_a_piece_that_leaves_grad_off_keeps_torchs_wrapper_which_turns_it_off():
    def leaves_grad_off(x: torch.Tensor) -> tuple[torch.Tensor]:
        torch.set_grad_enabled(False)
        return (x * 2,)

    with torch.enable_grad():
        gm, args = fxsplit.capture_graph(leaves_grad_off, (torch.randn(3),))
        torch.set_grad_enabled(True)  # the capture left it off, as the function does
        compiled = _compat.persistent_compiler().compile(gm, list(args))
        compiled(*args)
        entry = _compat.direct_entry(compiled)
        assert not enters_inductors_code(entry)
        torch.set_grad_enabled(True)
        entry(*args)
        assert not torch.is_grad_enabled()


def test_a_piece_that_mutates_its_input_mutates_it_once_when_entered_directly(monkeypatch):
    def bumps(x: torch.Tensor) -> tuple[torch.Tensor]:
        x.add_(1)
        return (x * 2,)

    compiled, _, captured_args = compiled_piece(bumps, torch.zeros(3))

    def with_zeros() -> tuple[torch.Tensor, list[Any]]:
        x = torch.zeros(3)
        return x, [x if isinstance(a, torch.Tensor) else a for a in captured_args]

    x, args = with_zeros()
    before = x._version
    compiled(*args)
    bumped_by_torch = x._version - before
    assert bumped_by_torch > 0  # autograd must see the mutation
    entry = _compat.direct_entry(compiled)
    assert entry.__qualname__.endswith("bump_and_call")  # Inductor's code, with the wrapper's version bump
    x, args = with_zeros()
    before = x._version
    (out,) = entry(*args)
    torch.testing.assert_close(x, torch.ones(3))
    torch.testing.assert_close(out, torch.full((3,), 2.0))
    assert x._version - before == bumped_by_torch
    # a wrapper whose bump cannot be found is kept: it bumps the versions itself
    with monkeypatch.context() as patched:
        patched.delitem(runtime_wrapper_globals(compiled), "_increment_version_")
        entry = _compat.direct_entry(compiled)
    assert not entry.__qualname__.endswith(("bump_and_call", "call_inductor"))
    x, args = with_zeros()
    before = x._version
    entry(*args)
    assert x._version - before == bumped_by_torch


def runtime_wrapper_globals(compiled: Any) -> dict[str, Any]:
    """The globals of AOTAutograd's generated runtime wrapper inside ``compiled``."""
    function = vars(vars(compiled)["inner_fn"])["compiled_fn"]
    while getattr(function, "_torchdynamo_disable", False):
        function = function.__wrapped__
    inner = _compat.aot_autograd._closure(function)["compiled_fn"]
    while "_codegen_runtime_wrapper" not in _compat.aot_autograd._closure(inner):
        inner = vars(inner)["compiled_fn"]
    return _compat.aot_autograd._closure(inner)["_codegen_runtime_wrapper"].__globals__


def test_a_modules_own_hooks_are_seen_and_assumed_where_torch_keeps_them_elsewhere(monkeypatch):
    module = torch.nn.Linear(2, 2)
    assert not _compat.has_own_hooks(module)
    handle = module.register_forward_pre_hook(lambda m, args: None)
    assert _compat.has_own_hooks(module)
    handle.remove()
    monkeypatch.delattr(module, "_forward_pre_hooks")
    assert _compat.has_own_hooks(module)


def test_the_global_state_dynamo_guards_from_torch_or_its_public_settings(monkeypatch):
    threads = torch.get_num_threads()
    for hidden in ((), ("GlobalStateGuard",)):
        hide(monkeypatch, *hidden)
        state = _compat.global_state()
        assert state["num_threads"] == threads and state["grad_mode"] is True
        try:
            torch.set_num_threads(threads + 1)
            assert _compat.global_state()["num_threads"] == threads + 1
        finally:
            torch.set_num_threads(threads)
        with torch.no_grad():
            assert _compat.global_state()["grad_mode"] is False
    assert "GlobalStateGuard" not in str(_compat.global_state())


def test_flat_regions_from_dynamos_settings_or_none(monkeypatch):
    import torch._dynamo.config as config

    regions = _compat.flat_regions()
    assert regions is not None
    with regions:
        assert config.inline_invoke_subgraph and config.specialize_float
    assert not config.inline_invoke_subgraph
    hide(monkeypatch, "config")
    assert _compat.flat_regions() is None


def test_kernels_routing_is_found_only_where_kernels_wrapped_a_forward():
    kernels = pytest.importorskip("kernels")

    @kernels.use_kernel_forward_from_hub("FxsplitCompatScale")
    def scale(x):
        return x * 2

    class Plain(torch.nn.Module):
        def forward(self, x):
            return scale(x)

    @kernels.use_kernelized_func(scale)
    class Routed(Plain):
        pass

    class Wrapped(Plain):  # a wrapper of the same name that is not kernels'
        @functools.wraps(Plain.forward)
        def new_forward(self, x):
            return Plain.forward(self, x)

        forward = new_forward

    assert _compat.unrouted_forward(Routed) is Plain.forward
    assert _compat.unrouted_forward(Plain) is None and _compat.unrouted_forward(Wrapped) is None
    module = Routed()
    assert not _compat.kernel_installed(module)
    (function,) = module._kernel_funcs.values()
    function.forward = lambda x: x  # as kernelize installs a kernel
    assert _compat.kernel_installed(module)
    del module.__dict__["_kernel_funcs"]  # a kernels that keeps them otherwise: assume the routing matters
    assert _compat.kernel_installed(module)
