"""HuggingFace ``generate()`` with fxsplit's backend: greedy tokens equal to eager,
with the default (dynamic) KV cache and with a static one."""

from __future__ import annotations

import pytest
import torch
from zoo import tiny_decoder

import fxsplit

pytest.importorskip("transformers")


@pytest.mark.parametrize("cache", [None, "static"])
def test_generate_with_a_compiled_forward_gives_eagers_tokens(cache):
    model = tiny_decoder("llama", layers=3)
    ids = torch.randint(1, 128, (1, 6), generator=torch.Generator().manual_seed(0))
    options = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    if cache is not None:
        options["cache_implementation"] = cache
    eager = model.generate(ids, **options)
    torch.compiler.reset()
    model.forward = torch.compile(model.forward, backend="fxsplit", dynamic=True)  # as the README shows
    tokens = model.generate(ids, **options)
    assert torch.equal(tokens, eager)
    report = fxsplit.last_report()  # the decode step's, where each layer's KV cache has size symbols of its own
    assert report is not None and report.compute_pieces == 4  # the model was compiled piecewise
    assert [r.shared_with for r in report.rows if r.kind == "compute"] == [None, None, "submod_2", None]
