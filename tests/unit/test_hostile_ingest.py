"""Fuzzing the HTTP ingest with hostile input (thousands of cases, in-process).

The ingest runs in aiohttp's test server with a fake broker that behaves like the real
one where it matters: dead letters are encoded with the real ``app.envelope.dead_letter``
(an unencodable payload fails as it would in a worker), and every published record must
survive what the topic consumer and the person stage do with it (parsed again by
``parse_message``, wrapped in the person-events envelope and in a dead letter).

Properties, for every request:

- never a 5xx, never a crash: 200, 400, 401 or 413 only;
- nothing is published unless the answer is 200;
- a 200 batch accounts for every message: published + ``rejected`` = messages sent, and
  each rejected one is dead-lettered with a non-empty reason;
- a 400 for an invalid message dead-letters it with its reason (at most one).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.account import Accounts
from app.config import load_config_text
from app.envelope import dead_letter as encode_dead_letter
from app.envelope import dumps
from app.identity import partition_id
from app.keys import key as make_key
from app.metrics import Metrics
from app.segment.model import parse_message, split_batch
from app.web.ingest import Ingest, Record
from tests.hostile import (
    BATCH_SIZE_CASES,
    SIZE_CASES,
    base_messages,
    batch_body,
    encode,
    hostile_messages,
    message_bytes,
    record_counts,
    single_body,
)
from tests.servers import WorkerServer

CONFIG = """
accounts:
  acme:
    api_keys: [acme-key]
    primary_key: context.traits.email
    emarsys: {api_url: "http://127.0.0.1:9797/api/v3", client_id: c, client_secret: s}
  signed:
    api_keys: [signed-key]
    primary_key: context.traits.email
    shared_secret: abc123
    emarsys: {api_url: "http://127.0.0.1:9797/api/v3", client_id: c, client_secret: s}
"""
ACCOUNTS = Accounts(load_config_text(CONFIG, env={}))
PATHS = [
    "/segment",
    "/v1/batch",
    "/v1/import",
    *[f"/v1/{t}" for t in ("identify", "track", "page", "screen", "group", "alias")],
]
SINGLE_PATHS = [p for p in PATHS if p not in ("/segment", "/v1/batch", "/v1/import")]


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def sign(body: bytes, secret: str = "abc123") -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


class Broker:
    """Fake publish / dead_letter with the real encodings."""

    def __init__(self) -> None:
        self.published: list[Record] = []
        self.dead: list[dict[str, Any]] = []

    async def publish(self, records: list[Record]) -> None:
        for r in records:
            data = orjson.loads(r.value)
            # What the identity stage does with it: parse again, route, wrap for person-events.
            msg = parse_message(data)
            rid = partition_id(msg.data)
            assert rid is not None
            account = r.headers["emd-account"].decode()
            assert r.key == make_key(account, rid)
            assert "writeKey" not in data
            dumps({"k": "ev", "a": account, "p": "u:x", "m": msg.data, "id": msg.message_id})
            encode_dead_letter("input", "probe", account=account, payload=msg.data)
        self.published.extend(records)

    async def dead_letter(self, reason: str, account: str | None, mid: Any, payload: Any):
        raw = encode_dead_letter(
            "ingest",
            reason,
            account=account,
            message_id=mid if isinstance(mid, str) else None,
            payload=payload,
        )
        self.dead.append(orjson.loads(raw))


class Fuzz:
    """One test server for the whole module, driven synchronously from hypothesis."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.broker = Broker()
        ingest = Ingest(lambda: ACCOUNTS, self.broker.publish, self.broker.dead_letter, Metrics())
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.add_routes(ingest.routes())
        # A fresh connection per request: an early answer (413 before the body was read)
        # may close the connection, and a pooled one reused after that would fail on the
        # client side, not because of the server.
        self.client = self.loop.run_until_complete(self._client(app))
        self.statuses: Counter[int] = Counter()
        self.cases = 0
        self.crashes = 0
        self.started = time.monotonic()

    @staticmethod
    async def _client(app: web.Application) -> TestClient:
        client = TestClient(
            WorkerServer(app),
            connector=aiohttp.TCPConnector(force_close=True),
        )
        await client.start_server()
        return client

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        """POST and check the properties every answer must have; (status, json)."""
        published = len(self.broker.published)
        dead = len(self.broker.dead)

        async def go() -> tuple[int, bytes]:
            resp = await self.client.post(path, data=body, headers=headers)
            return resp.status, await resp.read()

        self.cases += 1
        status, text = self.loop.run_until_complete(go())
        self.statuses[status] += 1
        if status >= 500:
            self.crashes += 1
        assert status in (200, 400, 401, 413), (status, text[:300], body[:300])
        try:
            answer = json.loads(text)
        except ValueError:
            # aiohttp's own plain-text 400 (e.g. a body its decompressor refuses at once):
            # the request never reached the ingest.
            assert status == 400, text[:300]
            answer = {"message": text.decode("utf-8", "replace") or "bad request"}
        new_published = len(self.broker.published) - published
        new_dead = self.broker.dead[dead:]
        assert all(isinstance(d["reason"], str) and d["reason"] for d in new_dead)
        if status != 200:
            assert new_published == 0
            assert isinstance(answer.get("message"), str) and answer["message"]
            assert len(new_dead) <= 1
            if new_dead:
                assert status == 400 and new_dead[0]["reason"] == answer["message"]
        else:
            assert answer["success"] is True
            rejected = answer.get("rejected", [])
            assert all(r["reason"] for r in rejected)
            assert [d["reason"] for d in new_dead] == [r["reason"] for r in rejected]
            items = _items(path, body)
            if items is not None:
                assert new_published + len(rejected) == items
        return status, answer

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


def _items(path: str, body: bytes) -> int | None:
    """How many messages a body that was answered 200 held (None: not a batch we can count)."""
    if path in SINGLE_PATHS:
        return 1
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, dict) and (path != "/segment" or "batch" in obj):
        try:
            return len(split_batch(obj))
        except Exception:
            return None
    return 1


@pytest.fixture(scope="module")
def fuzz() -> Iterator[Fuzz]:
    f = Fuzz()
    yield f
    seconds = round(time.monotonic() - f.started, 1)
    f.close()
    record_counts(
        "unit_http_ingest",
        {
            "cases": f.cases,
            "crashes": f.crashes,
            "statuses": {str(k): v for k, v in sorted(f.statuses.items())},
            "published": len(f.broker.published),
            "dead_letters": len(f.broker.dead),
            "seconds": seconds,
        },
    )


def fuzz_settings(n: int) -> Any:
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


auths = st.sampled_from(["basic", "basic", "basic", "writeKey", "none", "wrong", "signed"])


def _headers(auth: str, body: bytes) -> dict[str, str]:
    if auth == "basic":
        return basic("acme-key")
    if auth == "wrong":
        return basic("acme-key-wrong")
    if auth == "signed":
        return {**basic("signed-key"), "X-Signature": sign(body)}
    return {}


@fuzz_settings(1700)
@given(path=st.sampled_from(PATHS), body=message_bytes(), auth=auths)
def test_hostile_single_bodies(fuzz: Fuzz, path: str, body: bytes, auth: str) -> None:
    fuzz.post(path, body, _headers(auth, body))


@fuzz_settings(1000)
@given(
    path=st.sampled_from([*SINGLE_PATHS, "/segment"]),
    msg=hostile_messages(),
    auth=auths,
)
def test_wrong_types_in_every_field(fuzz: Fuzz, path: str, msg: dict[str, Any], auth: str) -> None:
    if auth == "writeKey":
        msg = {**msg, "writeKey": "acme-key"}
    body = encode(msg)
    fuzz.post(path, body, _headers(auth, body))


@fuzz_settings(700)
@given(
    path=st.sampled_from(["/v1/batch", "/v1/import", "/segment"]),
    items=st.lists(st.one_of(hostile_messages(), base_messages), max_size=8),
    batch_ctx=st.sampled_from([None, {}, {"traits": {"email": "b@example.invalid"}}, [], "x", 1]),
    auth=auths,
)
def test_hostile_batches(
    fuzz: Fuzz, path: str, items: list[Any], batch_ctx: Any, auth: str
) -> None:
    body_obj: dict[str, Any] = {"batch": items}
    if batch_ctx is not None:
        body_obj["context"] = batch_ctx
    if auth == "writeKey":
        body_obj["writeKey"] = "acme-key"
    body = encode(body_obj)
    status, answer = fuzz.post(path, body, _headers(auth, body))
    if auth in ("basic", "writeKey", "signed") and isinstance(batch_ctx, dict | None):
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            # e.g. nesting over the parser's 1,024 levels, NaN; a writeKey cannot be read
            assert status == (401 if auth == "writeKey" else 400)
        else:
            assert status == 200, answer  # one bad message never sinks the batch


@fuzz_settings(300)
@given(
    path=st.sampled_from(PATHS),
    body=message_bytes(),
    header=st.sampled_from(
        [
            {"Content-Type": "text/plain"},
            {"Content-Type": "application/json; charset=latin-1"},
            {"Content-Encoding": "gzip"},
            {"Content-Encoding": "deflate"},
            {"emd-account": "signed"},
            {"emd-account": "nope"},
            {"X-Signature": "0" * 40},
            {"Authorization": "Basic !!!notbase64"},
            {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:").decode()},
            {"Authorization": "Bearer acme-key"},
        ]
    ),
)
def test_hostile_headers(fuzz: Fuzz, path: str, body: bytes, header: dict[str, str]) -> None:
    headers = {**basic("acme-key"), **header} if "Authorization" not in header else header
    status, _ = fuzz.post(path, body, headers)
    if "Authorization" in header:
        assert status in (401, 413)  # the size is checked before the key


def test_size_limits(fuzz: Fuzz) -> None:
    for name, path, size, expected in SIZE_CASES:
        status, answer = fuzz.post(path, single_body(size), basic("acme-key"))
        assert status == expected, (name, answer)
    for name, size, count, expected in BATCH_SIZE_CASES:
        status, answer = fuzz.post("/v1/batch", batch_body(size, count), basic("acme-key"))
        assert status == expected, (name, answer)
        if status == 200:
            assert "rejected" not in answer, name
    # A batch holding one message over 32 KB among valid ones: only that one is rejected.
    msgs = [json.loads(single_body(2_000, "s")), json.loads(single_body(40_000, "t"))]
    status, answer = fuzz.post("/v1/batch", encode({"batch": msgs}), basic("acme-key"))
    assert status == 200 and [r["index"] for r in answer["rejected"]] == [1]


@pytest.mark.parametrize("depth", [1, 100, 240, 250, 252, 253, 254, 255, 1000, 1023, 1024, 1025])
@pytest.mark.parametrize("kind", ["list", "dict"])
def test_deep_nesting(fuzz: Fuzz, depth: int, kind: str) -> None:
    """Deep values are either accepted (and then survive every later stage) or a 4xx."""
    value = (
        ("[" * depth + "1" + "]" * depth)
        if kind == "list"
        else ('{"a":' * depth + "1" + "}" * depth)
    )
    single = f'{{"type":"track","userId":"u1","event":"E","properties":{{"x":{value}}}}}'
    fuzz.post("/v1/track", single.encode(), basic("acme-key"))
    batch = f'{{"batch":[{single},{{"type":"track","userId":"u2","event":"E"}}]}}'
    status, answer = fuzz.post("/v1/batch", batch.encode(), basic("acme-key"))
    if status == 200:
        assert len(answer.get("rejected", [])) <= 1


def test_compressed_bodies(fuzz: Fuzz) -> None:
    ok = b'{"type":"track","userId":"u1","event":"E"}'
    gz = {**basic("acme-key"), "Content-Encoding": "gzip"}
    assert fuzz.post("/v1/track", gzip.compress(ok), gz)[0] == 200
    # Not gzip at all, or cut short: the sender's fault, 400.
    assert fuzz.post("/v1/track", ok, gz)[0] == 400
    assert fuzz.post("/v1/track", gzip.compress(ok)[:-12], gz)[0] == 400
    # A gzip bomb (10 MB of zeros in ~10 KB): read up to the limit only, then 413.
    bomb = gzip.compress(b'{"type":"track","userId":"u1","event":"' + b"0" * 10_000_000 + b'"}')
    assert len(bomb) < 50_000
    assert fuzz.post("/v1/track", bomb, gz)[0] == 413
    assert fuzz.post("/v1/batch", bomb, gz)[0] == 413


def test_reference_signature_vector_over_http(fuzz: Fuzz) -> None:
    body = b'{"cool":true}'
    assert sign(body) == "5099cab379b3be52908387457007040cc934ef86"
    headers = {**basic("signed-key"), "X-Signature": "5099cab379b3be52908387457007040cc934ef86"}
    # Signed correctly: authenticated, then refused as a message without a type (400).
    status, answer = fuzz.post("/segment", body, headers)
    assert status == 400 and "type" in answer["message"]
    for bad in ("", "5099cab379b3be52908387457007040cc934ef87", sign(body, "abc124")):
        status, _ = fuzz.post("/segment", body, {**basic("signed-key"), "X-Signature": bad})
        assert status == 401
    ok = b'{"type":"track","userId":"u1","event":"E"}'
    status, _ = fuzz.post("/v1/track", ok, {**basic("signed-key"), "X-Signature": sign(ok)})
    assert status == 200


@pytest.mark.parametrize("depth", [200, 253, 254, 300, 900])
def test_a_dead_letter_is_always_written(depth: int) -> None:
    """An unencodable payload (too deep for orjson) is kept as text, never an exception."""
    deep: Any = 1
    for _ in range(depth):
        deep = [deep]
    record = orjson.loads(encode_dead_letter("ingest", "nested too deeply", payload={"p": deep}))
    assert record["reason"] == "nested too deeply"
    if "payload" not in record:
        assert record["payload_error"] and isinstance(record["raw"], str)


@pytest.mark.parametrize("depth", range(230, 260))
def test_an_accepted_message_fits_in_every_envelope(depth: int) -> None:
    deep: Any = 1
    for _ in range(depth):
        deep = [deep]
    try:
        msg = parse_message(
            {"type": "track", "userId": "u", "event": "E", "properties": {"x": deep}}
        )
    except ValueError:
        return
    inner = dumps({"k": "ev", "a": "acme", "p": "u:u", "m": msg.data})
    dumps({"k": "ev", "m": {"k": "fwd", "m": orjson.loads(inner)}})
    assert "payload" in orjson.loads(encode_dead_letter("input", "r", payload=msg.data))
