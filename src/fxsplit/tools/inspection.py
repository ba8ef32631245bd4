"""What a split made, for ``fxsplit inspect``: a table of pieces and their twins."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..compilation.dedup import HASH_NOTE, digest, piece_key, piece_structure
from ..split.lazy import node_count
from ..split.splitters import SplitItem


@dataclass
class PieceInfo:
    id: int
    name: str
    kind: str  # "compute" or "splitting"
    nodes: int
    inputs: int
    outputs: int
    hash: str | None
    shared_with: str | None


def describe(items: Sequence[SplitItem], dispatch: str | None = None) -> list[PieceInfo]:
    """One row per piece; compute pieces with equal sharing keys (``dispatch``: the
    size the backend's pieces would dispatch on) name their first twin."""
    first_of: dict[Hashable, str] = {}
    rows = []
    for item in items:
        piece = item.graph
        structure = None if item.is_splitting_graph else piece_structure(piece)
        nodes = node_count(piece)
        graph = piece.graph
        inputs = [n.meta.get("example_value") for n in graph.find_nodes(op="placeholder")]
        output = graph.find_nodes(op="output")[0].args[0]
        described = structure is not None and all(v is not None for v in inputs)
        key = piece_key(structure, inputs, dispatch) if described else None
        shared = None
        if key is not None:
            shared = first_of.setdefault(key, item.submod_name)
            shared = None if shared == item.submod_name else shared
        rows.append(
            PieceInfo(
                id=item.graph_id,
                name=item.submod_name,
                kind="splitting" if item.is_splitting_graph else "compute",
                nodes=nodes,
                inputs=len(inputs),
                outputs=len(output) if isinstance(output, (tuple, list)) else 1,
                hash=digest(key) if key is not None else None,
                shared_with=shared,
            )
        )
    return rows


def format_table(rows: Sequence[PieceInfo]) -> str:
    lines = [f"{'id':>3} {'piece':12} {'kind':9} {'nodes':>5} {'in':>4} {'out':>4} {'hash':16}  shared with"]
    for r in rows:
        lines.append(
            f"{r.id:>3} {r.name:12} {r.kind:9} {r.nodes:5} {r.inputs:4} {r.outputs:4} {r.hash or '-':16}  "
            f"{r.shared_with or ''}"
        )
    compute = [r for r in rows if r.kind == "compute"]
    distinct = sum(1 for r in compute if r.shared_with is None)
    lines.append(
        f"{len(rows)} pieces: {len(compute)} compute ({distinct} distinct), {len(rows) - len(compute)} splitting"
    )
    lines.append(HASH_NOTE)
    return "\n".join(lines)


def rows_as_dicts(rows: Sequence[PieceInfo]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
