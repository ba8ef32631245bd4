"""fxsplit.integrations.vllm against a stand-in vLLM: what it replaces, what it checks,
and what it says; tests/in_vllm/ runs it in real vLLM."""

from __future__ import annotations

import logging
import sys
import types

import pytest
import torch
from conftest import captured

import fxsplit
from fxsplit.integrations import vllm as integration
from fxsplit.tools import models


def stand_in_vllm(monkeypatch, version="0.32.0", signature="graph, splitting_ops"):
    """A vllm package with the names fxsplit replaces."""
    package = types.ModuleType("vllm")
    package.__version__ = version
    compilation = types.ModuleType("vllm.compilation")
    backends = types.ModuleType("vllm.compilation.backends")
    namespace: dict = {}
    exec(f"def split_graph({signature}):\n    raise AssertionError('vLLM s own split ran')", namespace)
    backends.split_graph = namespace["split_graph"]

    class SplitItem:
        def __init__(self, submod_name, graph_id, is_splitting_graph, graph):
            self.submod_name, self.graph_id, self.is_splitting_graph, self.graph = (
                submod_name,
                graph_id,
                is_splitting_graph,
                graph,
            )

    backends.SplitItem = SplitItem
    package.compilation, compilation.backends = compilation, backends
    for name, module in (("vllm", package), ("vllm.compilation", compilation), ("vllm.compilation.backends", backends)):
        monkeypatch.setitem(sys.modules, name, module)
    return backends


def test_install_replaces_vllms_split_with_fxsplits_giving_vllms_items(monkeypatch):
    backends = stand_in_vllm(monkeypatch)
    assert integration.install() == "vLLM 0.32.0: vllm.compilation.backends.split_graph now runs fxsplit.split_graph"
    gm, args = captured(2)
    # vLLM's default list: names registered only by some models' code match nothing
    split, items = backends.split_graph(gm, ["vllm::mamba_mixer", models.ATTENTION_OP_NAME])
    assert all(isinstance(item, backends.SplitItem) for item in items)
    ours = fxsplit.split_graph(gm, [models.ATTENTION_OP_NAME])[1]
    assert [(i.submod_name, i.graph_id, i.is_splitting_graph) for i in items] == [
        (i.submod_name, i.graph_id, i.is_splitting_graph) for i in ours
    ]
    torch.testing.assert_close(split(*args), gm(*args), rtol=0, atol=0)
    assert integration.install() == "fxsplit.split_graph already splits for vLLM 0.32.0"


def test_a_vllm_whose_split_graph_differs_is_left_alone_with_the_reason(monkeypatch):
    backends = stand_in_vllm(monkeypatch, signature="graph, splitting_ops, extra")
    original = backends.split_graph
    with pytest.raises(
        integration.VllmIntegrationError, match=r"takes \(graph, splitting_ops, extra\).*changed nothing"
    ):
        integration.install()
    assert backends.split_graph is original
    del backends.split_graph
    with pytest.raises(integration.VllmIntegrationError, match="has no vllm.compilation.backends.split_graph"):
        integration.install()


def test_without_vllm_install_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(integration.VllmIntegrationError, match="vLLM does not import here"):
        integration.install()


def test_an_untested_vllm_is_installed_with_a_warning(monkeypatch, caplog):
    backends = stand_in_vllm(monkeypatch, version="0.40.1")
    with caplog.at_level(logging.WARNING):
        integration.install()
    assert "checked against vLLM 0.32, not 0.40.1" in caplog.text
    assert getattr(backends.split_graph, "__wrapped__", None) is fxsplit.split_graph


def test_the_plugin_acts_only_when_asked_and_says_why_not(monkeypatch, caplog):
    backends = stand_in_vllm(monkeypatch)
    original = backends.split_graph
    monkeypatch.delenv("FXSPLIT_VLLM", raising=False)
    with caplog.at_level(logging.INFO):
        integration.register()
    assert backends.split_graph is original and "plugin is off (set FXSPLIT_VLLM=1" in caplog.text
    monkeypatch.setenv("FXSPLIT_VLLM", "1")
    integration.register()
    assert backends.split_graph is not original
    stand_in_vllm(monkeypatch, signature="graph")
    with caplog.at_level(logging.WARNING):
        integration.register()  # cannot install: a warning, not a crash of vLLM's start
    assert "changed nothing" in caplog.text


def test_the_plugin_is_registered_for_vllm():
    from importlib.metadata import entry_points

    (plugin,) = [e for e in entry_points(group="vllm.general_plugins") if e.name == "fxsplit"]
    assert plugin.value == "fxsplit.integrations.vllm:register"
