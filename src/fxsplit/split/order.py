"""The order a split's pieces are called in, and the global-state regions they cut.

A piece boundary may cut a grad-mode or autocast region: each later piece the region
spans re-enters it, and each earlier one leaves autocast at its end, as torch's
``split_module`` does. Pieces run in the order they first appear, or in torch's
topological order; an assignment whose pieces need each other's values is a cycle,
named value by value in :class:`PartitionCycleError`.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

from torch.fx import Node

if TYPE_CHECKING:
    from .plan import PiecePlan


class PartitionCycleError(RuntimeError):
    """The assignment makes two partitions need each other's values."""


def decreasing(keys: list[Hashable]) -> bool:
    """Whether partition keys ever go down; keys that do not order are compared by
    first appearance."""
    try:
        return any(a > b for a, b in zip(keys, keys[1:]))  # type: ignore[operator]
    except TypeError:
        position = {key: i for i, key in enumerate(dict.fromkeys(keys))}
        return any(position[a] > position[b] for a, b in zip(keys, keys[1:]))


def add_region_bounds(
    pieces: dict[str, PiecePlan],
    grad_regions: dict[Node, list[str]],
    autocast_regions: dict[Node, list[str]],
    autocast_exits: dict[Node, Node],
) -> None:
    """Re-enter each global-state region in the later pieces it spans; leave autocast
    at the end of the earlier ones (in reverse order of entry)."""
    for regions in (autocast_regions, grad_regions):
        for node, names in regions.items():
            for name in _later(names):
                pieces[name].prelude.append(node)
    for enter in reversed(autocast_regions):
        for name in _earlier(autocast_regions[enter]):
            pieces[name].epilogue.append((autocast_exits[enter], enter))


def _later(names: list[str]) -> list[str]:
    """Distinct region pieces after the first, in order."""
    unique = list(dict.fromkeys(names))
    return unique[1:]


def _earlier(names: list[str]) -> list[str]:
    """Distinct region pieces before the last, in order."""
    unique = list(dict.fromkeys(names))
    return unique[:-1]


def topological_order(pieces: dict[str, PiecePlan]) -> list[str]:
    """torch ``split_module``'s partition order (a stack over ready partitions)."""
    waiting = {name: dict(p.dependencies) for name, p in pieces.items()}
    ready = [name for name, deps in waiting.items() if not deps]
    order: list[str] = []
    while ready:
        name = ready.pop()
        order.append(name)
        for dependent in pieces[name].dependents:
            waiting[dependent].pop(name, None)
            if not waiting[dependent]:
                ready.append(dependent)
    if len(order) != len(pieces):
        _raise_cycle(pieces, [n for n in pieces if n not in set(order)])
    return order


def checked_original_order(pieces: dict[str, PiecePlan]) -> list[str]:
    seen: set[str] = set()
    for name, piece in pieces.items():
        for dependency in piece.dependencies:
            if dependency not in seen and dependency != name:
                topological_order(pieces)  # names the cycle if there is one
                raise PartitionCycleError(
                    f"partition {name!r} uses values from partition {dependency!r}, which comes "
                    f"later in the graph; assign nodes so that partitions only use values "
                    f"from partitions that appear before them, or split in topological order"
                )
        seen.add(name)
    return list(pieces)


def _raise_cycle(pieces: dict[str, PiecePlan], stuck: list[str]) -> None:
    # Walk dependencies among the stuck partitions until one repeats: that is a cycle.
    path = [stuck[0]]
    stuck_set = set(stuck)
    while True:
        nxt = next(d for d in pieces[path[-1]].dependencies if d in stuck_set)
        if nxt in path:
            cycle = path[path.index(nxt) :] + [nxt]
            break
        path.append(nxt)
    steps = []
    for user, producer in zip(cycle, cycle[1:]):
        value = next(v for v in pieces[producer].outputs if v in pieces[user].inputs)
        steps.append(f"partition {user!r} uses {value.name!r} from partition {producer!r}")
    raise PartitionCycleError(
        "cycle exists between partitions: "
        + "; ".join(steps)
        + ". Change split_callback so that no two partitions need each other's values."
    )
