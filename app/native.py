"""The compiled core (``build_native.py``): which modules, and never a stale build.

mypyc compiles ``MODULES`` to C extensions next to their sources; Python imports an
extension before a source of the same name. ``use_sources_if_needed`` (run by
``app/__init__.py`` before any of them is imported) makes this process import the
sources instead when

- ``EMD_PURE=1`` is set (to profile the Python lines, or to compare), or
- the build is stale: a source is newer than its extension (by more than
  ``INSTALL_SLACK``), one has none, or an extension is left of a module no longer
  compiled (an edit or a checkout since the last build; ``make`` builds again before it
  runs or tests).

All of them or none: the extensions call each other directly, so one module's source
beside the others' extensions would still run the old build of it from them.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PURE_ENV = "EMD_PURE"

#: the compiled modules: the per-event path's, none of which imports Faust, Kafka or
#: aiohttp (the batch path's table state is handed the stores)
MODULES = (
    "app/envelope.py",
    "app/segment/plain.py",
    "app/keys.py",
    "app/identity.py",
    "app/jsonpath.py",
    "app/projection.py",
    "app/datamaps.py",
    "app/rules/fql.py",
    "app/rules/machine.py",
    "app/person.py",
    "app/delivery_log.py",
    "app/timeline.py",
    "app/recent.py",
    "app/wake_index.py",
    "app/stages/state.py",
    "app/stages/bundle.py",
    "app/stages/relocation.py",
    "app/stages/link.py",
    "app/stages/person.py",
    "app/stages/flow.py",
    "app/batching/state.py",
    "app/batching/partition.py",
    "app/account.py",
)
# Not app/batching/sender.py (the producer's side, all calls into aiokafka); its murmur2
# and Partitioner are in partition.py, on native 64-bit integers.
#: ``mypycify(group_name=...)``: the library the extensions share, inside the package so
#: that it is found wherever ``app`` is (an editable install, a wheel, a checkout)
GROUP = "app.native"

ROOT = Path(__file__).resolve().parents[1]
#: seconds a source may be newer than its extension without being edited since: pip
#: writes a wheel's files one after another (an edit comes later than that)
INSTALL_SLACK = 2.0
_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def extension_of(source: Path) -> Path | None:
    for suffix in _SUFFIXES:
        candidate = source.with_name(source.stem + suffix)
        if candidate.exists():
            return candidate
    return None


def extensions(root: Path = ROOT) -> list[Path]:
    """Every extension under ``app/``: a build's (the package has no others), including
    one a build of an older ``MODULES`` left behind."""
    return sorted(p for p in (root / "app").rglob("*") if p.name.endswith(_SUFFIXES))


def _source_of(ext: Path) -> Path:
    name = ext.name
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            name = name.removesuffix(suffix)
            break
    return ext.with_name(name + ".py")


def stale(root: Path = ROOT) -> list[str]:
    """What makes the build unusable: a module of ``MODULES`` without its extension or
    newer than it, or an extension of a module no longer compiled (none when there is no
    build at all: the sources run, nothing is stale)."""
    built = extensions(root)
    if not built:
        return []
    out = []
    for m in MODULES:
        ext = extension_of(root / m)
        if ext is None or (root / m).stat().st_mtime > ext.stat().st_mtime + INSTALL_SLACK:
            out.append(m)
    wanted = {root / m for m in MODULES} | {root / "app" / "native__mypyc.py"}
    out += [str(_source_of(e).relative_to(root)) for e in built if _source_of(e) not in wanted]
    return out


class _Sources(importlib.abc.MetaPathFinder):
    """Finds the compiled modules as their sources."""

    def __init__(self, root: Path) -> None:
        sources = [root / m for m in MODULES]
        sources += [_source_of(e) for e in extensions(root) if _source_of(e).exists()]
        self.sources = {module_name(str(s.relative_to(root))): s for s in sources}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        source = self.sources.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def _on_sources() -> bool:
    return any(isinstance(f, _Sources) for f in sys.meta_path)


def compiled() -> bool:
    """Whether this process runs the compiled modules."""
    return not _on_sources() and bool(extensions())


def use_sources_if_needed() -> str | None:
    """Import the sources of ``MODULES`` in this process when asked or when the build is
    stale; returns why, or None when the build (or no build) is used as it is."""
    if _on_sources():
        return None
    why: str | None = None
    if os.environ.get(PURE_ENV) == "1":
        why = f"{PURE_ENV}=1"
    else:
        old = stale()
        if old:
            why = f"the compiled build does not match {old[0]} (make builds it again)"
            print(
                f"emarsys-destination: running the Python sources: {why}",
                file=sys.stderr,
            )
    if why is not None:
        sys.meta_path.insert(0, _Sources(ROOT))
    return why
