"""The web console: static pages served by the worker itself (no separate server).

The console is a set of ES modules that the browser loads natively (no build step).
Browsers refuse a module script whose Content-Type is not JavaScript, and Python's
``mimetypes`` reads the host's tables (which differ: some map ``.js`` to ``text/plain``), so
the types are fixed here rather than guessed. Only the files found in the package's
``static`` directory when the routes are built are served, looked up by name in that
list, so no request path can reach a file outside it.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).with_name("static")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def assets(root: Path = STATIC) -> dict[str, tuple[Path, str]]:
    """Every servable file below ``root``: its path relative to it -> (file, content type)."""
    found: dict[str, tuple[Path, str]] = {}
    if not root.is_dir():
        return found
    for path in sorted(root.rglob("*")):
        kind = CONTENT_TYPES.get(path.suffix)
        if kind is not None and path.is_file():
            found[path.relative_to(root).as_posix()] = (path, kind)
    return found


def _file(path: Path, kind: str) -> web.FileResponse:
    # no-cache: the browser revalidates (Last-Modified), so after an upgrade it never mixes
    # modules of two versions.
    return web.FileResponse(path, headers={"Content-Type": kind, "Cache-Control": "no-cache"})


def routes(root: Path = STATIC) -> list[web.AbstractRouteDef]:
    files = assets(root)

    async def index(request: web.Request) -> web.StreamResponse:
        page = files.get("index.html")
        if page is None:
            return web.Response(text="the console is not installed", status=404)
        return _file(*page)

    async def static(request: web.Request) -> web.StreamResponse:
        found = files.get(request.match_info["filename"])
        if found is None:
            raise web.HTTPNotFound()
        return _file(*found)

    return [web.get("/", index), web.get("/static/{filename:.+}", static)]
