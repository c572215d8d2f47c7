"""Asking every worker: the account-wide views (funnels, deliveries) sum or merge what
each worker holds for the partitions it owns."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from yarl import URL

log = logging.getLogger("emd.web")


def worker_urls(app: Any) -> list[str]:
    """Base URLs of every worker in the group (this one included)."""
    mine = str(app.conf.canonical_url).rstrip("/")
    urls = {mine}
    try:
        for host in app.router.tables_metadata():
            urls.add(str(URL(str(host))).rstrip("/"))
    except Exception:
        log.debug("no cluster metadata yet", exc_info=True)
    return sorted(urls)


async def gather(
    app: Any, request: web.Request, path: str, params: dict[str, str]
) -> list[dict[str, Any]]:
    """GET ``path`` with ``local=1`` from every worker; the JSON bodies that answered 200."""
    headers = {"Authorization": request.headers.get("Authorization", "")}
    query = urlencode({**params, "local": "1"})
    timeout = aiohttp.ClientTimeout(total=10)

    async def one(session: aiohttp.ClientSession, base: str) -> dict[str, Any] | None:
        try:
            async with session.get(f"{base}{path}?{query}", headers=headers) as resp:
                if resp.status != 200:
                    return None
                body: dict[str, Any] = await resp.json(content_type=None)
                return body
        except (TimeoutError, aiohttp.ClientError):
            log.warning("worker %s did not answer %s", base, path)
            return None

    async with aiohttp.ClientSession(timeout=timeout) as session:
        answers = await asyncio.gather(*(one(session, u) for u in worker_urls(app)))
    return [a for a in answers if a is not None]
