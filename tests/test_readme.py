"""Every Python snippet in the README and in docs/ runs as written, in a fresh process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPETS = [
    (f"{page.relative_to(ROOT)}:{number}", code)
    for page in PAGES
    for number, code in enumerate(re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.M | re.S), 1)
]


def test_the_readme_and_docs_have_snippets():
    assert sum(where.startswith("README") for where, _ in SNIPPETS) >= 3
    assert any(where.startswith("docs") for where, _ in SNIPPETS)


@pytest.mark.parametrize("where, code", SNIPPETS, ids=[where for where, _ in SNIPPETS])
def test_snippet_runs(where, code, tmp_path):
    script = tmp_path / "snippet.py"  # a file, as a user's script would be: Dynamo records its source
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, "FXSPLIT_CACHE_DIR": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"snippet {where} failed:\n{code}\n{done.stderr[-3000:]}"
