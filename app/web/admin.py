"""Configuration API: accounts, and an account's data maps and rules, edited live."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError

from app.config.live import apply_edit, edit_of, editable_view
from app.config.loader import ConfigError
from app.runtime import Runtime
from app.web.auth import admin_ok
from app.web.bodies import BodyError
from app.web.bodies import read_json as read_bounded_json
from app.web.errors import error
from app.web.server import BAD_CONNECTIONS

log = logging.getLogger("emd.web")

ADMIN_BODY_LIMIT = 4 * 1024 * 1024
"""A config of a few thousand rules fits; nothing an admin sends needs more."""
ADMIN_BODY_TIMEOUT = 30.0
ADMIN_MAX_DEPTH = 64
"""Config edits and replays nest a handful of levels; deeper is refused before any code
walks it recursively (pydantic, YAML, deepcopy)."""


def problems_body(exc: ConfigError) -> list[dict[str, str]]:
    return [{"location": p.location, "message": p.message} for p in exc.problems]


def guard(runtime: Runtime, request: web.Request, account: str | None = None):
    """401 without the admin token, 404 for an account this config does not have."""
    if not admin_ok(request, runtime.settings.admin_token):
        return error(401, "admin token required", "unauthorized")
    if account is not None and runtime.accounts.get(account) is None:
        return error(404, "no such account", "not_found")
    return None


class BadBody(web.HTTPException):
    """An admin body that cannot be used, raised out of a handler as its JSON answer."""

    def __init__(self, exc: BodyError) -> None:
        self.status_code = exc.status
        super().__init__(
            text=orjson.dumps({"code": exc.code, "message": exc.message}).decode(),
            content_type="application/json",
        )
        if exc.aborted is not None:
            self.force_close()


async def read_json(request: web.Request, runtime: Runtime | None = None) -> Any:
    """The body as JSON through the same bounded reader as ingest (size, deadline,
    decompression, charset, depth); a bad body is raised as its 4xx answer."""
    try:
        return await read_bounded_json(
            request, ADMIN_BODY_LIMIT, ADMIN_BODY_TIMEOUT, max_depth=ADMIN_MAX_DEPTH
        )
    except BodyError as exc:
        if exc.aborted is not None:
            log.info("admin request body not received (%s)", exc.aborted)
            if runtime is not None:
                runtime.metrics.inc(BAD_CONNECTIONS, reason=exc.aborted)
        raise BadBody(exc) from None


class AdminApi:
    def __init__(self, runtime: Runtime, live: Any) -> None:
        self.runtime = runtime
        self.live = live  # app.config_topic.ConfigTopic
        self._locks: dict[str, asyncio.Lock] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/accounts", self.accounts),
            web.get("/api/accounts/{account}/config", self.get_config),
            web.put("/api/accounts/{account}/config", self.put_config),
            web.post("/api/accounts/{account}/config/validate", self.validate),
        ]

    async def accounts(self, request: web.Request) -> web.Response:
        denied = guard(self.runtime, request)
        if denied:
            return denied
        return web.json_response({"accounts": sorted(self.runtime.accounts.names())})

    def _view(self, account: str) -> dict[str, Any]:
        return {
            "account": account,
            "version": self.live.versions.get(account, 0),
            "config": editable_view(self.runtime.config, account),
        }

    async def get_config(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        denied = guard(self.runtime, request, account)
        if denied:
            return denied
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "yaml"):
            return error(400, "format: json or yaml", "bad_request")
        if fmt == "yaml":
            import yaml

            text = yaml.safe_dump(
                {k: v for k, v in self._view(account)["config"].items() if k != "primary_key"},
                sort_keys=False,
                allow_unicode=True,
            )
            return web.Response(text=text, content_type="application/yaml")
        return web.json_response(self._view(account))

    async def validate(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        denied = guard(self.runtime, request, account)
        if denied:
            return denied
        body = await read_json(request, self.runtime)
        try:
            edit, _version = edit_of(self.runtime.config, account, body)
            apply_edit(self.runtime.config, account, edit)
        except ConfigError as exc:
            return web.json_response({"valid": False, "problems": problems_body(exc)})
        return web.json_response({"valid": True})

    async def put_config(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        denied = guard(self.runtime, request, account)
        if denied:
            return denied
        body = await read_json(request, self.runtime)
        try:
            edit, expected = edit_of(self.runtime.config, account, body)
        except ConfigError as exc:
            return error(400, "invalid config", "invalid_config", problems=problems_body(exc))
        # One save at a time per account on this worker: the version check and the
        # publish must not interleave with another PUT's.
        async with self._locks.setdefault(account, asyncio.Lock()):
            if expected is not None:
                # Optimistic concurrency: an editor sends the version it started from, so
                # two people editing at once do not silently overwrite each other.
                current = self.live.versions.get(account, 0)
                if expected != current:
                    return error(
                        409,
                        f"the config changed since you loaded it (version {expected}, "
                        f"now {current}): reload and edit again",
                        "conflict",
                        version=current,
                    )
            try:
                await self.live.publish(account, edit)
            except ConfigError as exc:
                return error(400, "invalid config", "invalid_config", problems=problems_body(exc))
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("storing a config edit failed: %s", type(exc).__name__)
                return error(
                    503, "the broker did not store the edit; retry", "unavailable", retry_after=5
                )
        return web.json_response(self._view(account))
