"""One fresh-process compile for the cache tests: prints the cache figures and output.

Usage: python cache_worker.py CACHE_DIR
"""

from __future__ import annotations

import json
import logging
import sys

import torch

import fxsplit


def model(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    h = (x @ w).relu()
    q = h.view(1, 1, *h.shape)
    a = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    return (a.view(h.shape) * h).sum(-1)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    backend = fxsplit.PiecewiseBackend(compiler="inductor", cache_dir=sys.argv[1])
    compiled = torch.compile(model, backend=backend, dynamic=True)
    generator = torch.Generator().manual_seed(0)
    x, w = torch.randn(6, 8, generator=generator), torch.randn(8, 8, generator=generator)
    out = compiled(x, w)
    torch.testing.assert_close(out, model(x, w))
    report = backend.report
    print(
        json.dumps(
            {
                "hits": report.cache_hits,
                "misses": report.cache_misses,
                "compiler_calls": report.compiler_calls,
                "output": [round(v, 5) for v in out.tolist()],
            }
        )
    )


if __name__ == "__main__":
    main()
