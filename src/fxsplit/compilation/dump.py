"""Readable code of a split, written where people can read it: the original graph,
the split graph, each piece and a report.

The dump is the one place fxsplit forces code generation for every piece, because a
person asked to read it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.fx import GraphModule

from ..split.splitters import SplitItem


def write_dump(
    directory: str | Path,
    original: GraphModule,
    split: GraphModule,
    items: Sequence[SplitItem],
    report: dict[str, Any],
) -> Path:
    """Write the original graph, the split graph, each piece's readable code and
    ``report.json`` to ``directory``; returns it."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "original.py").write_text(readable_code(original))
    (out / "split.py").write_text(readable_code(split))
    for item in items:
        (out / f"{item.submod_name}.py").write_text(readable_code(item.graph))
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return out


def readable_code(gm: GraphModule) -> str:
    """A graph module's code with shapes, strides and devices noted, for people."""
    return gm.print_readable(print_output=False, include_stride=True, include_device=True)
