"""PiecewiseBackend: outputs equal to eager, one compile per distinct piece, dispatch
on size, reports, and clear errors."""

from __future__ import annotations

import json
import logging
import math
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import SPLIT_HERE, hf_gpt2, hf_llama, hf_mixtral, logits_of

import fxsplit
import fxsplit.compilation.cache
from fxsplit import _compat
from fxsplit.tools import models

ATTENTION = models.ATTENTION_OP_NAME


def compile_model(model: Any, backend: fxsplit.PiecewiseBackend) -> Any:
    torch._dynamo.reset()
    return torch.compile(model, backend=backend, dynamic=True)


@pytest.mark.parametrize("compiler", ["eager", "aot_eager"])
def test_synthetic_model_equals_eager_at_several_sizes(compiler):
    model, _ = models.build(3)
    backend = fxsplit.PiecewiseBackend(splitting_ops=[ATTENTION], compiler=compiler)
    compiled = compile_model(model, backend)
    with torch.no_grad():
        for tokens in (7, 16, 3, 40):
            inputs = models.example_inputs(model.config, tokens)
            torch.testing.assert_close(compiled(*inputs), model(*inputs))
    assert len(backend.reports) == 1, "a new size made Dynamo recompile"
    report = backend.report
    assert (report.pieces, report.compute_pieces) == (7, 4)
    assert report.compiler_calls == 3  # first, middle (shared by two), last
    assert [r.shared_with for r in report.rows if r.kind == "compute"] == [None, None, "submod_2", None]


def test_deep_model_needs_three_compiler_calls():
    model, _ = models.build(28)
    backend = fxsplit.PiecewiseBackend(splitting_ops=[ATTENTION], compiler="eager")
    compiled = compile_model(model, backend)
    inputs = models.example_inputs(model.config, 5)
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs), model(*inputs))
    assert backend.report.compute_pieces == 29
    assert backend.report.compiler_calls == 3


def test_without_dedup_every_compute_piece_is_compiled():
    model, _ = models.build(3)
    backend = fxsplit.PiecewiseBackend(splitting_ops=[ATTENTION], compiler="eager", dedup=False)
    compiled = compile_model(model, backend)
    inputs = models.example_inputs(model.config, 6)
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs), model(*inputs))
    assert backend.report.compiler_calls == 4
    assert all(r.shared_with is None and r.hash is None for r in backend.report.rows)


def counting_compiler(calls: list[torch.fx.GraphModule]):
    def compile_piece(gm: torch.fx.GraphModule, example_inputs: list[Any]):
        calls.append(gm)
        return gm

    return compile_piece


@pytest.mark.parametrize(
    "y, second, shared",
    [
        # literal constants: a float from a closure would be lifted to an input
        pytest.param(torch.randn(4, 3), lambda y: y * 2.0, True, id="twins"),
        pytest.param(torch.randn(4, 3), lambda y: y * 3.0, False, id="constant"),
        pytest.param(torch.randn(4, 3, dtype=torch.float64), lambda y: y * 2.0, False, id="dtype"),
        pytest.param(torch.randn(4, 5), lambda y: y * 2.0, False, id="shape"),
    ],
)
def test_pieces_share_only_when_nothing_but_names_differs(y, second, shared):
    def f(x, y):
        a = torch.ops.fxsplit_test.split_here(x * 2.0)
        b = torch.ops.fxsplit_test.split_here(second(y))
        return a, b

    calls: list[torch.fx.GraphModule] = []
    backend = fxsplit.PiecewiseBackend(splitting_ops=[SPLIT_HERE], compiler=counting_compiler(calls))
    compiled = compile_model(f, backend)
    x = torch.randn(4, 3)
    torch.testing.assert_close(compiled(x, y), f(x, y))
    compute = [r for r in backend.report.rows if r.kind == "compute"]
    assert [r.shared_with for r in compute] == [None, "submod_0" if shared else None]
    assert len(calls) == backend.report.compiler_calls == (1 if shared else 2)


@pytest.mark.parametrize(
    "y_max, shared", [pytest.param(None, True, id="own symbols"), pytest.param(64, False, id="range")]
)
def test_pieces_share_when_their_sizes_differ_only_in_the_names_of_their_symbols(y_max, shared):
    # x's and y's rows have symbols of their own, as Dynamo sizes each layer's KV cache; t's
    # rows are the size that pieces dispatch on, which no other size stands in for
    def f(t, x, y):
        u = torch.ops.fxsplit_test.split_here(t * 2.0)
        a = torch.ops.fxsplit_test.split_here(x * 2.0)
        return u, a, y * 2.0

    calls: list[torch.fx.GraphModule] = []
    backend = fxsplit.PiecewiseBackend(splitting_ops=[SPLIT_HERE], compiler=counting_compiler(calls))
    torch._dynamo.reset()
    compiled = torch.compile(f, backend=backend)
    t, x, y = torch.randn(7, 3), torch.randn(4, 3), torch.randn(5, 3)
    for value in (t, x):
        torch._dynamo.mark_dynamic(value, 0)
    torch._dynamo.mark_dynamic(y, 0, **({} if y_max is None else dict(min=2, max=y_max)))
    torch.testing.assert_close(compiled(t, x, y), f(t, x, y))
    compute = [r for r in backend.report.rows if r.kind == "compute"]
    assert [r.shared_with for r in compute] == [None, None, compute[1].name if shared else None]
    assert len(calls) == backend.report.compiler_calls == 3 - shared
    if shared:  # the shared piece runs the other's sizes
        y = torch.randn(9, 3)
        torch.testing.assert_close(compiled(t, torch.randn(4, 3), y)[2], y * 2.0)


@pytest.mark.parametrize("lazy", [False, True])
def test_compile_sizes_dispatch_to_a_specialised_artifact(lazy):
    model, _ = models.build(2)
    calls: list[list[Any]] = []
    compiled_after: list[int] = []

    def compile_piece(gm: torch.fx.GraphModule, example_inputs: list[Any]):
        calls.append(example_inputs)
        return gm

    backend = fxsplit.PiecewiseBackend(splitting_ops=[ATTENTION], compiler=compile_piece, compile_sizes=[4], lazy=lazy)
    compiled = compile_model(model, backend)
    with torch.no_grad():
        for tokens in (9, 4, 4, 5):
            inputs = models.example_inputs(model.config, tokens)
            torch.testing.assert_close(compiled(*inputs), model(*inputs))
            compiled_after.append(len(calls))
    general = [args for args in calls if any(isinstance(v, torch.SymInt) for v in args)]
    specialised = [args for args in calls if not any(isinstance(v, torch.SymInt) for v in args)]
    assert len(general) == 3 and len(specialised) == 3  # one specialised compile per distinct piece
    # up front, every compile happens during the first call; lazily, at the first call of size 4
    assert compiled_after == ([3, 6, 6, 6] if lazy else [6, 6, 6, 6])
    runners = {id(split_runner): split_runner for _, split_runner in backend._runners.values()}
    for runner in runners.values():
        assert runner.specialised_calls == 2 and runner.general_calls == 2
        assert set(runner.specialised) == {4}
    assert [s.size for s in backend.report.specialisations] == [4, 4, 4]


def test_report_is_logged_at_info(caplog):
    model, _ = models.build(1)
    backend = fxsplit.PiecewiseBackend(splitting_ops=[ATTENTION], compiler="eager")
    compiled = compile_model(model, backend)
    with caplog.at_level(logging.INFO, logger="fxsplit"), torch.no_grad():
        compiled(*models.example_inputs(model.config, 4))
    assert "fxsplit: 3 pieces (2 compute, 0 sharing a compiled twin), 2 eager compiler calls" in caplog.text
    report = backend.report.to_dict()
    assert {"pieces", "compute_pieces", "compiler_calls", "split_seconds", "compile_seconds", "rows"} <= report.keys()


def test_model_without_splitting_op_compiles_as_one_piece_with_a_warning(caplog):
    def f(x):
        return (x.sin() * 2).cos()

    backend = fxsplit.PiecewiseBackend(compiler="aot_eager")
    compiled = compile_model(f, backend)
    with caplog.at_level(logging.WARNING, logger="fxsplit"):
        x = torch.randn(5)
        torch.testing.assert_close(compiled(x), f(x))
    assert "stays one compute piece" in caplog.text
    assert backend.report.pieces == 1 and backend.report.compiler_calls == 1


def test_a_piece_that_fails_to_compile_is_named_with_its_code_path():
    def broken(gm: torch.fx.GraphModule, example_inputs: list[Any]):
        raise RuntimeError("no kernel for you")

    model, _ = models.build(1)
    backend = fxsplit.PiecewiseBackend(splitting_ops=[ATTENTION], compiler=broken)
    compiled = compile_model(model, backend)
    with pytest.raises(Exception, match="failed to compile submod_0") as error, torch.no_grad():
        compiled(*models.example_inputs(model.config, 4))
    message = str(error.value)
    assert "no kernel for you" in message
    path = message.split("Its code is in ")[1].split()[0].rstrip(".")
    assert "def forward" in Path(path).read_text()


def test_unknown_compiler_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown compiler 'tvm'; use one of 'inductor', 'aot_eager', 'eager'"):
        fxsplit.PiecewiseBackend(compiler="tvm")


def test_registered_with_dynamo_by_name():
    def f(q):
        return torch.nn.functional.scaled_dot_product_attention(q, q, q).relu() + 1

    torch._dynamo.reset()
    compiled = torch.compile(f, backend="fxsplit", dynamic=True)
    q = torch.randn(1, 2, 4, 8)
    torch.testing.assert_close(compiled(q), f(q))


@pytest.mark.parametrize("compiler", ["eager", "aot_eager"])
@pytest.mark.parametrize("factory", [hf_llama, hf_gpt2, hf_mixtral])
def test_tiny_hf_models_equal_eager(factory, compiler):
    torch.manual_seed(0)
    model = factory(3 if factory is not hf_mixtral else 2).eval()
    logits = logits_of(model)
    backend = fxsplit.PiecewiseBackend(compiler=compiler)
    compiled = compile_model(logits, backend)
    with torch.no_grad():
        for batch, length in ((2, 8), (3, 5), (2, 13)):
            ids = torch.randint(0, 128, (batch, length))
            torch.testing.assert_close(compiled(ids), logits(ids))
    assert len(backend.reports) == 1
    assert backend.report.pieces == 2 * model.config.num_hidden_layers + 1


def test_tiny_inductor_compile_with_cache_and_dump(tmp_path):
    def f(x, w):
        h = (x @ w).relu()
        q = h.view(1, 1, *h.shape)
        a = torch.nn.functional.scaled_dot_product_attention(q, q, q)
        return (a.view(h.shape) * h).sum(-1)

    backend = fxsplit.PiecewiseBackend(compiler="inductor", cache_dir=tmp_path / "cache", dump_dir=tmp_path / "dump")
    compiled = compile_model(f, backend)
    w = torch.randn(8, 8)
    for rows in (5, 9):
        x = torch.randn(rows, 8)
        torch.testing.assert_close(compiled(x, w), f(x, w))
    assert backend.report.compiler_calls == 2 and len(backend.reports) == 1
    assert backend.report.cache_misses == 2 and backend.cache is not None and backend.cache.info().entries == 2
    generated = json.loads((tmp_path / "dump" / "graph_0" / "report.json").read_text())["generated_code"]
    assert all(Path(path).is_file() for path in generated.values()) and len(generated) == 2


def attempts_to_compile(backend: Any, model: Any, inputs: Any) -> int:
    """How many times Dynamo traced the model and called ``backend`` before it ran."""
    calls = []

    def counting(gm: torch.fx.GraphModule, example_inputs: list[Any]):
        calls.append(gm)
        return backend(gm, example_inputs)

    compiled = compile_model(model, counting)
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs), model(*inputs))
    return len(calls)


def test_lifted_floats_cost_no_dynamo_restart():
    # Dynamo lifts each RMSNorm's eps and nn.Embedding's unread norm_type to inputs;
    # whole-graph compilation re-traces once for norm_type, the pieces not at all
    model, inputs = models.build(3)
    assert attempts_to_compile(_compat.dynamo_backend("aot_eager"), model, inputs) == 2
    backend = fxsplit.PiecewiseBackend(splitting_ops=[ATTENTION], compiler="aot_eager")
    assert attempts_to_compile(backend, model, inputs) == 1
    assert backend.report.compiler_calls == 3  # the eps stay inputs, so layers still share


class FloatUser(torch.nn.Module):
    """Applies ``use(x, self.value)`` before attention, where ``value`` is a float."""

    def __init__(self, use: Any) -> None:
        super().__init__()
        self.use, self.value = use, 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.use(x, self.value)
        q = y.view(1, 1, *y.shape)
        return torch.nn.functional.scaled_dot_product_attention(q, q, q).sum() + y.sum()


def unread_norm_type(x: torch.Tensor, value: float) -> torch.Tensor:
    table = torch.arange(12.0).view(3, 4)
    return x + torch.nn.functional.embedding(torch.zeros(x.shape[0], dtype=torch.long), table, norm_type=value)


@pytest.mark.parametrize(
    ("use", "attempts"),
    [
        (unread_norm_type, 1),  # dropped unread: no restart
        (lambda x, value: x * value, 1),  # tensor compute: stays an input
        (lambda x, value: torch.nn.functional.elu(x, alpha=value), 2),  # specialised by the op
        (lambda x, value: torch.nn.functional.layer_norm(x, (4,), eps=value), 1),  # by Dynamo itself
        (lambda x, value: x[: int(x.shape[0] * value)], 2),  # a size depends on it
    ],
)
def test_a_float_restarts_dynamo_only_when_its_value_is_baked_in(use, attempts):
    model = FloatUser(use)
    backend = fxsplit.PiecewiseBackend(compiler="aot_eager")
    assert attempts_to_compile(backend, model, (torch.randn(6, 4),)) == attempts
    compiled = torch.compile(model, backend=backend, dynamic=True)
    for value in (0.25, 0.75):  # a float kept symbolic must still be read, or guarded
        model.value = value
        x = torch.randn(6, 4)
        torch.testing.assert_close(compiled(x), model(x))


def test_a_cache_that_cannot_be_written_warns_but_compiles(tmp_path, monkeypatch, caplog):
    def f(x):
        q = (x.cos() * 3).view(1, 1, *x.shape)
        return torch.nn.functional.scaled_dot_product_attention(q, q, q).sum() - x.sum()

    def disk_full(self, key, write, description):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fxsplit.compilation.cache.PieceCache, "store", disk_full)
    backend = fxsplit.PiecewiseBackend(compiler="inductor", cache_dir=tmp_path)
    compiled = compile_model(f, backend)
    x = torch.randn(4, 8)
    with caplog.at_level(logging.WARNING, logger="fxsplit"):
        torch.testing.assert_close(compiled(x), f(x))
    assert "could not save submod_0 to the cache" in caplog.text


# Scalars at piece boundaries, compiled with Inductor (the default compiler)


def counted(backend: Any, model: Any) -> tuple[Any, list[int]]:
    """``model`` compiled with ``backend``, and a list that grows by one per Dynamo trace."""
    calls: list[int] = []

    def counting(gm: torch.fx.GraphModule, example_inputs: list[Any]):
        calls.append(len(gm.graph.nodes))
        return backend(gm, example_inputs)

    return compile_model(model, counting), calls


class DropoutLayer(torch.nn.Module):
    """Every layer reads one shared dropout ``p`` (as Falcon's config does)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config, self.proj = config, torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.nn.functional.dropout(self.proj(x), p=self.config.p, training=False).view(1, 1, *x.shape)
        return torch.nn.functional.scaled_dot_product_attention(q, q, q).view(x.shape) + x


class TanhGelu(torch.nn.Module):
    """GPT-2's GELU, whose math.pi Dynamo lifts to an input and takes the root of."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
        q = h.view(1, 1, *h.shape)
        return torch.nn.functional.scaled_dot_product_attention(q, q, q).view(h.shape) * h


class MoeWidth(torch.nn.Module):
    """Computes ``batch * sequence`` in the first layer after attention, and every
    later layer uses it (as Qwen2-MoE's routing does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = None
        for _ in range(3):
            q = x.view(1, 1, *x.shape)
            a = torch.nn.functional.scaled_dot_product_attention(q, q, q).view(x.shape)
            if tokens is None:
                tokens = a.shape[0] * a.shape[1]
            x = a.reshape(tokens, -1).relu().view(x.shape) + x
        return x


class ScaledAttention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scaling = 0.25  # lifted by Dynamo, then baked in by SDPA's scale=
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.proj(x).view(1, 1, *x.shape)
        a = torch.nn.functional.scaled_dot_product_attention(q, q, q, scale=self.scaling)
        return self.proj(a.view(x.shape)) + x


def _layers(*modules: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(*modules).eval()


SHARED = types.SimpleNamespace(p=0.0)


@pytest.mark.parametrize(
    "build, shape",
    [
        pytest.param(lambda: _layers(*(ScaledAttention() for _ in range(3))), (6, 8), id="sdpa-scale"),
        pytest.param(lambda: _layers(*(DropoutLayer(SHARED) for _ in range(3))), (6, 8), id="shared-dropout-p"),
        pytest.param(lambda: _layers(TanhGelu(), TanhGelu(), TanhGelu()), (5, 8), id="gelu-math-pi"),
        pytest.param(MoeWidth, (2, 3, 8), id="symint-product"),
    ],
)
def test_scalars_crossing_boundaries_compile_with_inductor(build, shape):
    model = build()
    x = torch.randn(*shape)
    whole_graph = attempts_to_compile(_compat.dynamo_backend("aot_eager"), model, (x,))
    backend = fxsplit.PiecewiseBackend(cache_dir=None)
    compiled, traces = counted(backend, model)
    with torch.no_grad():
        for rows in (shape[0], shape[0] + 2):
            other = torch.randn(rows, *shape[1:])
            torch.testing.assert_close(compiled(other), model(other))
    assert len(traces) <= whole_graph
    assert len(backend.reports) == 1
    assert backend.report.compiler_calls <= 3  # first, middle (shared by twins), last


def test_a_changed_specialised_float_is_seen():
    model = _layers(ScaledAttention(), ScaledAttention())
    compiled = compile_model(model, fxsplit.PiecewiseBackend(cache_dir=None))
    x = torch.randn(5, 8)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))
        for layer in model:
            layer.scaling = 0.5  # the constant in the pieces was guarded by Dynamo
        torch.testing.assert_close(compiled(x), model(x))


# compile_sizes


def specialised_runs(backend: fxsplit.PiecewiseBackend) -> dict[str, tuple[int, int]]:
    runners = {id(runner): runner for _, runner in backend._runners.values()}
    return {r.name: (r.specialised_calls, r.general_calls) for r in runners.values()}


@pytest.mark.parametrize("cache", [False, True])
def test_compile_sizes_with_inductor_on_a_layer_norm(cache, tmp_path):
    model = _layers(torch.nn.Linear(16, 16), torch.nn.LayerNorm(16))
    backend = fxsplit.PiecewiseBackend(compile_sizes=[8], cache_dir=tmp_path if cache else None)
    compiled = compile_model(model, backend)
    with torch.no_grad():
        for rows in (4, 8, 5, 8):
            x = torch.randn(rows, 16)
            torch.testing.assert_close(compiled(x), model(x))
    assert specialised_runs(backend) == {"submod_0": (2, 2)}
    assert [(s.piece, s.size) for s in backend.report.specialisations] == [("submod_0", 8)]
    assert "compiled for one size: submod_0 at 8" in backend.report.format()


def test_a_range_compiles_one_version_for_its_sizes_and_an_exact_size_wins():
    versions, ran = [], []

    def recording(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        rows = example_inputs[0].shape[0]  # the general version sees the first call's real input
        if isinstance(rows, torch.SymInt):
            bounds = rows.node.shape_env.var_to_range[rows.node.expr]
            rows = (int(bounds.lower), int(bounds.upper))
        versions.append("general" if not versions else rows)
        label = versions[-1]
        return lambda *args: (ran.append(label), gm(*args))[1]

    model = _layers(torch.nn.Linear(16, 16), torch.nn.LayerNorm(16))
    backend = fxsplit.PiecewiseBackend(compiler=recording, compile_sizes=[8, (6, 12)])
    compiled = compile_model(model, backend)
    with torch.no_grad():
        for rows in (4, 6, 8, 12, 13, 9):
            x = torch.randn(rows, 16)
            torch.testing.assert_close(compiled(x), model(x))
    assert sorted(map(str, versions)) == ["(6, 12)", "8", "general"]  # all in the first call, the range bounded
    assert ran == ["general", (6, 12), 8, (6, 12), "general", (6, 12)]
    assert [(s.piece, s.size) for s in backend.report.specialisations] == [("submod_0", 8), ("submod_0", (6, 12))]
    assert "submod_0 at 6-12" in backend.report.format()


def test_compile_sizes_keep_every_other_dimension_dynamic():
    model = tiny_decoder_logits()
    backend = fxsplit.PiecewiseBackend(compiler="aot_eager", compile_sizes=[3])
    compiled = compile_model(model, backend)
    with torch.no_grad():
        for shape in ((2, 8), (3, 5), (3, 9), (4, 6)):  # batch 3 at two sequence lengths
            ids = torch.randint(0, 128, shape)
            torch.testing.assert_close(compiled(ids), model(ids))
    assert set(specialised_runs(backend).values()) == {(2, 2)}
    assert len(backend.reports) == 1


def tiny_decoder_logits() -> Any:
    torch.manual_seed(0)
    return logits_of(hf_llama(2).eval())


# layouts at piece boundaries


def test_a_piece_output_in_another_layout_than_eager_is_repaired():
    def f(x):
        q = x.view(2, x.shape[1], 4, 8).transpose(1, 2)
        # Inductor returns cat([q, empty]) with q's strides, not eager's contiguous ones
        q = torch.cat([q * 2, q[..., 8:]], dim=-1)
        a = torch.nn.functional.scaled_dot_product_attention(q, q, q)  # passes the layout on
        return a.transpose(1, 2).reshape(x.shape) + 1

    backend = fxsplit.PiecewiseBackend(cache_dir=None)
    compiled = compile_model(f, backend)
    for length in (8, 5):
        x = torch.randn(2, length, 32)
        torch.testing.assert_close(compiled(x), f(x))
    runners = {id(runner): runner for _, runner in backend._runners.values()}
    assert [r.name for r in runners.values() if r.layouts.watched] == ["submod_2"]


def test_the_report_covers_every_graph_dynamo_compiled():
    model, _ = models.build(2)
    backend = fxsplit.PiecewiseBackend(splitting_ops=[ATTENTION], compiler="eager")
    compiled = compile_model(model, backend)
    with torch.no_grad():
        for tokens in (4, 1):  # Dynamo specialises a size of 1: a second graph
            inputs = models.example_inputs(model.config, tokens)
            torch.testing.assert_close(compiled(*inputs), model(*inputs))
    assert len(backend.reports) == 2
    report = backend.report
    assert report.graphs == 2 and report.pieces == 10 and report.compiler_calls == 6
    text = report.format()
    assert text.startswith("fxsplit: 2 graphs, 10 pieces (6 compute, 0 sharing a compiled twin), 6 eager")
    assert "0:submod_0" in text and "1:submod_4" in text


def test_the_last_report_and_what_a_string_backend_user_waited_for():
    import torch.nn.functional as F

    torch.compiler.reset()

    def attention(q):
        return F.scaled_dot_product_attention(q, q, q).relu() + 1

    q = torch.randn(1, 2, 4, 8)
    compiled = torch.compile(attention, backend="fxsplit", dynamic=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(q), attention(q))
    report = fxsplit.last_report()
    assert report is not None and (report.pieces, report.compute_pieces) == (2, 1)  # attention, then relu + 1
    assert report.trace_seconds is not None and report.trace_seconds > 0
    assert report.first_call_seconds is not None and "to the end of the first call" in report.format()


def test_dir_of_the_package_lists_its_public_names():
    assert dir(fxsplit) == sorted(fxsplit.__all__)
    assert "last_report" in dir(fxsplit) and "Any" not in dir(fxsplit)
