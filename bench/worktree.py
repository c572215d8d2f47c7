"""Another revision of this repository, checked out beside it for a comparison."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def checkout(rev: str, compiled: bool) -> Iterator[tuple[Path, bool]]:
    """``rev`` in a temporary git worktree, removed afterwards; its core compiled
    (``build_native.py``) when ``compiled`` and the revision has the build. Yields the
    tree and whether its core is compiled."""
    tmp = Path(tempfile.mkdtemp(prefix="emd-base-"))
    tree = tmp / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(tree), rev], cwd=ROOT, check=True
    )
    try:
        compiled = compiled and (tree / "build_native.py").exists()
        if compiled:
            subprocess.run(
                [sys.executable, "build_native.py"], cwd=tree, check=True, capture_output=True
            )
        yield tree, compiled
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
