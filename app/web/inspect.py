"""Inspection API: a person's record, instances and deliveries; answered by the owner.

Every route needs the admin token. A key's owner is found with Faust's router over the
table's changelog partitions (``app.router.key_store``); a request that reaches another
worker is forwarded there with a GET (routed requests stay GET-only).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from yarl import URL

from app import delivery_log, keys
from app.envelope import loads
from app.runtime import Runtime
from app.state_reader import StateReader
from app.timeline import describe_hold
from app.web.admin import guard
from app.web.forward import forward_get


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Inspect:
    def __init__(self, app: Any, runtime: Runtime, state: StateReader) -> None:
        self.app = app
        self.runtime = runtime
        self.state = state

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/accounts/{account}/users", self.users),
            web.get("/api/accounts/{account}/_link", self.link),
            web.get("/api/accounts/{account}/_pk", self.pk),
            web.get("/api/accounts/{account}/_person", self.person),
            web.get("/api/accounts/{account}/deliveries", self.deliveries),
        ]

    # -- helpers ----------------------------------------------------------------------------

    def _check(self, request: web.Request) -> tuple[str, web.Response | None]:
        account = request.match_info["account"]
        return account, guard(self.runtime, request, account)

    def _owner(self, table: str, key: bytes) -> URL | None:
        """The owner's base URL, or None when it is this worker (or unknown yet)."""
        try:
            url = self.app.router.key_store(table, key)
        except Exception:
            return None
        mine = URL(str(self.app.conf.canonical_url))
        if (url.host, url.port) == (mine.host, mine.port):
            return None
        return url

    async def _ask(self, table: str, key: bytes, path: str, params: dict[str, str], request):
        """Answer locally or from the owner of ``key``; returns (status, json)."""
        owner = self._owner(table, key)
        if owner is None or request.query.get("local") == "1":
            return None
        url = f"{str(owner).rstrip('/')}{path}?{urlencode({**params, 'local': '1'})}"
        return await forward_get(url, request)

    # -- lookups ------------------------------------------------------------------------------

    async def link(self, request: web.Request) -> web.Response:
        """Internal: the userId an anonymousId (or aliased id) is linked to."""
        account, denied = self._check(request)
        if denied:
            return denied
        ident = request.query.get("id", "")
        key = keys.key(account, ident)
        routed = await self._ask("links", key, request.path, {"id": ident}, request)
        if routed is not None:
            return routed
        value = self.state.link(key)
        return web.json_response({"userId": value.decode() if value else None})

    async def pk(self, request: web.Request) -> web.Response:
        """Internal: the person holding a primary key value."""
        account, denied = self._check(request)
        if denied:
            return denied
        pk = request.query.get("pk", "")
        key = keys.key(account, keys.pk_index_id(pk))
        routed = await self._ask("pkindex", key, request.path, {"pk": pk}, request)
        if routed is not None:
            return routed
        value = self.state.pk(key)
        return web.json_response({"person": value.decode() if value is not None else None})

    async def person(self, request: web.Request) -> web.Response:
        """Internal: a person's full view (record, instances, deliveries), by person id."""
        account, denied = self._check(request)
        if denied:
            return denied
        person = request.query.get("p", "")
        key = keys.key(account, person)
        routed = await self._ask("persons", key, request.path, {"p": person}, request)
        if routed is not None:
            return routed
        raw = self.state.person(key)
        if raw is None:
            return web.json_response({"message": "no such person"}, status=404)
        record = loads(raw)
        if "fwd" in record:
            return web.json_response({"forward": record["fwd"]}, status=200)
        dlv = self.state.deliveries(key)
        body = self.render(account, person, record, delivery_log.entries(dlv))
        body["recentEvents"] = self.state.recent_events.get(key)
        return web.json_response(body)

    def render(self, account: str, person: str, record: dict[str, Any], dlv: list[Any]):
        acct = self.runtime.accounts.get(account)
        rules = acct.rules.describe(record.get("rules") or {}) if acct is not None else []
        hold = describe_hold(record, time.time())
        for inst in rules:
            inst["started"] = _iso(inst["started"])
            inst["reached"] = _iso(inst["reached"])
            if "next" in inst:
                nxt = inst["next"]
                if hold is not None and nxt["at"] < record["w"]["u"]:
                    # Waiting out the lateness window (app.timeline): say when, and why.
                    nxt["heldUntil"] = hold["until"]
                    nxt["note"] = (
                        f"fires at {hold['until']} unless a late event moves it "
                        "(the person's events are still arriving)"
                    )
                nxt["at"] = _iso(nxt["at"])
        return {
            "account": account,
            "person": person,
            "userId": record.get("uid"),
            "anonymousIds": record.get("anon", []),
            "primaryKey": record.get("pk"),
            "firstSeen": _iso(record.get("first")),
            "lastSeen": _iso(record.get("last")),
            "values": record.get("vals", {}),
            "emarsys": {"sent": record.get("sent", {}), "acknowledged": record.get("acked", {})},
            "instances": rules,
            "nextDeadline": _iso(record.get("due")),
            "lateness": hold,
            "deliveries": dlv,
        }

    async def _json_from(self, request: web.Request, path: str, params: dict[str, str]):
        """Call one of our own routes on this worker (it forwards to the owner)."""
        import aiohttp

        base = str(self.app.conf.canonical_url).rstrip("/")
        url = f"{base}{path}?{urlencode(params)}"
        headers = {"Authorization": request.headers.get("Authorization", "")}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
            async with s.get(url, headers=headers) as resp:
                return resp.status, await resp.json(content_type=None)

    async def _resolve_person(self, request: web.Request, account: str) -> str | None:
        q = request.query
        if q.get("userId"):
            return keys.user_person(q["userId"])
        if q.get("anonymousId"):
            status, body = await self._json_from(
                request, f"/api/accounts/{quote(account)}/_link", {"id": q["anonymousId"]}
            )
            if status != 200:
                return None
            uid = body.get("userId")
            return keys.user_person(uid) if uid else keys.anon_person(q["anonymousId"])
        if q.get("primaryKey"):
            status, body = await self._json_from(
                request, f"/api/accounts/{quote(account)}/_pk", {"pk": q["primaryKey"]}
            )
            return body.get("person") if status == 200 else None
        return None

    async def users(self, request: web.Request) -> web.Response:
        account, denied = self._check(request)
        if denied:
            return denied
        if not any(request.query.get(k) for k in ("userId", "anonymousId", "primaryKey")):
            return web.json_response(
                {"message": "give userId, anonymousId or primaryKey"}, status=400
            )
        person = await self._resolve_person(request, account)
        for _ in range(8):  # follow merges (anonymous -> user, alias chains)
            if person is None:
                break
            status, body = await self._json_from(
                request, f"/api/accounts/{quote(account)}/_person", {"p": person}
            )
            if status == 200 and "forward" in body:
                person = body["forward"]
                continue
            if status == 200:
                return web.json_response(body)
            break
        return web.json_response({"message": "no such user in this account"}, status=404)

    async def deliveries(self, request: web.Request) -> web.Response:
        """A person's deliveries (same lookup parameters as /users), or without them the
        account's recent deliveries from every worker's sink, newest first, with the calls
        being retried right now and what waits to be delivered (``lanes``)."""
        from app.web.cluster import gather

        account, denied = self._check(request)
        if denied:
            return denied
        if any(request.query.get(k) for k in ("userId", "anonymousId", "primaryKey")):
            resp = await self.users(request)
            if resp.status != 200:
                return resp
            body = loads(resp.body)  # type: ignore[arg-type]
            return web.json_response(
                {"account": account, "person": body["person"], "deliveries": body["deliveries"]}
            )
        if request.query.get("local") == "1":
            return web.json_response(
                {
                    "worker": str(self.app.conf.canonical_url).rstrip("/"),
                    "deliveries": self.state.recent_deliveries.get(account),
                    "lane": self.state.delivery_status(account),
                }
            )
        parts = await gather(self.app, request, request.path, {})
        merged = [d for part in parts for d in part.get("deliveries", [])]
        merged.sort(key=lambda d: d.get("at", ""), reverse=True)
        failed_only = request.query.get("failed") == "1"
        if failed_only:
            merged = [d for d in merged if not d.get("ok")]
        return web.json_response(
            {"account": account, "deliveries": merged[:500], **merge_lanes(parts)}
        )


_STATES = ("idle", "delivering", "parked")


def merge_lanes(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Every worker's lane of the account as one: calls retrying (each with its worker)
    and the backlog summed (``state`` is the worst of them: a parked lane anywhere)."""
    retrying: list[dict[str, Any]] = []
    workers: list[dict[str, Any]] = []
    for part in parts:
        lane = part.get("lane")
        if not isinstance(lane, dict):
            continue
        worker = part.get("worker")
        retrying += [{**r, "worker": worker} for r in lane.get("retrying", [])]
        workers.append({"worker": worker, **{k: v for k, v in lane.items() if k != "retrying"}})
    ages = [w["oldestAgeSeconds"] for w in workers if w.get("oldestAgeSeconds") is not None]
    states = [w.get("state") for w in workers if w.get("state") in _STATES]
    backlog = {
        "state": max(states, key=_STATES.index) if states else "idle",
        "effects": sum(w.get("backlog", 0) for w in workers),
        "inMemory": sum(w.get("inMemory", 0) for w in workers),
        "parked": sum(w.get("parked", 0) for w in workers),
        "oldestAgeSeconds": max(ages) if ages else None,
    }
    retrying.sort(key=lambda r: r.get("since") or "")
    return {"retrying": retrying, "backlog": backlog, "workers": workers}
