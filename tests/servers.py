"""aiohttp's test server with the options a worker's server runs with.

``TestServer`` drops the keyword arguments of its constructor and cancels handlers on
disconnect; a worker's server (Faust's ``AppRunner``) does not, and runs with
``app.web.server.server_options`` (raw bodies: ingest inflates them itself; one-line
logs for broken connections). Tests of the HTTP layer use this one, so they see what a
client of a worker sees.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from app.metrics import Metrics
from app.web.server import server_options


class WorkerServer(TestServer):
    def __init__(self, app: web.Application, metrics: Metrics | None = None, **kw: Any) -> None:
        super().__init__(app, **kw)
        self.options = server_options(metrics or Metrics())

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        kwargs.update(self.options, handler_cancellation=False)
        return web.AppRunner(self.app, **kwargs)
