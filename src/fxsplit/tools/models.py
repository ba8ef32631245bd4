"""The built-in synthetic model that ``fxsplit bench`` and ``fxsplit inspect`` use.

A Llama-style decoder (RMSNorm, rotary embedding, attention, SwiGLU MLP) over a flat
batch of tokens, as serving engines lay it out. Attention goes through the custom op
``fxsplit_demo::attention`` so that the Dynamo graph has a splitting op of its own,
exactly like vLLM's ``vllm::unified_attention``. Weights are random: the model exists
to produce realistic graphs, not text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

ATTENTION_OP_NAME = "fxsplit_demo::attention"
MARK_OP_NAME = "fxsplit_demo::mark"


@torch.library.custom_op(ATTENTION_OP_NAME, mutates_args=())
def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
    tokens = q.shape[0]
    head_dim = q.shape[1] // num_heads

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(tokens, num_heads, head_dim).transpose(0, 1)

    out = torch.nn.functional.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
    return out.transpose(0, 1).reshape(tokens, num_heads * head_dim)


@_attention.register_fake
def _attention_fake(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
    return torch.empty_like(q)


@torch.library.custom_op(MARK_OP_NAME, mutates_args=())
def _mark(x: torch.Tensor) -> torch.Tensor:
    """A splitting op that does next to nothing, for timing what a piece boundary costs."""
    return x.clone()


@_mark.register_fake
def _mark_fake(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class TinyPieces(nn.Module):
    """``pieces`` compute pieces that do almost nothing, split by a splitting op that
    does almost nothing: what a forward costs is what its piece boundaries cost."""

    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.pieces):
            x = torch.ops.fxsplit_demo.mark(x * 2 + 1)
        return x * 2 + 1

    def marks_only(self, x: torch.Tensor) -> torch.Tensor:
        """The splitting ops alone, as many as ``forward`` calls."""
        for _ in range(self.pieces):
            x = torch.ops.fxsplit_demo.mark(x)
        return x


@dataclass(frozen=True)
class SyntheticConfig:
    layers: int = 28
    hidden: int = 64
    heads: int = 4
    intermediate: int = 128
    vocab: int = 256
    eps: float = 1e-6


class RMSNorm(nn.Module):
    def __init__(self, hidden: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(variance + self.eps) * self.weight


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class DecoderLayer(nn.Module):
    def __init__(self, config: SyntheticConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.head_dim = config.hidden // config.heads
        self.input_norm = RMSNorm(config.hidden, config.eps)
        self.qkv = nn.Linear(config.hidden, 3 * config.hidden, bias=False)
        self.o_proj = nn.Linear(config.hidden, config.hidden, bias=False)
        self.post_norm = RMSNorm(config.hidden, config.eps)
        self.gate_up = nn.Linear(config.hidden, 2 * config.intermediate, bias=False)
        self.down = nn.Linear(config.intermediate, config.hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        tokens = x.shape[0]
        q, k, v = self.qkv(self.input_norm(x)).chunk(3, dim=-1)
        q = _rotate(q.view(tokens, self.heads, self.head_dim), cos, sin).reshape(q.size())
        k = _rotate(k.view(tokens, self.heads, self.head_dim), cos, sin).reshape(k.size())
        attn = torch.ops.fxsplit_demo.attention(q, k, v, self.heads)
        x = x + self.o_proj(attn)
        gate, up = self.gate_up(self.post_norm(x)).chunk(2, dim=-1)
        return x + self.down(nn.functional.silu(gate) * up)


class SyntheticLlama(nn.Module):
    """A tiny Llama-style decoder; ``forward(input_ids, positions)`` returns logits."""

    def __init__(self, config: SyntheticConfig | None = None) -> None:
        super().__init__()
        self.config = config or SyntheticConfig()
        c = self.config
        self.embed = nn.Embedding(c.vocab, c.hidden)
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.layers))
        self.norm = RMSNorm(c.hidden, c.eps)
        self.lm_head = nn.Linear(c.hidden, c.vocab, bias=False)
        head_dim = c.hidden // c.heads
        inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim // 2).float() / (head_dim // 2)))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        inv_freq: torch.Tensor = self.inv_freq  # type: ignore[assignment]
        angles = positions[:, None].float() * inv_freq[None, :]
        cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]
        x = self.embed(input_ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.norm(x))


def example_inputs(config: SyntheticConfig, tokens: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, config.vocab, (tokens,), generator=generator)
    return input_ids, torch.arange(tokens)


def build(
    layers: int = 28, seed: int = 0, tokens: int = 16, **sizes: int
) -> tuple[SyntheticLlama, tuple[torch.Tensor, torch.Tensor]]:
    """The synthetic model with ``layers`` decoder layers, in eval mode, and example
    inputs of ``tokens`` tokens; ``sizes`` overrides other :class:`SyntheticConfig` fields."""
    torch.manual_seed(seed)
    config = SyntheticConfig(layers=layers, **sizes)
    return SyntheticLlama(config).eval(), example_inputs(config, tokens)


def hf_llama(layers: int, *, hidden: int, intermediate: int, vocab: int, max_positions: int) -> Any:
    """A HuggingFace ``LlamaForCausalLM`` with random weights (seed 0), 4 heads and 2 KV
    heads, SDPA attention, in eval mode: a real model nobody here wrote."""
    import transformers

    config = transformers.LlamaConfig(  # type: ignore[call-arg]
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=layers,
        max_position_embeddings=max_positions,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()
