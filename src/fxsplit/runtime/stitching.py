"""The stitching code of a compiled split model, calling its pieces directly.

FX's code for the stitching graph calls each piece as ``self.submod_N(...)``: for a
splitting piece, an attribute lookup that misses the instance and an
``nn.Module.__call__``, with its hook checks, before the piece's own code runs. At the
sizes of decoding a piece does a few microseconds of work, so that is a visible part
of a forward (see ``fxsplit bench --steady``). :func:`install_direct_stitching` runs
the same generated code against the pieces' runnables instead: a compute piece's
runner, a splitting piece's generated ``forward``. A piece with hooks of its own keeps
its ``nn.Module`` call, and with them its hooks; hooks registered for every module
(``register_module_forward_hook``) do not see the pieces. A compute piece whose
outputs the model returns is called as
:meth:`~fxsplit.runtime.runner.PieceRunner.returning`, so that those outputs carry
what whole-graph compilation's do.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
from torch.fx import GraphModule

from .. import _compat
from ..split.lazy import python_code, runnable_forward
from .cudagraphs import CapturedPiece
from .runner import PieceRunner


class _Pieces:
    """What the stitching code reads from ``self``: each piece's runnable; anything
    else (an attribute that a ``get_attr`` names) from the split module itself."""

    def __init__(self, split: GraphModule, runnables: dict[str, Callable[..., Any]]) -> None:
        self.__dict__.update(runnables)
        self._split = split

    def __getattr__(self, name: str) -> Any:
        return getattr(self._split, name)


def _runnable(module: torch.nn.Module) -> Callable[..., Any]:
    if _compat.has_own_hooks(module) or not isinstance(module, GraphModule):
        return module
    return runnable_forward(module)


def _returning(split: GraphModule) -> set[str]:
    """The pieces whose outputs the stitching graph returns."""
    (output,) = split.graph.find_nodes(op="output")
    returned: set[str] = set()

    def visit(node: torch.fx.Node) -> torch.fx.Node:
        if node.op == "call_function" and node.target is operator.getitem:
            node = node.args[0]  # type: ignore[assignment]
        if node.op == "call_module":
            returned.add(str(node.target))
        return node

    torch.fx.node.map_arg(output.args, visit)
    return returned


def install_direct_stitching(split: GraphModule) -> None:
    """Make ``split`` run its stitching graph with direct calls of its pieces.

    Its class (every GraphModule has one of its own) gets a ``forward`` that runs FX's
    code for the graph against the pieces' runnables; pickling, ``deepcopy`` and
    ``.code`` see the module as before, and a ``recompile()`` restores FX's forward.
    Call it once the pieces are final: a piece replaced afterwards is not seen.
    """
    runnables: dict[str, Callable[..., Any]] = {name: _runnable(module) for name, module in split.named_children()}
    # compiled pieces sit in the instance dict, where attribute lookup finds them before children
    runnables.update(
        {name: value for name, value in vars(split).items() if isinstance(value, (PieceRunner, CapturedPiece))}
    )
    for name in _returning(split):
        runner = runnables.get(name)
        if isinstance(runner, PieceRunner):
            runnables[name] = runner.returning
    code = python_code(split)
    namespace = dict(code.globals)
    exec(compile(code.src, f"<fxsplit stitching {type(split).__name__}>", "exec"), namespace)
    stitched = namespace["forward"]
    pieces = _Pieces(split, runnables)

    # Dynamo must not trace into the pieces, which call compiled code directly (see _compat.direct_entry)
    @torch.compiler.disable
    def forward(self: GraphModule, *args: Any, **kwargs: Any) -> Any:
        return stitched(pieces, *args, **kwargs)

    type(split).forward = forward
