"""Tiny HuggingFace models (random weights from a config, no download), captured by
Dynamo and split at scaled-dot-product attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_same, capture, graph_state, hf_gpt2, hf_llama, logits_of

import fxsplit


@pytest.mark.parametrize("factory", [hf_llama, hf_gpt2])
def test_tiny_hf_model_splits_at_sdpa(factory):
    torch.manual_seed(0)
    model = factory().eval()

    logits = logits_of(model)
    with torch.no_grad():
        gm, args = capture(logits, torch.randint(0, 128, (2, 8)))
        before = graph_state(gm)
        split, items = fxsplit.split_graph(gm, [F.scaled_dot_product_attention])
        assert [item.is_splitting_graph for item in items] == [False, True, False, True, False]
        assert_same(split, gm, args)
    assert graph_state(gm) == before
