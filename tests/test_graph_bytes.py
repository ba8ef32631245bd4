"""A compile job's graph arrives in the worker node for node, as Dynamo recorded it."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import torch
from conftest import capture

from fxsplit import _compat
from fxsplit.compilation.graph_bytes import graph_from_bytes, graph_to_bytes


def masked(x: torch.Tensor) -> torch.Tensor:
    # as HuggingFace's mask code does: an index tensor that depends on no input
    batch = torch.arange(1)[:, None]
    return torch.ops.aten.add.Tensor(x[None][batch, :1], torch.ops.aten.mul(x, 2))


def nodes(gm: torch.fx.GraphModule) -> list[tuple]:
    return [(n.op, n.name, n.target, str(n.args), str(n.kwargs)) for n in gm.graph.nodes]


def test_the_graph_arrives_node_for_node_where_a_pickle_would_fold_constants():
    gm, args = capture(masked, torch.randn(5, 3))
    assert any(n.target is torch.arange for n in gm.graph.nodes)
    again = graph_from_bytes(graph_to_bytes(gm))
    assert nodes(again) == nodes(gm)
    torch.testing.assert_close(again(*args), gm(*args), rtol=0, atol=0)
    # what a GraphModule's own pickle gives: its code traced again, the index made a tensor attribute
    pickled = pickle.loads(pickle.dumps(gm))
    assert not any(n.target is torch.arange for n in pickled.graph.nodes)
    assert pickled.graph.find_nodes(op="get_attr")


def test_attributes_that_nodes_read_travel_with_the_graph():
    module = torch.nn.Sequential(torch.nn.Linear(3, 2))
    gm = torch.fx.symbolic_trace(module)
    gm.register_buffer("offset", torch.ones(2))
    out = next(iter(gm.graph.find_nodes(op="output")))
    with gm.graph.inserting_before(out):
        offset = gm.graph.get_attr("offset")
        total = gm.graph.call_function(torch.add, (out.args[0], offset))
    out.args = (total,)
    gm.recompile()
    again = graph_from_bytes(graph_to_bytes(gm))
    x = torch.randn(4, 3)
    assert nodes(again) == nodes(gm)
    torch.testing.assert_close(again(x), gm(x), rtol=0, atol=0)


def test_a_custom_op_arrives_with_the_module_that_registers_it():
    done = subprocess.run(
        [sys.executable, "-c", UNPICKLE_ELSEWHERE, graph_to_bytes(_custom_op_graph()).hex()],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True", "fxsplit_test::split_here"]  # name() leaves out .default


def test_an_op_that_no_module_registers_is_named_with_the_fix(monkeypatch):
    monkeypatch.setattr(_compat, "op_module", lambda name: None)  # registered in a way torch cannot trace back
    data = graph_to_bytes(_custom_op_graph()).hex()
    done = subprocess.run([sys.executable, "-c", UNPICKLE_ELSEWHERE, data], capture_output=True, text=True, timeout=300)
    assert "the op fxsplit_test::split_here.default is not registered in this process; import the module" in done.stderr


def test_the_module_of_a_custom_op_from_torch_or_none(monkeypatch):
    assert _compat.op_module("fxsplit_test::split_here") == "conftest"
    assert _compat.op_module("aten::add") is None
    lookup = _compat.lookup.private
    monkeypatch.setattr(_compat.lookup, "private", lambda m, n: None if n == "OPDEFS" else lookup(m, n))
    assert _compat.op_module("fxsplit_test::split_here") is None


def _custom_op_graph() -> torch.fx.GraphModule:
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    graph.output(graph.call_function(torch.ops.fxsplit_test.split_here.default, (x,)))
    return torch.fx.GraphModule({}, graph)


# a fresh process that has not imported the test's conftest, which registers the op
UNPICKLE_ELSEWHERE = (
    "import sys, torch\n"
    "from fxsplit.compilation.graph_bytes import graph_from_bytes\n"
    "gm = graph_from_bytes(bytes.fromhex(sys.argv[1]))\n"
    "x = torch.randn(3)\n"
    "print(torch.equal(gm(x), x * 2), [n for n in gm.graph.nodes if n.op == 'call_function'][0].target.name())\n"
)
