"""fxsplit inspect, dumps, and fxsplit cache."""

from __future__ import annotations

import json

import torch
from conftest import hf_llama, logits_of

import fxsplit
from fxsplit.compilation.cache import PieceCache
from fxsplit.tools import cli, models


def tiny_llama():
    """A --model factory: a tiny HuggingFace Llama and its example inputs."""
    torch.manual_seed(0)
    return logits_of(hf_llama(3).eval()), (torch.randint(0, 128, (2, 8)),)


def test_inspect_built_in_model_shows_twins_and_dumps(capsys, tmp_path):
    assert cli.main(["inspect", "--layers", "4", "--graph", "--dump", str(tmp_path / "dump")]) == 0
    out = capsys.readouterr().out
    assert "9 pieces: 5 compute (3 distinct), 4 splitting" in out
    (row,) = [line for line in out.splitlines() if line.split()[:2] == ["4", "submod_4"]]
    assert row.split()[-1] == "submod_2"  # a middle piece names its twin
    assert "def forward" in out
    files = {p.name for p in (tmp_path / "dump").iterdir()}
    assert {"original.py", "split.py", "report.json"} | {f"submod_{i}.py" for i in range(9)} <= files
    report = json.loads((tmp_path / "dump" / "report.json").read_text())
    assert [p["shared_with"] for p in report["pieces"]][4] == "submod_2"


def test_inspect_a_tiny_hf_model_as_json(capsys):
    assert cli.main(["inspect", "--model", "test_inspect:tiny_llama", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    kinds = [p["kind"] for p in result["pieces"]]
    assert kinds == ["compute", "splitting"] * 3 + ["compute"]
    assert "submod_0" in result["split_graph"]


def test_inspect_rejects_a_bad_model_spec(capsys):
    assert cli.main(["inspect", "--model", "nocolon"]) == 2
    assert capsys.readouterr().err == "fxsplit: --model takes module:factory, got 'nocolon'\n"
    assert cli.main(["inspect", "--model", "no_such_module:f"]) == 2
    assert capsys.readouterr().err.startswith("fxsplit: cannot load --model 'no_such_module:f'")


def test_backend_dump_dir_writes_every_compilation(tmp_path):
    model, inputs = models.build(2)
    backend = fxsplit.PiecewiseBackend(splitting_ops=[models.ATTENTION_OP_NAME], compiler="eager", dump_dir=tmp_path)
    torch._dynamo.reset()
    with torch.no_grad():
        torch.compile(model, backend=backend, dynamic=True)(*inputs)
    dump = tmp_path / "graph_0"
    assert {"original.py", "split.py", "submod_0.py", "submod_4.py"} <= {p.name for p in dump.iterdir()}
    report = json.loads((dump / "report.json").read_text())
    assert report["compiler_calls"] == 3 and set(report["generated_code"]) == {"submod_0", "submod_2", "submod_4"}


def test_cache_info_and_clear(capsys, tmp_path):
    PieceCache(tmp_path).store("ab" * 32, lambda p: p.write_bytes(b"x" * 2048), {})
    assert cli.main(["cache", "info", "--dir", str(tmp_path)]) == 0
    assert "1 entries" in capsys.readouterr().out
    assert cli.main(["cache", "clear", "--dir", str(tmp_path)]) == 0
    assert "removed 1 entries" in capsys.readouterr().out
    assert PieceCache(tmp_path).info().entries == 0
