"""The fxsplit command line."""

from __future__ import annotations

import json

import pytest

from fxsplit.tools import cli


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


def result(mode: str, layers: int, seconds: float, forward_ms: float = 10.0):
    from fxsplit.tools.compile_bench import CompileResult

    return CompileResult(mode, layers, seconds, forward_ms, forward_ms, 3 if mode != "inductor" else None)


def test_compile_targets_are_judged_from_the_results():
    from fxsplit.tools.compile_bench import target_checks

    checks = dict(
        (text.split(" (")[0], met)
        for text, met in target_checks(
            [
                result("inductor", 2, 10.0),
                result("fxsplit", 2, 10.0),
                result("inductor", 28, 40.0, forward_ms=10.0),
                result("fxsplit", 28, 12.0, forward_ms=10.5),
            ]
        )
    )
    assert checks == {
        "fxsplit at 28 layers <= 1.3x fxsplit at 2": True,
        "fxsplit at 28 layers <= 0.3x whole-graph inductor": True,
        "steady forward at 28 layers within 1.1x of whole-graph": True,
    }


def test_warm_table_judges_each_warm_run():
    from fxsplit.tools.compile_bench import format_warm

    text = format_warm(28, {"cold": result("fxsplit", 28, 20.0), "warm": result("fxsplit", 28, 3.0)})
    assert "[met] warm: warm <= 0.2x cold (0.15x)" in text


def test_plot_does_not_apply_to_compile_bench():
    with pytest.raises(SystemExit, match="does not apply to --compile"):
        cli.main(["bench", "--compile", "--plot", "x.png"])
