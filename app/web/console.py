"""The web console: static pages served by the worker itself (no separate server)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).with_name("static")


async def index(request: web.Request) -> web.StreamResponse:
    page = STATIC / "index.html"
    if not page.exists():
        return web.Response(text="the console is not installed", status=404)
    return web.FileResponse(page, headers={"Cache-Control": "no-cache"})


def routes() -> list[web.AbstractRouteDef]:
    defs: list[web.AbstractRouteDef] = [web.get("/", index)]
    if STATIC.is_dir():
        defs.append(web.static("/static", STATIC, show_index=False))
    return defs
