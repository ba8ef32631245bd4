"""HuggingFace's ``kernels`` package, which transformers (5.25 and later) installs and
which wraps the forward of some of its modules (a Llama's attention among them).

``kernels.use_kernelized_func`` replaces a class's ``forward`` with a wrapper that
routes the module's kernel functions through a context variable, so that a kernel
``kernelize`` installed on one instance runs for that instance alone. Under Dynamo the
variable is a global attribute that the wrapper sets and resets on every call: a side
effect, so a nested compile region holding the module is traced anew for every layer.
Where no kernel is installed the routing picks the function as it is, so the forward
the wrapper wraps computes the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def unrouted_forward(kind: type[torch.nn.Module]) -> Callable[..., Any] | None:
    """The forward that kernels' routing wrapper wraps, where ``kind``'s own forward
    is that wrapper; else None (no such wrapper, or a kernels that makes it otherwise)."""
    forward = vars(kind).get("forward")
    code = getattr(forward, "__code__", None)
    wrapped = getattr(forward, "__wrapped__", None)
    if code is None or not callable(wrapped) or code.co_name != "new_forward":
        return None
    return wrapped if "kernels" in Path(code.co_filename).parts else None


def kernel_installed(module: torch.nn.Module) -> bool:
    """Whether ``kernelize`` put a kernel on one of ``module``'s kernel functions (it
    sets that function module's ``forward`` on the instance), or where they cannot be
    read: then the routing matters."""
    functions = vars(module).get("_kernel_funcs")
    if not isinstance(functions, dict):
        return True
    return any(not isinstance(f, torch.nn.Module) or "forward" in vars(f) for f in functions.values())
