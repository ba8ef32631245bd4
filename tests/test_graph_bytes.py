"""A compile job's graph arrives in the worker node for node, as Dynamo recorded it."""

from __future__ import annotations

import pickle

import torch
from conftest import capture

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
