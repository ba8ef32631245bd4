"""Which nodes match which splitting-op specs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.fx import Graph, Node

from fxsplit.split.ops import matcher

aten = torch.ops.aten


def call(target) -> Node:
    graph = Graph()
    x = graph.placeholder("x")
    return graph.call_function(target, (x, x))


@pytest.mark.parametrize(
    "spec, target, expected",
    [
        ("aten::add", aten.add.Tensor, True),
        ("aten::add", aten.add, True),
        ("aten::add.Tensor", aten.add.Tensor, True),
        ("aten::add.Tensor", aten.add.Scalar, False),
        ("aten::add.Tensor", aten.add, False),  # a packet may dispatch to another overload
        ("aten::relu.default", aten.relu.default, True),
        ("aten::relu", aten.relu.default, True),
        (aten.add.Tensor, aten.add.Tensor, True),
        (aten.add.Tensor, aten.add.Scalar, False),
        (aten.add, aten.add.Scalar, True),
        (aten.add, aten.sub.Tensor, False),
        ("fxsplit_test::split_here", torch.ops.fxsplit_test.split_here, True),
        ("fxsplit_test::split_here.default", torch.ops.fxsplit_test.split_here, True),  # its only overload
        (torch.ops.fxsplit_test.split_here.default, torch.ops.fxsplit_test.split_here, True),
        (F.scaled_dot_product_attention, torch._C._nn.scaled_dot_product_attention, True),
        (F.silu, torch._C._nn.silu, True),
        (F.silu, torch.relu, False),
        (torch.relu, torch.relu, True),
        # an aten op by name also matches the torch function Dynamo records for a call of it
        ("aten::scaled_dot_product_attention", torch._C._nn.scaled_dot_product_attention, True),
        ("aten::scaled_dot_product_attention.default", torch._C._nn.scaled_dot_product_attention, True),
        (aten.silu, torch._C._nn.silu, True),
        ("aten::relu", torch.relu, True),
        ("aten::add.Tensor", torch.add, False),  # torch.add may dispatch to another overload
        ("aten::relu", torch.sigmoid, False),
    ],
)
def test_specs_match_the_targets_graphs_record(spec, target, expected):
    assert matcher([spec])(call(target)) is expected


def test_predicates_see_every_node_and_must_answer_bool():
    graph = Graph()
    x = graph.placeholder("x")
    node = graph.call_method("relu", (x,))
    assert matcher([lambda n: n.op == "call_method"])(node)
    assert not matcher([lambda n: False])(node)
    with pytest.raises(TypeError, match="returned str .* not bool"):
        matcher([lambda n: "yes"])(node)


def test_methods_and_modules_do_not_match_ops():
    graph = Graph()
    x = graph.placeholder("x")
    assert not matcher(["aten::relu"])(graph.call_method("relu", (x,)))


def test_bad_specs_are_clear_errors():
    with pytest.raises(ValueError, match="'aten::no_such_op' is not a registered op"):
        matcher(["aten::no_such_op"])
    with pytest.raises(ValueError, match="'nosuchns::op' is not a registered op"):
        matcher(["nosuchns::op"])
    with pytest.raises(ValueError, match="'aten::add.NoSuchOverload' is not a registered op"):
        matcher(["aten::add.NoSuchOverload"])
    with pytest.raises(ValueError, match="not an op name"):
        matcher(["add"])
    with pytest.raises(TypeError, match="has type int"):
        matcher([3])  # type: ignore[list-item]


def test_a_single_spec_need_not_be_in_a_list():
    assert matcher("aten::add")(call(aten.add.Tensor))
    assert matcher([]).empty and not matcher(["aten::add"]).empty
