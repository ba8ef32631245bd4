"""fxsplit.compile traces each kind of a model's stacked layers once: the trace does
not grow with depth, layers that trace otherwise are traced anew, the result equals
eager on real architectures, and a trace that fails so falls back to the whole."""

from __future__ import annotations

import warnings

import pytest
import torch
from test_zoo import ZOO
from torch._dynamo.comptime import comptime
from zoo import assert_equal_to_eager, logits_fn, tiny_decoder

import fxsplit
from fxsplit.compilation.layers import stacked_layers, traced_once

traces: list[str] = []


class Layer(torch.nn.Module):
    def __init__(self, scaled: bool = False, refuse_marks: bool = False) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(16, 16)
        self.scaled, self.refuse_marks = scaled, refuse_marks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        comptime(lambda ctx: traces.append("layer"))  # runs each time Dynamo traces this line
        if self.refuse_marks and type(self).__dict__["forward"] is not UNMARKED:
            raise RuntimeError("this layer cannot be traced as a region")
        h = self.linear(x)
        h = torch.nn.functional.scaled_dot_product_attention(h[None], h[None], h[None])[0]
        return x + (2 * h if self.scaled else h)


UNMARKED = Layer.__dict__["forward"]


class Stack(torch.nn.Module):
    def __init__(self, layers: list[Layer]) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def compiled(model: torch.nn.Module, **options) -> tuple[fxsplit.CompiledModel, int]:
    traces.clear()
    torch.compiler.reset()
    x = torch.randn(5, 16)
    result = fxsplit.compile(model, (x,), compiler="eager", cache_dir=None, **options)
    y = torch.randn(9, 16)  # a size it was not compiled for
    torch.testing.assert_close(result(y), model(y))
    return result, len(traces)


def test_the_trace_does_not_grow_with_depth():
    shallow, shallow_traces = compiled(Stack([Layer() for _ in range(3)]))
    deep, deep_traces = compiled(Stack([Layer() for _ in range(12)]))
    _, whole = compiled(Stack([Layer() for _ in range(12)]), trace_layers_once=False)
    assert deep_traces == shallow_traces <= 2 and whole == 12
    assert deep.report.traced_once == "12 Layer"
    assert "traced once per kind of layer: 12 Layer" in deep.report.format()


def test_layers_that_trace_otherwise_are_traced_anew():
    model = Stack([Layer(scaled=i % 2 == 1) for i in range(8)])
    _, count = compiled(model)  # equal to eager: the scaled layers are not given the plain layers' trace
    assert 2 <= count <= 3


def test_a_trace_that_fails_so_falls_back_to_the_whole_model_and_says_why():
    model = Stack([Layer(refuse_marks=True) for _ in range(4)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, count = compiled(model)
    messages = [str(w.message) for w in caught if "could not trace each of 4 Layer once" in str(w.message)]
    assert len(messages) == 1 and "Error" in messages[0], [str(w.message) for w in caught]  # names the error
    assert result.report.traced_once == "" and count >= 4


def test_the_model_and_its_classes_are_left_as_they_were():
    model = Stack([Layer() for _ in range(3)])
    with traced_once(model) as marked:
        assert marked == "3 Layer" and Layer.__dict__["forward"] is not UNMARKED
    assert Layer.__dict__["forward"] is UNMARKED and all("forward" not in vars(layer) for layer in model.layers)

    class Inherited(Layer):
        pass

    with traced_once(Stack([Inherited(), Inherited()])):
        assert "forward" in vars(Inherited)
    assert "forward" not in vars(Inherited)  # the base's forward shows through again


def test_only_the_outermost_stacks_are_marked():
    class WithExperts(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.experts = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(3))

    model = torch.nn.Module()
    model.layers = torch.nn.ModuleList([WithExperts(), WithExperts(), torch.nn.Linear(4, 4)])
    assert stacked_layers(model) == list(model.layers)[:2]  # not the experts, not the one of its kind
    assert stacked_layers(torch.nn.Sequential(torch.nn.Linear(4, 4))) == []


class KeywordLayer(torch.nn.Module):
    """Called as HuggingFace calls a decoder layer: keywords, one of them a tuple."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(16, 16)

    def forward(self, x, *, pair=None, flag=True, table=None):
        comptime(lambda ctx: traces.append("layer"))
        h = self.linear(x) * pair[0] + pair[1] if flag else x
        return h + table["bias"] if table is not None else h


class KeywordStack(torch.nn.Module):
    def __init__(self, table: bool) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(KeywordLayer() for _ in range(6))
        self.table = table

    def forward(self, x):
        pair = (x.sin(), x.cos())
        table = {"bias": x.mean()} if self.table else None
        for layer in self.layers:
            x = layer(x, pair=pair, flag=True, table=table)
        return x


@pytest.mark.parametrize("table", [False, True], ids=["leaves", "a dict among them"])
def test_a_layer_called_with_keywords_and_tuples_is_matched_by_its_leaves(monkeypatch, table):
    """Dynamo matches a later layer's call against its trace by the call's inputs, and
    flattens keywords and tuples with a traced pytree flatten, once per layer, unless
    they arrive as flat positional leaves. A call holding anything else (a dict) is
    passed as it is, and is still traced once."""
    invoke = pytest.importorskip("torch._dynamo.variables.invoke_subgraph")
    pytree_flatten = getattr(invoke, "build_fingerprint_with_pytree", None)
    if pytree_flatten is None:
        pytest.skip("this torch matches a region's inputs otherwise")
    flattened: list[int] = []

    def counted(*args, **kwargs):
        flattened.append(1)
        return pytree_flatten(*args, **kwargs)

    monkeypatch.setattr(invoke, "build_fingerprint_with_pytree", counted)
    result, count = compiled(KeywordStack(table))
    assert count <= 2 and result.report.traced_once == "6 KeywordLayer"  # as a plain stack traces
    if table:
        assert len(flattened) >= 6  # every call: the dict is no leaf
    else:
        assert flattened == []


@pytest.mark.parametrize("name", list(ZOO))
def test_each_architecture_traced_once_equals_eager(name):
    pytest.importorskip("transformers")
    model = tiny_decoder(name, layers=4)
    ids = torch.randint(0, 128, (2, 8), generator=torch.Generator().manual_seed(1))
    torch.compiler.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback to the whole trace
        result = fxsplit.compile(model, (), {"input_ids": ids, "use_cache": False}, compiler="eager", cache_dir=None)
    assert result.report.traced_once.startswith("4 ")
    assert_equal_to_eager(lambda ids: result(input_ids=ids, use_cache=False).logits, logits_fn(model))


def kernelized_stack(layers: int) -> torch.nn.Module:
    """A stack whose layers hold a module that HuggingFace's ``kernels`` routes, as
    transformers 5.25 does a Llama's attention (``apply_rotary_pos_emb``)."""
    kernels = pytest.importorskip("kernels")

    @kernels.use_kernel_forward_from_hub("FxsplitTestScale")
    def scale(x: torch.Tensor, factor: float = 2.0) -> torch.Tensor:
        return x * factor

    @kernels.use_kernelized_func(scale)
    class Attention(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(16, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = scale(self.linear(x))
            return torch.nn.functional.scaled_dot_product_attention(h[None], h[None], h[None])[0]

    class RoutedLayer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = Attention()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            comptime(lambda ctx: traces.append("layer"))
            return x + self.attention(x)

    class RoutedStack(Stack):
        pass

    return RoutedStack([RoutedLayer() for _ in range(layers)])  # type: ignore[list-item]


def test_a_layer_whose_module_kernels_routes_is_traced_once():
    # kernels' wrapper sets a global on every call: a side effect, after which Dynamo traces every layer anew
    model = kernelized_stack(6)
    attention = type(model.layers[0].attention)
    routed = attention.__dict__["forward"]
    result, count = compiled(model)
    assert count <= 2 and result.report.traced_once == "6 RoutedLayer"
    assert attention.__dict__["forward"] is routed  # put back


def test_a_layer_with_a_kernel_installed_keeps_the_routing():
    model = kernelized_stack(4)
    (function,) = model.layers[1].attention._kernel_funcs.values()
    function.forward = type(function).forward.__get__(function)  # where kernelize installs a kernel
    _, count = compiled(model)
    assert count == 4  # routed, so traced per layer, and still equal to eager
