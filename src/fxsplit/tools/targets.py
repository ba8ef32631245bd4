"""Benchmark targets and results, as lines people read and JSON programs read."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch

# a benchmark target as (what it asks, with the figure measured; whether it is met)
Check = tuple[str, bool]


def format_checks(checks: Sequence[Check]) -> str:
    """The targets, one ``[met]``/``[MISSED]`` line each; empty when there are none."""
    if not checks:
        return ""
    return "\n".join(["targets:", *(f"  [{'met' if met else 'MISSED'}] {text}" for text, met in checks)])


def results_json(results: Sequence[Any], checks: Sequence[Check]) -> str:
    """Benchmark results (dataclasses) and their targets, as JSON."""
    return json.dumps(
        {
            "torch": torch.__version__,
            "results": [asdict(r) for r in results],
            "targets": [{"target": text, "met": met} for text, met in checks],
        },
        indent=2,
    )
