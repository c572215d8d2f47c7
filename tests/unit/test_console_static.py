"""The console's files as a browser gets them: JavaScript types, the module graph, the wheel.

A module script served with a non-JavaScript Content-Type is refused by the browser, an
import of a file that is not there blanks the page, and a file the wheel leaves out works
in the source tree but not once installed: each of these is checked here without a
browser.
"""

from __future__ import annotations

import glob
import re
import tomllib
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.web import console

ROOT = Path(__file__).resolve().parents[2]
IMPORT_RE = re.compile(r'^\s*import\s+(?:[^"\']*?\s+from\s+)?["\']([^"\']+)["\'];', re.M)
SCRIPT_RE = re.compile(r'<script\s+type="module"\s+src="([^"]+)"')


def modules() -> list[str]:
    return [name for name in console.assets() if name.endswith(".js")]


async def client() -> TestClient:
    app = web.Application()
    app.add_routes(console.routes())
    c = TestClient(TestServer(app))
    await c.start_server()
    return c


async def test_every_file_is_served_with_its_type() -> None:
    c = await client()
    try:
        assert len(modules()) >= 8  # one module per page plus the shared ones
        for name, (path, _) in console.assets().items():
            resp = await c.get(f"/static/{name}")
            assert resp.status == 200, name
            assert await resp.read() == path.read_bytes(), name
            kind = resp.headers["Content-Type"]
            if name.endswith(".js"):
                assert kind.startswith("text/javascript"), (name, kind)
            if name.endswith(".css"):
                assert kind.startswith("text/css"), (name, kind)
        index = await c.get("/")
        assert index.status == 200 and index.headers["Content-Type"].startswith("text/html")
        assert 'type="module"' in await index.text()
    finally:
        await c.close()


async def test_nothing_outside_the_static_files_is_served() -> None:
    c = await client()
    try:
        for path in (
            "/static/",
            "/static/nope.js",
            "/static/../console.py",
            "/static/..%2fconsole.py",
            "/static/lib/..%2f..%2fconsole.py",
            "/static/%2e%2e/%2e%2e/admin.py",
        ):
            resp = await c.get(path)
            assert resp.status == 404, path
            assert b"aiohttp" not in await resp.read(), path
    finally:
        await c.close()


def test_the_module_graph_resolves_and_reaches_every_module() -> None:
    """Every relative import names a served file, and every module is loaded by the entry
    point (a module nothing imports is dead code or a page the router forgot)."""
    assets = console.assets()
    index = (console.STATIC / "index.html").read_text()
    entries = [src.removeprefix("static/") for src in SCRIPT_RE.findall(index)]
    assert entries == ["console.js"]
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        assert name in assets, f"{name} is imported but not served"
        text = assets[name][0].read_text()
        for target in IMPORT_RE.findall(text):
            assert target.startswith("./") or target.startswith("../"), (name, target)
            resolved = (Path(name).parent / target).as_posix()
            parts: list[str] = []
            for part in resolved.split("/"):
                if part == "..":
                    parts.pop()
                elif part != ".":
                    parts.append(part)
            todo.append("/".join(parts))
    assert seen == set(modules()), f"not reachable from console.js: {set(modules()) - seen}"


def test_no_external_assets() -> None:
    for name, (path, _) in console.assets().items():
        text = path.read_text()
        for url in re.findall(r"""(?:src|href|from|import\()\s*=?\s*["'](https?:)?//""", text):
            raise AssertionError(f"{name} loads something from another host: {url}")


def test_the_wheel_carries_every_static_file() -> None:
    """setuptools globs ``package-data`` patterns below the package (recursively): the
    files they match must be every file of the console, subdirectories included."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = conf["tool"]["setuptools"]["package-data"]["app"]
    package = ROOT / "app"
    packaged = {
        Path(p).relative_to(package).as_posix()
        for pattern in patterns
        for p in glob.glob(str(package / pattern), recursive=True)
        if Path(p).is_file()
    }
    on_disk = {
        p.relative_to(package).as_posix()
        for p in (package / "web" / "static").rglob("*")
        if p.is_file()
    }
    assert on_disk - packaged == set()
    assert {f"web/static/{n}" for n in console.assets()} <= packaged
