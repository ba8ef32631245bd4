"""Tiny HuggingFace models (random weights from a config, no download), captured by
Dynamo and split at scaled-dot-product attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_same, capture, graph_state

import fxsplit

transformers = pytest.importorskip("transformers")


def llama() -> torch.nn.Module:
    config = transformers.LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation="sdpa",
    )
    return transformers.LlamaForCausalLM(config)


def gpt2() -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=128,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=64,
        attn_implementation="sdpa",
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(config)


@pytest.mark.parametrize("factory", [llama, gpt2])
def test_tiny_hf_model_splits_at_sdpa(factory):
    torch.manual_seed(0)
    model = factory().eval()

    def logits(input_ids):
        return model(input_ids=input_ids, use_cache=False).logits

    with torch.no_grad():
        gm, args = capture(logits, torch.randint(0, 128, (2, 8)))
        before = graph_state(gm)
        split, items = fxsplit.split_graph(gm, [F.scaled_dot_product_attention])
        assert [item.is_splitting_graph for item in items] == [False, True, False, True, False]
        assert_same(split, gm, args)
    assert graph_state(gm) == before
