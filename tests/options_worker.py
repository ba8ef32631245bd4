"""One case of the options matrix: a tiny HuggingFace decoder through
``PiecewiseBackend`` with the options given, called at several token counts and
checked against eager; in the test's process or, as ``python options_worker.py ARCH
OPTIONS_JSON CALLS``, in a fresh one (a warm start), printing the report as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

import fxsplit

sys.path.insert(0, str(Path(__file__).parent))
from zoo import tiny_decoder


def run_case(arch: str, options: dict[str, Any], calls: tuple[int, ...]) -> dict[str, Any]:
    """Compile ``arch`` (2 layers) with ``options``, call it at ``calls`` tokens (the
    first call first), each equal to eager; what the backend reported after the first
    call and after the last."""
    model = tiny_decoder(arch, layers=2)

    def logits(ids: torch.Tensor) -> torch.Tensor:  # a flat batch of tokens: the size is the token count
        return model(input_ids=ids[None], use_cache=False).logits[0]

    options = {**options, "compile_sizes": [tuple(s) if isinstance(s, list) else s for s in options["compile_sizes"]]}
    backend = fxsplit.PiecewiseBackend(**options)
    torch.compiler.reset()
    compiled = torch.compile(logits, backend=backend, dynamic=True)
    generator = torch.Generator().manual_seed(0)
    after: list[dict[str, Any]] = []
    with torch.no_grad():
        for n in calls:
            ids = torch.randint(0, 128, (n,), generator=generator)
            torch.testing.assert_close(compiled(ids), logits(ids), rtol=1e-4, atol=1e-4)
            report = backend.report
            after.append(
                {
                    "compiler_calls": report.compiler_calls,
                    "cache_hits": report.cache_hits,
                    "cache_misses": report.cache_misses,
                    "graphs": report.graphs,
                    "sizes": sorted((s.piece, str(s.size), s.worker, s.cached) for s in report.specialisations),
                }
            )
    return {"first": after[0], "last": after[-1], "compute_pieces": backend.report.compute_pieces}


if __name__ == "__main__":
    arch, options, calls = sys.argv[1], json.loads(sys.argv[2]), tuple(int(c) for c in sys.argv[3].split(","))
    print(json.dumps(run_case(arch, options, calls)))
