"""split_graph: outputs equal to the unsplit graph, the structure of the split, errors."""

from __future__ import annotations

import copy
import logging
import operator

import pytest
import torch
import torch.nn.functional as F
from conftest import SPLIT_HERE, assert_same, capture, captured, graph_state

import fxsplit
from fxsplit.tools import models

ATTENTION = models.ATTENTION_OP_NAME


def kinds(items: list[fxsplit.SplitItem]) -> list[bool]:
    return [item.is_splitting_graph for item in items]


def test_synthetic_model_splits_at_every_attention(synthetic):
    gm, args = synthetic
    layers = sum(1 for n in gm.graph.nodes if "attention" in str(n.target))
    split, items = fxsplit.split_graph(gm, [ATTENTION])
    assert kinds(items) == [False, True] * layers + [False]
    assert [item.graph_id for item in items] == list(range(len(items)))
    assert [item.submod_name for item in items] == [f"submod_{i}" for i in range(len(items))]
    assert all(item.graph is getattr(split, item.submod_name) for item in items)
    assert_same(split, gm, args)


@pytest.mark.parametrize("tokens", [1, 5, 33])
def test_split_runs_at_other_sizes_than_captured(tokens):
    gm, captured_args = captured(2)
    input_ids, positions = models.example_inputs(models.SyntheticConfig(layers=2), tokens)
    by_name = {"L_input_ids_": input_ids, "L_positions_": positions}
    args = []
    for node, arg in zip((n for n in gm.graph.nodes if n.op == "placeholder"), captured_args):
        args.append(tokens if isinstance(arg, int) else by_name.get(str(node.target), arg))
    split, _ = fxsplit.split_graph(gm, [ATTENTION])
    assert_same(split, gm, args)


def test_the_input_graph_is_left_exactly_as_it_was(synthetic):
    gm, args = synthetic
    before = graph_state(gm)
    split, items = fxsplit.split_graph(gm, [ATTENTION])
    split(*args)
    for item in items:
        item.graph.code  # noqa: B018 - force every lazy build
    assert graph_state(gm) == before


def test_pieces_are_immune_to_later_edits_of_the_input():
    def f(x):
        return torch.ops.fxsplit_test.split_here(x + 1) * 3

    gm, args = capture(f, torch.randn(4, 3))
    expected = gm(*args)
    split, _ = fxsplit.split_graph(gm, [SPLIT_HERE])
    for node in gm.graph.nodes:  # rewrite every constant 3 into 5, after the split
        if node.op == "call_function" and 3 in node.args:
            node.args = tuple(5 if a == 3 else a for a in node.args)
    gm.recompile()
    torch.testing.assert_close(split(*args), expected, rtol=0, atol=0)


def test_meta_is_kept_on_copied_nodes_and_placeholders(synthetic):
    gm, _ = synthetic
    _, items = fxsplit.split_graph(gm, [ATTENTION])
    # nodes are named within their piece: the original is the node whose fake value it carries
    source = {id(n.meta["example_value"]): n for n in gm.graph.nodes if "example_value" in n.meta}
    for item in items:
        for node in item.graph.graph.nodes:
            if node.op == "output":
                continue
            original = source[id(node.meta["example_value"])]
            assert node.meta.keys() == original.meta.keys()
            for key in ("example_value", "stack_trace", "nn_module_stack"):
                assert node.meta.get(key) is original.meta.get(key)
            assert node.meta is not original.meta


def test_every_piece_receives_the_symints_its_inputs_use(synthetic):
    gm, _ = synthetic
    _, items = fxsplit.split_graph(gm, [ATTENTION])
    for item in items:
        bound = set()
        placeholders = [n for n in item.graph.graph.nodes if n.op == "placeholder"]
        for node in placeholders:
            value = node.meta["example_value"]
            if isinstance(value, torch.SymInt):
                bound |= value.node.expr.free_symbols
        for node in placeholders:
            value = node.meta["example_value"]
            if isinstance(value, torch.Tensor):
                used = set().union(*(d.node.expr.free_symbols for d in value.shape if isinstance(d, torch.SymInt)))
                assert used <= bound, (item.submod_name, node.name)


def test_full_size_never_crosses_a_boundary_as_torch_size():
    def f(x):
        shape = x.size()
        y = torch.ops.fxsplit_test.split_here(x)
        return y.reshape(shape).sum(0), y.new_zeros(shape)

    gm, args = capture(f, torch.randn(6, 4))
    assert any(n.op == "call_method" and n.target == "size" for n in gm.graph.nodes)
    split, items = fxsplit.split_graph(gm, [SPLIT_HERE])
    for item in items:
        for node in item.graph.graph.nodes:
            if node.op == "placeholder":
                assert not isinstance(node.meta.get("example_value"), torch.Size), node
    last = items[-1].graph.graph
    assert any(n.target is torch.ops.aten.sym_size.int for n in items[0].graph.graph.nodes)
    assert not any(n.op == "call_method" and n.target == "size" for n in last.nodes)
    assert_same(split, gm, args)


def test_full_size_returned_by_the_graph_is_rebuilt_as_torch_size():
    def f(x):
        shape = x.size()
        return torch.ops.fxsplit_test.split_here(x).reshape(shape)

    gm, args = capture(f, torch.randn(6, 4))
    # Dynamo flattens returned sizes; a hand-edited graph can still return one.
    gm = copy.deepcopy(gm)
    size = next(n for n in gm.graph.nodes if n.target == "size")
    output = next(n for n in gm.graph.nodes if n.op == "output")
    output.args = ((output.args[0][0], size),)
    gm.recompile()
    split, _ = fxsplit.split_graph(gm, [SPLIT_HERE])
    out = split(*args)
    assert isinstance(out[1], torch.Size) and out[1] == torch.Size([6, 4])
    assert_same(split, gm, args)


def test_tuple_returning_splitting_op_keeps_its_getitems():
    def f(x):
        a, b = torch.ops.fxsplit_test.pair(x.relu())
        return a * b

    gm, args = capture(f, torch.randn(5))
    split, items = fxsplit.split_graph(gm, ["fxsplit_test::pair"])
    assert kinds(items) == [False, True, False]
    splitting = items[1].graph.graph
    assert [n.target for n in splitting.nodes if n.op == "call_function"].count(operator.getitem) == 2
    for item in items:  # no tuple crosses a piece boundary
        for node in item.graph.graph.nodes:
            if node.op == "placeholder":
                assert not isinstance(node.meta.get("example_value"), tuple)
    assert_same(split, gm, args)


def test_getitem_of_a_compute_value_stays_with_its_producer():
    def f(x):
        a, b = x.chunk(2)
        y = torch.ops.fxsplit_test.split_here(a)
        return y + b

    gm, args = capture(f, torch.randn(6))
    _, items = fxsplit.split_graph(gm, [SPLIT_HERE])
    first = items[0].graph.graph
    assert [n.target for n in first.nodes].count(operator.getitem) == 2


def test_consecutive_splitting_ops_share_one_piece():
    def f(x):
        y = torch.ops.fxsplit_test.split_here(torch.ops.fxsplit_test.split_here(x + 1))
        return y - 1

    gm, args = capture(f, torch.randn(3))
    split, items = fxsplit.split_graph(gm, [SPLIT_HERE])
    assert kinds(items) == [False, True, False]
    assert_same(split, gm, args)


@pytest.mark.parametrize(
    "like, expected_kinds, alloc_piece",
    [
        # allocation only needs the input: folds into the first compute piece; the two
        # splitting pieces it separated stay apart, as they were not adjacent
        ("input", [False, True, True, False], 0),
        # allocation needs the splitting result: it cannot move before it, so stays put
        ("splitting result", [False, True, False, True, False], 2),
    ],
)
def test_allocation_only_piece_folds_back_when_it_can(like, expected_kinds, alloc_piece):
    def f(x):
        y = torch.ops.fxsplit_test.split_here(x * 2)
        buffer = torch.empty_like(x if like == "input" else y)
        z = torch.ops.fxsplit_test.split_here(y)
        return z + buffer.fill_(1.0)

    gm, args = capture(f, torch.randn(3))
    split, items = fxsplit.split_graph(gm, [SPLIT_HERE])
    assert kinds(items) == expected_kinds
    assert any(n.target is torch.empty_like for n in items[alloc_piece].graph.graph.nodes)
    assert_same(split, gm, args)


def test_kwargs_multiple_and_unused_outputs_and_a_returned_placeholder():
    def f(x, y):
        a = torch.add(x, y, alpha=2)
        unused = a.exp()  # noqa: F841
        b = torch.ops.fxsplit_test.split_here(a)
        return b.clamp(min=-1.0, max=1.0), a, x

    # symbolic_trace keeps what Dynamo would tidy away: the unused node, the
    # returned input and the kwargs
    gm = torch.fx.symbolic_trace(f)
    assert any(n.kwargs for n in gm.graph.nodes)
    args = [torch.randn(4), torch.randn(4)]
    split, _ = fxsplit.split_graph(gm, [SPLIT_HERE])
    out = split(*args)
    assert out[2] is args[0]
    assert_same(split, gm, args)


def test_symbolically_traced_graph_with_get_attr_and_call_module():
    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.rand(4))
            self.linear = torch.nn.Linear(4, 4)

        def forward(self, x):
            y = torch.ops.fxsplit_test.split_here(self.linear(x) * self.scale)
            return self.linear(y)

    model = Model()
    gm = torch.fx.symbolic_trace(model)
    before = graph_state(gm)
    split, items = fxsplit.split_graph(gm, [SPLIT_HERE])
    x = torch.randn(2, 4)
    torch.testing.assert_close(split(x), model(x), rtol=0, atol=0)
    assert any(n.op == "get_attr" for n in split.graph.nodes)
    assert any(n.op == "call_module" and n.target == "linear" for n in items[0].graph.graph.nodes)
    assert graph_state(gm) == before


def test_split_at_torch_function_matches_dynamo_builtin():
    def f(q):
        return F.scaled_dot_product_attention(q, q, q).relu()

    gm, args = capture(f, torch.randn(1, 2, 4, 8))
    split, items = fxsplit.split_graph(gm, [F.scaled_dot_product_attention])
    assert kinds(items) == [True, False]
    assert_same(split, gm, args)


def test_no_splitting_op_in_graph_gives_one_piece_and_a_warning(caplog):
    def f(x):
        return x.sin() + 1

    gm, args = capture(f, torch.randn(3))
    with caplog.at_level(logging.WARNING, logger="fxsplit"):
        split, items = fxsplit.split_graph(gm, [SPLIT_HERE])
    assert kinds(items) == [False]
    assert "fxsplit_test::split_here" in caplog.text and "one compute piece" in caplog.text
    assert_same(split, gm, args)


def test_empty_splitting_ops_means_no_split_and_no_warning(caplog):
    gm, args = captured(1)
    with caplog.at_level(logging.WARNING, logger="fxsplit"):
        split, items = fxsplit.split_graph(gm, [])
    assert kinds(items) == [False]
    assert caplog.text == ""
    assert_same(split, gm, args)


def test_an_op_name_not_registered_matches_nothing_in_split_graph_and_is_refused_by_the_backend():
    # vLLM's default list names ops that only some models' code registers (vllm::mamba_mixer)
    gm, args = captured(1)
    split, items = fxsplit.split_graph(gm, ["nosuch::op", ATTENTION])
    assert kinds(items) == kinds(fxsplit.split_graph(gm, [ATTENTION])[1])
    assert_same(split, gm, args)
    with pytest.raises(ValueError, match="not an op name"):  # not a name at all: still a mistake
        fxsplit.split_graph(gm, ["attention"])
    with pytest.raises(ValueError, match="'nosuch::op' is not a registered op; check the spelling"):
        fxsplit.PiecewiseBackend(["nosuch::op"])


def test_identical_layers_are_identical_graphs_node_names_included():
    # anything that hashes a piece's graph (vLLM's dedup, AOTAutograd's cache) sees them as one
    gm, _ = captured(3)
    _, items = fxsplit.split_graph(gm, [ATTENTION])
    first, second = [item.graph for item in items if not item.is_splitting_graph][1:3]
    names = [[n.name for n in m.graph.nodes if n.op != "placeholder"] for m in (first, second)]
    assert names[0] == names[1] and len(names[0]) > 10


def test_non_graph_module_is_a_type_error():
    with pytest.raises(TypeError, match="takes a torch.fx.GraphModule, got Linear"):
        fxsplit.split_graph(torch.nn.Linear(2, 2), [SPLIT_HERE])  # type: ignore[arg-type]


# vLLM's split contract (tests/compile/test_graph_partition.py and test_codegen.py in
# vllm-project/vllm, re-expressed against fxsplit.split_graph)


def aten_graph(f, *inputs):
    from torch.fx.experimental.proxy_tensor import make_fx

    return make_fx(f)(*inputs)


def test_splitting_ops_separated_by_a_folded_allocation_stay_apart():
    def f(x):
        y = torch.ops.aten.sin(x + 1)
        out = torch.empty_like(x)
        torch.ops.aten.cos.out(y, out=out)
        return out + 1

    gm = aten_graph(f, torch.randn(4))
    split, items = fxsplit.split_graph(gm, ["aten::sin", "aten::cos"])
    assert kinds(items) == [False, True, True, False]
    ops = [[n.target for n in item.graph.graph.nodes if n.op == "call_function"] for item in items]
    assert torch.ops.aten.empty_like.default in ops[0] and torch.ops.aten.add.Tensor in ops[0]
    assert ops[1] == [torch.ops.aten.sin.default] and ops[2] == [torch.ops.aten.cos.out]
    x = torch.randn(4)
    torch.testing.assert_close(split(x), gm(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "trace, allocate",
    [
        pytest.param(capture, lambda x: torch.empty_strided((4,), (1,)), id="torch.empty_strided"),
        pytest.param(aten_graph, lambda x: torch.empty_strided((4,), (1,)), id="aten.empty_strided"),
        pytest.param(aten_graph, lambda x: torch.ops.aten.empty.memory_format([4]), id="aten.empty.memory_format"),
        pytest.param(aten_graph, lambda x: x.new_empty_strided((4,), (1,)), id="aten.new_empty_strided"),
        pytest.param(aten_graph, lambda x: torch.ops.aten.empty_permuted((4,), (0,)), id="aten.empty_permuted"),
    ],
)
def test_every_empty_allocation_counts_as_allocation_only(trace, allocate):
    def f(x):
        y = torch.ops.fxsplit_test.split_here(x * 2)
        out = allocate(x)
        z = torch.ops.fxsplit_test.split_here(y)
        return z + out.fill_(1.0)

    gm = trace(f, torch.randn(4))
    if trace is capture:
        gm = gm[0]
        assert any(n.target is torch.empty_strided for n in gm.graph.nodes)
    _, items = fxsplit.split_graph(gm, [SPLIT_HERE])
    assert kinds(items) == [False, True, True, False]  # the allocation folded into the first piece
    allocations = [
        [n for n in item.graph.graph.nodes if n.op == "call_function" and "empty" in str(n.target)] for item in items
    ]
    assert [len(a) for a in allocations] == [1, 0, 0, 0]


def test_pieces_return_tuples_by_default_from_torch_2_12():
    def f(x):
        return torch.ops.fxsplit_test.split_here(x.relu()) + 1

    gm, args = capture(f, torch.randn(3))
    release = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    split, items = fxsplit.split_graph(gm, [SPLIT_HERE])
    outputs = [next(iter(item.graph.graph.find_nodes(op="output"))).args[0] for item in items]
    assert all(isinstance(o, tuple) for o in outputs) == (release >= (2, 12))
    assert any(n.target is operator.getitem for n in split.graph.nodes) == (release >= (2, 12))
    assert_same(split, gm, args)
    _, items = fxsplit.split_graph(gm, [SPLIT_HERE], tuple_return=False)
    assert not isinstance(next(iter(items[0].graph.graph.find_nodes(op="output"))).args[0], tuple)


# Scalars never cross a piece boundary


def placeholders(item: fxsplit.SplitItem) -> list:
    return [n.meta.get("example_value") for n in item.graph.graph.find_nodes(op="placeholder")]


def test_symint_arithmetic_is_recomputed_where_it_is_used():
    def f(x, y):
        n = x.shape[0] * x.shape[1]
        a = torch.ops.fxsplit_test.split_here(x.reshape(n) * 2)
        b = torch.ops.fxsplit_test.split_here(a + 1)
        return b.reshape(n)[:3], y.reshape(n, -1).sum(0)

    gm, args = capture(f, torch.randn(4, 5), torch.randn(20, 2))
    split, items = fxsplit.split_graph(gm, [SPLIT_HERE])
    assert kinds(items) == [False, True, False, True, False]
    for item in items:
        exprs = {str(v.node.expr) for v in placeholders(item) if isinstance(v, torch.SymInt)}
        assert all("*" not in e for e in exprs), (item.submod_name, exprs)  # only bare sizes cross
    products = [item for item in items if any(n.target is operator.mul for n in item.graph.graph.nodes)]
    assert [item.graph_id for item in products] == [0, 4]  # each user computes the product itself
    assert_same(split, gm, args)


class ScaledAttention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scaling = 0.25  # Dynamo lifts it to an input; SDPA's scale= bakes it in
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x):
        q = self.proj(x).view(1, 1, *x.shape)
        a = F.scaled_dot_product_attention(q, q, q, scale=self.scaling)
        return self.proj(a.view(x.shape)) * 2


def test_a_specialised_float_is_a_constant_where_it_is_used():
    model = torch.nn.Sequential(ScaledAttention(), ScaledAttention())
    with torch.no_grad():
        gm, args = capture(model, torch.randn(6, 8))
        items = fxsplit.split_graph(gm, [F.scaled_dot_product_attention])[1]
        for item in items:
            assert not any(isinstance(v, (torch.SymFloat, float)) for v in placeholders(item))
            assert not any(n.target == "item" for n in item.graph.graph.nodes)
        nodes = [n for item in items for n in item.graph.graph.nodes]
        scales = [n.kwargs.get("scale") for n in nodes if "attention" in str(n.target)]
        assert scales == [0.25, 0.25]
        assert_same(fxsplit.split_graph(gm, [F.scaled_dot_product_attention])[0], gm, args)


def test_a_symbolic_float_is_read_by_each_piece_that_uses_it():
    class Shared(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.alpha = 0.5  # tensor compute only: it stays a graph input

        def forward(self, x):
            q = (x * self.alpha).view(1, 1, *x.shape)
            y = F.scaled_dot_product_attention(q, q, q).view(x.shape)
            return y * self.alpha

    gm, args = capture(Shared(), torch.randn(4, 8))
    split, items = fxsplit.split_graph(gm, [F.scaled_dot_product_attention])
    for item in items:
        assert not any(isinstance(v, torch.SymFloat) for v in placeholders(item))
    reads = [item.graph_id for item in items for n in item.graph.graph.nodes if n.target == "item"]
    assert reads == [0, 2]
    assert_same(split, gm, args)


def test_a_scalar_the_graph_returns_is_computed_by_the_stitching_graph():
    def f(x):
        y = torch.ops.fxsplit_test.split_here(x + 1)
        return y, x.shape[0] * 3

    gm, args = capture(f, torch.randn(5, 2))
    returned = next(iter(gm.graph.find_nodes(op="output"))).args[0][1]
    assert isinstance(returned.meta["example_value"], torch.SymInt)
    split, _ = fxsplit.split_graph(gm, [SPLIT_HERE])
    assert any(n.target is operator.mul for n in split.graph.nodes)
    assert_same(split, gm, args)
