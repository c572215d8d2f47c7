"""Compile the per-event core to C with mypyc, in place: ``python build_native.py``.

The worker spends most of its time in the identity and person stages, the rule machine,
data maps and the person record: plain Python, with type annotations mypy already checks.
mypyc (part of mypy, which this project runs anyway) compiles those modules, unchanged,
to C extensions: the stages did the same work in ~0.7 of the CPU time and ~0.79 of the
instructions (``make bench-count``), data maps in under half. Writing that as a
hand-made C or Cython module would be a second implementation of every decision to keep
equal to the first; mypyc compiles the one there is.

Each module below gets an extension next to its source (``app/person.cpython-311-*.so``),
all of them sharing ``app/native__mypyc*.so``; Python imports an extension before a
source of the same name. ``app/__init__.py`` takes them out of the way when a source is
newer than its extension, so an edit is never shadowed by an old build, and ``EMD_PURE=1``
makes the process import the sources (a profile of the Python lines, a comparison).
``make`` builds them before it runs or tests anything (``EMD_NATIVE=0`` skips it); a
machine without a C compiler runs the sources, ~1.3 x slower.

    python build_native.py           # build (about 1.5 minutes on 2 cores)
    python build_native.py --clean   # remove what it built
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
os.environ["EMD_PURE"] = "1"  # this process imports the sources, never the build it replaces

from app.native import GROUP, MODULES, extensions  # noqa: E402


def clean() -> None:
    for path in extensions(ROOT):
        path.unlink()
    shutil.rmtree(ROOT / "build", ignore_errors=True)


def build() -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    clean()
    os.chdir(ROOT)
    setup(
        name="emarsys-destination-native",
        ext_modules=mypycify(list(MODULES), group_name=GROUP, opt_level="3"),
        script_args=["build_ext", "--inplace", "--parallel", str(os.cpu_count() or 1)],
    )
    shutil.rmtree(ROOT / "build", ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--clean"]:
        clean()
    else:
        build()
