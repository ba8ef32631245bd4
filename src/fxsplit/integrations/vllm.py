"""fxsplit's splitter inside vLLM.

vLLM's piecewise compilation (``VllmBackend``) cuts Dynamo's graph with
``vllm.compilation.backends.split_graph``. :func:`install` puts
:func:`fxsplit.split_graph`, which keeps vLLM's contract (the same pieces, flags, names
and order, op names that no model registered matching nothing) in its place, after
checking that this vLLM has the function with the signature fxsplit replaces::

    import fxsplit.integrations.vllm

    fxsplit.integrations.vllm.install()  # before the engine is created

As a vLLM plugin (the ``vllm.general_plugins`` entry point that installing fxsplit
registers), vLLM calls :func:`register` in each of its processes; it installs the
splitter when ``FXSPLIT_VLLM=1`` is set, so that ``FXSPLIT_VLLM=1 vllm serve ...``
uses it without a code change, and otherwise says in vLLM's log that it is off.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from typing import Any

from ..split.ops import SplittingOp
from ..split.splitters import split_graph

ENABLE_ENV = "FXSPLIT_VLLM"
TESTED = ((0, 32),)  # vLLM releases (major, minor) whose split_graph fxsplit was checked against
_PARAMETERS = ["graph", "splitting_ops"]


class VllmIntegrationError(RuntimeError):
    """This vLLM does not have what fxsplit would replace."""


def install() -> str:
    """Make vLLM's piecewise compilation split with fxsplit; returns what was done.

    Raises :class:`VllmIntegrationError`, naming what is missing, where vLLM cannot be
    imported or does not have ``vllm.compilation.backends.split_graph(graph,
    splitting_ops)``. A vLLM release fxsplit was not checked against is installed with
    a warning. Calling it again changes nothing.
    """
    try:
        import vllm
        import vllm.compilation.backends as backends
    except ImportError as error:
        raise VllmIntegrationError(f"fxsplit cannot split for vLLM: vLLM does not import here ({error})") from error
    version = str(getattr(vllm, "__version__", "unknown"))
    current = getattr(backends, "split_graph", None)
    if getattr(current, "__wrapped__", None) is split_graph:
        return f"fxsplit.split_graph already splits for vLLM {version}"
    if not callable(current) or not hasattr(backends, "SplitItem"):
        raise VllmIntegrationError(
            f"vLLM {version} has no vllm.compilation.backends.split_graph and SplitItem to replace; fxsplit "
            f"changed nothing (it supports vLLM {_tested()})"
        )
    parameters = list(inspect.signature(current).parameters)
    if parameters != _PARAMETERS:
        raise VllmIntegrationError(
            f"vLLM {version}'s split_graph takes ({', '.join(parameters)}), not ({', '.join(_PARAMETERS)}); "
            f"fxsplit changed nothing (it supports vLLM {_tested()})"
        )
    if _release(version) not in TESTED:
        _log().warning(
            "fxsplit was checked against vLLM %s, not %s; installing its splitter anyway", _tested(), version
        )
    backends.split_graph = _for(backends)
    done = f"vLLM {version}: vllm.compilation.backends.split_graph now runs fxsplit.split_graph"
    _log().info("%s", done)
    return done


def register() -> None:
    """vLLM's plugin hook: install the splitter when ``FXSPLIT_VLLM=1``; otherwise, or
    where it cannot be installed, say so in vLLM's log and change nothing."""
    if os.environ.get(ENABLE_ENV) != "1":
        _log().info("fxsplit's vLLM plugin is off (set %s=1 to split vLLM's graphs with fxsplit)", ENABLE_ENV)
        return
    try:
        install()
    except VllmIntegrationError as error:
        _log().warning("%s", error)


def _log() -> logging.Logger:
    """A logger whose messages show in vLLM's log, as vLLM makes its own (it configures
    logging itself, which silences loggers made before it); fxsplit's where vLLM is
    missing."""
    try:
        from vllm.logger import init_logger
    except ImportError:
        return logging.getLogger("fxsplit")
    return init_logger("vllm.fxsplit")


def _for(backends: Any) -> Any:
    """fxsplit's split_graph, returning vLLM's own ``SplitItem``s."""
    item_class = backends.SplitItem

    def vllm_split_graph(graph: Any, splitting_ops: list[SplittingOp]) -> tuple[Any, list[Any]]:
        started = time.perf_counter()
        split, items = split_graph(graph, splitting_ops)
        # said here too: a plugin installs before vLLM has set up its log, which drops what came earlier
        _log().info(
            "fxsplit split vLLM's graph (%d nodes) into %d pieces in %.1f ms",
            len(graph.graph.nodes),
            len(items),
            (time.perf_counter() - started) * 1e3,
        )
        return split, [item_class(i.submod_name, i.graph_id, i.is_splitting_graph, i.graph) for i in items]

    vllm_split_graph.__wrapped__ = split_graph  # type: ignore[attr-defined]
    vllm_split_graph.__doc__ = "fxsplit.split_graph, as vllm.compilation.backends.split_graph."
    return vllm_split_graph


def _release(version: str) -> tuple[int, ...]:
    parts = version.split(".")[:2]
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else ()


def _tested() -> str:
    return ", ".join(".".join(map(str, release)) for release in TESTED)
