"""Full ``x.size()`` calls: vLLM's split turns every one into per-dim ``sym_size.int``
calls (and literal ints) before it cuts; fxsplit's only where a size crosses a piece
boundary. Through AOTAutograd, which vLLM's piecewise backend compiles each piece with,
both come to the same computation, and the first SymInt each piece takes (where vLLM's
backend reads the size it dispatches on) is the same size. Run in vLLM's venv."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

import fxsplit

backends = pytest.importorskip("vllm.compilation.backends")  # real vLLM: its venv (.ci/vllm)


@torch.library.custom_op("fxsplit_sizes::cut", mutates_args=())
def cut(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


@cut.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


def model(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
    shape = x.size()  # used in its own piece, and after the cut
    h = (x * 2).view(shape)
    rows = h.size()[0]
    h = torch.ops.fxsplit_sizes.cut(h)
    h = h.reshape(shape) + y.view(y.size())
    h = torch.ops.fxsplit_sizes.cut(h.view(rows, -1))
    return h.sum(0), h.size()


def dynamo_graph() -> torch.fx.GraphModule:
    captured: list[torch.fx.GraphModule] = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        captured.append(gm)
        return gm

    x, y = torch.randn(6, 4), torch.randn(6, 4)
    torch._dynamo.reset()
    torch.compile(model, backend=backend, dynamic=True)(x, y)
    (gm,) = captured
    assert any(n.target == "size" and len(n.args) == 1 for n in gm.graph.nodes)  # the case in question
    return gm


def as_aot_autograd_sees_them(items: list[Any]) -> list[tuple[list[Any], str | None]]:
    """Per compute piece: its aten ops after AOTAutograd's trace, and the first SymInt it takes."""
    from torch._functorch.aot_autograd import aot_module_simplified

    pieces = []
    for item in items:
        if item.is_splitting_graph:
            continue
        inputs = [n.meta["example_value"] for n in item.graph.graph.find_nodes(op="placeholder")]
        traced: list[torch.fx.GraphModule] = []
        aot_module_simplified(item.graph, inputs, fw_compiler=lambda g, _, seen=traced: seen.append(g) or g)
        ops = [n.target for n in traced[0].graph.nodes if n.op == "call_function"]
        first_symint = next((str(v.node.expr) for v in inputs if isinstance(v, torch.SymInt)), None)
        pieces.append((ops, first_symint))
    return pieces


def test_full_sizes_split_by_fxsplit_compile_to_what_vllms_split_compiles_to():
    gm = dynamo_graph()
    ours, our_items = fxsplit.split_graph(gm, ["fxsplit_sizes::cut"])
    theirs, their_items = backends.split_graph(copy.deepcopy(gm), ["fxsplit_sizes::cut"])  # vLLM's edits its input
    assert [i.is_splitting_graph for i in our_items] == [i.is_splitting_graph for i in their_items]
    ours_seen, theirs_seen = as_aot_autograd_sees_them(our_items), as_aot_autograd_sees_them(their_items)
    assert ours_seen == theirs_seen
    assert all(first is not None for _, first in ours_seen)  # every piece has a size to dispatch on
    tensors = iter([torch.randn(9, 4), torch.randn(9, 4)])
    placeholders = [n.meta["example_value"] for n in gm.graph.find_nodes(op="placeholder")]
    args = [9 if isinstance(v, torch.SymInt) else next(tensors) for v in placeholders]
    torch.testing.assert_close(ours(*args), theirs(*args), rtol=0, atol=0)
