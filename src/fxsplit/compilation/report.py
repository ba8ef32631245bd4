"""Where compile time went, piece by piece, in a form people and programs can read."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TextIO

import torch

from ..runtime.sizes import SizeKey, short
from .dedup import HASH_NOTE


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
    graph: int = 0  # which of the backend's graphs (Dynamo may hand it several)
    worker: bool = False  # compiled in a worker process: ``seconds`` run from the job's submission
    background: bool = False  # not waited for: the piece ran as its code until then (``seconds`` once loaded)

    @property
    def compiled(self) -> bool:
        return self.kind == "compute" and self.shared_with is None


@dataclass
class Specialisation:
    """A piece compiled for one entry of ``compile_sizes``: a size or a range."""

    piece: str
    size: SizeKey  # a size, or a range (lo, hi)
    seconds: float
    cached: bool = False  # loaded from the persistent cache
    graph: int = 0
    worker: bool = False  # compiled in a worker process (``compile_workers``)


@dataclass
class CompileReport:
    """What :class:`fxsplit.PiecewiseBackend` compiled: one graph, or (from
    :meth:`combine`) every graph Dynamo handed it, ``graphs`` of them.

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
    graphs: int = 1
    origin: str = ""  # fxsplit.compile: "compiled", or "loaded" from a saved model
    stages: dict[str, float] = field(default_factory=dict)  # fxsplit.compile: seconds per stage
    trace_seconds: float | None = None  # Dynamo's trace before the backend was called, where torch says
    traced_once: str = ""  # fxsplit.compile: the stacked layers Dynamo traced once each kind ("28 LlamaDecoderLayer")
    probe_seconds: float = 0.0  # Inductor's CPU probe, run before the first piece's compile
    first_call_seconds: float | None = None  # the first call, from the backend's return to its end

    @classmethod
    def combine(cls, reports: Sequence[CompileReport], compiler: str) -> CompileReport:
        """One report over several graphs' reports (none: an empty one), their rows
        marked with their graph."""
        if len(reports) == 1:
            return reports[0]
        total = cls(compiler=compiler, graphs=len(reports))
        for graph, report in enumerate(reports):
            for name in ("pieces", "compute_pieces", "compiler_calls", "cache_hits", "cache_misses"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            for name in ("split_seconds", "compile_seconds", "load_seconds", "probe_seconds"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            for name in ("trace_seconds", "first_call_seconds"):
                mine, theirs = getattr(total, name), getattr(report, name)
                setattr(total, name, theirs if mine is None else mine + (theirs or 0.0))
            total.rows += [replace(row, graph=graph) for row in report.rows]
            total.specialisations += [replace(s, graph=graph) for s in report.specialisations]
        return total

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompileReport:
        return cls(
            **{
                **data,
                "rows": [PieceRow(**row) for row in data.get("rows", [])],
                "specialisations": [
                    Specialisation(**{**s, "size": s["size"] if isinstance(s["size"], int) else tuple(s["size"])})
                    for s in data.get("specialisations", [])
                ],
            }
        )

    def format(self) -> str:
        shared = sum(1 for r in self.rows if r.shared_with)
        graphs = f"{self.graphs} graphs, " if self.graphs != 1 else ""
        lines = [
            f"fxsplit: {graphs}{self.pieces} pieces ({self.compute_pieces} compute, {shared} sharing a compiled twin), "
            f"{self.compiler_calls} {self.compiler} compiler calls; "
            f"split {self.split_seconds * 1e3:.1f} ms, compile {self.compile_seconds:.2f} s; "
            f"cache {self.cache_hits} hits, {self.cache_misses} misses, {self.load_seconds:.2f} s loading",
            f"  {'piece':14} {'kind':9} {'nodes':>5} {'hash':16} {'compile':>9}  shared with",
        ]
        for r in self.rows:
            mark = "b" if r.background else "w" if r.worker else "s"
            seconds = f"{r.seconds:8.2f}{mark}" if r.compiled else "-"
            name, twin = self._name(r.graph, r.name), self._name(r.graph, r.shared_with) if r.shared_with else ""
            lines.append(f"  {name:14} {r.kind:9} {r.nodes:5} {r.hash or '-':16} {seconds:>9}  {twin}")
        waited = self._waited()
        if waited:
            lines.append(f"  waited: {waited}")
        if self.stages:
            stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.stages.items())
            lines.append(f"  {self.origin}: {stages}")
        if self.traced_once:
            lines.append(f"  traced once per kind of layer: {self.traced_once}")
        if any(r.worker and not r.background for r in self.rows):
            lines.append("  compile column: w, compiled in a worker (seconds from submission)")
        if any(r.background for r in self.rows):
            lines.append(
                "  compile column: b, compiled in a worker in the background, the piece running as its code until "
                "it loaded (seconds from submission to the load; 0: not loaded yet)"
            )
        lines.append(f"  {HASH_NOTE}")
        if self.specialisations:
            done = ", ".join(
                f"{self._name(s.graph, s.piece)} at {short(s.size)} ({_where(s)})" for s in self.specialisations
            )
            lines.append(f"  compiled for one size: {done}")
        return "\n".join(lines)

    def _waited(self) -> str:
        """What the caller waited for, in order: Dynamo's trace, the CPU probe (part of
        the first compile of a process), the backend, the first call."""
        parts = []
        if self.trace_seconds is not None:
            parts.append(f"Dynamo's trace {self.trace_seconds:.2f} s")
        if self.probe_seconds >= 0.05:
            parts.append(f"Inductor's CPU probe {self.probe_seconds:.2f} s (once per process, gcc builds when cold)")
        if parts:
            parts.append(f"split and compile {self.split_seconds + self.compile_seconds:.2f} s")
        if self.first_call_seconds is not None:
            total = (self.trace_seconds or 0.0) + self.split_seconds + self.compile_seconds + self.first_call_seconds
            parts.append(f"first run {self.first_call_seconds:.2f} s; {total:.2f} s to the end of the first call")
        return ", ".join(parts)

    def _name(self, graph: int, piece: str) -> str:
        """A piece's name, with its graph where there are several."""
        return f"{graph}:{piece}" if self.graphs > 1 else piece


def _where(s: Specialisation) -> str:
    if s.cached:
        return "cache"
    # a worker's time runs from the job's submission: it holds the wait for a free worker (and a new
    # worker's start-up) and a compile on one thread, where this process's Inductor uses every core
    return f"{s.seconds:.2f} s in a worker, from submission" if s.worker else f"{s.seconds:.2f} s"


class Progress:
    """A one-line progress indicator on a terminal, silent elsewhere."""

    def __init__(self, total: int, stream: TextIO | None = None, prefix: str = "") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = total > 1 and self.stream.isatty()
        self.total = total
        self.prefix = prefix
        self.done = 0

    def step(self, label: str) -> None:
        """Piece ``label`` starts to compile (it may be a twin, which takes no time)."""
        if not self.enabled:
            return
        self.done += 1
        self.stream.write(f"\rfxsplit: {self.prefix}compiling {self.done}/{self.total} {label:<20}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


_last: tuple[list[CompileReport], str] | None = None


def remember(reports: list[CompileReport], compiler: str) -> None:
    """Make ``reports`` (a backend's, still growing) what :func:`last_report` combines:
    the reports, not the backend and its compiled pieces."""
    global _last
    _last = (reports, compiler)


def last_report() -> CompileReport | None:
    """The report of the backend that compiled last in this process, such as the one
    ``torch.compile(model, backend="fxsplit")`` made, which has no object of its own to
    ask; None before any compile. It is complete once the first call has returned.

    Example::

        compiled = torch.compile(model, backend="fxsplit", dynamic=True)
        compiled(*inputs)
        print(fxsplit.last_report().format())
    """
    return CompileReport.combine(*_last) if _last is not None else None


def time_first_call(module: torch.nn.Module, report: CompileReport) -> None:
    """Record in ``report`` how long the first call of ``module`` ran, then forget it:
    the hook removes itself, so later calls take nothing from it."""
    started: list[float] = []

    def before(module: Any, args: Any) -> None:
        started.append(time.perf_counter())

    def after(module: Any, args: Any, output: Any) -> None:
        report.first_call_seconds = time.perf_counter() - started[0]
        handles[0].remove()
        handles[1].remove()

    handles = [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
