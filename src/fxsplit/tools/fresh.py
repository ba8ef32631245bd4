"""Measurements in a fresh Python process, with empty Inductor caches, so that no cache
from an earlier measurement hides a cost. Only fxsplit's cache directory may be shared
between processes, as between a service's restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any


def run_fresh(
    module: str, *args: str, fxsplit_cache: str | None = None, inductor_cache: str | None = None
) -> dict[str, Any]:
    """Run ``python -m module args`` in a fresh process and return the JSON object it
    prints on its last line; the caches are empty ones of its own unless named."""
    with tempfile.TemporaryDirectory(prefix="fxsplit-bench-") as scratch:
        env = {
            **os.environ,
            "TORCHINDUCTOR_CACHE_DIR": inductor_cache or scratch,
            "TRITON_CACHE_DIR": os.path.join(scratch, "triton"),
            "FXSPLIT_CACHE_DIR": fxsplit_cache or os.path.join(scratch, "fxsplit"),
        }
        env.pop("FXSPLIT_DISABLE_CACHE", None)
        command = [sys.executable, "-m", module, *args]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark {' '.join(command[2:])} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
