"""Laziness: no code generated during a split, at most once per piece afterwards,
identical pieces sharing code, and every way of asking for code still works."""

from __future__ import annotations

import copy
import pickle
import threading
from collections import Counter

import pytest
import torch
from conftest import SPLIT_HERE, assert_same, captured
from torch.fx import Graph, GraphModule

import fxsplit
from fxsplit.split.lazy import is_materialized
from fxsplit.tools import models

ATTENTION = models.ATTENTION_OP_NAME


@pytest.fixture
def deep() -> tuple[GraphModule, list]:
    return captured(3)


@pytest.fixture
def codegen(monkeypatch: pytest.MonkeyPatch, deep) -> Counter[int]:
    """Counts Python code generation per graph (by id), however it is reached; the
    graph under test is captured first, so Dynamo's own codegen is not counted."""
    counts: Counter[int] = Counter()
    python_code = Graph.python_code

    def counting(self: Graph, *args, **kwargs):
        counts[id(self)] += 1
        return python_code(self, *args, **kwargs)

    monkeypatch.setattr(Graph, "python_code", counting)
    return counts


def graph_id(module: GraphModule) -> int:
    return id(module.graph)


def test_a_split_generates_no_code(codegen, deep):
    gm, _ = deep
    split, _ = fxsplit.split_graph(gm, [ATTENTION])
    fxsplit.split_module(gm, None, lambda node: 0)
    assert sum(codegen.values()) == 0
    assert not is_materialized(split)
    assert not any(is_materialized(module) for module in split.children())


def test_first_call_generates_once_per_distinct_piece(codegen, deep):
    gm, args = deep
    split, items = fxsplit.split_graph(gm, [ATTENTION])
    split(*args)
    # the stitching module, and pieces: first compute, middle compute, last compute,
    # attention (all attention pieces alike)
    assert sum(codegen.values()) == 5
    assert sum(is_materialized(item.graph) for item in items) == 4
    split(*args)
    assert sum(codegen.values()) == 5


def test_each_piece_generates_its_code_at_most_once(codegen, deep):
    gm, args = deep
    split, items = fxsplit.split_graph(gm, [ATTENTION])
    split(*args)
    for item in items:
        for _ in range(2):
            item.graph.code  # noqa: B018
            str(item.graph)
            pickle.dumps(item.graph)
        assert codegen[graph_id(item.graph)] == 1, item.submod_name
    assert max(codegen.values()) == 1


def test_code_of_a_piece_shows_its_own_names():
    gm, _ = captured(3)
    split, items = fxsplit.split_graph(gm, [ATTENTION])
    middle = [item.graph for item in items if not item.is_splitting_graph][1:3]
    names = [{n.name for n in m.graph.nodes if n.op == "placeholder" and "parameters" in n.name} for m in middle]
    assert names[0] and names[0].isdisjoint(names[1])  # each layer's weights keep the names Dynamo gave them
    for module, own in zip(middle, names):
        assert all(name in module.code for name in own)


def test_concurrent_first_calls_generate_once_and_agree(codegen, deep):
    gm, args = deep
    split, _ = fxsplit.split_graph(gm, [ATTENTION])
    expected = gm(*args)
    barrier = threading.Barrier(8)
    results: list[torch.Tensor] = []
    errors: list[BaseException] = []

    def first_call() -> None:
        try:
            barrier.wait()
            results.append(split(*args))
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=first_call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 8
    for result in results:
        torch.testing.assert_close(result, expected, rtol=0, atol=0)
    assert sum(codegen.values()) == 5


def test_pickle_round_trip_gives_an_equivalent_module():
    gm, args = captured(1)
    split, _ = fxsplit.split_graph(gm, [ATTENTION])
    restored = pickle.loads(pickle.dumps(split))
    assert isinstance(restored, GraphModule)
    assert restored.code == split.code
    assert_same(restored, gm, args)


def test_deepcopy_is_independent_and_equivalent():
    gm, args = captured(1)
    split, items = fxsplit.split_graph(gm, [ATTENTION])
    clone = copy.deepcopy(split)
    assert_same(clone, gm, args)
    piece = clone.submod_0
    assert piece.graph is not items[0].graph.graph


def test_instance_dict_holds_only_what_a_graph_module_has():
    """torch copies and hashes a GraphModule's __dict__ (deepcopy, AOTAutograd's cache
    key); fxsplit's bookkeeping must not be in it."""
    gm, args = captured(1)
    split, items = fxsplit.split_graph(gm, [ATTENTION])
    split(*args)
    for module in (split, *(item.graph for item in items)):
        plain = GraphModule(module, module.graph)
        assert set(vars(module)) - {"_code", "_lineno_map", "_prologue_start"} <= set(vars(plain)), module
        pickle.dumps({k: v for k, v in vars(module).items() if k != "_graph"})  # as torch's reducers do


def test_editing_a_piece_then_recompiling_changes_only_that_piece():
    def f(x):
        y = torch.ops.fxsplit_test.split_here(x.relu())
        z = torch.ops.fxsplit_test.split_here(y.relu())
        return z.relu()

    gm = torch.fx.symbolic_trace(f)
    split, items = fxsplit.split_graph(gm, [SPLIT_HERE])
    x = torch.randn(5)
    split(x)  # the three relu pieces now share one forward
    first = items[0].graph
    edited = [n for n in first.graph.nodes if n.op == "call_method" and n.target == "relu"]
    assert edited
    for node in edited:
        node.target = "neg"
    first.recompile()
    torch.testing.assert_close(split(x), ((-x * 2).relu() * 2).relu(), rtol=0, atol=0)
    assert "neg" in first.code
    assert "relu" in items[2].graph.code and "relu" in items[4].graph.code


def test_lazy_pieces_are_graph_modules_torch_recognises():
    gm, args = captured(1)
    split, items = fxsplit.split_graph(gm, [ATTENTION])
    piece = items[0].graph
    assert isinstance(piece, GraphModule) and isinstance(piece, fxsplit.LazyGraphModule)
    from torch.fx._lazy_graph_module import _LazyGraphModule

    assert isinstance(piece, _LazyGraphModule)
    _LazyGraphModule.force_recompile(piece)
    assert "def forward" in piece.code
    assert "submod_0" in str(split)


def test_print_readable_and_graph_access_build_on_demand():
    gm, _ = captured(1)
    split, items = fxsplit.split_graph(gm, [ATTENTION])
    piece = items[1].graph
    assert not is_materialized(piece)
    assert "fxsplit_demo.attention" in piece.print_readable(print_output=False)
    assert is_materialized(piece)
