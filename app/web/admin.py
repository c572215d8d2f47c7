"""Configuration API: accounts, and an account's data maps and rules, edited live."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.config.live import apply_edit, editable_view
from app.config.loader import ConfigError
from app.runtime import Runtime
from app.web.auth import admin_ok


def problems_body(exc: ConfigError) -> list[dict[str, str]]:
    return [{"location": p.location, "message": p.message} for p in exc.problems]


def guard(runtime: Runtime, request: web.Request, account: str | None = None):
    """401 without the admin token, 404 for an account this config does not have."""
    if not admin_ok(request, runtime.settings.admin_token):
        return web.json_response({"message": "admin token required"}, status=401)
    if account is not None and runtime.accounts.get(account) is None:
        return web.json_response({"message": "no such account"}, status=404)
    return None


async def read_json(request: web.Request) -> Any:
    try:
        return await request.json()
    except (ValueError, web.RequestPayloadError) as exc:
        raise web.HTTPBadRequest(
            text=f'{{"message": "malformed JSON: {exc}"}}', content_type="application/json"
        ) from None


class AdminApi:
    def __init__(self, runtime: Runtime, live: Any) -> None:
        self.runtime = runtime
        self.live = live  # app.config_topic.ConfigTopic

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
        if request.query.get("format") == "yaml":
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
        body = await read_json(request)
        try:
            apply_edit(self.runtime.config, account, body)
        except ConfigError as exc:
            return web.json_response({"valid": False, "problems": problems_body(exc)})
        return web.json_response({"valid": True})

    async def put_config(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        denied = guard(self.runtime, request, account)
        if denied:
            return denied
        body = await read_json(request)
        if isinstance(body, dict) and "version" in body:
            # Optimistic concurrency: an editor sends the version it started from, so two
            # people editing at once do not silently overwrite each other.
            expected = body.pop("version")
            current = self.live.versions.get(account, 0)
            if expected != current:
                return web.json_response(
                    {
                        "message": f"the config changed since you loaded it (version {expected}, "
                        f"now {current}): reload and edit again",
                        "version": current,
                    },
                    status=409,
                )
        try:
            await self.live.publish(account, body)
        except ConfigError as exc:
            return web.json_response(
                {"message": "invalid config", "problems": problems_body(exc)}, status=400
            )
        return web.json_response(self._view(account))
