"""The stitching code of a compiled split model: FX's code for the stitching graph,
calling each piece's runnable without nn.Module.__call__."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import SPLIT_HERE

import fxsplit
from fxsplit.runtime.stitching import install_direct_stitching


def attention_model(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
    q = (x @ w).unsqueeze(0).unsqueeze(0)
    q.cos()  # a value nobody reads
    k = q.sin()  # a piece output that only the next compute piece reads
    a = F.scaled_dot_product_attention(q, k, q).squeeze(0).squeeze(0)
    return a + x, x, w  # placeholders returned as they are


def split_of(model: Any) -> torch.fx.GraphModule:
    split, _ = fxsplit.split_graph(torch.fx.symbolic_trace(model), [F.scaled_dot_product_attention])
    return split


def modules_called(function: Any, *args: Any) -> int:
    """How many modules ``function(*args)`` calls through nn.Module.__call__."""
    called: list[torch.nn.Module] = []
    handle = torch.nn.modules.module.register_module_forward_pre_hook(lambda module, _: called.append(module))
    try:
        function(*args)
    finally:
        handle.remove()
    return len(called)


def test_direct_stitching_computes_what_fx_stitching_does_with_unused_outputs_and_placeholders():
    x, w = torch.randn(6, 8), torch.randn(8, 8)
    split = split_of(attention_model)
    expected = split(x, w)
    code = split.code
    install_direct_stitching(split)
    got = split(x, w)
    assert len(got) == len(expected) == 3 and got[1] is x and got[2] is w
    torch.testing.assert_close(got[0], expected[0])
    assert split.code == code  # what the module shows is FX's code, as before


def test_pieces_run_without_nn_module_call_except_those_with_hooks():
    x, w = torch.randn(6, 8), torch.randn(8, 8)
    split = split_of(attention_model)
    pieces = list(split.children())
    split(x, w)  # each piece's code is generated on its first call
    assert modules_called(split, x, w) == 1 + len(pieces)
    seen: list[int] = []
    pieces[0].register_forward_pre_hook(lambda module, args: seen.append(len(args)))
    install_direct_stitching(split)
    assert modules_called(split, x, w) == 2  # the split module, and the piece with a hook of its own
    assert seen == [2]


def test_a_recompile_restores_fx_stitching():
    x, w = torch.randn(6, 8), torch.randn(8, 8)
    split = split_of(attention_model)
    install_direct_stitching(split)
    split.recompile()
    split(x, w)
    assert modules_called(split, x, w) == 1 + len(list(split.children()))
    torch.testing.assert_close(split(x, w)[0], attention_model(x, w)[0])


def test_the_backend_calls_splitting_pieces_without_nn_module_call():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)).eval()

    def forward(x: torch.Tensor) -> torch.Tensor:
        q = model(x).view(1, 1, *x.shape)
        return model(F.scaled_dot_product_attention(q, q, q).view(x.shape))

    x = torch.randn(5, 8)
    gm, inputs = fxsplit.capture_graph(forward, (x,))
    backend = fxsplit.PiecewiseBackend(compiler="eager", cache_dir=None)  # compute pieces run as modules
    with torch.no_grad():
        split = backend(gm, inputs)
        torch.testing.assert_close(split(*inputs), gm(*inputs))
        assert backend.report.pieces == 3
        assert modules_called(split, *inputs) == 1 + backend.report.compute_pieces


def split_here_model() -> torch.nn.Module:
    """Two compute pieces around the test's splitting op; the last one makes the output."""

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.ops.fxsplit_test.split_here(self.a(x).relu())).sin()

    return Model().eval()


def entries_of(backend: fxsplit.PiecewiseBackend) -> list[str]:
    runners = {id(runner): runner for _, runner in backend._runners.values()}
    return sorted(entry.__qualname__ for r in runners.values() for entry in r._entries.values())


@pytest.mark.parametrize("cache", [False, True])
def test_compiled_pieces_run_inductors_code_directly_from_their_second_call(cache, tmp_path):
    model = split_here_model()
    # with a cache, the second backend loads what the first compiled and stored
    for compiled_by_backend in (True, False) if cache else (True,):
        torch.compiler.reset()
        backend = fxsplit.PiecewiseBackend([SPLIT_HERE], cache_dir=tmp_path if cache else None)
        compiled = torch.compile(model, backend=backend, dynamic=True)
        with torch.no_grad():
            for rows in (5, 5, 7):
                x = torch.randn(rows, 8)
                torch.testing.assert_close(compiled(x), model(x))
        # both pieces are entered at Inductor's code; the last, whose output the model
        # returns, marks that output's dynamic dims as torch's wrapper does
        assert entries_of(backend) == ["_marking.<locals>.call_and_mark", "_without_grad.<locals>.call_inductor"]
        assert backend.report.compiler_calls == (2 if compiled_by_backend else 0)


def test_the_models_output_tells_a_later_graph_which_dims_are_dynamic():
    model = split_here_model()
    backend = fxsplit.PiecewiseBackend([SPLIT_HERE], cache_dir=None)
    later_graphs: list[torch.fx.GraphModule] = []

    def later_backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        later_graphs.append(gm)
        return gm.forward

    torch.compiler.reset()
    compiled = torch.compile(model, backend=backend, dynamic=True)
    later = torch.compile(lambda y: y * 2, backend=later_backend)
    with torch.no_grad():
        compiled(torch.randn(5, 8))  # pieces are entered directly from their second call
        for rows in (5, 7):
            later(compiled(torch.randn(rows, 8)))
    # as after whole-graph compilation: the rows of the output are dynamic from the first graph on
    assert len(later_graphs) == 1
