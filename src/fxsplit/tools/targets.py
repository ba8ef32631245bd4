"""Benchmark targets and results, as lines people read and JSON programs read."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

# a benchmark target as (what it asks, with the figure measured; whether it is met)
Check = tuple[str, bool]


def ratio_check(subject: str, ratio: float, limit: float, reference: str) -> Check:
    """The target ``subject <= limit x reference``, with the ratio measured shown to
    as many digits as it takes to see which side of the limit it fell on."""
    return f"{subject} <= {limit:g}x {reference} ({figure(ratio, limit)}x)", ratio <= limit


def figure(value: float, limit: float) -> str:
    """``value`` to 2 digits, or more where 2 would read as the wrong side of ``limit``
    (a 0.2504 against 0.25 must not print as a missed 0.25)."""
    for digits in (2, 3, 4, 6):
        text = f"{value:.{digits}f}"
        if (float(text) <= limit) == (value <= limit):
            return text
    return repr(value)


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
