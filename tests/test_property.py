"""Property tests on random DAGs: any split computes what the graph computes, leaves
the graph untouched, and the drop-in agrees with torch (code, results and cycles)."""

from __future__ import annotations

import operator
from typing import Any

import torch
from conftest import graph_state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.fx import Graph, GraphModule
from torch.fx.passes.split_module import split_module as torch_split_module

import fxsplit

SPLITTING = [torch.ops.fxsplit_test.split_here, torch.ops.fxsplit_test.pair]
OPS = ["add", "mul_const", "relu", "sin", "neg_method", "add_alpha", "split_here", "pair", "sort"]
PROPERTY_SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def recipes(draw: Any) -> tuple[int, list[tuple[str, list[int]]], list[int]]:
    """(inputs, [(op, operand picks)], output picks): picks index earlier values."""
    inputs = draw(st.integers(1, 3))
    steps = draw(
        st.lists(
            st.tuples(st.sampled_from(OPS), st.lists(st.integers(0, 10**6), min_size=2, max_size=2)),
            min_size=1,
            max_size=14,
        )
    )
    outputs = draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=3))
    return inputs, steps, outputs


def build(recipe: tuple[int, list[tuple[str, list[int]]], list[int]]) -> GraphModule:
    inputs, steps, outputs = recipe
    graph = Graph()
    values = [graph.placeholder(f"x{i}") for i in range(inputs)]

    def pick(i: int) -> Any:
        return values[i % len(values)]

    for op, (a, b) in steps:
        if op == "add":
            values.append(graph.call_function(torch.add, (pick(a), pick(b))))
        elif op == "mul_const":
            values.append(graph.call_function(operator.mul, (pick(a), -0.5)))
        elif op == "relu":
            values.append(graph.call_function(torch.relu, (pick(a),)))
        elif op == "sin":
            values.append(graph.call_function(torch.sin, (pick(a),)))
        elif op == "neg_method":
            values.append(graph.call_method("neg", (pick(a),)))
        elif op == "add_alpha":
            values.append(graph.call_function(torch.add, (pick(a), pick(b)), {"alpha": 3}))
        elif op == "split_here":
            values.append(graph.call_function(torch.ops.fxsplit_test.split_here, (pick(a),)))
        elif op in ("pair", "sort"):
            target = torch.ops.fxsplit_test.pair if op == "pair" else torch.sort
            result = graph.call_function(target, (pick(a),))
            values.append(graph.call_function(operator.getitem, (result, 0)))
            if b % 2:
                second = graph.call_function(operator.getitem, (result, 1))
                values.append(graph.call_method("float", (second,)) if op == "sort" else second)
    graph.output(tuple(pick(i) for i in outputs))
    return GraphModule(torch.nn.Module(), graph)


def example(gm: GraphModule) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(4, generator=generator) for n in gm.graph.nodes if n.op == "placeholder"]


@PROPERTY_SETTINGS
@given(recipes())
def test_split_graph_equals_unsplit_graph_and_leaves_it_unchanged(recipe):
    gm = build(recipe)
    args = example(gm)
    before = graph_state(gm)
    split, items = fxsplit.split_graph(gm, SPLITTING)
    torch.testing.assert_close(split(*args), gm(*args), rtol=0, atol=0)
    assert graph_state(gm) == before
    assert [item.graph_id for item in items] == list(range(len(items)))
    for previous, item in zip(items, items[1:]):
        assert not (previous.is_splitting_graph and item.is_splitting_graph)


@PROPERTY_SETTINGS
@given(recipes(), st.lists(st.integers(0, 4), min_size=40, max_size=40), st.booleans(), st.booleans())
def test_drop_in_agrees_with_torch(recipe, partitions, keep_original_order, keep_original_node_name):
    gm = build(recipe)
    computing = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output")]
    partition_of = {n: partitions[i] for i, n in enumerate(computing)}
    options = dict(keep_original_order=keep_original_order, keep_original_node_name=keep_original_node_name)
    before = graph_state(gm)
    try:
        theirs = torch_split_module(gm, None, partition_of.__getitem__, **options)
    except (RuntimeError, KeyError) as error:
        # A cycle, or (torch crashes with KeyError here) keep_original_order with an
        # original order that uses values before they exist: fxsplit must say so.
        assert "cycle" in str(error) or (keep_original_order and isinstance(error, KeyError))
        try:
            fxsplit.split_module(gm, None, partition_of.__getitem__, **options)
        except fxsplit.PartitionCycleError:
            return
        raise AssertionError(f"torch failed ({error!r}) where fxsplit did not") from None
    finally:
        for node in gm.graph.nodes:  # torch's split tags the input graph; undo that
            node.__dict__.pop("_fx_partition", None)
    ours = fxsplit.split_module(gm, None, partition_of.__getitem__, **options)
    assert graph_state(gm) == before
    assert ours.code == theirs.code
    for name, module in theirs.named_children():
        assert getattr(ours, name).code == module.code
    args = example(gm)
    torch.testing.assert_close(ours(*args), gm(*args), rtol=0, atol=0)
