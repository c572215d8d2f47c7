"""WSSE headers (the reference's check vectors) and OAuth client-credentials tokens."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from app.emarsys.auth import OAuthTokens, TokenError, wsse_created, wsse_digest, wsse_header

SECRET = "top-secret-value"
HEADER_RE = re.compile(
    r'^UsernameToken Username="(?P<user>[^"]*)", PasswordDigest="(?P<digest>[^"]+)", '
    r'Nonce="(?P<nonce>[0-9a-f]{32})", '
    r'Created="(?P<created>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)"$'
)


# -- WSSE ---------------------------------------------------------------------------------


def test_digest_of_test_vector() -> None:
    assert wsse_digest("", "", "test") == "YTk0YThmZTVjY2IxOWJhNjFjNGMwODczZDM5MWU5ODc5ODJmYmJkMw=="


def test_digest_full_vector() -> None:
    digest = wsse_digest("5398e214ae99c2e50afb709a3bc423f9", "2019-10-14T00:00:00.000Z", "dummy")
    assert digest == "NDc5MjNlODIyMGE4ODhiMTQyNTA0OGMzZTFjZTM1MmMzMmU0NmNiNw=="


def test_digest_is_base64_of_hex_not_raw() -> None:
    decoded = base64.b64decode(wsse_digest("n", "t", "s"))
    assert len(decoded) == 40 and re.fullmatch(rb"[0-9a-f]{40}", decoded)


def test_header_exact_format_with_vector() -> None:
    header = wsse_header(
        "acme001",
        "dummy",
        now=datetime(2019, 10, 14, tzinfo=UTC),
        nonce="5398e214ae99c2e50afb709a3bc423f9",
    )
    assert header == (
        'UsernameToken Username="acme001", '
        'PasswordDigest="NDc5MjNlODIyMGE4ODhiMTQyNTA0OGMzZTFjZTM1MmMzMmU0NmNiNw==", '
        'Nonce="5398e214ae99c2e50afb709a3bc423f9", Created="2019-10-14T00:00:00.000Z"'
    )


def test_header_fresh_nonce_and_current_time() -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    headers = [wsse_header("u", SECRET) for _ in range(50)]
    matches = [HEADER_RE.match(h) for h in headers]
    assert all(matches)
    nonces = {m["nonce"] for m in matches if m}
    assert len(nonces) == 50
    for m in matches:
        assert m is not None
        created = datetime.strptime(m["created"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert before <= created <= datetime.now(UTC) + timedelta(seconds=1)
        assert m["digest"] == wsse_digest(m["nonce"], m["created"], SECRET)


def test_created_is_utc_with_millis() -> None:
    local = datetime(2026, 1, 2, 5, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert wsse_created(local) == "2026-01-02T03:04:05.123Z"
    assert wsse_created(0.5) == "1970-01-01T00:00:00.500Z"
    assert wsse_created(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000Z"


# -- OAuth --------------------------------------------------------------------------------


@dataclass
class TokenServer:
    url: str = ""
    fetches: int = 0
    expires_in: Any = 3600
    delay: float = 0.0
    replies: list[tuple[int, Any]] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.fetches += 1
        form = await request.post()
        self.seen.append(
            {
                "method": request.method,
                "auth": request.headers.get("Authorization", ""),
                "form": dict(form),
            }
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.replies:
            status, body = self.replies.pop(0)
            if isinstance(body, str):
                return web.Response(status=status, text=body)
            return web.json_response(body, status=status)
        return web.json_response(
            {
                "access_token": f"tok-{self.fetches}",
                "token_type": "bearer",
                "expires_in": self.expires_in,
            }
        )


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def token_server() -> AsyncIterator[TokenServer]:
    ts = TokenServer()
    app = web.Application()
    app.router.add_post("/oauth2/token", ts.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    ts.url = str(server.make_url("/oauth2/token"))
    yield ts
    await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def tokens_for(ts: TokenServer, session: aiohttp.ClientSession, clock: Clock) -> OAuthTokens:
    return OAuthTokens(ts.url, "client-1", SECRET, session, clock=clock)


async def test_client_credentials_request(
    token_server: TokenServer, session: aiohttp.ClientSession
) -> None:
    tokens = tokens_for(token_server, session, Clock())
    assert await tokens.token() == "tok-1"
    seen = token_server.seen[0]
    assert seen["method"] == "POST"
    assert seen["form"] == {"grant_type": "client_credentials"}
    expected = base64.b64encode(f"client-1:{SECRET}".encode()).decode()
    assert seen["auth"] == f"Basic {expected}"


async def test_token_reused_then_refreshed_a_minute_before_expiry(
    token_server: TokenServer, session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    tokens = tokens_for(token_server, session, clock)
    assert await tokens.token() == "tok-1"
    clock.t += 3000
    assert await tokens.token() == "tok-1"
    clock.t += 539  # 3539 s: one second before the refresh point
    assert await tokens.token() == "tok-1"
    clock.t += 2  # 3541 s: inside the last minute
    assert await tokens.token() == "tok-2"
    assert token_server.fetches == 2


async def test_short_lived_token_refreshed_at_half_life(
    token_server: TokenServer, session: aiohttp.ClientSession
) -> None:
    token_server.expires_in = 20
    clock = Clock()
    tokens = tokens_for(token_server, session, clock)
    assert await tokens.token() == "tok-1"
    clock.t += 9
    assert await tokens.token() == "tok-1"
    clock.t += 2
    assert await tokens.token() == "tok-2"


async def test_invalidate_only_drops_the_failed_token(
    token_server: TokenServer, session: aiohttp.ClientSession
) -> None:
    tokens = tokens_for(token_server, session, Clock())
    first = await tokens.token()
    tokens.invalidate(first)
    second = await tokens.token()
    assert second == "tok-2"
    tokens.invalidate(first)  # a late 401 for the old token keeps the new one
    assert await tokens.token() == "tok-2"
    tokens.invalidate()
    assert await tokens.token() == "tok-3"


async def test_concurrent_callers_share_one_fetch(
    token_server: TokenServer, session: aiohttp.ClientSession
) -> None:
    token_server.delay = 0.05
    tokens = tokens_for(token_server, session, Clock())
    got = await asyncio.gather(*(tokens.token() for _ in range(20)))
    assert set(got) == {"tok-1"}
    assert token_server.fetches == 1


async def test_failed_fetch_has_status_and_error_but_no_secret(
    token_server: TokenServer, session: aiohttp.ClientSession
) -> None:
    basic = base64.b64encode(f"client-1:{SECRET}".encode()).decode()
    token_server.replies = [
        (401, {"error": "invalid_client", "error_description": f"bad secret {SECRET} {basic}"})
    ]
    tokens = tokens_for(token_server, session, Clock())
    with pytest.raises(TokenError) as info:
        await tokens.token()
    assert info.value.status == 401
    message = str(info.value)
    assert "401" in message and "invalid_client" in message
    assert SECRET not in message and basic not in message


async def test_failed_fetch_plain_text_body(
    token_server: TokenServer, session: aiohttp.ClientSession
) -> None:
    token_server.replies = [(503, "upstream down")]
    tokens = tokens_for(token_server, session, Clock())
    with pytest.raises(TokenError, match="HTTP 503: upstream down"):
        await tokens.token()


@pytest.mark.parametrize("body", [{"token_type": "bearer"}, "not json", {"access_token": ""}])
async def test_answer_without_token_is_an_error(
    token_server: TokenServer, session: aiohttp.ClientSession, body: Any
) -> None:
    token_server.replies = [(200, body)]
    tokens = tokens_for(token_server, session, Clock())
    with pytest.raises(TokenError, match="no access_token") as info:
        await tokens.token()
    assert info.value.status == 200


async def test_garbage_expires_in_defaults_to_an_hour(
    token_server: TokenServer, session: aiohttp.ClientSession
) -> None:
    token_server.expires_in = "soon"
    clock = Clock()
    tokens = tokens_for(token_server, session, clock)
    await tokens.token()
    clock.t += 3500
    assert await tokens.token() == "tok-1"
    assert token_server.fetches == 1
