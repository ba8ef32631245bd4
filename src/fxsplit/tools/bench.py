"""``fxsplit bench``: where split time goes, fxsplit against torch's splitters.

For each depth, the synthetic model is captured once by Dynamo (``dynamic=True``) and
every variant splits that same graph at the attention op, with the same partition
assignment, interleaved rep by rep so that drift on the machine hits them alike. Each
variant's output is checked against the unsplit graph before anything is timed.

Two times per variant: the split alone, and split plus the first call of the split
module (where lazy variants pay their deferred code generation). As in ``timeit``,
garbage collection runs before and is off during each timed region.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.fx import GraphModule
from torch.fx.passes.split_module import split_module as torch_split_module

from .. import _compat
from ..split.ops import matcher
from ..split.splitters import _assign_pieces, split_graph, split_module
from . import models
from .capture import capture_graph
from .targets import Check, ratio_check

SPLIT_OPS = [models.ATTENTION_OP_NAME]
REFERENCE = "fxsplit.split_graph"


@dataclass
class VariantResult:
    name: str
    pieces: int | None
    split_min_ms: float
    split_median_ms: float
    first_call_min_ms: float | None
    first_call_median_ms: float | None
    split_ratio: float = 0.0  # to fxsplit.split_graph, min against min
    first_call_ratio: float | None = None


@dataclass
class DepthResult:
    layers: int
    nodes: int
    variants: list[VariantResult] = field(default_factory=list)

    def variant(self, name: str) -> VariantResult | None:
        return next((v for v in self.variants if v.name == name), None)


def _variants(gm: GraphModule) -> dict[str, Callable[[], Any]]:
    """Name -> zero-argument split. Torch variants compute the partition assignment
    inside the timed call too, as vLLM's ``split_graph`` does before calling them."""
    is_splitting_op = matcher(SPLIT_OPS)

    def assignment() -> Callable[[torch.fx.Node], int]:
        return _assign_pieces(gm.graph, is_splitting_op)[0].__getitem__

    def torch_lazy() -> GraphModule:
        with _compat.torch_lazy_graph_modules():
            return torch_split_module(gm, gm, assignment(), keep_original_order=True)

    variants: dict[str, Callable[[], Any]] = {
        "torch split_module": lambda: torch_split_module(gm, gm, assignment(), keep_original_order=True),
        "torch split_module (lazy)": torch_lazy,
    }
    simple = _compat.split_module_simple()
    if simple is not None:
        variants["torch split_module_simple"] = lambda: simple(gm, _assign_pieces(gm.graph, is_splitting_op)[0])
    variants[REFERENCE] = lambda: split_graph(gm, SPLIT_OPS)[0]
    variants["fxsplit.split_module"] = lambda: split_module(gm, None, assignment(), keep_original_order=True)
    variants["graph_copy (floor)"] = lambda: torch.fx.Graph().graph_copy(gm.graph, {})
    return variants


def _timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3
    finally:
        gc.enable()


def bench_depth(layers: int, reps: int) -> DepthResult:
    model, inputs = models.build(layers)
    with torch.no_grad():
        gm, args = capture_graph(model, inputs)
        return _bench_graph(layers, gm, args, reps)


def _bench_graph(layers: int, gm: GraphModule, args: list[Any], reps: int) -> DepthResult:
    expected = gm(*args)
    variants = _variants(gm)
    callable_variants = {n for n in variants if "floor" not in n}

    pieces: dict[str, int | None] = {}
    for name, split in variants.items():
        result = split()
        if name in callable_variants:
            torch.testing.assert_close(result(*args), expected, rtol=0, atol=0, msg=f"{name} output differs")
            pieces[name] = sum(1 for n, _ in result.named_children() if n.startswith("submod_"))
        else:
            pieces[name] = None

    split_times: dict[str, list[float]] = {n: [] for n in variants}
    call_times: dict[str, list[float]] = {n: [] for n in callable_variants}
    names = list(variants)
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            split = variants[name]
            split_times[name].append(_timed(split))
            if name in callable_variants:
                call_times[name].append(_timed(lambda split=split: split()(*args)))  # type: ignore[misc]

    result = DepthResult(layers=layers, nodes=len(gm.graph.nodes))
    for name in names:
        calls = call_times.get(name)
        result.variants.append(
            VariantResult(
                name=name,
                pieces=pieces[name],
                split_min_ms=min(split_times[name]),
                split_median_ms=statistics.median(split_times[name]),
                first_call_min_ms=min(calls) if calls else None,
                first_call_median_ms=statistics.median(calls) if calls else None,
            )
        )
    reference = result.variant(REFERENCE)
    assert reference is not None and reference.first_call_min_ms is not None
    for v in result.variants:
        v.split_ratio = v.split_min_ms / reference.split_min_ms
        if v.first_call_min_ms is not None:
            v.first_call_ratio = v.first_call_min_ms / reference.first_call_min_ms
    return result


def target_checks(results: Sequence[DepthResult]) -> list[Check]:
    """The splitter's speed targets (issue #2), as (description, met)."""
    checks: list[Check] = []

    def ms(r: DepthResult, name: str, first_call: bool = False) -> float | None:
        v = r.variant(name)
        if v is None:
            return None
        return v.first_call_min_ms if first_call else v.split_min_ms

    for r in results:
        if r.layers not in (28, 80):
            continue
        ours = ms(r, REFERENCE)
        simple = ms(r, "torch split_module_simple")
        lazy = ms(r, "torch split_module (lazy)")
        ours_call, simple_call = ms(r, REFERENCE, True), ms(r, "torch split_module_simple", True)
        drop_in = ms(r, "fxsplit.split_module")
        assert ours is not None and lazy is not None and drop_in is not None and ours_call is not None
        if simple is not None and simple_call is not None:
            checks.append(ratio_check(f"{r.layers} layers: split_graph", ours / simple, 0.5, "split_module_simple"))
            checks.append(ratio_check(f"{r.layers} layers: split+first call", ours_call / simple_call, 0.5, "simple's"))
        checks.append(ratio_check(f"{r.layers} layers: split_graph", ours / lazy, 0.25, "lazy split_module"))
        checks.append(ratio_check(f"{r.layers} layers: fxsplit.split_module", drop_in / lazy, 0.5, "lazy split_module"))
    depths = {r.layers: r for r in results}
    if 8 in depths and 128 in depths:
        per_node = {d: depths[d].variant(REFERENCE).split_min_ms / depths[d].nodes for d in depths}  # type: ignore[union-attr]
        center = statistics.median(per_node.values())
        worst = max(per_node.values(), key=lambda t: abs(t / center - 1))
        deviation = worst / center - 1
        checks.append(
            (
                f"time per node within ±20% of its median from 8 to 128 layers (worst {deviation:+.0%})",
                abs(deviation) <= 0.2,
            )
        )
    return checks


def format_table(results: Sequence[DepthResult]) -> str:
    lines = []
    header = (
        f"{'variant':28} {'pieces':>6} {'split ms (min/med)':>19} {'x fxsplit':>9} "
        f"{'split+1st call ms':>18} {'x fxsplit':>9}"
    )
    for r in results:
        lines.append(f"\n{r.layers} layers, {r.nodes} nodes")
        lines.append(header)
        for v in r.variants:
            split = f"{v.split_min_ms:8.2f} /{v.split_median_ms:8.2f}"
            call = (
                f"{v.first_call_min_ms:8.2f} /{v.first_call_median_ms:7.2f}" if v.first_call_min_ms is not None else "-"
            )
            call_ratio = f"{v.first_call_ratio:.2f}" if v.first_call_ratio is not None else "-"
            pieces = str(v.pieces) if v.pieces is not None else "-"
            lines.append(f"{v.name:28} {pieces:>6} {split:>19} {v.split_ratio:9.2f} {call:>18} {call_ratio:>9}")
        per_node = r.variant(REFERENCE)
        assert per_node is not None
        lines.append(f"fxsplit.split_graph: {per_node.split_min_ms / r.nodes * 1e3:.2f} µs per node")
    return "\n".join(lines)


def require_matplotlib() -> None:
    """Fail before a long run, not after it, when plotting is impossible."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit("fxsplit: --plot needs matplotlib: pip install 'fxsplit[plot]'") from None


def plot(results: Sequence[DepthResult], path: str) -> None:
    """Split time, and split plus first call, against depth: one panel each, log time
    axes so that close variants stay apart, a tick per measured depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths = [r.layers for r in results]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True)
    panels = (("split", "split_min_ms"), ("split + first call of the split model", "first_call_min_ms"))
    for ax, (title, measure) in zip(axes, panels):
        for name in [v.name for v in results[0].variants]:
            times = [getattr(r.variant(name), measure) for r in results]
            if any(t is None for t in times):
                continue  # graph_copy has nothing to call
            label = "graph_copy (floor: one copy of the graph, no split)" if "floor" in name else name
            ax.plot(depths, times, marker="o", label=label, linewidth=2.5 if name == REFERENCE else 1.2)
        ax.set_yscale("log")
        ax.set_xticks(depths)
        ax.set_xticklabels([str(d) for d in depths])
        ax.set_xlabel("decoder layers")
        ax.set_ylabel("ms, minimum of the runs (log scale)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    fig.suptitle(f"Splitting the synthetic model at attention (torch {torch.__version__})")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=120)
