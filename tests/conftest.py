"""Shared fixtures: test ops, captured graphs, and a deep snapshot of a graph for
"the input is unchanged" checks."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch.fx import GraphModule

import fxsplit
from fxsplit.tools import models


@torch.library.custom_op("fxsplit_test::split_here", mutates_args=())
def split_here(x: torch.Tensor) -> torch.Tensor:
    """A stand-in attention op: any op that splits the graph will do."""
    return x * 2


@split_here.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("fxsplit_test::pair", mutates_args=())
def pair(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A splitting op that returns a tuple, unpacked by getitem."""
    return x + 1, x - 1


@pair.register_fake
def _(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(x), torch.empty_like(x)


SPLIT_HERE = "fxsplit_test::split_here"


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Backends that default to the user's cache use a fresh one for the test session,
    and Inductor a fresh cache of its own, shared by the session's tests: no test
    depends on what an earlier run left behind. The many fresh processes the tests
    start compile in-process (TORCHINDUCTOR_COMPILE_THREADS=1) rather than each
    starting Inductor's pool of compile processes, which on 2 cores costs more than
    it saves; what is compiled is the same. Temporary files (the code of a piece that
    failed to compile, which fxsplit keeps for its user) go to the session's own
    temporary directory, not the machine's."""
    with pytest.MonkeyPatch.context() as patch:
        temporary = tmp_path_factory.mktemp("tmp")
        patch.setenv("TMPDIR", str(temporary))
        patch.setattr(tempfile, "tempdir", str(temporary))
        patch.setenv("TORCHINDUCTOR_COMPILE_THREADS", "1")
        patch.setenv("FXSPLIT_CACHE_DIR", str(tmp_path_factory.mktemp("fxsplit-cache")))
        patch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor-cache")))
        patch.delenv("FXSPLIT_DISABLE_CACHE", raising=False)
        yield


def graph_state(gm: GraphModule) -> list[tuple[Any, ...]]:
    """Everything a split could disturb in a graph: nodes, order, wiring, meta and the
    attributes set on each node (torch's splitters leave ``_fx_partition`` behind)."""
    return [
        (n.name, n.op, n.target, n.args, dict(n.kwargs), tuple(n.users), dict(n.meta), sorted(vars(n)))
        for n in gm.graph.nodes
    ]


@functools.cache
def _captured(layers: int) -> tuple[GraphModule, list[Any]]:
    model, inputs = models.build(layers)
    with torch.no_grad():
        return fxsplit.capture_graph(model, inputs)


@pytest.fixture(params=[1, 3])
def synthetic(request: pytest.FixtureRequest) -> tuple[GraphModule, list[Any]]:
    """The synthetic Llama captured by Dynamo (dynamic shapes), and its inputs."""
    return _captured(request.param)


def captured(layers: int) -> tuple[GraphModule, list[Any]]:
    return _captured(layers)


def capture(fn: Any, *inputs: Any) -> tuple[GraphModule, list[Any]]:
    return fxsplit.capture_graph(fn, inputs)


def assert_same(split: torch.nn.Module, gm: GraphModule, args: list[Any]) -> None:
    """The split computes exactly what the unsplit graph computes."""
    torch.testing.assert_close(split(*args), gm(*args), rtol=0, atol=0)


TINY_DECODER = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    attn_implementation="sdpa",
)


def hf_llama(layers: int = 2) -> torch.nn.Module:
    """A tiny HuggingFace Llama with random weights, built from a config (no download)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(num_hidden_layers=layers, **TINY_DECODER)
    return transformers.LlamaForCausalLM(config)


def hf_gpt2(layers: int = 2) -> torch.nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        vocab_size=128,
        n_embd=32,
        n_layer=layers,
        n_head=4,
        n_positions=64,
        attn_implementation="sdpa",
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(config)


def hf_mixtral(layers: int = 2) -> torch.nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.MixtralConfig(
        num_hidden_layers=layers, num_local_experts=4, num_experts_per_tok=2, **TINY_DECODER
    )
    return transformers.MixtralForCausalLM(config)


def logits_of(model: torch.nn.Module) -> Any:
    """The model as a function of token ids to logits, without a KV cache."""
    return lambda input_ids: model(input_ids=input_ids, use_cache=False).logits
