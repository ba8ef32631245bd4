"""fxsplit.split_module is a drop-in for torch's: same modules, same code, same results."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
from conftest import capture, captured, graph_state
from torch.fx import GraphModule, Node
from torch.fx.passes.split_module import split_module as torch_split_module

import fxsplit
from fxsplit.split.ops import matcher
from fxsplit.split.splitters import _assign_pieces


class WithAttributes(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.param = torch.nn.Parameter(torch.rand(3, 4))
        self.linear = torch.nn.Linear(4, 5)
        self.block = torch.nn.Sequential(torch.nn.Linear(5, 5), torch.nn.ReLU())

    def forward(self, x, y):
        z = self.linear(x + self.param).clamp(min=0.0, max=1.0)
        w = self.linear(y).clamp(min=0.0, max=1.0)
        return self.block(z + w), z


def every_third(gm: GraphModule) -> Callable[[Node], int]:
    position = {n: i for i, n in enumerate(gm.graph.nodes)}
    return lambda node: position[node] // 3


def at_attention(gm: GraphModule) -> Callable[[Node], int]:
    return _assign_pieces(gm.graph, matcher(["fxsplit_demo::attention"]))[0].__getitem__


def assert_drop_in(gm: GraphModule, callback: Callable[[GraphModule], Callable[[Node], int]], **options) -> None:
    theirs_map: dict[str, str] = {}
    ours_map: dict[str, str] = {}
    theirs = torch_split_module(gm, None, callback(gm), qualname_map=theirs_map, **options)
    ours = fxsplit.split_module(gm, None, callback(gm), qualname_map=ours_map, **options)
    assert ours.code == theirs.code
    assert [name for name, _ in ours.named_children()] == [name for name, _ in theirs.named_children()]
    for name, module in theirs.named_children():
        if isinstance(module, GraphModule):
            assert getattr(ours, name).code == module.code, name
    assert dict(ours.named_parameters()).keys() == dict(theirs.named_parameters()).keys()
    assert ours_map == theirs_map
    assert ours.meta["partition_names"] == theirs.meta["partition_names"]


OPTIONS = [
    dict(keep_original_order=order, keep_original_node_name=names, keep_original_input_name=inputs, tuple_return=tup)
    for order, names, inputs, tup in itertools.product([False, True], repeat=4)
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(k for k, v in o.items() if v) or "defaults")
@pytest.mark.parametrize("affix", [None, "pp"])
def test_same_code_as_torch_on_a_traced_module(options, affix):
    assert_drop_in(torch.fx.symbolic_trace(WithAttributes()), every_third, partition_affix=affix, **options)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(k for k, v in o.items() if v) or "defaults")
def test_same_code_as_torch_on_a_dynamo_graph(options):
    gm, _ = captured(2)
    assert_drop_in(gm, at_attention, **options)


def test_same_results_and_input_untouched():
    model = WithAttributes()
    gm = torch.fx.symbolic_trace(model)
    before = graph_state(gm)
    split = fxsplit.split_module(gm, model, every_third(gm))
    x, y = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(split(x, y), model(x, y), rtol=0, atol=0)
    assert graph_state(gm) == before


def test_callback_is_called_once_per_node():
    gm = torch.fx.symbolic_trace(WithAttributes())
    calls: list[Node] = []
    assign = every_third(gm)

    def callback(node: Node) -> int:
        calls.append(node)
        return assign(node)

    fxsplit.split_module(gm, None, callback)
    computing = [n for n in gm.graph.nodes if n.op not in ("placeholder", "get_attr", "output")]
    assert calls == computing


def regions(x):
    y = x * 2
    with torch.no_grad():
        z = y.sin()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            w = z @ z.T
            v = w.relu()
        u = v.float() + 1
    return u.sum() + y.sum()


@pytest.mark.parametrize("keep_original_order", [False, True])
def test_grad_and_autocast_regions_are_reentered_like_torch(keep_original_order):
    gm, args = capture(regions, torch.randn(4, 4, requires_grad=True))
    targets = {n.target for n in gm.graph.nodes}
    assert torch._C._set_grad_enabled in targets and torch.amp._enter_autocast in targets

    def one_node_per_partition(gm: GraphModule) -> Callable[[Node], int]:
        position = {n: i for i, n in enumerate(gm.graph.nodes)}
        return position.__getitem__

    assert_drop_in(gm, one_node_per_partition, keep_original_order=keep_original_order)
    split = fxsplit.split_module(gm, None, one_node_per_partition(gm), keep_original_order=keep_original_order)
    torch.testing.assert_close(split(*args), gm(*args), rtol=0, atol=0)


def test_a_cycle_is_a_clear_error():
    def f(x):
        a = x + 1
        b = a * 2
        return b - a

    gm = torch.fx.symbolic_trace(f)
    partition = {"add": 0, "mul": 1, "sub": 0}
    with pytest.raises(RuntimeError, match="cycle exists between partitions!"):
        torch_split_module(gm, None, lambda n: partition[n.name])
    with pytest.raises(fxsplit.PartitionCycleError) as error:
        fxsplit.split_module(gm, None, lambda n: partition[n.name])
    message = str(error.value)
    assert "partition '0' uses 'mul' from partition '1'" in message
    assert "partition '1' uses 'add' from partition '0'" in message
    assert "split_callback" in message
    assert isinstance(error.value, RuntimeError)


def test_non_graph_module_is_a_type_error():
    with pytest.raises(TypeError, match="takes a torch.fx.GraphModule"):
        fxsplit.split_module(WithAttributes(), None, lambda n: 0)  # type: ignore[arg-type]


def test_a_region_whose_nodes_go_back_to_an_earlier_partition_is_refused_like_torch():
    gm, _ = capture(regions, torch.randn(4, 4, requires_grad=True))
    nodes = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output")]
    # inside the no_grad region, partitions go 0 -> 1 -> 0: torch refuses that
    partition = {n: (1 if i == len(nodes) // 2 else 0) for i, n in enumerate(nodes)}
    with pytest.raises(AssertionError, match="monotonically increasing"):
        torch_split_module(gm, None, partition.__getitem__)
    with pytest.raises(ValueError, match="regions need partitions in increasing order"):
        fxsplit.split_module(gm, None, partition.__getitem__)
