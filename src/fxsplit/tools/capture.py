"""Capture a model as one Dynamo FX graph, the input every splitter in fxsplit starts from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


def capture_graph(
    model: Callable[..., Any], example_inputs: Sequence[Any], *, dynamic: bool = True
) -> tuple[torch.fx.GraphModule, list[Any]]:
    """Run ``model`` once under ``torch.compile`` and return Dynamo's graph and its inputs.

    The returned inputs are the flat arguments Dynamo passes to a backend (parameters
    and SymInt sizes included), so ``gm(*inputs)`` runs the captured graph. The
    caller's grad mode applies: capture under ``torch.no_grad()`` for inference graphs.

    Example::

        gm, args = capture_graph(model, (input_ids, positions))
        out = gm(*args)
    """
    captured: list[tuple[torch.fx.GraphModule, list[Any]]] = []

    def record(gm: torch.fx.GraphModule, inputs: list[Any]) -> Callable[..., Any]:
        captured.append((gm, list(inputs)))
        return gm.forward

    torch.compiler.reset()
    compiled = torch.compile(model, backend=record, dynamic=dynamic, fullgraph=True)
    compiled(*example_inputs)
    torch.compiler.reset()
    if len(captured) != 1:
        raise RuntimeError(f"expected Dynamo to capture one graph, it captured {len(captured)}")
    gm, inputs = captured[0]
    # Dynamo hands the backend real tensors for parameters but SymInts for sizes; the
    # captured module is called with concrete values, which these already are.
    return gm, [_concrete(x) for x in inputs]


def _concrete(value: Any) -> Any:
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return value.node.hint
    return value
