"""API keys and the admin token are compared with ``hmac.compare_digest`` (constant time).

A spy replaces ``hmac.compare_digest`` and records every comparison: an implementation
that went back to ``==`` (or ``in``, or a dict lookup by key) would make no call and fail.
"""

from __future__ import annotations

import base64
import hmac
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from app.account import Accounts
from app.config import load_config_text
from app.web.auth import admin_ok, signature_ok

CONFIG = """
accounts:
  alpha:
    api_keys: [alpha-key-1, alpha-key-2]
    primary_key: context.traits.email
    emarsys: {api_url: "http://127.0.0.1:9797/api/v3", client_id: c, client_secret: s}
  beta:
    api_keys: [beta-key-1]
    primary_key: context.traits.email
    emarsys: {api_url: "http://127.0.0.1:9797/api/v3", client_id: c, client_secret: s}
"""
KEYS = {b"alpha-key-1", b"alpha-key-2", b"beta-key-1"}


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def compare_digest(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", compare_digest)
    return calls


def _request(authorization: str | None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return make_mocked_request("GET", "/api/accounts", headers=headers)


@pytest.mark.parametrize("candidate", ["alpha-key-2", "beta-key-1", "nope", "alpha-key-"])
def test_api_keys_are_compared_with_compare_digest(spy, candidate: str) -> None:
    accounts = Accounts(load_config_text(CONFIG, env={}))
    found = accounts.account_for_key(candidate)
    assert found == {"alpha-key-2": "alpha", "beta-key-1": "beta"}.get(candidate)
    # Every configured key is compared (no early exit that would reveal which matched).
    compared = {a for a, _ in spy} | {b for _, b in spy}
    assert compared >= KEYS
    assert len(spy) == len(KEYS)
    assert all(candidate.encode() in pair for pair in spy)


@pytest.mark.parametrize(
    ("authorization", "ok"),
    [
        ("Bearer s3cret-admin-token", True),
        ("Bearer s3cret-admin-toke", False),
        ("Bearer s3cret-admin-token-and-more", False),
        ("Bearer wrong", False),
    ],
)
def test_admin_token_is_compared_with_compare_digest(spy, authorization: str, ok: bool) -> None:
    assert admin_ok(_request(authorization), "s3cret-admin-token") is ok
    assert len(spy) == 1
    assert b"s3cret-admin-token" in spy[0]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer ", "Basic " + base64.b64encode(b"s3cret-admin-token:").decode()],
)
def test_no_bearer_token_is_refused_without_comparing(spy, authorization: str | None) -> None:
    # Nothing to compare: refused before any comparison (no timing to learn either).
    assert admin_ok(_request(authorization), "s3cret-admin-token") is False


def test_signature_is_compared_with_compare_digest(spy) -> None:
    body = b'{"cool":true}'
    assert signature_ok(body, "abc123", "5099cab379b3be52908387457007040cc934ef86")
    assert not signature_ok(body, "abc123", "5099cab379b3be52908387457007040cc934ef87")
    assert len(spy) == 2


async def test_ingest_checks_the_basic_key_and_the_write_key_in_constant_time(spy) -> None:
    """Through the HTTP ingest itself: the Basic username and a body ``writeKey``."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from app.metrics import Metrics
    from app.web.ingest import Ingest

    accounts = Accounts(load_config_text(CONFIG, env={}))

    async def publish(records: Any) -> None:
        return None

    async def dead_letter(*args: Any) -> None:
        return None

    app = web.Application()
    app.add_routes(Ingest(lambda: accounts, publish, dead_letter, Metrics()).routes())
    msg = {"type": "track", "event": "E", "userId": "u1"}
    async with TestClient(TestServer(app)) as client:
        auth = {"Authorization": "Basic " + base64.b64encode(b"beta-key-1:").decode()}
        resp = await client.post("/v1/track", json=msg, headers=auth)
        assert resp.status == 200
        assert len(spy) == len(KEYS) and all(b"beta-key-1" in pair for pair in spy)
        spy.clear()
        resp = await client.post("/v1/track", json={**msg, "writeKey": "alpha-key-1"})
        assert resp.status == 200
        assert len(spy) == len(KEYS) and all(b"alpha-key-1" in pair for pair in spy)
        spy.clear()
        resp = await client.post("/v1/track", json={**msg, "writeKey": "alpha-key-9"})
        assert resp.status == 401
        assert len(spy) == len(KEYS)
