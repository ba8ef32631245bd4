"""Where compile time went, piece by piece, in a form people and programs can read."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO


@dataclass
class PieceRow:
    """One piece: what it is and what its compilation cost.

    ``shared_with`` names the piece whose compiled artifact this one reuses (its
    ``seconds`` are then 0); splitting pieces are never compiled.
    """

    name: str
    kind: str  # "compute" or "splitting"
    nodes: int
    hash: str | None = None
    shared_with: str | None = None
    seconds: float = 0.0

    @property
    def compiled(self) -> bool:
        return self.kind == "compute" and self.shared_with is None


@dataclass
class Specialisation:
    """A piece compiled for one size (``compile_sizes``), when that size first ran."""

    piece: str
    size: int
    seconds: float
    cached: bool = False  # loaded from the persistent cache


@dataclass
class CompileReport:
    """One compilation by :class:`fxsplit.PiecewiseBackend`.

    ``compiler_calls`` counts actual compiler invocations: one per distinct compute
    piece, plus one per specialised size compiled so far (``specialisations`` lists
    those). ``cache_hits`` and ``cache_misses`` count lookups in the persistent
    cache, ``load_seconds`` the time spent loading hits.
    """

    compiler: str = ""
    pieces: int = 0
    compute_pieces: int = 0
    compiler_calls: int = 0
    split_seconds: float = 0.0
    compile_seconds: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0
    load_seconds: float = 0.0
    rows: list[PieceRow] = field(default_factory=list)
    specialisations: list[Specialisation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        shared = sum(1 for r in self.rows if r.shared_with)
        lines = [
            f"fxsplit: {self.pieces} pieces ({self.compute_pieces} compute, {shared} sharing a compiled twin), "
            f"{self.compiler_calls} {self.compiler} compiler calls; "
            f"split {self.split_seconds * 1e3:.1f} ms, compile {self.compile_seconds:.2f} s; "
            f"cache {self.cache_hits} hits, {self.cache_misses} misses, {self.load_seconds:.2f} s loading",
            f"  {'piece':14} {'kind':9} {'nodes':>5} {'hash':16} {'compile':>9}  shared with",
        ]
        for r in self.rows:
            seconds = f"{r.seconds:8.2f}s" if r.compiled else "-"
            lines.append(f"  {r.name:14} {r.kind:9} {r.nodes:5} {r.hash or '-':16} {seconds:>9}  {r.shared_with or ''}")
        if self.specialisations:
            done = ", ".join(
                f"{s.piece} at {s.size} ({'cache' if s.cached else f'{s.seconds:.2f} s'})" for s in self.specialisations
            )
            lines.append(f"  compiled for one size: {done}")
        return "\n".join(lines)


class Progress:
    """A one-line progress indicator on a terminal, silent elsewhere."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = total > 1 and self.stream.isatty()
        self.total = total
        self.done = 0

    def step(self, label: str) -> None:
        if not self.enabled:
            return
        self.done += 1
        self.stream.write(f"\rfxsplit: compiling {self.done}/{self.total} {label:<20}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
