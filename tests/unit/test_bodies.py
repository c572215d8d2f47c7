"""The bounded body reader (app.web.bodies) over a real aiohttp server and real sockets."""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app.metrics import Metrics
from app.web.bodies import SLICE, BodyError, _Inflater, decode_json, depth_over, read_body
from tests.servers import WorkerServer

LIMIT = 64 * 1024


def bomb(inflated: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"0" * (1 << 20)
    parts = [z.compress(chunk) for _ in range(inflated // len(chunk))]
    return b"".join(parts) + z.flush()


async def echo(request: web.Request) -> web.Response:
    """The body as read (length and first bytes), or the BodyError as its answer."""
    timeout = float(request.query.get("timeout", "5"))
    try:
        body = await read_body(request, LIMIT, timeout)
    except BodyError as exc:
        resp = web.json_response(
            {"code": exc.code, "message": exc.message, "aborted": exc.aborted}, status=exc.status
        )
        if exc.aborted:
            resp.force_close()
        return resp
    return web.json_response({"length": len(body), "head": body[:40].decode("latin-1")})


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    app = web.Application()
    app.router.add_post("/", echo)
    async with TestClient(WorkerServer(app)) as c:
        yield c


async def post(client: TestClient, data: bytes, **headers: str) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/", data=data, headers=headers)
    return resp.status, await resp.json()


async def test_plain_gzip_and_both_deflates_are_read(client: TestClient) -> None:
    raw = b'{"type":"track","userId":"u1","event":"E"}'
    assert await post(client, raw) == (200, {"length": len(raw), "head": raw[:40].decode()})
    for data, enc in (
        (gzip.compress(raw), "gzip"),
        (gzip.compress(raw), "x-gzip"),
        (zlib.compress(raw), "deflate"),  # zlib-wrapped, as RFC 9110 defines it
        (zlib.compress(raw)[2:-4], "deflate"),  # raw deflate, as some clients send it
        (gzip.compress(raw[:10]) + gzip.compress(raw[10:]), "gzip"),  # two members
    ):
        status, body = await post(client, data, **{"Content-Encoding": enc})
        assert status == 200 and body["length"] == len(raw), (enc, body)


async def test_bad_compressed_bodies_are_400_not_500(client: TestClient) -> None:
    raw = b'{"a": 1}'
    cases = [
        (raw, "gzip"),  # not gzip at all
        (gzip.compress(raw)[:-12], "gzip"),  # cut short
        (gzip.compress(raw) + b"junk", "gzip"),  # trailing junk
        (zlib.compress(raw) + b"junk", "deflate"),
    ]
    for data, enc in cases:
        status, body = await post(client, data, **{"Content-Encoding": enc})
        assert status == 400 and body["code"] == "bad_body" and body["message"], (data, body)


async def test_other_encodings_are_415(client: TestClient) -> None:
    for enc in ("br", "zstd", "gzip, gzip", "compress"):
        status, body = await post(client, b"{}", **{"Content-Encoding": enc})
        assert status == 415 and body["code"] == "unsupported_encoding", (enc, body)


async def test_a_bomb_is_refused_at_the_first_byte_over_the_limit(client: TestClient) -> None:
    data = bomb(64 << 20)  # 64 MB of zeros in ~64 KB
    assert len(data) < LIMIT
    status, body = await post(client, data, **{"Content-Encoding": "gzip"})
    assert status == 413 and body["code"] == "too_large"


async def test_the_inflater_never_holds_more_than_the_limit() -> None:
    inflater = _Inflater("gzip", LIMIT)
    with pytest.raises(BodyError) as err:
        await inflater.feed(bomb(16 << 20))
    assert err.value.status == 413
    assert len(inflater.out) == LIMIT + 1  # exactly one byte over, then refused


async def test_inflating_yields_to_the_event_loop_between_slices() -> None:
    """A large allowed body is inflated slice by slice; other coroutines run in between."""
    limit = 32 << 20
    inflater = _Inflater("gzip", limit)
    data = bomb(limit)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await inflater.feed(data)
    done.set()
    await task
    assert inflater.finish() == b"0" * limit
    assert ticks >= limit // SLICE - 1  # the ticker ran once per slice


async def test_content_length_over_the_cap_is_refused_without_reading(
    client: TestClient,
) -> None:
    port = client.server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), 10)  # no body byte was sent
    assert b" 413 " in line
    writer.close()


async def test_a_body_that_does_not_arrive_in_time_is_408_and_closed(client: TestClient) -> None:
    port = client.server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /?timeout=0.5 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    await writer.drain()

    async def trickle() -> None:
        while True:
            await asyncio.sleep(0.1)
            writer.write(b" ")
            await writer.drain()

    trickling = asyncio.create_task(trickle())
    try:
        head = await asyncio.wait_for(reader.read(4096), 10)
    finally:
        trickling.cancel()
    assert b" 408 " in head.split(b"\r\n")[0]
    assert b"body_timeout" in head
    writer.close()


async def test_a_client_that_goes_away_is_an_aborted_read(caplog) -> None:
    seen: list[BodyError] = []

    async def handler(request: web.Request) -> web.Response:
        try:
            await read_body(request, LIMIT, 10)
        except BodyError as exc:
            seen.append(exc)
        return web.Response()

    app = web.Application()
    app.router.add_post("/", handler)
    metrics = Metrics()
    server = WorkerServer(app, metrics)
    async with TestClient(server):
        caplog.set_level(logging.DEBUG)
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{}")
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.05)
    assert seen and seen[0].aborted == "disconnected"
    assert "Traceback" not in caplog.text


def test_charsets() -> None:
    assert decode_json(b'{"a": "\xc3\xa9"}', None) == {"a": "é"}
    assert decode_json(b'{"a": "\xc3\xa9"}', "UTF-8") == {"a": "é"}
    assert decode_json(b'{"a": "\xe9"}', "latin-1") == {"a": "é"}  # decoded as declared
    assert decode_json('{"a": "é"}'.encode("utf-16"), "utf-16") == {"a": "é"}
    for charset in ("x-bogus", "rot13", "base64", "a" * 500):
        with pytest.raises(BodyError) as err:
            decode_json(b"{}", charset)
        assert err.value.status == 400 and err.value.code == "bad_charset"
        assert len(err.value.message) < 120
    with pytest.raises(BodyError) as err:
        decode_json(b"\xff\xfe{", "utf-8")
    assert err.value.code == "bad_json"


@pytest.mark.parametrize("depth", [63, 64, 65, 900, 1100, 5000])
@pytest.mark.parametrize("kind", ["list", "dict"])
def test_depth_is_bounded_without_recursion(depth: int, kind: str) -> None:
    text = ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)
    try:
        value = decode_json(text.encode(), None, max_depth=64)
    except BodyError as exc:
        assert exc.status == 400 and exc.code == "bad_json"
        assert depth > 64
        return
    assert depth <= 64 and not depth_over(value, 64)


def test_depth_over_counts_levels() -> None:
    assert not depth_over(1, 0)
    assert not depth_over([], 1) and depth_over([[]], 1)
    assert not depth_over({"a": [1, {"b": 2}]}, 3) and depth_over({"a": [1, {"b": [2]}]}, 3)
    assert orjson.loads(orjson.dumps({"a": 1})) == {"a": 1}
