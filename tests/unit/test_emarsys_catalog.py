"""The account's Emarsys catalog: the simulator's endpoints, the client's read calls, and
the admin API that the console's pickers use (cache, errors), against the in-process
simulator over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.broker import free_port
from app.config import load_config_text
from app.emarsys.client import CatalogEntry, EmarsysClient, EmarsysRejected
from app.emarsys.simulator import SIMULATOR, ManualClock, SimulatorOptions, create_app
from app.runtime import Runtime
from app.settings import Settings
from app.web.catalog import CatalogApi

TOKEN = "catalog-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}

Start = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    servers: list[TestServer] = []

    async def _start(app: web.Application) -> TestServer:
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return server

    yield _start
    for s in servers:
        await s.close()


def emarsys(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "api_url": f"{url}/api/v3",
        "token_url": f"{url}/oauth2/token",
        "client_id": "demo-client",
        "client_secret": "demo-secret",
        "retry_for": 1,
        "max_backoff": 0.2,
        **extra,
    }


def runtime(accounts: dict[str, dict[str, Any]]) -> Runtime:
    import yaml

    body = {
        "accounts": {
            name: {"api_keys": [f"{name}-key"], "primary_key": "context.traits.email", "emarsys": e}
            for name, e in accounts.items()
        }
    }
    cfg = load_config_text(yaml.safe_dump(body), env={})
    return Runtime(cfg, Settings(None, "test", None, TOKEN))


async def catalog_client(start: Start, api: CatalogApi) -> TestClient:
    app = web.Application()
    app.add_routes(api.routes())
    app.on_cleanup.append(api.on_cleanup)
    server = await start(app)
    client = TestClient(server)
    await client.start_server()
    return client


def calls(sim_server: TestServer, path: str) -> int:
    sim = sim_server.app[SIMULATOR]
    return sum(1 for c in sim.calls if c["path"] == path)


# --------------------------------------------------------------------------- simulator


async def test_simulator_lists_contact_lists_behind_auth_in_the_envelope(start: Start) -> None:
    sim = await start(create_app(SimulatorOptions()))
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{sim.make_url('/api/v3/contactlist')}") as resp:
            assert resp.status == 401
            assert (await resp.json())["replyCode"] == 1
        async with s.post(
            str(sim.make_url("/oauth2/token")),
            data={"grant_type": "client_credentials"},
            auth=aiohttp.BasicAuth("demo-client", "demo-secret"),
        ) as resp:
            token = (await resp.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        async with s.get(str(sim.make_url("/api/v3/contactlist")), headers=headers) as resp:
            body = await resp.json()
    assert (resp.status, body["replyCode"], body["replyText"]) == (200, 0, "OK")
    first = body["data"][0]
    assert first["id"] == "750504658" and first["name"] == "Newsletter subscribers"
    assert first["type"] == 0 and len(first["created"]) == len("2026-01-02 03:04:05")


# --------------------------------------------------------------------------- client


@pytest.mark.parametrize("auth", ["oauth2", "wsse"])
async def test_client_reads_fields_events_and_lists(start: Start, auth: str) -> None:
    sim = await start(create_app(SimulatorOptions()))
    url = str(sim.make_url("")).rstrip("/")
    extra: dict[str, Any] = (
        {
            "auth": "wsse",
            "api_url": f"{url}/api/v2",
            "username": "demo-user",
            "secret": "demo-secret",
        }
        if auth == "wsse"
        else {}
    )
    cfg = runtime({"a": emarsys(url, **extra)}).accounts["a"].config.emarsys
    async with EmarsysClient("a", cfg) as client:
        fields = await client.list_fields()
        events = await client.list_events()
        lists = await client.list_contact_lists()
    assert CatalogEntry(3, "E-Mail", "longtext") in fields
    assert CatalogEntry(31, "Opt-In", "singlechoice") in fields
    assert CatalogEntry(4711, "Loyalty tier", "shorttext") in fields  # a custom field
    assert CatalogEntry(1234, "segment.com test event") in events
    assert CatalogEntry(750504659, "VIP customers") in lists
    assert all(isinstance(e.id, int) for e in [*fields, *events, *lists])


async def test_client_refuses_an_error_reply_and_skips_unreadable_rows(start: Start) -> None:
    async def answer(request: web.Request) -> web.Response:
        if request.path.endswith("/event"):
            rows = [{"id": "7", "name": "ok"}, {"id": "x", "name": "bad id"}, {"name": "no id"}, 3]
            return web.json_response({"replyCode": 0, "replyText": "OK", "data": rows})
        return web.json_response({"replyCode": 1, "replyText": "Unauthorized", "data": ""})

    fake = web.Application()
    fake.router.add_get("/api/v3/{tail:.*}", answer)
    server = await start(fake)
    url = str(server.make_url("")).rstrip("/")
    cfg = runtime({"a": emarsys(url, auth="wsse", username="u", secret="s")}).accounts["a"]
    async with EmarsysClient("a", cfg.config.emarsys) as client:
        assert await client.list_events() == [CatalogEntry(7, "ok")]
        with pytest.raises(EmarsysRejected) as info:
            await client.list_contact_lists()
    assert info.value.reply_code == 1


# --------------------------------------------------------------------------- the admin API


async def test_the_routes_answer_the_catalog_by_name(start: Start) -> None:
    sim = await start(create_app(SimulatorOptions()))
    url = str(sim.make_url("")).rstrip("/")
    api = CatalogApi(runtime({"acme": emarsys(url)}), EmarsysClient)
    client = await catalog_client(start, api)
    try:
        assert (await client.get("/api/accounts/acme/emarsys/fields")).status == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.get("/api/accounts/acme/emarsys/fields", headers=wrong)).status == 401
        assert (await client.get("/api/accounts/other/emarsys/fields", headers=ADMIN)).status == 404
        resp = await client.get("/api/accounts/acme/emarsys/fields", headers=ADMIN)
        body = await resp.json()
        assert resp.status == 200 and body["account"] == "acme" and body["cached"] is False
        assert {"id": 3, "name": "E-Mail", "type": "longtext"} in body["fields"]
        assert {"id": 4714, "name": "Preferred channel", "type": "singlechoice"} in body["fields"]
        assert body["fetched_at"].endswith("Z")
        events = await (await client.get("/api/accounts/acme/emarsys/events", headers=ADMIN)).json()
        assert {"id": 1234, "name": "segment.com test event"} in events["events"]
        lists = await (await client.get("/api/accounts/acme/emarsys/lists", headers=ADMIN)).json()
        assert {"id": 750504660, "name": "Cart abandoners"} in lists["lists"]
    finally:
        await client.close()


async def test_answers_are_cached_per_account_for_the_ttl(start: Start) -> None:
    sim = await start(create_app(SimulatorOptions()))
    url = str(sim.make_url("")).rstrip("/")
    clock = ManualClock(1000.0)
    rt = runtime({"acme": emarsys(url), "shop": emarsys(url)})
    api = CatalogApi(rt, EmarsysClient, ttl=300, clock=clock)
    client = await catalog_client(start, api)
    path = "/api/v3/event"

    async def events(account: str = "acme", query: str = "") -> dict[str, Any]:
        resp = await client.get(f"/api/accounts/{account}/emarsys/events{query}", headers=ADMIN)
        assert resp.status == 200
        return dict(await resp.json())

    try:
        assert (await events())["cached"] is False
        assert calls(sim, path) == 1
        # Emarsys gets a new event; the cached answer does not show it yet.
        sim.app[SIMULATOR].events[1400] = "Price drop"
        clock.advance(299)
        again = await events()
        assert again["cached"] is True and calls(sim, path) == 1
        assert {"id": 1400, "name": "Price drop"} not in again["events"]
        # Another account has its own cache.
        assert (await events("shop"))["cached"] is False and calls(sim, path) == 2
        # After the TTL, or on ?refresh=1, Emarsys is asked again.
        clock.advance(2)
        fresh = await events()
        assert fresh["cached"] is False and calls(sim, path) == 3
        assert {"id": 1400, "name": "Price drop"} in fresh["events"]
        assert (await events(query="?refresh=1"))["cached"] is False and calls(sim, path) == 4
        # Other kinds are separate entries.
        resp = await client.get("/api/accounts/acme/emarsys/lists", headers=ADMIN)
        assert (await resp.json())["cached"] is False
    finally:
        await client.close()


async def test_an_edited_emarsys_config_is_fetched_anew(start: Start) -> None:
    """Another api_url or other credentials may be another Emarsys account: its cached
    catalog must not be shown for the new one."""
    sim = await start(create_app(SimulatorOptions()))
    other = await start(create_app(SimulatorOptions(events=[{"id": 9, "name": "Other"}])))
    url = str(sim.make_url("")).rstrip("/")
    rt = runtime({"acme": emarsys(url)})
    api = CatalogApi(rt, EmarsysClient)
    client = await catalog_client(start, api)
    try:
        resp = await client.get("/api/accounts/acme/emarsys/events", headers=ADMIN)
        assert {"id": 1234, "name": "segment.com test event"} in (await resp.json())["events"]
        rt.replace_config(runtime({"acme": emarsys(str(other.make_url("")).rstrip("/"))}).config)
        resp = await client.get("/api/accounts/acme/emarsys/events", headers=ADMIN)
        body = await resp.json()
        assert body["cached"] is False and body["events"] == [{"id": 9, "name": "Other"}]
    finally:
        await client.close()


async def test_unreachable_emarsys_is_a_502_with_a_message(start: Start) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    api = CatalogApi(runtime({"down": emarsys(closed)}), EmarsysClient, budget=5)
    client = await catalog_client(start, api)
    try:
        resp = await client.get("/api/accounts/down/emarsys/fields", headers=ADMIN)
        body = await resp.json()
        assert resp.status == 502
        assert body["message"].startswith("cannot reach Emarsys (GET /field/translate/en)")
        assert "connection error" in body["message"]
        # A failure is not cached: the next request tries again (and fails again).
        resp = await client.get("/api/accounts/down/emarsys/fields", headers=ADMIN)
        assert resp.status == 502
    finally:
        await client.close()


async def test_emarsys_too_slow_is_a_504(start: Start) -> None:
    sim = await start(create_app(SimulatorOptions(latency=3.0)))
    url = str(sim.make_url("")).rstrip("/")
    api = CatalogApi(runtime({"slow": emarsys(url)}), EmarsysClient, budget=0.5)
    client = await catalog_client(start, api)
    try:
        resp = await client.get("/api/accounts/slow/emarsys/events", headers=ADMIN)
        body = await resp.json()
        assert resp.status == 504, body
        assert "GET /event" in body["message"]
    finally:
        await client.close()


async def test_refused_credentials_are_a_502_without_the_secret(start: Start) -> None:
    sim = await start(create_app(SimulatorOptions()))
    url = str(sim.make_url("")).rstrip("/")
    secret = "wrong-secret-5f1e"
    api = CatalogApi(runtime({"bad": emarsys(url, client_secret=secret)}), EmarsysClient)
    client = await catalog_client(start, api)
    try:
        resp = await client.get("/api/accounts/bad/emarsys/lists", headers=ADMIN)
        body = await resp.json()
        assert resp.status == 502
        assert body["message"].startswith("Emarsys refused GET /contactlist: HTTP 401")
        assert secret not in await resp.text()
    finally:
        await client.close()
