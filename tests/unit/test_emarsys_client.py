"""The Emarsys client against a scripted local aiohttp server (a fake, not the simulator).

Time is injected: backoff and rate-limit waits advance a fake clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from app.config.model import EmarsysConfig
from app.emarsys.auth import wsse_digest
from app.emarsys.client import (
    EmarsysClient,
    EmarsysRejected,
    EmarsysUnavailable,
    parse_reply,
)
from app.emarsys.retry import Backoff, RetryProgress

NOW = 1_700_000_000.0
SECRET = "oauth-client-secret-xyz"
WSSE_SECRET = "wsse-secret-abc"
OK: dict[str, Any] = {"replyCode": 0, "replyText": "OK", "data": {}}
WSSE_RE = re.compile(
    r'^UsernameToken Username="acme001", PasswordDigest="(?P<digest>[^"]+)", '
    r'Nonce="(?P<nonce>[0-9a-f]{32})", Created="(?P<created>[^"]+)"$'
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Fake:
    """Scripted replies, in order; once the script is used up every call gets ``default``."""

    url: str = ""
    script: list[Any] = field(default_factory=list)
    default: Any = (200, OK)
    seen: list[Seen] = field(default_factory=list)
    token_fetches: int = 0
    token_script: list[Any] = field(default_factory=list)
    expires_in: int = 3600

    async def api(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.seen.append(
            Seen(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                orjson.loads(raw) if raw else None,
            )
        )
        reply = self.script.pop(0) if self.script else self.default
        return await respond(reply, request)

    async def token(self, request: web.Request) -> web.StreamResponse:
        self.token_fetches += 1
        if self.token_script:
            return await respond(self.token_script.pop(0), request)
        return web.json_response(
            {
                "access_token": f"tok-{self.token_fetches}",
                "token_type": "bearer",
                "expires_in": self.expires_in,
            }
        )


async def respond(reply: Any, request: web.Request) -> web.StreamResponse:
    if callable(reply):
        result: web.StreamResponse = await reply(request)
        return result
    status, body, *rest = reply
    headers = rest[0] if rest else {}
    if isinstance(body, str | bytes):
        text = body.decode() if isinstance(body, bytes) else body
        return web.Response(status=status, text=text, headers=headers)
    return web.json_response(body, status=status, headers=headers)


class FakeTime:
    def __init__(self) -> None:
        self.t = NOW
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, d: float) -> None:
        self.sleeps.append(d)
        self.t += d
        await asyncio.sleep(0)


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    f = Fake()
    app = web.Application()
    app.router.add_post("/oauth2/token", f.token)
    app.router.add_route("*", "/api/v3/{tail:.*}", f.api)
    app.router.add_route("*", "/api/v2/{tail:.*}", f.api)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    f.url = str(server.make_url("")).rstrip("/")
    yield f
    await server.close()


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def make(fake: Fake, ft: FakeTime) -> AsyncIterator[Callable[..., EmarsysClient]]:
    clients: list[EmarsysClient] = []

    def factory(
        auth: str = "oauth2", backoff: Backoff | None = None, on_retry: Any = None, **over: Any
    ) -> EmarsysClient:
        base: dict[str, Any] = {
            "api_url": f"{fake.url}/api/v3",
            "token_url": f"{fake.url}/oauth2/token",
            "client_id": "client-1",
            "client_secret": SECRET,
            "timeout": 5,
            "retry_for": 60,
            "max_backoff": 8,
        }
        if auth == "wsse":
            base.update(
                api_url=f"{fake.url}/api/v2", auth="wsse", username="acme001", secret=WSSE_SECRET
            )
        base.update(over)
        client = EmarsysClient(
            "acme",
            EmarsysConfig(**base),
            clock=ft,
            sleep=ft.sleep,
            backoff=backoff,
            on_retry=on_retry,
        )
        clients.append(client)
        return client

    yield factory
    for c in clients:
        await c.close()


NO_JITTER = Backoff(base=0.5, factor=2, max=8, jitter="none")

# -- auth -------------------------------------------------------------------------------------


async def test_oauth_bearer_and_token_reuse(fake: Fake, make: Callable[..., EmarsysClient]) -> None:
    client = make()
    for _ in range(3):
        reply = await client.call("GET", "/settings")
        assert reply.status == 200 and reply.reply_code == 0 and reply.attempts == 1
    assert fake.token_fetches == 1
    assert {s.headers["Authorization"] for s in fake.seen} == {"Bearer tok-1"}
    assert fake.seen[0].path == "/api/v3/settings"


async def test_oauth_refresh_before_expiry(
    fake: Fake, make: Callable[..., EmarsysClient], ft: FakeTime
) -> None:
    client = make()
    await client.call("GET", "/settings")
    ft.t += 3600 - 61
    await client.call("GET", "/settings")
    assert fake.token_fetches == 1
    ft.t += 2
    await client.call("GET", "/settings")
    assert fake.token_fetches == 2
    assert fake.seen[-1].headers["Authorization"] == "Bearer tok-2"


async def test_oauth_refresh_once_on_401(fake: Fake, make: Callable[..., EmarsysClient]) -> None:
    fake.script = [(401, {"replyCode": 1, "replyText": "Unauthorized"}), (200, OK)]
    reply = await make().call("GET", "/settings")
    assert reply.attempts == 2
    assert fake.token_fetches == 2
    assert [s.headers["Authorization"] for s in fake.seen] == ["Bearer tok-1", "Bearer tok-2"]


async def test_oauth_401_twice_gives_up(fake: Fake, make: Callable[..., EmarsysClient]) -> None:
    fake.default = (401, {"replyCode": 1, "replyText": "Unauthorized"})
    with pytest.raises(EmarsysRejected) as info:
        await make().call("GET", "/settings")
    assert (info.value.status, info.value.reply_code) == (401, 1)
    assert len(fake.seen) == 2 and fake.token_fetches == 2


async def test_token_endpoint_refusal_is_rejected_without_secret(
    fake: Fake, make: Callable[..., EmarsysClient]
) -> None:
    fake.token_script = [(401, {"error": "invalid_client", "error_description": SECRET})]
    with pytest.raises(EmarsysRejected) as info:
        await make().call("GET", "/settings")
    assert info.value.status == 401
    assert "invalid_client" in str(info.value) and SECRET not in str(info.value)
    assert fake.seen == []


async def test_token_endpoint_outage_is_retried(
    fake: Fake, make: Callable[..., EmarsysClient]
) -> None:
    fake.token_script = [(503, "maintenance")]
    reply = await make(backoff=NO_JITTER).call("GET", "/settings")
    assert reply.attempts == 2 and fake.token_fetches == 2


async def test_wsse_fresh_header_per_request_and_retry(
    fake: Fake, make: Callable[..., EmarsysClient]
) -> None:
    fake.script = [(503, "busy"), (500, {"replyCode": 6001, "replyText": "x"}), (200, OK)]
    client = make("wsse", backoff=NO_JITTER)
    reply = await client.call("GET", "/settings")
    await client.call("GET", "/settings")
    assert reply.attempts == 3
    headers = [s.headers["X-WSSE"] for s in fake.seen]
    assert len(headers) == 4
    nonces = set()
    for h in headers:
        m = WSSE_RE.match(h)
        assert m, h
        assert m["digest"] == wsse_digest(m["nonce"], m["created"], WSSE_SECRET)
        nonces.add(m["nonce"])
    assert len(nonces) == 4
    assert all("Authorization" not in s.headers for s in fake.seen)
    assert fake.seen[0].path == "/api/v2/settings"


async def test_wsse_time_frame_401_not_retried(
    fake: Fake, make: Callable[..., EmarsysClient]
) -> None:
    fake.default = (401, {"replyCode": 1, "replyText": "Time frame is invalid"})
    with pytest.raises(EmarsysRejected) as info:
        await make("wsse").call("GET", "/settings")
    assert (info.value.status, info.value.reply_code) == (401, 1)
    assert info.value.reply_text == "Time frame is invalid"
    assert len(fake.seen) == 1


# -- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried(
    fake: Fake, make: Callable[..., EmarsysClient], status: int
) -> None:
    fake.script = [(status, {"replyCode": 9, "replyText": "later"})] * 2
    reply = await make(backoff=NO_JITTER).call("GET", "/settings")
    assert reply.status == 200 and reply.attempts == 3


@pytest.mark.parametrize("status", [400, 403, 404, 409, 413])
async def test_client_errors_are_not_retried(
    fake: Fake, make: Callable[..., EmarsysClient], status: int
) -> None:
    fake.default = (status, {"replyCode": 1001, "replyText": "bad parameters"})
    with pytest.raises(EmarsysRejected) as info:
        await make().call("GET", "/settings")
    assert (info.value.status, info.value.reply_code) == (status, 1001)
    assert len(fake.seen) == 1


async def test_400_keeps_reply_code_and_text(
    fake: Fake, make: Callable[..., EmarsysClient]
) -> None:
    fake.default = (400, {"replyCode": 5005, "replyText": "No program connected", "data": ""})
    with pytest.raises(EmarsysRejected) as info:
        await make().trigger_event(7, [{"external_id": "a@x.com", "trigger_id": "t1"}])
    e = info.value
    assert (e.status, e.reply_code, e.reply_text) == (400, 5005, "No program connected")
    assert "5005" in str(e) and "No program connected" in str(e)
    assert len(fake.seen) == 1


async def test_403_without_reply_code(fake: Fake, make: Callable[..., EmarsysClient]) -> None:
    fake.default = (403, "Forbidden")
    with pytest.raises(EmarsysRejected) as info:
        await make().call("GET", "/settings")
    assert (info.value.status, info.value.reply_code, info.value.reply_text) == (
        403,
        None,
        "Forbidden",
    )


async def test_429_waits_until_reset_and_pauses_the_account(
    fake: Fake, make: Callable[..., EmarsysClient], ft: FakeTime
) -> None:
    fake.script = [
        (
            429,
            "Too Many Requests",
            {"X-RateLimit-Reset": str(int(NOW) + 5), "X-RateLimit-Limit": "1000"},
        ),
    ]
    client = make()
    reply = await client.call("GET", "/settings")
    assert reply.attempts == 2
    assert 5.0 in ft.sleeps
    assert client.limiter.paused_until == NOW + 5
    assert ft.t >= NOW + 5


async def test_429_reset_bounded_by_max_backoff(
    fake: Fake, make: Callable[..., EmarsysClient], ft: FakeTime
) -> None:
    fake.script = [
        (429, {"replyCode": 7003, "replyText": "rate"}, {"X-RateLimit-Reset": str(int(NOW) + 3600)})
    ]
    reply = await make().call("GET", "/settings")
    assert reply.attempts == 2
    assert max(ft.sleeps) == 8  # max_backoff


async def test_429_plain_text_and_garbage_reset_falls_back_to_backoff(
    fake: Fake, make: Callable[..., EmarsysClient], ft: FakeTime
) -> None:
    fake.script = [(429, "slow down!", {"X-RateLimit-Reset": "tomorrow"})]
    reply = await make(backoff=NO_JITTER).call("GET", "/settings")
    assert reply.attempts == 2
    assert ft.sleeps == [0.5]


async def test_gives_up_after_retry_for(
    fake: Fake, make: Callable[..., EmarsysClient], ft: FakeTime
) -> None:
    fake.default = (503, {"replyCode": 6001, "replyText": "down"})
    with pytest.raises(EmarsysUnavailable) as info:
        await make(backoff=NO_JITTER, retry_for=30).call("GET", "/settings")
    e = info.value
    # waits 0.5 1 2 4 8 8 = 23.5; the next 8 would pass 30 s
    assert e.attempts == 7
    assert e.last_status == 503
    assert "503" in e.reason and "6001" in e.reason
    assert ft.t - NOW <= 30
    assert len(fake.seen) == 7


async def test_retry_progress_is_reported_before_each_wait_and_at_the_end(
    fake: Fake, make: Callable[..., EmarsysClient], ft: FakeTime
) -> None:
    fake.script = [(503, {"replyCode": 6001, "replyText": "down"}), (500, "x"), (200, OK)]
    seen: list[RetryProgress] = []
    await make(backoff=NO_JITTER, on_retry=seen.append).call("PUT", "/contact/")
    assert [(p.attempt, p.status, p.reply_code, p.outcome) for p in seen] == [
        (1, 503, 6001, None),
        (2, 500, None, None),
        (2, 500, None, "ok"),
    ]
    first, second, end = seen
    assert (first.method, first.path) == ("PUT", "/contact/")
    assert first.next_attempt_at == NOW + 0.5 and second.next_attempt_at == NOW + 1.5
    assert first.gives_up_at == NOW + 60 and first.started_at == NOW
    assert "503" in first.reason and end.next_attempt_at is None
    assert len({p.call_id for p in seen}) == 1


async def test_retry_progress_ends_given_up_rejected_or_cancelled(
    fake: Fake, make: Callable[..., EmarsysClient], ft: FakeTime
) -> None:
    seen: list[RetryProgress] = []
    client = make(backoff=NO_JITTER, retry_for=2, on_retry=seen.append)
    fake.default = (503, "down")
    with pytest.raises(EmarsysUnavailable):
        await client.call("GET", "/a")
    assert seen[-1].outcome == "gave_up"
    fake.default = (200, OK)
    fake.script = [(502, "x"), (400, {"replyCode": 1001, "replyText": "bad"})]
    with pytest.raises(EmarsysRejected):
        await client.call("GET", "/b")
    assert seen[-1].outcome == "rejected" and seen[-1].path == "/b"

    # Cancelled while waiting (a lane giving up on a call): the end is reported too.
    waiting = asyncio.Event()

    async def stall(d: float) -> None:
        waiting.set()
        await asyncio.sleep(3600)

    client._sleep = stall
    fake.script = [(503, "down")]
    task = asyncio.ensure_future(client.call("GET", "/c"))
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (seen[-1].path, seen[-1].outcome) == ("/c", "cancelled")
    # A call that never retried reports nothing; a broken observer breaks nothing.
    count = len(seen)
    await client.call("GET", "/d")
    assert len(seen) == count

    def broken(progress: RetryProgress) -> None:
        raise RuntimeError("observer bug")

    fake.script = [(503, "down")]
    reply = await make(backoff=NO_JITTER, on_retry=broken).call("GET", "/e")
    assert reply.attempts == 2


async def test_backoff_grows_and_is_capped_in_calls(
    fake: Fake, make: Callable[..., EmarsysClient], ft: FakeTime
) -> None:
    fake.script = [(500, "x")] * 6
    await make(backoff=NO_JITTER).call("GET", "/settings")
    assert ft.sleeps == [0.5, 1, 2, 4, 8, 8]


async def test_jittered_waits_within_bounds(
    fake: Fake, make: Callable[..., EmarsysClient], ft: FakeTime
) -> None:
    fake.script = [(502, "x")] * 6
    await make().call("GET", "/settings")
    caps = [0.5, 1, 2, 4, 8, 8]
    assert len(ft.sleeps) == 6
    assert all(0 <= s <= c for s, c in zip(ft.sleeps, caps, strict=True))


async def test_timeouts_are_retried_then_given_up(
    fake: Fake, make: Callable[..., EmarsysClient]
) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.json_response(OK)

    fake.default = slow
    with pytest.raises(EmarsysUnavailable) as info:
        await make(backoff=NO_JITTER, timeout=0.1, retry_for=1).call("GET", "/settings")
    assert info.value.reason == "timeout"
    assert info.value.attempts == 2 and info.value.last_status is None


async def test_timeout_then_success(fake: Fake, make: Callable[..., EmarsysClient]) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.json_response(OK)

    fake.script = [slow]
    reply = await make(backoff=NO_JITTER, timeout=0.1).call("GET", "/settings")
    assert reply.attempts == 2


async def test_connection_errors_are_retried_then_given_up(
    make: Callable[..., EmarsysClient], ft: FakeTime
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make(
        "wsse", backoff=NO_JITTER, api_url=f"http://127.0.0.1:{port}/api/v2", retry_for=10
    )
    with pytest.raises(EmarsysUnavailable) as info:
        await client.call("GET", "/settings")
    assert info.value.reason.startswith("connection error")
    assert info.value.attempts == 5  # 0.5 + 1 + 2 + 4 = 7.5; another 8 passes 10 s
    assert ft.sleeps == [0.5, 1, 2, 4]


async def test_unreadable_200_is_retried(fake: Fake, make: Callable[..., EmarsysClient]) -> None:
    fake.script = [(200, "<html>proxy</html>"), (200, "")]
    reply = await make(backoff=NO_JITTER).call("GET", "/settings")
    assert reply.attempts == 3 and reply.reply_code == 0


# -- envelope ---------------------------------------------------------------------------------


def test_parse_reply_defensive() -> None:
    r = parse_reply(429, b"Too many requests", {"X-RateLimit-Reset": "1"})
    assert (r.reply_code, r.reply_text, r.data) == (None, "Too many requests", None)
    r = parse_reply(200, b'{"replyCode": "2008", "replyText": null}')
    assert (r.reply_code, r.reply_text, r.data) == (2008, "", None)
    r = parse_reply(200, b"[1, 2]")
    assert (r.reply_code, r.data) == (None, [1, 2])
    r = parse_reply(500, b"x" * 10_000)
    assert len(r.reply_text) <= 300


# -- contacts ---------------------------------------------------------------------------------


async def test_upsert_request_and_per_contact_errors(
    fake: Fake, make: Callable[..., EmarsysClient]
) -> None:
    fake.script = [
        (
            200,
            {
                "replyCode": 0,
                "replyText": "OK",
                "data": {
                    "ids": ["101", 102],
                    "errors": {
                        "dup@x.com": {"2010": "Contacts with the external id already exist: 3"},
                        "bad@x.com": {"2007": "Invalid value for field 4"},
                    },
                },
            },
        )
    ]
    rows = [{"3": "a@x.com", "1": "Ann"}, {"3": "b@x.com"}, {"3": "dup@x.com"}, {"3": "bad@x.com"}]
    result = await make(contact_list_id=555).upsert_contacts(rows)
    assert result.ids == ["101", 102]
    assert result.errors == {
        "dup@x.com": (2010, "Contacts with the external id already exist: 3"),
        "bad@x.com": (2007, "Invalid value for field 4"),
    }
    seen = fake.seen[0]
    assert (seen.method, seen.path, seen.query) == (
        "PUT",
        "/api/v3/contact/",
        {"create_if_not_exists": "1"},
    )
    assert seen.body == {"key_id": 3, "contacts": rows, "contact_list_id": 555}
    assert seen.headers["Content-Type"] == "application/json"


async def test_upsert_without_contact_list(fake: Fake, make: Callable[..., EmarsysClient]) -> None:
    fake.script = [(200, {"replyCode": 0, "replyText": "OK", "data": {"ids": [1], "errors": []}})]
    result = await make().upsert_contacts([{"3": "a@x.com"}])
    assert result.errors == {} and result.ids == [1]
    assert fake.seen[0].body == {"key_id": 3, "contacts": [{"3": "a@x.com"}]}


async def test_upsert_no_key_id_is_a_whole_request_failure(
    fake: Fake, make: Callable[..., EmarsysClient]
) -> None:
    fake.script = [
        (
            200,
            {
                "replyCode": 0,
                "replyText": "OK",
                "data": {
                    "ids": [],
                    "errors": {"<NO_KEY_ID>": {"2004": "Invalid key field id: 100"}},
                },
            },
        )
    ]
    with pytest.raises(EmarsysRejected) as info:
        await make(key_field=100).upsert_contacts([{"100": "k1"}])
    assert (info.value.status, info.value.reply_code) == (200, 2004)
    assert info.value.reply_text == "Invalid key field id: 100"


async def test_upsert_error_reply_code_in_200_without_errors(
    fake: Fake, make: Callable[..., EmarsysClient]
) -> None:
    fake.script = [(200, {"replyCode": 1000, "replyText": "Too many contacts", "data": {}})]
    with pytest.raises(EmarsysRejected) as info:
        await make().upsert_contacts([{"3": "a@x.com"}])
    assert info.value.reply_code == 1000


async def test_upsert_refuses_unmerged_or_oversized_batches(
    fake: Fake, make: Callable[..., EmarsysClient]
) -> None:
    client = make()
    with pytest.raises(ValueError, match="1000"):
        await client.upsert_contacts([{"3": f"u{i}"} for i in range(1001)])
    with pytest.raises(ValueError, match="merge"):
        await client.upsert_contacts([{"3": "a"}, {"3": "a"}])
    with pytest.raises(ValueError, match="bytes"):
        await client.upsert_contacts([{"3": f"u{i}", "1": "x" * 10_000} for i in range(900)])
    assert (await client.upsert_contacts([])).ids == []
    assert fake.seen == []


async def test_delete_contact(fake: Fake, make: Callable[..., EmarsysClient]) -> None:
    fake.script = [
        (200, {"replyCode": 0, "replyText": "OK", "data": {"deleted_contacts": 1}}),
        (400, {"replyCode": 2008, "replyText": "No contact found with the external id: 3"}),
        (400, {"replyCode": 2004, "replyText": "Invalid key field id"}),
    ]
    client = make()
    assert await client.delete_contact("a@x.com") is True
    assert await client.delete_contact("gone@x.com") is False
    with pytest.raises(EmarsysRejected):
        await client.delete_contact("c@x.com")
    assert fake.seen[0].method == "POST" and fake.seen[0].path == "/api/v3/contact/delete"
    assert fake.seen[0].body == {"key_id": 3, "3": "a@x.com"}


async def test_delete_contact_not_found_inside_200(
    fake: Fake, make: Callable[..., EmarsysClient]
) -> None:
    fake.script = [
        (200, {"replyCode": 0, "replyText": "OK", "data": {"errors": {"a@x.com": {"2008": "No"}}}})
    ]
    assert await make().delete_contact("a@x.com") is False


async def test_get_contacts(fake: Fake, make: Callable[..., EmarsysClient]) -> None:
    fake.script = [
        (
            200,
            {
                "replyCode": 0,
                "replyText": "OK",
                "data": {
                    "result": [{"id": "11", "1": "Ann", "3": "a@x.com"}],
                    "errors": [
                        {"key": "nobody@x.com", "errorCode": "2008", "errorMsg": "No contact found"}
                    ],
                },
            },
        )
    ]
    data = await make().get_contacts(["a@x.com", "nobody@x.com"], [1])
    assert data.contacts == [{"id": "11", "1": "Ann", "3": "a@x.com"}]
    assert data.errors == {"nobody@x.com": (2008, "No contact found")}
    assert fake.seen[0].body == {
        "keyId": "3",
        "keyValues": ["a@x.com", "nobody@x.com"],
        "fields": ["1", "3"],
    }


async def test_get_contacts_none_found(fake: Fake, make: Callable[..., EmarsysClient]) -> None:
    fake.script = [
        (
            200,
            {
                "replyCode": 0,
                "replyText": "OK",
                "data": {
                    "result": False,
                    "errors": [{"key": "x", "errorCode": 2008, "errorMsg": "No contact"}],
                },
            },
        )
    ]
    data = await make().get_contacts(["x"], ["3"])
    assert data.contacts == [] and data.errors == {"x": (2008, "No contact")}


# -- events -----------------------------------------------------------------------------------


async def test_trigger_batch_request_and_errors(
    fake: Fake, make: Callable[..., EmarsysClient]
) -> None:
    fake.script = [
        (
            200,
            {
                "replyCode": 0,
                "replyText": "OK",
                "data": {"errors": {"b@x.com": {"2008": "No contact found with the external id"}}},
            },
        )
    ]
    items: list[dict[str, Any]] = [
        {
            "external_id": "a@x.com",
            "trigger_id": "r1:a:1",
            "data": {"global": {"name": "Ann"}},
            "event_time": "2026-01-02T03:04:05Z",
        },
        {
            "external_id": "b@x.com",
            "trigger_id": "r1:b:1",
            "event_time": "2026-01-02T03:04:05.123Z",
        },
    ]
    result = await make().trigger_event(42, items)
    assert result.errors == {"b@x.com": (2008, "No contact found with the external id")}
    seen = fake.seen[0]
    assert (seen.method, seen.path) == ("POST", "/api/v3/event/42/trigger")
    assert seen.body == {"key_id": 3, "contacts": items}


@pytest.mark.parametrize(
    "event_time",
    [
        "2026-01-02T03:04:05+02:00",
        "2026-01-02T03:04:05",
        "2026-01-02 03:04:05Z",
        "2026-01-02T03:04:05.12Z",
        "2026-01-02T03:04:05.123456Z",
        "2026-01-02",
        1767323045,
    ],
)
async def test_trigger_refuses_non_utc_event_time(
    fake: Fake, make: Callable[..., EmarsysClient], event_time: Any
) -> None:
    items = [{"external_id": "a@x.com", "trigger_id": "t", "event_time": event_time}]
    with pytest.raises(ValueError, match="event_time"):
        await make().trigger_event(42, items)
    assert fake.seen == []


async def test_trigger_needs_ids_and_limits(fake: Fake, make: Callable[..., EmarsysClient]) -> None:
    client = make()
    with pytest.raises(ValueError, match="trigger_id"):
        await client.trigger_event(1, [{"external_id": "a"}])
    with pytest.raises(ValueError, match="external_id"):
        await client.trigger_event(1, [{"trigger_id": "t"}])
    with pytest.raises(ValueError, match="1000"):
        await client.trigger_event(1, [{"external_id": "a", "trigger_id": "t"}] * 1001)
    big = {"global": {"x": "y" * 2000}}
    with pytest.raises(ValueError, match="bytes"):
        await client.trigger_event(
            1, [{"external_id": f"u{i}", "trigger_id": f"t{i}", "data": big} for i in range(600)]
        )
    with pytest.raises(TypeError):
        await client.trigger_event("welcome", [])  # type: ignore[arg-type]
    assert fake.seen == []


async def test_trigger_no_key_id(fake: Fake, make: Callable[..., EmarsysClient]) -> None:
    fake.script = [
        (
            200,
            {"replyCode": 0, "replyText": "OK", "data": {"errors": {"<NO_KEY_ID>": {"2004": "x"}}}},
        )
    ]
    with pytest.raises(EmarsysRejected) as info:
        await make().trigger_event(1, [{"external_id": "a", "trigger_id": "t"}])
    assert info.value.reply_code == 2004


EVENTS = (
    200,
    {
        "replyCode": 0,
        "replyText": "OK",
        "data": [{"id": "7", "name": "welcome"}, {"id": 9, "name": "Cart Abandoned"}],
    },
)


async def test_resolve_event_id(
    fake: Fake, make: Callable[..., EmarsysClient], ft: FakeTime
) -> None:
    fake.default = EVENTS
    client = make()
    assert await client.resolve_event_id(5) == 5
    assert await client.resolve_event_id("12") == 12
    assert fake.seen == []
    assert await client.resolve_event_id("welcome") == 7
    assert await client.resolve_event_id("cart abandoned") == 9
    assert len(fake.seen) == 1 and fake.seen[0].method == "GET"
    assert fake.seen[0].path == "/api/v3/event"
    ft.t += 599
    assert await client.resolve_event_id("welcome") == 7
    assert len(fake.seen) == 1
    ft.t += 2
    assert await client.resolve_event_id("welcome") == 7
    assert len(fake.seen) == 2


async def test_resolve_unknown_event(
    fake: Fake, make: Callable[..., EmarsysClient], ft: FakeTime
) -> None:
    fake.default = EVENTS
    client = make()
    with pytest.raises(EmarsysRejected, match="no external event named 'nope'"):
        await client.resolve_event_id("nope")
    with pytest.raises(EmarsysRejected):
        await client.resolve_event_id("nope")
    assert len(fake.seen) == 1  # a fresh list is not refetched for every unknown name
    ft.t += 61
    with pytest.raises(EmarsysRejected):
        await client.resolve_event_id("nope")
    assert len(fake.seen) == 2


# -- contact lists ----------------------------------------------------------------------------

LISTS = (
    200,
    {
        "replyCode": 0,
        "replyText": "OK",
        "data": [
            {"id": "750504659", "name": "VIP customers", "created": "2026-01-01 00:00:00"},
            {"id": 750504660, "name": "Cart abandoners", "type": 0},
        ],
    },
)


async def test_add_to_list_sends_key_id_and_external_ids(
    fake: Fake, make: Callable[..., EmarsysClient]
) -> None:
    fake.script = [
        (
            200,
            {
                "replyCode": 0,
                "replyText": "OK",
                "data": {
                    "inserted_contacts": 1,
                    "errors": {"b@x.com": {"2008": "No contact found with the external id"}},
                },
            },
        )
    ]
    result = await make().add_to_list(750504659, ["a@x.com", "b@x.com"])
    assert result.count == 1
    assert result.errors == {"b@x.com": (2008, "No contact found with the external id")}
    [seen] = fake.seen
    assert (seen.method, seen.path) == ("POST", "/api/v3/contactlist/750504659/add")
    assert seen.body == {"key_id": 3, "external_ids": ["a@x.com", "b@x.com"]}


async def test_remove_from_list_posts_to_delete_and_reads_deleted_contacts(
    fake: Fake, make: Callable[..., EmarsysClient]
) -> None:
    fake.default = (200, {"replyCode": 0, "replyText": "OK", "data": {"deleted_contacts": 2}})
    result = await make(key_field=4711).remove_from_list(7, ["a", "b"])
    assert (result.count, result.errors) == (2, {})
    assert fake.seen[0].path == "/api/v3/contactlist/7/delete"
    assert fake.seen[0].body == {"key_id": 4711, "external_ids": ["a", "b"]}


async def test_list_calls_take_at_most_ten_thousand_ids(
    fake: Fake, make: Callable[..., EmarsysClient]
) -> None:
    client = make()
    with pytest.raises(ValueError, match="10000"):
        await client.add_to_list(1, [f"c{i}" for i in range(10_001)])
    with pytest.raises(ValueError, match="empty external id"):
        await client.remove_from_list(1, ["a", ""])
    with pytest.raises(TypeError):
        await client.add_to_list("VIP customers", ["a"])  # type: ignore[arg-type]
    assert (await client.add_to_list(1, [])).count == 0
    assert fake.seen == []
    await client.add_to_list(1, [f"c{i}" for i in range(10_000)])
    assert len(fake.seen[0].body["external_ids"]) == 10_000


async def test_an_unknown_list_is_refused_and_not_retried(
    fake: Fake, make: Callable[..., EmarsysClient]
) -> None:
    fake.default = (400, {"replyCode": 3004, "replyText": "Invalid contact list id: 9", "data": ""})
    with pytest.raises(EmarsysRejected) as info:
        await make(backoff=NO_JITTER).add_to_list(9, ["a@x.com"])
    assert (info.value.status, info.value.reply_code) == (400, 3004)
    assert len(fake.seen) == 1


async def test_list_calls_are_retried_like_every_call(
    fake: Fake, make: Callable[..., EmarsysClient], ft: FakeTime
) -> None:
    fake.script = [
        (503, "busy"),
        (429, "slow down", {"X-RateLimit-Reset": str(int(NOW) + 3)}),
        (200, {"replyCode": 0, "replyText": "OK", "data": {"deleted_contacts": 1}}),
    ]
    result = await make(backoff=NO_JITTER).remove_from_list(5, ["a@x.com"])
    assert result.count == 1 and len(fake.seen) == 3
    assert ft.sleeps and ft.t >= NOW + 3


async def test_resolve_list_id_by_name_cached_like_events(
    fake: Fake, make: Callable[..., EmarsysClient], ft: FakeTime
) -> None:
    fake.default = LISTS
    client = make()
    assert await client.resolve_list_id(42) == 42
    assert await client.resolve_list_id(" 750504660 ") == 750504660
    assert fake.seen == []
    assert await client.resolve_list_id("VIP customers") == 750504659
    assert await client.resolve_list_id("cart ABANDONERS") == 750504660
    assert [(s.method, s.path) for s in fake.seen] == [("GET", "/api/v3/contactlist")]
    with pytest.raises(EmarsysRejected, match="no contact list named 'Nope'"):
        await client.resolve_list_id("Nope")
    assert len(fake.seen) == 1  # a fresh list is not refetched for an unknown name
    ft.t += 61
    with pytest.raises(EmarsysRejected):
        await client.resolve_list_id("Nope")
    assert len(fake.seen) == 2
    ft.t += 600
    assert await client.resolve_list_id("VIP customers") == 750504659
    assert len(fake.seen) == 3
    # The events' cache is its own: resolving an event name still asks GET /event.
    fake.default = EVENTS
    assert await client.resolve_event_id("welcome") == 7
    assert fake.seen[-1].path == "/api/v3/event"


# -- logging ----------------------------------------------------------------------------------


async def test_logs_carry_no_bodies_tokens_secrets_or_keys(
    fake: Fake, make: Callable[..., EmarsysClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="emd.emarsys")
    fake.script = [
        (401, {"replyCode": 1, "replyText": "Unauthorized"}),
        (503, "secret-laden body mail@x.com"),
        (
            200,
            {
                "replyCode": 0,
                "replyText": "OK",
                "data": {"errors": {"mail@x.com": {"2010": "mail@x.com"}}},
            },
        ),
        (400, {"replyCode": 2004, "replyText": "bad key mail@x.com"}),
    ]
    client = make(backoff=NO_JITTER)
    await client.upsert_contacts([{"3": "mail@x.com", "1": "Ann"}])
    with pytest.raises(EmarsysRejected):
        await client.delete_contact("mail@x.com")
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("emd.emarsys"))
    assert "PUT /contact/" in text and "attempt=3" in text
    for forbidden in ("mail@x.com", "tok-1", "tok-2", SECRET, "secret-laden", "Ann", "Bearer"):
        assert forbidden not in text
