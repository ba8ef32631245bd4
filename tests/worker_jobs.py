"""Jobs for the worker-pool tests; a module of its own so that a worker can import them."""

from __future__ import annotations

import os
from pathlib import Path


def pid() -> int:
    return os.getpid()


def fail(message: str) -> None:
    raise ValueError(message)


def die() -> None:
    os._exit(3)


def die_once(marker: str) -> int:
    """Kill the worker the first time, answer the second: the job a replaced worker runs again."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died once")
        os._exit(3)
    return os.getpid()


_remembered: list[str] = []


def remember(value: str) -> None:
    """An initializer: what the process's later jobs find in :func:`remembered`."""
    _remembered.append(value)


def remembered() -> list[str]:
    return _remembered


def nap(seconds: float) -> None:
    """An initializer still running when its parent exits."""
    import time

    time.sleep(seconds)
