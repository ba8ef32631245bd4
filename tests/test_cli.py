"""The fxsplit command line."""

from __future__ import annotations

import json

import pytest

from fxsplit import cli


def test_bench_json_reports_every_variant_and_the_same_piece_count(capsys):
    assert cli.main(["bench", "--layers", "2", "--reps", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (depth,) = report["results"]
    variants = {v["name"]: v for v in depth["variants"]}
    assert {"torch split_module", "torch split_module (lazy)", "fxsplit.split_graph", "fxsplit.split_module"} <= set(
        variants
    )
    assert {v["pieces"] for v in variants.values() if v["pieces"] is not None} == {5}
    assert variants["fxsplit.split_graph"]["split_ratio"] == 1.0


def test_bench_table_names_the_targets(capsys):
    assert cli.main(["bench", "--layers", "2", "--reps", "1"]) == 0
    out = capsys.readouterr().out
    assert "fxsplit.split_graph" in out and "µs per node" in out


@pytest.mark.parametrize("layers", ["0", "two", ""])
def test_bad_layer_lists_are_rejected(layers, capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--layers", layers])
    assert "--layers" in capsys.readouterr().err
