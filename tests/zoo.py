"""Tiny HuggingFace decoders of many architectures, built from configs with random
weights (no download), for testing fxsplit on models nobody here wrote."""

from __future__ import annotations

from typing import Any

import torch

# Small enough to compile in seconds, large enough to keep every architectural feature:
# grouped-query attention, partial rotary, MoE routing, parallel residuals.
BASE: dict[str, Any] = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    bos_token_id=0,
    eos_token_id=0,
    pad_token_id=0,
)

MOE = dict(num_experts_per_tok=2, moe_intermediate_size=32)

OVERRIDES: dict[str, dict[str, Any]] = {
    "qwen2_moe": dict(MOE, num_experts=4, shared_expert_intermediate_size=32),
    "qwen3_moe": dict(MOE, num_experts=4, head_dim=8),
    "mixtral": dict(num_local_experts=4, num_experts_per_tok=2),
    "deepseek_v3": dict(
        MOE,
        n_routed_experts=4,
        n_shared_experts=1,
        n_group=1,
        topk_group=1,
        kv_lora_rank=16,
        q_lora_rank=16,
        qk_rope_head_dim=8,
        qk_nope_head_dim=8,
        v_head_dim=8,
        head_dim=8,
        first_k_dense_replace=1,
        num_key_value_heads=4,
    ),
    "gemma": dict(head_dim=8),
    "gemma3_text": dict(head_dim=8, sliding_window=16, sliding_window_pattern=2),  # sliding and full layers
    "qwen3": dict(head_dim=8),
    "glm": dict(head_dim=8),
    "falcon": dict(ffn_hidden_size=64),
    "gptj": dict(rotary_dim=4),
    "opt": dict(ffn_dim=64, word_embed_proj_dim=32),
}

# The families the issue asks to cover: dense, MoE, parallel residual, dropout, GELU.
ARCHITECTURES = (
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "qwen2_moe",
    "qwen3_moe",
    "mixtral",
    "gemma",
    "gemma3_text",
    "phi",
    "phi3",
    "gpt2",
    "gpt_neox",
    "gptj",
    "falcon",
    "stablelm",
    "olmo",
    "olmo2",
    "granite",
    "cohere",
    "starcoder2",
    "deepseek_v3",
    "smollm3",
    "glm",
    "opt",
)


def tiny_decoder(name: str, layers: int = 4, seed: int = 0) -> torch.nn.Module:
    """A tiny causal LM of architecture ``name`` (a transformers model type), in eval mode."""
    import transformers

    config = transformers.AutoConfig.for_model(
        name, num_hidden_layers=layers, attn_implementation="sdpa", **{**BASE, **OVERRIDES.get(name, {})}
    )
    torch.manual_seed(seed)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


def logits_fn(model: torch.nn.Module) -> Any:
    """The model as a function of token ids to logits, without a KV cache."""
    return lambda input_ids: model(input_ids=input_ids, use_cache=False).logits


def assert_equal_to_eager(compiled: Any, logits: Any) -> None:
    """``compiled`` gives ``logits``'s output at two shapes of token ids (batch, sequence)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for shape in ((2, 8), (3, 13)):
            ids = torch.randint(0, BASE["vocab_size"], shape, generator=generator)
            torch.testing.assert_close(compiled(ids), logits(ids), rtol=1e-4, atol=1e-4)


def main() -> None:
    """``python tests/zoo.py [NAME ...]``: every architecture (or those named) through
    ``backend="fxsplit"`` with its defaults, a table of pass, compiler calls and seconds."""
    import sys
    import time

    import fxsplit

    columns = ("pieces", 6), ("compiler calls", 14), ("cache hits", 10), ("seconds", 8)
    print(f"{'architecture':14} {'result':8} " + " ".join(f"{title:>{width}}" for title, width in columns), flush=True)
    for name in sys.argv[1:] or ARCHITECTURES:
        torch._dynamo.reset()
        model = tiny_decoder(name)
        logits = logits_fn(model)
        backend = fxsplit.PiecewiseBackend()
        compiled = torch.compile(logits, backend=backend, dynamic=True)
        started = time.perf_counter()
        result = "pass"
        try:
            assert_equal_to_eager(compiled, logits)
        except Exception as error:  # a table of every architecture, failures included
            result = f"FAIL ({type(error).__name__}: {str(error).splitlines()[0][:80]})"
        seconds = time.perf_counter() - started
        report = backend.report
        cells = (report.pieces, 6), (report.compiler_calls, 14), (report.cache_hits, 10), (f"{seconds:.1f}", 8)
        print(f"{name:14} {result:8} " + " ".join(f"{value:>{width}}" for value, width in cells), flush=True)


if __name__ == "__main__":
    main()
