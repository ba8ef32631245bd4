"""Readable code of a split, written where people can read it: the original graph,
the split graph, each piece and a report.

The dump is the one place fxsplit forces code generation for every piece, because a
person asked to read it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.fx import GraphModule

from ..runtime.cudagraphs import CapturedPiece
from ..runtime.runner import PieceRunner
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


def generated_source(piece: PieceRunner | CapturedPiece) -> str | None:
    """The source file Inductor generated for a compute piece's general version, where
    it exposes one: the code of the ``current_callable`` found through the wrappers
    around it (and around the piece's runner, where CUDA graphs replay it)."""
    runner = piece.run if isinstance(piece, CapturedPiece) else piece
    compiled = getattr(runner, "general", None)
    for _ in range(4):
        code = getattr(getattr(compiled, "current_callable", None), "__code__", None)
        if code is not None:
            return str(code.co_filename)
        compiled = (
            next(
                (
                    vars(compiled)[name]
                    for name in ("inner_fn", "compiled_fn", "_compiled_fn")
                    if name in vars(compiled)
                ),
                None,
            )
            if hasattr(compiled, "__dict__")
            else None
        )
        if compiled is None:
            return None
    return None


def write_failed_code(item: SplitItem) -> Path:
    """A piece that failed to compile, as readable code in a new temporary directory,
    for the error to point at."""
    directory = Path(tempfile.mkdtemp(prefix="fxsplit-failed-"))
    path = directory / f"{item.submod_name}.py"
    path.write_text(readable_code(item.graph))
    return path
