"""HTTP ingest shaped like Segment's Tracking API: auth, limits, validation, publishing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.account import Accounts
from app.config import load_config_text
from app.identity import partition_id, resolve
from app.keys import key as make_key
from app.metrics import Metrics
from app.segment.model import BATCH_MAX_MESSAGES, parse_iso, parse_message
from app.web.auth import basic_username, bearer_token, signature_ok
from app.web.ingest import Ingest, Record
from tests.servers import WorkerServer

CONFIG = """
accounts:
  acme:
    api_keys: [acme-key, acme-key-2]
    primary_key: context.traits.email
    emarsys: {api_url: "http://127.0.0.1:9797/api/v3", client_id: c, client_secret: s}
  signed:
    api_keys: [signed-key]
    primary_key: context.traits.email
    shared_secret: abc123
    emarsys: {api_url: "http://127.0.0.1:9797/api/v3", client_id: c, client_secret: s}
"""
ACCOUNTS = Accounts(load_config_text(CONFIG, env={}))
SINGLE = ("identify", "track", "page", "screen", "group", "alias")


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


AUTH = basic("acme-key")


class Sink:
    """Fake publish / dead_letter: records what they got; can fail or hold."""

    def __init__(self) -> None:
        self.published: list[Record] = []
        self.dead: list[tuple[str, str | None, Any, Any]] = []
        self.fail_publish = False
        self.fail_dead_letter = False
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def publish(self, records: list[Record]) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_publish:
            raise RuntimeError("broker down")
        self.published.extend(records)

    async def dead_letter(self, reason: str, account: str | None, mid: Any, payload: Any):
        if self.fail_dead_letter:
            raise RuntimeError("broker down")
        self.dead.append((reason, account, mid, payload))

    def values(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.published]


class Harness:
    def __init__(self, client: TestClient, sink: Sink, metrics: Metrics) -> None:
        self.client = client
        self.sink = sink
        self.metrics = metrics

    async def post(self, path: str, body: Any = None, *, raw: bytes | None = None, **kw: Any):
        headers = kw.pop("headers", AUTH)
        data = raw if raw is not None else orjson.dumps(body)
        resp = await self.client.post(path, data=data, headers=headers, **kw)
        text = await resp.text()
        return resp, (orjson.loads(text) if text else None)


def make_app(sink: Sink, metrics: Metrics, max_in_flight: int = 256) -> web.Application:
    ingest = Ingest(lambda: ACCOUNTS, sink.publish, sink.dead_letter, metrics, max_in_flight)
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.add_routes(ingest.routes())
    return app


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    sink, metrics = Sink(), Metrics()
    async with TestClient(WorkerServer(make_app(sink, metrics), metrics)) as client:
        yield Harness(client, sink, metrics)


def track(**kw: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": "u1", **kw}


def assert_valid_published(sink: Sink) -> None:
    """What the rest of the app relies on for every record on the input topic."""
    for r in sink.published:
        value = orjson.loads(r.value)
        msg = parse_message(value)
        assert "writeKey" not in value
        assert "receivedAt" in value
        rid = partition_id(msg.data)
        assert rid is not None
        assert resolve(msg.data, lambda _i: None) is not None
        account = r.headers["emd-account"].decode()
        assert account in ("acme", "signed")
        assert r.key == make_key(account, rid)


# --------------------------------------------------------------------------- success


async def test_single_track_is_published(h: Harness) -> None:
    before = datetime.now(UTC)
    resp, body = await h.post(
        "/v1/track", {"event": "Viewed", "anonymousId": "a1", "userId": "u1", "properties": {}}
    )
    assert resp.status == 200
    assert body == {"success": True}
    (record,) = h.sink.published
    assert record.key == b"acme\x1fu:u1"  # by its person: the user's record is there
    assert record.headers == {"emd-account": b"acme"}
    value = orjson.loads(record.value)
    assert value["type"] == "track"  # from the path
    assert value["event"] == "Viewed"
    assert value["messageId"].startswith("emd-")
    received = parse_iso(value["receivedAt"])
    assert before - timedelta(seconds=1) <= received <= datetime.now(UTC) + timedelta(seconds=1)
    assert value["receivedAt"].endswith("Z")
    assert h.metrics.value("emd_events_in_total", account="acme") == 1
    assert h.sink.dead == []


async def test_user_only_is_keyed_by_its_person(h: Harness) -> None:
    resp, _ = await h.post("/v1/identify", {"userId": "u1", "traits": {"a": 1}})
    assert resp.status == 200
    assert h.sink.published[0].key == b"acme\x1fu:u1"


async def test_junk_anonymous_id_falls_back_to_the_user_id(h: Harness) -> None:
    resp, _ = await h.post("/v1/page", {"userId": "u1", "anonymousId": "null"})
    assert resp.status == 200
    assert h.sink.published[0].key == b"acme\x1fu:u1"


async def test_numeric_user_id_becomes_text(h: Harness) -> None:
    resp, _ = await h.post("/v1/track", {"userId": 42, "event": "E"})
    assert resp.status == 200
    (record,) = h.sink.published
    assert record.key == b"acme\x1fu:42"
    assert orjson.loads(record.value)["userId"] == "42"


async def test_alias_is_keyed_by_its_new_user(h: Harness) -> None:
    resp, _ = await h.post("/v1/alias", {"previousId": "a1", "userId": "u1"})
    assert resp.status == 200
    assert h.sink.published[0].key == b"acme\x1fu:u1"  # the link request goes to a1's


async def test_sender_fields_are_kept_and_own_received_at_is_kept(h: Harness) -> None:
    msg = track(messageId="m1", receivedAt="2024-01-02T03:04:05.000Z", custom={"x": [1]})
    resp, _ = await h.post("/v1/track", msg)
    assert resp.status == 200
    assert h.sink.values() == [msg]


async def test_retried_body_without_message_id_gets_the_same_id(h: Harness) -> None:
    for _ in range(2):
        resp, _ = await h.post("/v1/track", {"userId": "u1", "event": "E"})
        assert resp.status == 200
        await asyncio.sleep(0.002)  # a later receive time must not change the id
    first, second = h.sink.values()
    assert first["messageId"] == second["messageId"]


@pytest.mark.parametrize("type_", SINGLE)
async def test_every_single_endpoint(h: Harness, type_: str) -> None:
    msg: dict[str, Any] = {"userId": "u1", "event": "E", "groupId": "g1", "previousId": "p1"}
    resp, body = await h.post(f"/v1/{type_}", msg)
    assert resp.status == 200, body
    assert h.sink.values()[0]["type"] == type_


async def test_segment_endpoint_takes_both_forms(h: Harness) -> None:
    resp, _ = await h.post("/segment", track())
    assert resp.status == 200
    resp, _ = await h.post("/segment", {"batch": [track(), {"type": "page", "userId": "u2"}]})
    assert resp.status == 200
    assert [v["type"] for v in h.sink.values()] == ["track", "track", "page"]


async def test_segment_endpoint_accepts_delete(h: Harness) -> None:
    resp, _ = await h.post("/segment", {"type": "delete", "userId": "u1"})
    assert resp.status == 200
    assert h.sink.values()[0]["type"] == "delete"


async def test_batch_merges_batch_level_context(h: Harness) -> None:
    body = {
        "batch": [track(), track(context={"ip": "1.2.3.4", "library": {"name": "own"}})],
        "context": {"library": {"name": "analytics-python"}},
    }
    resp, answer = await h.post("/v1/batch", body)
    assert resp.status == 200 and answer == {"success": True}
    first, second = h.sink.values()
    assert first["context"] == {"library": {"name": "analytics-python"}}
    assert second["context"] == {"library": {"name": "own"}, "ip": "1.2.3.4"}


async def test_large_batch_under_the_limit_is_read_whole(h: Harness) -> None:
    # About 400 KB: more than one read buffer, under Segment's 500 KB.
    items = [track(userId=f"u{i}", properties={"pad": "x" * 150}) for i in range(1800)]
    body = orjson.dumps({"batch": items})
    assert 300 * 1024 < len(body) < 500 * 1024
    resp, answer = await h.post("/v1/batch", raw=body)
    assert resp.status == 200, answer
    assert len(h.sink.published) == 1800


async def test_chunked_body_is_read_whole(h: Harness) -> None:
    items = [track(userId=f"u{i}") for i in range(500)]
    body = orjson.dumps({"batch": items})

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]
            await asyncio.sleep(0)

    resp = await h.client.post("/v1/batch", data=chunks(), headers=AUTH)
    assert resp.status == 200, await resp.text()
    assert len(h.sink.published) == 500


# --------------------------------------------------------------------------- auth


async def test_write_key_in_the_body_authenticates_and_is_stripped(h: Harness) -> None:
    resp, _ = await h.post("/v1/track", {**track(), "writeKey": "acme-key-2"}, headers={})
    assert resp.status == 200
    (value,) = h.sink.values()
    assert "writeKey" not in value
    assert h.sink.published[0].headers == {"emd-account": b"acme"}


async def test_write_key_in_a_batch_is_stripped_everywhere(h: Harness) -> None:
    body = {"writeKey": "acme-key", "batch": [{**track(), "writeKey": "acme-key"}]}
    resp, _ = await h.post("/v1/batch", body, headers={})
    assert resp.status == 200
    assert "writeKey" not in h.sink.values()[0]


async def test_a_second_account_is_routed_by_its_key(h: Harness) -> None:
    body = orjson.dumps(track())
    sig = hmac.new(b"abc123", body, hashlib.sha1).hexdigest()
    resp, _ = await h.post(
        "/v1/track", raw=body, headers={**basic("signed-key"), "X-Signature": sig}
    )
    assert resp.status == 200
    (record,) = h.sink.published
    assert record.key == b"signed\x1fu:u1"
    assert record.headers == {"emd-account": b"signed"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("wrong-key"),
        basic(""),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer acme-key"},
        {"Authorization": "Basic " + base64.b64encode(b"acme-ke:").decode()},
    ],
)
async def test_unknown_or_missing_key_is_401(h: Harness, headers: dict[str, str]) -> None:
    resp, body = await h.post("/v1/track", track(), headers=headers)
    assert resp.status == 401
    assert "API key" in body["message"]
    assert h.sink.published == [] and h.sink.dead == []


@pytest.mark.parametrize("write_key", ["nope", "", 12, None])
async def test_unknown_write_key_is_401(h: Harness, write_key: Any) -> None:
    resp, _ = await h.post("/v1/track", {**track(), "writeKey": write_key}, headers={})
    assert resp.status == 401
    assert h.sink.published == []


async def test_malformed_json_without_a_key_is_401(h: Harness) -> None:
    resp, _ = await h.post("/v1/track", raw=b"{not json", headers={})
    assert resp.status == 401


# --------------------------------------------------------------------------- X-Signature


def test_signature_reference_vector() -> None:
    body = b'{"cool":true}'
    assert signature_ok(body, "abc123", "5099cab379b3be52908387457007040cc934ef86")
    assert signature_ok(body, "abc123", " 5099CAB379B3BE52908387457007040CC934EF86 ")
    assert not signature_ok(body, "abc124", "5099cab379b3be52908387457007040cc934ef86")
    assert not signature_ok(b'{"cool": true}', "abc123", "5099cab379b3be52908387457007040cc934ef86")
    assert not signature_ok(body, "abc123", "5099cab379b3be52908387457007040cc934ef8")
    assert not signature_ok(body, "abc123", None)
    assert not signature_ok(body, "abc123", "")


async def test_signed_account_unsigned_is_401(h: Harness) -> None:
    resp, body = await h.post("/v1/track", track(), headers=basic("signed-key"))
    assert resp.status == 401
    assert "X-Signature" in body["message"]
    assert h.sink.published == []


async def test_signed_account_wrong_signature_is_401(h: Harness) -> None:
    body = orjson.dumps(track())
    wrong = hmac.new(b"other", body, hashlib.sha1).hexdigest()
    resp, _ = await h.post(
        "/v1/track", raw=body, headers={**basic("signed-key"), "X-Signature": wrong}
    )
    assert resp.status == 401
    assert h.sink.published == []


async def test_signed_account_signature_of_another_body_is_401(h: Harness) -> None:
    sig = hmac.new(b"abc123", orjson.dumps(track(event="Other")), hashlib.sha1).hexdigest()
    resp, _ = await h.post(
        "/v1/track", track(), headers={**basic("signed-key"), "X-Signature": sig}
    )
    assert resp.status == 401


async def test_signed_account_correct_signature_is_200(h: Harness) -> None:
    body = orjson.dumps({"batch": [track(), track(userId="u2")]})
    sig = hmac.new(b"abc123", body, hashlib.sha1).hexdigest()
    resp, answer = await h.post(
        "/v1/batch", raw=body, headers={**basic("signed-key"), "X-Signature": sig}
    )
    assert resp.status == 200 and answer == {"success": True}
    assert len(h.sink.published) == 2


async def test_unsigned_account_ignores_a_signature(h: Harness) -> None:
    resp, _ = await h.post("/v1/track", track(), headers={**AUTH, "X-Signature": "junk"})
    assert resp.status == 200


def test_basic_username_parsing() -> None:
    from aiohttp.test_utils import make_mocked_request

    def req(value: str) -> web.Request:
        return make_mocked_request("POST", "/", headers={"Authorization": value})

    encoded = base64.b64encode(b"key:").decode()
    assert basic_username(req(f"Basic {encoded}")) == "key"
    assert basic_username(req(f"basic {encoded}")) == "key"
    assert basic_username(req("Basic " + base64.b64encode(b"key:pw").decode())) == "key"
    assert basic_username(req("Basic " + base64.b64encode(b":pw").decode())) is None
    assert basic_username(req("Basic %%%")) is None
    assert basic_username(req("Basic " + base64.b64encode(b"\xff\xfe:").decode())) is None
    assert basic_username(req(f"Bearer {encoded}")) is None
    assert bearer_token(req("Bearer  tok ")) == "tok"
    assert bearer_token(req("Basic tok")) is None


# --------------------------------------------------------------------------- 400s


async def test_malformed_json_is_400_with_an_explanation(h: Harness) -> None:
    resp, body = await h.post("/v1/track", raw=b'{"userId": "u1", "event": ')
    assert resp.status == 400
    assert body["message"].startswith("malformed JSON")
    assert h.sink.published == []


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"12", b"null"])
async def test_body_must_be_an_object(h: Harness, raw: bytes) -> None:
    resp, body = await h.post("/v1/track", raw=raw)
    assert resp.status == 400
    assert "JSON object" in body["message"]


async def test_invalid_single_message_is_400_and_dead_lettered(h: Harness) -> None:
    msg = {"userId": "u1", "messageId": "m-bad", "properties": {}}  # a track without event
    resp, body = await h.post("/v1/track", msg)
    assert resp.status == 400
    assert "event" in body["message"]
    assert h.sink.published == []
    ((reason, account, mid, payload),) = h.sink.dead
    assert reason == body["message"]
    assert (account, mid) == ("acme", "m-bad")
    assert payload["userId"] == "u1"
    assert h.metrics.value("emd_events_rejected_total", account="acme", reason="invalid") == 1


@pytest.mark.parametrize(
    ("path", "msg", "fragment"),
    [
        ("/v1/identify", {"anonymousId": "a1", "timestamp": "yesterday"}, "timestamp"),
        ("/v1/identify", {}, "userId or anonymousId is required"),
        ("/v1/group", {"userId": "u1"}, "groupId"),
        ("/v1/alias", {"userId": "u1"}, "previousId"),
        ("/v1/identify", {"userId": {"id": 1}}, "userId"),
        ("/v1/identify", {"userId": "u1", "traits": [1]}, "traits"),
        ("/v1/identify", {"userId": "u1", "messageId": "x" * 101}, "messageId"),
    ],
)
async def test_invalid_single_messages_name_the_field(
    h: Harness, path: str, msg: dict[str, Any], fragment: str
) -> None:
    resp, body = await h.post(path, msg)
    assert resp.status == 400
    assert fragment in body["message"]
    assert h.sink.published == []
    assert len(h.sink.dead) == 1


async def test_unknown_type(h: Harness) -> None:
    resp, body = await h.post("/segment", {"type": "click", "userId": "u1"})
    assert resp.status == 400
    assert "unknown type" in body["message"]
    resp, body = await h.post("/segment", {"userId": "u1"})
    assert resp.status == 400
    assert "type is required" in body["message"]
    resp = await h.client.post("/v1/click", data=b"{}", headers=AUTH)
    assert resp.status in (404, 405)
    assert h.sink.published == []


@pytest.mark.parametrize("type_", ["identify", "page", "batch", 5])
async def test_track_endpoint_with_another_type_is_400(h: Harness, type_: Any) -> None:
    resp, body = await h.post("/v1/track", {"type": type_, "userId": "u1", "event": "E"})
    assert resp.status == 400
    assert "/v1/track" in body["message"]
    assert h.sink.published == []


@pytest.mark.parametrize(
    "ids",
    [
        {"userId": "null"},
        {"userId": "undefined", "anonymousId": "0"},
        {"anonymousId": "00000000-0000-0000-0000-000000000000"},
        {"userId": "-1"},
    ],
)
async def test_junk_ids_are_rejected(h: Harness, ids: dict[str, str]) -> None:
    resp, body = await h.post("/v1/track", {"event": "E", **ids})
    assert resp.status == 400
    assert "no usable identifier" in body["message"]
    assert h.sink.published == []
    assert len(h.sink.dead) == 1


@pytest.mark.parametrize(
    "msg",
    [
        {"previousId": "a1", "userId": "null"},
        {"previousId": "null", "userId": "u1"},
        {"previousId": "u1", "userId": "u1"},
    ],
)
async def test_alias_that_cannot_link_is_rejected(h: Harness, msg: dict[str, str]) -> None:
    resp, _ = await h.post("/v1/alias", msg)
    assert resp.status == 400
    assert h.sink.published == []


async def test_batch_that_is_not_a_list_is_400(h: Harness) -> None:
    resp, body = await h.post("/v1/batch", {"batch": {"type": "track"}})
    assert resp.status == 400
    assert "batch" in body["message"]
    resp, body = await h.post("/v1/batch", track())
    assert resp.status == 400


# --------------------------------------------------------------------------- batches


async def test_batch_with_invalid_messages_keeps_the_valid_ones(h: Harness) -> None:
    batch = [
        track(messageId="ok-1"),
        {"type": "track", "userId": "u1", "messageId": "no-event"},
        "not an object",
        {"type": "track", "event": "E", "userId": "null", "messageId": "junk-id"},
        {"type": "teleport", "userId": "u1", "messageId": "bad-type"},
        track(messageId="ok-2", userId="u2"),
    ]
    resp, body = await h.post("/v1/batch", {"batch": batch})
    assert resp.status == 200
    assert body["success"] is True
    rejected = body["rejected"]
    assert [(r["index"], r["messageId"]) for r in rejected] == [
        (1, "no-event"),
        (2, None),
        (3, "junk-id"),
        (4, "bad-type"),
    ]
    assert "event" in rejected[0]["reason"]
    assert "JSON object" in rejected[1]["reason"]
    assert "no usable identifier" in rejected[2]["reason"]
    assert "unknown type" in rejected[3]["reason"]
    assert [v["messageId"] for v in h.sink.values()] == ["ok-1", "ok-2"]
    assert [(d[0], d[1], d[2]) for d in h.sink.dead] == [
        (r["reason"], "acme", r["messageId"]) for r in rejected
    ]
    assert h.sink.dead[1][3] == "not an object"
    assert h.metrics.value("emd_events_in_total", account="acme") == 2
    assert h.metrics.value("emd_events_rejected_total", account="acme", reason="invalid") == 4


async def test_batch_of_only_invalid_messages(h: Harness) -> None:
    resp, body = await h.post("/v1/batch", {"batch": [{"type": "track"}]})
    assert resp.status == 200
    assert len(body["rejected"]) == 1
    assert h.sink.published == []


async def test_empty_batch(h: Harness) -> None:
    resp, body = await h.post("/v1/batch", {"batch": []})
    assert resp.status == 200 and body == {"success": True}


async def test_oversized_message_inside_a_batch_is_rejected_alone(h: Harness) -> None:
    big = track(messageId="big", properties={"pad": "x" * (33 * 1024)})
    resp, body = await h.post("/v1/batch", {"batch": [big, track(messageId="small")]})
    assert resp.status == 200
    assert body["rejected"][0]["index"] == 0
    assert "32 KB" in body["rejected"][0]["reason"]
    assert [v["messageId"] for v in h.sink.values()] == ["small"]


# --------------------------------------------------------------------------- 413


async def test_single_message_over_32_kb_is_413(h: Harness) -> None:
    resp, body = await h.post("/v1/track", track(properties={"pad": "x" * (32 * 1024)}))
    assert resp.status == 413
    assert "KB" in body["message"]
    assert h.sink.published == []


async def test_single_message_just_under_32_kb_is_accepted(h: Harness) -> None:
    msg = track(properties={"pad": ""})
    pad = 32 * 1024 - len(orjson.dumps(msg)) - 100
    resp, _ = await h.post("/v1/track", track(properties={"pad": "x" * pad}))
    assert resp.status == 200


async def test_batch_body_over_500_kb_is_413(h: Harness) -> None:
    items = [track(userId=f"u{i}", properties={"pad": "x" * 300}) for i in range(1700)]
    body = orjson.dumps({"batch": items})
    assert len(body) > 500 * 1024
    resp, answer = await h.post("/v1/batch", raw=body)
    assert resp.status == 413
    assert "500 KB" in answer["message"]
    assert h.sink.published == []


async def test_chunked_body_over_500_kb_is_413(h: Harness) -> None:
    body = orjson.dumps({"batch": [track(properties={"pad": "x" * 300})] * 1700})

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    resp = await h.client.post("/v1/batch", data=chunks(), headers=AUTH)
    assert resp.status == 413
    assert h.sink.published == []


async def test_more_than_2500_messages_is_413(h: Harness) -> None:
    items = [{"type": "page", "userId": "u"}] * (BATCH_MAX_MESSAGES + 1)
    resp, body = await h.post("/v1/batch", {"batch": items})
    assert resp.status == 413
    assert "2500" in body["message"]
    assert h.sink.published == []
    resp, _ = await h.post("/v1/batch", {"batch": items[:BATCH_MAX_MESSAGES]})
    assert resp.status == 200
    assert len(h.sink.published) == BATCH_MAX_MESSAGES


# --------------------------------------------------------------------------- overload


async def test_publish_failure_is_503_with_retry_after(h: Harness) -> None:
    h.sink.fail_publish = True
    resp, body = await h.post("/v1/track", track())
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) > 0
    assert "retry" in body["message"]
    assert h.metrics.value("emd_events_in_total", account="acme") == 0


async def test_dead_letter_failure_is_503_not_a_silent_drop(h: Harness) -> None:
    h.sink.fail_dead_letter = True
    resp, _ = await h.post("/v1/batch", {"batch": [track(), {"type": "track"}]})
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) > 0


async def test_too_many_in_flight_is_429_with_retry_after() -> None:
    sink, metrics = Sink(), Metrics()
    sink.gate = asyncio.Event()
    async with TestClient(
        WorkerServer(make_app(sink, metrics, max_in_flight=1), metrics)
    ) as client:
        first = asyncio.create_task(client.post("/v1/track", json=track(), headers=AUTH))
        await asyncio.wait_for(sink.entered.wait(), 5)
        resp = await client.post("/v1/track", json=track(userId="u2"), headers=AUTH)
        assert resp.status == 429
        assert int(resp.headers["Retry-After"]) > 0
        sink.gate.set()
        done = await first
        assert done.status == 200
        assert len(sink.published) == 1
        # Once the first request is answered, new ones are accepted again.
        resp = await client.post("/v1/track", json=track(userId="u3"), headers=AUTH)
        assert resp.status == 200


# --------------------------------------------------------------------------- hypothesis

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
good_ids = st.sampled_from(["u1", "a1", "user-42", 42, "ann@example.com"])
junk_ids = st.sampled_from(["null", "0", "", " ", "-1", 0, -1, None, True, 1.5, "x" * 300])
ids = st.one_of(good_ids, good_ids, good_ids, junk_ids, json_values)
timestamps = st.sampled_from(
    ["2024-01-02T03:04:05Z", "2024-01-02", "2024-13-01T00:00:00Z", "yesterday", 0, None]
)
messages = st.fixed_dictionaries(
    {
        "userId": ids,
        "event": st.one_of(st.just("E"), st.just("Order Completed"), json_values),
        "groupId": st.one_of(good_ids, json_values),
        "previousId": st.one_of(good_ids, junk_ids),
    },
    optional={
        "type": st.sampled_from([*SINGLE, "delete", "click", "", None, 1]),
        "anonymousId": ids,
        "messageId": st.sampled_from(["m1", "m2", "", None, "x" * 101, 5]),
        "timestamp": timestamps,
        "receivedAt": timestamps,
        "context": json_values,
        "properties": json_values,
        "traits": json_values,
        "integrations": json_values,
        "writeKey": st.sampled_from(["acme-key", "nope", 1]),
        "version": json_values,
    },
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
plausible = st.fixed_dictionaries(
    {"userId": good_ids, "event": st.just("E"), "groupId": good_ids, "previousId": good_ids},
    optional={
        "type": st.sampled_from(SINGLE),
        "anonymousId": st.one_of(good_ids, junk_ids),
        "messageId": st.sampled_from(["m1", "m2", "m3"]),
        "timestamp": st.sampled_from(["2024-01-02T03:04:05Z", "2024-01-02 03:04+02:00"]),
        "context": json_objects,
        "properties": json_objects,
        "traits": json_objects,
        "writeKey": st.just("acme-key"),
    },
)
any_message = st.one_of(plausible, plausible, messages, json_values)
bodies = st.one_of(
    plausible,
    messages,
    json_values,
    st.fixed_dictionaries(
        {"batch": st.one_of(st.lists(any_message, max_size=6), json_values)},
        optional={
            "context": st.one_of(json_objects, json_values),
            "integrations": json_objects,
            "writeKey": st.sampled_from(["acme-key", "nope"]),
        },
    ),
)
PATHS = ["/segment", "/v1/batch", *[f"/v1/{t}" for t in SINGLE]]


class SyncHarness:
    """A running test server driven from synchronous (hypothesis) tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.sink, self.metrics = Sink(), Metrics()
        self.client = TestClient(
            WorkerServer(make_app(self.sink, self.metrics), self.metrics),
            loop=self.loop,
        )
        self.loop.run_until_complete(self.client.start_server())

    def post(self, path: str, data: bytes, headers: dict[str, str]) -> int:
        async def go() -> int:
            resp = await self.client.post(path, data=data, headers=headers)
            await resp.read()
            if resp.status == 200:
                assert (await resp.json())["success"] is True
            return resp.status

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def sync_h() -> Iterator[SyncHarness]:
    harness = SyncHarness()
    yield harness
    harness.close()


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(path=st.sampled_from(PATHS), body=st.binary(max_size=300))
def test_arbitrary_bytes_never_5xx(sync_h: SyncHarness, path: str, body: bytes) -> None:
    status = sync_h.post(path, body, AUTH)
    assert status < 500
    assert_valid_published(sync_h.sink)


@FUZZ
@given(path=st.sampled_from(PATHS), body=bodies, auth=st.sampled_from([True, True, True, False]))
def test_arbitrary_json_never_5xx_nor_invalid_published(
    sync_h: SyncHarness, path: str, body: Any, auth: bool
) -> None:
    start = len(sync_h.sink.published)
    status = sync_h.post(path, json.dumps(body).encode(), AUTH if auth else {})
    assert status < 500
    assert status in (200, 400, 401, 413)
    if status != 200:
        assert len(sync_h.sink.published) == start
    assert_valid_published(sync_h.sink)


async def test_a_deeply_nested_message_id_does_not_break_the_answer(h: Harness) -> None:
    """The answer lists rejects with their messageId: only a real (string) one is echoed,
    or a 1,000-deep object there made the JSON answer itself fail (a 500)."""
    deep = '{"a":' * 1000 + '"x"' + "}" * 1000  # deeper than orjson writes
    bad = '{"type": "track", "userId": "u1", "messageId": ' + deep + "}"  # no event name
    good = orjson.dumps(track(messageId="ok-1")).decode()
    resp, body = await h.post("/v1/batch", raw=('{"batch": [' + bad + ", " + good + "]}").encode())
    assert resp.status == 200
    assert body["rejected"][0]["index"] == 0 and body["rejected"][0]["messageId"] is None
    assert [orjson.loads(r.value)["messageId"] for r in h.sink.published] == ["ok-1"]
