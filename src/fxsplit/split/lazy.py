"""GraphModules that build their graph and generate their Python code only when needed.

A split produces dozens of pieces that are mostly handed to a compiler and never run as
Python, so fxsplit's pieces defer both costs of a ``torch.fx.GraphModule``:

* the ``fx.Graph`` is built from the split plan on first access to ``.graph``;
* Python code is generated on the first call, ``.code``, ``str()``, pickling or
  ``deepcopy`` (as torch's ``_LazyGraphModule`` does), at most once per piece.

Pieces of one split that are structurally identical (the layers of a deep model) share
one generated ``forward``: a piece whose graph nobody has looked at yet takes the
function generated for its first sibling instead of generating its own. A piece whose
graph has been built, and so may have been edited, always generates from that graph.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.fx import Graph, GraphModule
from torch.fx.graph import PythonCode

from .. import _compat

# One lock for all materialisation: it is taken only on first use of a piece, and a
# reentrant lock lets building a graph nest inside generating its code.
_MATERIALIZE_LOCK = threading.RLock()

# forward functions generated so far for one split, by structure key
CodeShare = dict[Hashable, Callable[..., Any]]


@dataclass(eq=False)
class _Deferred:
    build_graph: Callable[[], Graph] | None
    share: CodeShare | None
    structure_key: Callable[[], Hashable | None] | None
    node_count: int | None
    python_code: Any = None  # this module's own generated code, once generated


# fxsplit's bookkeeping lives beside each module, not in its __dict__: torch copies,
# pickles and hashes a GraphModule's __dict__ (deepcopy, AOTAutograd's cache key),
# and must see only what any GraphModule has.
_STATE: weakref.WeakKeyDictionary[torch.nn.Module, _Deferred] = weakref.WeakKeyDictionary()


if TYPE_CHECKING:
    _Base = GraphModule
else:
    _Base = object


class LazyGraphModule(_Base):
    """A ``torch.fx.GraphModule`` whose graph and code are built on first use.

    Instances are made by :func:`make_lazy_module`; every concrete instance is also an
    instance of ``torch.fx.GraphModule`` (and of torch's ``_LazyGraphModule`` where this
    torch has it, so torch's own passes treat it as lazy).

    Example::

        piece = split_gm.submod_0          # nothing generated yet
        piece.code                         # generates this piece's code, once
    """

    def __getattr__(self, name: str) -> Any:
        if name == "_graph":
            return self._materialize_graph()
        return super().__getattr__(name)

    def _materialize_graph(self) -> Graph:
        with _MATERIALIZE_LOCK:
            graph = self.__dict__.get("_graph")
            if graph is not None:
                return graph
            deferred = _STATE.get(self)
            if deferred is None or deferred.build_graph is None:
                raise AttributeError(f"{type(self).__name__} has no graph")
            graph = deferred.build_graph()
            graph.owning_module = self
            self.__dict__["_graph"] = graph
            return graph

    def _lazy_forward(self, *args: Any, **kwargs: Any) -> Any:
        self._ensure_forward()
        return self(*args, **kwargs)

    forward = _lazy_forward

    def _ensure_forward(self) -> None:
        cls = type(self)
        if cls.forward is not cls._lazy_forward:
            return
        with _MATERIALIZE_LOCK:
            if cls.forward is not cls._lazy_forward:
                return
            key, share = self._share_slot()
            shared = share.get(key) if share is not None else None
            if shared is not None:
                cls.forward = shared
                return
            self._own_python_code()
            if share is not None:
                share[key] = cls.forward

    def _share_slot(self) -> tuple[Hashable, CodeShare | None]:
        """The key under which this piece may share code, if it may."""
        deferred = _STATE.get(self)
        if deferred is None or deferred.share is None or deferred.structure_key is None:
            return None, None
        if "_graph" in self.__dict__:
            return None, None
        key = deferred.structure_key()
        return (key, deferred.share) if key is not None else (None, None)

    def _own_python_code(self) -> Any:
        """Generate this module's own code from its graph (once) and install it."""
        with _MATERIALIZE_LOCK:
            deferred = _STATE.get(self)
            if deferred is None:
                deferred = _STATE[self] = _Deferred(None, None, None, None)
            if deferred.python_code is None:
                deferred.python_code = GraphModule.recompile(self)
            return deferred.python_code

    def recompile(self) -> None:  # type: ignore[override]
        """Mark the code stale; it is regenerated from the graph when next needed.

        A piece whose graph was never built cannot have changed, so this is a no-op
        for it (a parent's ``recompile`` calls it on every child).
        """
        if "_graph" not in self.__dict__:
            return
        cls = type(self)
        cls.forward = cls._lazy_forward
        deferred = _STATE.get(self)
        if deferred is not None:
            deferred.python_code = None

    def real_recompile(self) -> None:
        """Generate the real code now (torch's ``force_recompile`` calls this)."""
        self._own_python_code()

    def _real_recompile(self) -> Any:
        return self._own_python_code()

    @property
    def code(self) -> str:
        self._own_python_code()
        return self._code

    def __str__(self) -> str:
        self._own_python_code()
        return GraphModule.__str__(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> GraphModule:
        self._materialize_graph()
        return GraphModule.__deepcopy__(self, memo)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        python_code = self._own_python_code()
        state = {k: v for k, v in self.__dict__.items() if k != "_graph"}
        return _compat.reduce_graph_module(self, state, python_code)


_CONCRETE_CLASSES: dict[type[GraphModule], type[GraphModule]] = {}


def _concrete_class(base: type[GraphModule]) -> type[GraphModule]:
    cls = _CONCRETE_CLASSES.get(base)
    if cls is None:
        cls = _CONCRETE_CLASSES[base] = type("LazyGraphModule", (LazyGraphModule, base), {"__module__": __name__})
    return cls


def make_lazy_module(
    build_graph: Callable[[], Graph],
    attrs: dict[str, Any] | None = None,
    *,
    share: CodeShare | None = None,
    structure_key: Callable[[], Hashable | None] | None = None,
    node_count: int | None = None,
) -> GraphModule:
    """A lazy GraphModule over the graph that ``build_graph()`` builds when first needed.

    ``attrs`` maps the qualified names of ``get_attr``/``call_module`` targets to their
    values, as ``GraphModule(dict, graph)`` takes them. With ``share`` and
    ``structure_key``, the module reuses the forward function of any earlier module
    that registered the same key in ``share``. ``node_count`` is how many nodes
    ``build_graph()`` will build, so that reports need not build it.
    """
    cls = _concrete_class(_compat.lazy_graph_module_base())
    attrs = attrs or {}
    # GraphModule.__init__ copies attributes for the targets its graph names, so a stub
    # graph naming them gets the exact torch semantics (buffers vs parameters, nesting).
    stub = Graph()
    for target in attrs:
        stub.get_attr(target)
    module = cls(attrs, stub)
    del module.__dict__["_graph"]
    _STATE[module] = _Deferred(build_graph, share, structure_key, node_count)
    return module


def is_materialized(module: torch.nn.Module) -> bool:
    """Whether ``module``'s graph has been built (always true for ordinary modules)."""
    return "_graph" in module.__dict__ or not isinstance(module, LazyGraphModule)


def structure_key(module: torch.nn.Module) -> Hashable | None:
    """The structure key of a piece as its split made it (see :mod:`fxsplit.split.structure`).

    None for modules fxsplit did not build, and for pieces whose graph has been built,
    since it may have been edited since.
    """
    deferred = _STATE.get(module)
    if deferred is None or deferred.structure_key is None or "_graph" in module.__dict__:
        return None
    return deferred.structure_key()


def node_count(module: GraphModule) -> int:
    """Nodes in ``module``'s graph, without building a lazy graph to count them."""
    deferred = _STATE.get(module)
    if "_graph" in module.__dict__ or deferred is None or deferred.node_count is None:
        return len(module.graph.nodes)
    return deferred.node_count


def python_code(module: GraphModule) -> PythonCode:
    """FX's generated code of ``module``; for a lazy module, its own, made once and kept
    (so that reading ``.code`` later generates nothing and changes nothing)."""
    if isinstance(module, LazyGraphModule):
        return module._own_python_code()
    return module.graph.python_code(root_module="self")


def runnable_forward(module: GraphModule) -> Callable[..., Any]:
    """``module``'s forward as a bound method, its code generated (or shared with a
    structural twin) now rather than on its first call."""
    if isinstance(module, LazyGraphModule):
        module._ensure_forward()
    return module.forward
