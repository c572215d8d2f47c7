"""A GET answered by the worker that owns a key (Faust's router says which)."""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from app.web.errors import error

log = logging.getLogger("emd.web")


async def forward_get(url: str, request: web.Request) -> web.Response:
    """A GET answered by another worker (the owner of a key); auth header passed on."""
    headers = {"Authorization": request.headers.get("Authorization", "")}
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url, headers=headers) as resp:
                body = await resp.read()
                return web.Response(body=body, status=resp.status, content_type="application/json")
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.warning("the worker owning a key did not answer: %s", type(exc).__name__)
        return error(503, "the worker that owns this did not answer; retry", "unavailable")
