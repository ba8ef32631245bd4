"""compile_sizes as a table: sizes and ranges, checked, and which one a size runs."""

from __future__ import annotations

import pytest

from fxsplit.runtime.sizes import SizeTable, named, order


def test_an_exact_size_wins_over_a_range_and_other_sizes_run_the_general_version():
    table = SizeTable([16, (8, 32), 4, (64, 128)])
    assert list(table) == [4, 16, (8, 32), (64, 128)] and len(table) == 4
    looked_up = {n: table.lookup(n) for n in (2, 4, 7, 8, 16, 17, 32, 33, 64, 100, 128, 129)}
    assert looked_up == {
        2: None, 4: 4, 7: None, 8: (8, 32), 16: 16, 17: (8, 32), 32: (8, 32),
        33: None, 64: (64, 128), 100: (64, 128), 128: (64, 128), 129: None,
    }  # fmt: skip
    assert not SizeTable() and SizeTable([8]) == SizeTable([8, 8])
    assert table.described() == [4, 16, [8, 32], [64, 128]]
    assert sorted([(8, 32), 16, 4], key=order) == [4, 16, (8, 32)]
    assert (named(8), named((8, 32))) == ("size 8", "sizes 8 to 32")


@pytest.mark.parametrize(
    "entries, error, message",
    [
        ([(8, 32), (16, 64)], ValueError, r"the ranges \(8, 32\) and \(16, 64\) overlap"),
        ([(32, 8)], ValueError, r"the range \(32, 8\) needs lo < hi"),
        ([(8, 8)], ValueError, "for one size, give the size itself"),
        ([(1, 2, 3)], ValueError, r"a range is \(lo, hi\)"),
        (["big"], TypeError, "'big' is neither a size"),
        ([True], TypeError, "True is neither a size"),
        ([-4], ValueError, "-4 is not a size"),
    ],
)
def test_entries_that_are_not_sizes_or_ranges_are_refused_with_the_reason(entries, error, message):
    with pytest.raises(error, match=message):
        SizeTable(entries)
