"""What users run: tiny HuggingFace decoders of many architectures (random weights from
configs, no download), compiled piecewise with the default compiler, Inductor."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from zoo import assert_equal_to_eager, logits_fn, tiny_decoder

import fxsplit

pytest.importorskip("transformers")

# architecture -> kinds of decoder layer it has (at 4 layers)
ZOO = {
    "llama": 1,
    "qwen2": 1,
    "qwen3_moe": 1,  # MoE
    "gemma3_text": 2,  # sliding and full layers
    "phi3": 1,  # fused qkv; Inductor returns a layout other than eager's at a boundary
    "gpt2": 1,  # GELU with math.pi, dropout p
    "gpt_neox": 1,  # parallel residual
    "falcon": 1,  # parallel attention, one dropout p shared by every layer
    "deepseek_v3": 2,  # a dense first layer, then MoE layers
    "opt": 1,
}


def traced_and_compiled(model: Any, backend: Any) -> tuple[Any, list[int]]:
    traces: list[int] = []

    def counting(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        traces.append(len(gm.graph.nodes))
        return backend(gm, example_inputs)

    torch._dynamo.reset()
    return torch.compile(model, backend=counting, dynamic=True), traces


@pytest.mark.parametrize("name", list(ZOO))
def test_tiny_decoder_compiles_piecewise_with_inductor(name):
    model = tiny_decoder(name, layers=4)
    logits = logits_fn(model)
    backend = fxsplit.PiecewiseBackend()  # the defaults: Inductor, split at SDPA
    compiled, traces = traced_and_compiled(logits, backend)
    assert_equal_to_eager(compiled, logits)
    assert len(backend.reports) == 1, "a new shape made Dynamo compile again"
    assert len(traces) == 1, "Dynamo traced the model more than once"
    report = backend.report
    assert report.pieces == 2 * 4 + 1
    assert report.compiler_calls <= ZOO[name] + 2, report.format()


def test_the_registered_name_compiles_a_real_model():
    model = tiny_decoder("qwen2", layers=2)
    logits = logits_fn(model)
    torch._dynamo.reset()
    compiled = torch.compile(logits, backend="fxsplit", dynamic=True)
    ids = torch.randint(0, 128, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(compiled(ids), logits(ids), rtol=1e-4, atol=1e-4)
