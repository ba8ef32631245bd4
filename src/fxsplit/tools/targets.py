"""Benchmark targets and results, as lines people read and JSON programs read."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

# a benchmark target as (what it asks, with the figure measured; whether it is met)
Check = tuple[str, bool]


def format_checks(checks: Sequence[Check]) -> str:
    """The targets, one ``[met]``/``[MISSED]`` line each; empty when there are none."""
    if not checks:
        return ""
    return "\n".join(["targets:", *(f"  [{'met' if met else 'MISSED'}] {text}" for text, met in checks)])


def results_json(results: Sequence[Any], checks: Sequence[Check], machine: dict[str, Any]) -> str:
    """Benchmark results (dataclasses), their targets and the machine, as JSON."""
    return json.dumps(
        {
            **machine,
            "results": [asdict(r) for r in results],
            "targets": [{"target": text, "met": met} for text, met in checks],
        },
        indent=2,
    )


def machine(threads: int) -> dict[str, Any]:
    """What a figure depends on besides the code: torch, its threads, and how busy the
    machine was (its load average, against its cores)."""
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"torch": torch.__version__, "threads": threads, "cores": os.cpu_count(), "load_average": load}


def format_machine(facts: dict[str, Any]) -> str:
    load = facts["load_average"]
    busy = "unknown" if load is None else " ".join(f"{x:.2f}" for x in load)
    return (
        f"\ntorch {facts['torch']}, {facts['threads']} torch thread(s); "
        f"load average {busy} (1, 5, 15 min) on {facts['cores']} cores"
    )
