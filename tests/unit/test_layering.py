"""The code's layering, read from the source (every import, also inside functions; not
those under ``TYPE_CHECKING``): the pure core imports no Faust, Kafka or aiohttp, even
through another module; no module imports itself back through others; only the CLI's
``app.worker`` imports the composition root ``app.faust_app``."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "agents", "tables")
FRAMEWORKS = ("faust", "mode", "aiokafka", "kafka", "aiohttp")
PURE = (
    "app.segment",
    "app.config.model",
    "app.config.problem",
    "app.jsonpath",
    "app.datamaps",
    "app.identity",
    "app.person",
    "app.delivery_log",
    "app.timeline",
    "app.projection",
    "app.rules",
    "app.stages",
    "app.replay.driver",
)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            node.body = []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


MODULES = _modules()
IMPORTS = {name: _imports(path) for name, path in MODULES.items()}
GRAPH = {name: {i for i in IMPORTS[name] if i in MODULES and i != name} for name in MODULES}


def _reach(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _is_pure(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in PURE)


def test_the_pure_core_imports_no_framework_even_indirectly() -> None:
    pure = [m for m in MODULES if _is_pure(m)]
    assert len(pure) > 15, pure  # the list above names real modules
    bad = {}
    for name in pure:
        for module in {name} | _reach(name):
            used = sorted(i for i in IMPORTS[module] if i.split(".")[0] in FRAMEWORKS)
            if used:
                bad[name] = (module, used)
    assert not bad, bad


def test_no_import_cycles() -> None:
    cycles = sorted(m for m in MODULES if m in _reach(m))
    assert not cycles, cycles


def test_only_the_cli_entry_imports_the_composition_root() -> None:
    importers = defaultdict(list)
    for name, imported in GRAPH.items():
        if "app.faust_app" in imported:
            importers["app.faust_app"].append(name)
    assert importers["app.faust_app"] == ["app.worker"]


def test_web_views_and_the_core_never_reach_into_the_agents() -> None:
    """Agents depend on ``app``, not the reverse: web views read what a worker holds
    through ``app.state_reader``, handed to them by the composition root, which alone
    builds the agents."""
    reaching = sorted(
        name
        for name, imported in GRAPH.items()
        if not name.startswith("agents")
        and name != "app.faust_app"
        and any(i.startswith("agents") for i in imported)
    )
    assert reaching == []
