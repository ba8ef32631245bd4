"""Looking up a private torch name: present on this torch, or None.

Every module of :mod:`fxsplit._compat` calls :func:`private` through this module, so
that a test can hide any name from all of them at once."""

from __future__ import annotations

import importlib
from typing import Any


def private(module: str, name: str) -> Any:
    """``module.name`` if this torch has it, else None."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
