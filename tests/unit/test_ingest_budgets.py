"""Who waits for whom at ingest: header auth before the body, two in-flight budgets, body
deadlines, and error bodies with a code. Real sockets against aiohttp's server running
with the worker's options; the broker is faked (it is not what is tested here)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app.account import Accounts
from app.config import load_config_text
from app.metrics import Metrics
from app.web.ingest import Ingest, Record
from tests.servers import WorkerServer

ACCOUNTS = Accounts(
    load_config_text(
        """
accounts:
  acme:
    api_keys: [acme-key]
    primary_key: context.traits.email
    emarsys: {api_url: "http://127.0.0.1:9797/api/v3", client_id: c, client_secret: s}
""",
        env={},
    )
)
AUTH = {"Authorization": "Basic " + base64.b64encode(b"acme-key:").decode()}
WRONG = {"Authorization": "Basic " + base64.b64encode(b"nope:").decode()}
IDENTIFY = orjson.dumps({"userId": "u1", "traits": {"a": 1}})


class Harness:
    def __init__(self, client: TestClient, metrics: Metrics, published: list[Record]) -> None:
        self.client = client
        self.metrics = metrics
        self.published = published

    @property
    def port(self) -> int:
        port = self.client.server.port
        assert port is not None
        return port

    async def open_slow(self, path: str, headers: bytes = b"", length: int = 10_000) -> Any:
        """A connection that sent its headers and the first byte of a body, no more."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n".encode()
            + headers
            + b"\r\n{"
        )
        await writer.drain()
        return reader, writer


async def status_of(reader: asyncio.StreamReader, timeout: float = 10) -> int:
    line = await asyncio.wait_for(reader.readline(), timeout)
    return int(line.split()[1])


def make(**kw: Any):
    @pytest.fixture
    async def fixture() -> AsyncIterator[Harness]:
        metrics, published = Metrics(), []

        async def publish(records: list[Record]) -> None:
            published.extend(records)

        async def dead_letter(*_a: Any) -> None:
            return None

        ingest = Ingest(lambda: ACCOUNTS, publish, dead_letter, metrics, **kw)
        app = web.Application()
        app.add_routes(ingest.routes())
        async with TestClient(WorkerServer(app, metrics)) as client:
            yield Harness(client, metrics, published)

    return fixture


h = make(max_unauthenticated=3, unauthenticated_timeout=1.0, body_timeout=2.0)


async def test_a_wrong_key_is_refused_before_the_body_is_read(h: Harness) -> None:
    header = f"Authorization: {WRONG['Authorization']}\r\n".encode()
    reader, writer = await h.open_slow("/v1/identify", header)
    assert await status_of(reader) == 401  # the 9,999 other bytes never came
    writer.close()


async def test_anonymous_slow_clients_fill_only_their_own_budget(h: Harness) -> None:
    slow = [await h.open_slow("/v1/batch") for _ in range(3)]
    await asyncio.sleep(0.1)
    # The anonymous budget is full: the next anonymous client is told to retry...
    resp = await h.client.post("/v1/identify", data=orjson.dumps({"writeKey": "acme-key"}))
    assert resp.status == 429 and resp.headers["Retry-After"] == "1"
    assert (await resp.json())["code"] == "too_many_requests"
    # ...while an authenticated one is answered at once.
    for i in range(5):
        resp = await h.client.post("/v1/identify", data=IDENTIFY, headers=AUTH)
        assert resp.status == 200, (i, await resp.text())
    assert h.metrics.value("emd_ingest_throttled_total", budget="unauthenticated") == 1
    assert h.metrics.value("emd_ingest_throttled_total", budget="authenticated") == 0
    # The slow ones are cut off by their deadline (408), which frees the budget.
    for reader, writer in slow:
        assert await status_of(reader) == 408
        writer.close()
    assert h.metrics.value("emd_http_bad_connections_total", reason="body_timeout") == 3
    body = orjson.dumps({"writeKey": "acme-key", "userId": "u2"})
    resp = await h.client.post("/v1/identify", data=body)
    assert resp.status == 200, await resp.text()
    assert "writeKey" not in orjson.loads(h.published[-1].value)


async def test_an_authenticated_slow_body_gets_the_longer_deadline(h: Harness) -> None:
    header = f"Authorization: {AUTH['Authorization']}\r\n".encode()
    reader, writer = await h.open_slow("/v1/identify", header)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await status_of(reader) == 408
    assert loop.time() - started > 1.0  # not the anonymous deadline: the server's bound
    writer.close()


async def test_authenticated_slow_bodies_do_not_use_the_anonymous_budget(h: Harness) -> None:
    header = f"Authorization: {AUTH['Authorization']}\r\n".encode()
    slow = [await h.open_slow("/v1/identify", header) for _ in range(3)]
    await asyncio.sleep(0.1)
    # 3 authenticated slow bodies are within the 256 authenticated slots: an anonymous
    # request is not blocked by them either.
    resp = await h.client.post(
        "/v1/identify", data=orjson.dumps({"writeKey": "acme-key", "userId": "u3"})
    )
    assert resp.status == 200
    for _, writer in slow:
        writer.close()


@pytest.mark.parametrize(
    ("headers", "data", "status", "code"),
    [
        ({}, b"{oops", 401, "unauthorized"),
        (AUTH, b"{oops", 400, "bad_json"),
        (AUTH, b"[1]", 400, "invalid_message"),
        (AUTH, orjson.dumps({"traits": {}}), 400, "invalid_message"),
        (WRONG, IDENTIFY, 401, "unauthorized"),
        ({**AUTH, "Content-Type": "application/json; charset=nope"}, IDENTIFY, 400, "bad_charset"),
        ({**AUTH, "Content-Encoding": "br"}, IDENTIFY, 415, "unsupported_encoding"),
        (AUTH, b'{"userId": "u", "x": "' + b"a" * 40_000 + b'"}', 413, "too_large"),
    ],
)
async def test_every_error_has_a_code_and_a_message(
    h: Harness, headers: dict[str, str], data: bytes, status: int, code: str
) -> None:
    resp = await h.client.post("/v1/identify", data=data, headers=headers)
    body = await resp.json()
    assert resp.status == status and body["code"] == code and body["message"], body
