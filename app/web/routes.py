"""Every HTTP route of a worker, added to Faust's own aiohttp application (one port)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app import envelope
from app.batching.sender import Outbox
from app.broker import probe_kafka
from app.config_topic import ConfigTopic
from app.emarsys.calls import call_counter
from app.emarsys.client import EmarsysClient
from app.runtime import Runtime
from app.stages.state import DEAD, INPUT, Output
from app.state_reader import StateReader
from app.topics import bootstrap_servers
from app.web import server
from app.web.errors import ensure_code
from app.web.ingest import Ingest, Record
from app.web.readiness import Readiness

log = logging.getLogger("emd.web")


@dataclass(frozen=True)
class WebServices:
    """What the web views may use of the worker, handed over by ``app.faust_app``."""

    outbox: Outbox  # sends to the app's topics, waiting for the broker
    live_config: ConfigTopic
    dead_letter_topic: str
    state: StateReader


def install_routes(app: Any, runtime: Runtime, services: WebServices) -> None:
    """Called once per worker before the web server starts.

    Also sets up aiohttp's server under Faust's web (raw bodies, one-line logs for
    broken connections, the listen backlog: ``app.web.server``) and the middleware that
    gives every error answer a ``code``. ``/ready`` reads ``services.live_config.loaded``
    (set once the config topic was read to its end)."""
    from app.web import console, openapi
    from app.web.admin import AdminApi
    from app.web.backtest import BacktestApi
    from app.web.catalog import CatalogApi
    from app.web.deadletters import DeadLetterApi
    from app.web.funnel import FunnelApi
    from app.web.inspect import Inspect

    outbox = services.outbox

    async def publish(records: list[Record]) -> None:
        await outbox.send([Output(INPUT, r.key, r.value, headers=r.headers) for r in records])

    async def dead_letter(reason: str, account: str | None, message_id: Any, payload: Any):
        runtime.metrics.inc("emd_dead_letters_total", source="ingest")
        value = envelope.dead_letter(
            "ingest",
            reason,
            account=account,
            message_id=message_id if isinstance(message_id, str) else None,
            payload=payload,
        )
        await outbox.send([Output(DEAD, (account or "").encode(), value)])

    ingest = Ingest(lambda: runtime.accounts, publish, dead_letter, runtime.metrics)
    inspect = Inspect(app, runtime, services.state)
    web_app = app.web.web_app
    if hasattr(app.web, "_runner"):
        server.configure(app.web, runtime.metrics)
    web_app.middlewares.append(ensure_code)
    router = web_app.router
    router.add_routes(ingest.routes())
    router.add_routes(inspect.routes())
    router.add_routes(AdminApi(runtime, services.live_config).routes())
    router.add_routes(FunnelApi(app, runtime, services.state).routes())
    router.add_routes(DeadLetterApi(runtime, services.dead_letter_topic, outbox).routes())
    router.add_routes(BacktestApi(runtime).routes())
    catalog = CatalogApi(
        runtime,
        lambda account, cfg: EmarsysClient(
            account, cfg, on_response=call_counter(runtime.metrics, account)
        ),
    )
    router.add_routes(catalog.routes())
    app.web.web_app.on_cleanup.append(catalog.on_cleanup)
    router.add_routes(openapi.routes())
    router.add_routes(console.routes())
    router.add_get("/health", _health(app, runtime))
    live = services.live_config
    router.add_get("/ready", _ready(Readiness(app, lambda: bool(getattr(live, "loaded", True)))))
    router.add_get("/metrics", _metrics(app, runtime))


def _health(app: Any, runtime: Runtime):
    async def handler(request: web.Request) -> web.Response:
        hosts = bootstrap_servers(runtime.broker_url).split(",")
        reachable = False
        for hostport in hosts:
            host, _, port = hostport.rpartition(":")
            if await asyncio.to_thread(probe_kafka, host, int(port), 1.0):
                reachable = True
                break
        assigned: dict[str, list[int]] = {}
        try:
            for tp in app.assignor.assigned_actives():
                assigned.setdefault(tp.topic, []).append(tp.partition)
        except Exception:
            pass
        body = {
            "status": "ok" if reachable else "degraded",
            "broker": {"url": runtime.broker_url, "reachable": reachable},
            "assigned_partitions": {t: sorted(p) for t, p in sorted(assigned.items())},
            "accounts": sorted(runtime.accounts.names()),
        }
        return web.json_response(body, status=200 if reachable else 503)

    return handler


def _ready(readiness: Readiness):
    async def handler(request: web.Request) -> web.Response:
        state = readiness.state()
        if state["ready"]:
            return web.json_response(state)
        waiting = [
            what
            for what, done in (
                ("partitions assigned", state["partitions_assigned"]),
                ("live config read", state["live_config_read"]),
            )
            if not done
        ]
        message = "not ready: waiting for " + " and ".join(waiting)
        return web.json_response(
            {"code": "not_ready", "message": message, **state},
            status=503,
            headers={"Retry-After": "1"},
        )

    return handler


def _metrics(app: Any, runtime: Runtime):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            text=runtime.metrics.render(), content_type="text/plain", charset="utf-8"
        )

    return handler
