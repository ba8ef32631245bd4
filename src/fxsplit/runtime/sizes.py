"""Which compiled version of a piece runs a size: the table of ``compile_sizes``.

An entry is a size (a version compiled for it alone) or a range ``(lo, hi)``, both
ends included (one version compiled for every size in it). An exact size wins over
a range that holds it; a size in no entry runs the general version.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator

SizeKey = int | tuple[int, int]
"""An entry of ``compile_sizes``: a size, or a range ``(lo, hi)`` with both ends included."""


class SizeTable:
    """The entries of ``compile_sizes``, checked, and the lookup of a size in them."""

    def __init__(self, entries: Iterable[SizeKey] = ()) -> None:
        exact: set[int] = set()
        ranges: set[tuple[int, int]] = set()
        for entry in entries:
            if isinstance(entry, (tuple, list)):
                ranges.add(_range(entry))
            else:
                exact.add(_size(entry))
        self.exact = frozenset(exact)
        self.ranges = tuple(sorted(ranges))
        for (lo, hi), (next_lo, next_hi) in zip(self.ranges, self.ranges[1:]):
            if next_lo <= hi:
                raise ValueError(
                    f"compile_sizes: the ranges ({lo}, {hi}) and ({next_lo}, {next_hi}) overlap; a size must fall in "
                    f"one range at most"
                )
        self._starts = [lo for lo, _ in self.ranges]

    def __bool__(self) -> bool:
        return bool(self.exact or self.ranges)

    def __len__(self) -> int:
        return len(self.exact) + len(self.ranges)

    def __iter__(self) -> Iterator[SizeKey]:
        """Every entry: the sizes in order, then the ranges in order."""
        yield from sorted(self.exact)
        yield from self.ranges

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SizeTable) and (self.exact, self.ranges) == (other.exact, other.ranges)

    def __hash__(self) -> int:
        return hash((self.exact, self.ranges))

    def __repr__(self) -> str:
        return f"SizeTable({list(self)!r})"

    def lookup(self, size: int) -> SizeKey | None:
        """The entry whose version runs ``size``; None for the general version."""
        if size in self.exact:
            return size
        at = bisect_right(self._starts, size) - 1
        if at >= 0 and size <= self.ranges[at][1]:
            return self.ranges[at]
        return None

    def described(self) -> list[int | list[int]]:
        """The entries as JSON values (a range as a list of two)."""
        return [list(entry) if isinstance(entry, tuple) else entry for entry in self]


def _size(entry: object) -> int:
    if isinstance(entry, bool):
        raise TypeError(f"compile_sizes: {entry!r} is neither a size (an int) nor a range (lo, hi)")
    try:
        size = int(entry)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise TypeError(f"compile_sizes: {entry!r} is neither a size (an int) nor a range (lo, hi)") from None
    if size < 0:
        raise ValueError(f"compile_sizes: {size} is not a size")
    return size


def _range(entry: tuple[int, ...] | list[int]) -> tuple[int, int]:
    if len(entry) != 2:
        raise ValueError(f"compile_sizes: a range is (lo, hi), got {tuple(entry)!r}")
    lo, hi = _size(entry[0]), _size(entry[1])
    if lo >= hi:
        raise ValueError(f"compile_sizes: the range ({lo}, {hi}) needs lo < hi; for one size, give the size itself")
    return lo, hi


def order(key: SizeKey) -> tuple[int, int, int]:
    """Sizes before ranges, each in order: for sorting entries of both kinds."""
    return (0, key, key) if isinstance(key, int) else (1, *key)


def named(key: SizeKey) -> str:
    """An entry in words, for messages: "size 8", "sizes 16 to 64"."""
    return f"size {key}" if isinstance(key, int) else f"sizes {key[0]} to {key[1]}"


def short(key: SizeKey) -> str:
    """An entry for tables: "8", "16-64"."""
    return str(key) if isinstance(key, int) else f"{key[0]}-{key[1]}"
