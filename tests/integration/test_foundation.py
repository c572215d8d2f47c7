"""Issue 2: ingest over HTTP and from the topic, validation, dead letters, dedupe, restart."""

from __future__ import annotations

import json
import time

import orjson
import pytest

from tests.integration.stack import http, read_topic, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(request, broker, simulator, tmp_path_factory):
    from tests.integration.stack import Stack, account_config

    s = Stack(
        broker.url, tmp_path_factory.mktemp("foundation"), {"acme": account_config(simulator)}
    )
    s.start_worker()
    s.wait_assigned()
    yield s
    s.stop()


def _dead_letters(stack) -> list[dict]:
    return [
        orjson.loads(r.value) for r in read_topic(stack.broker_url, stack.topic("dead-letters"))
    ]


def test_batch_lands_on_the_input_topic_keyed_by_identity(stack):
    batch = {
        "batch": [
            {
                "type": "identify",
                "userId": "f-u1",
                "traits": {"firstName": "Ann"},
                "messageId": "f-m1",
            },
            {"type": "track", "anonymousId": "f-a1", "event": "Viewed", "messageId": "f-m2"},
            {"type": "page", "userId": "f-u1", "name": "Home", "messageId": "f-m3"},
        ]
    }
    r = stack.post("/v1/batch", batch)
    assert r.status == 200 and r.json() == {"success": True}
    records = read_topic(stack.broker_url, stack.input_topic)
    mine = {orjson.loads(r.value)["messageId"]: r for r in records}
    assert {"f-m1", "f-m2", "f-m3"} <= set(mine)
    assert mine["f-m1"].key == b"acme\x1fu:f-u1"  # by its person (app.identity)
    assert mine["f-m2"].key == b"acme\x1ff-a1"  # by the anonymousId, where its link lives
    assert dict(mine["f-m2"].headers)["emd-account"] == b"acme"
    # receivedAt is stamped so the event time is the same whenever the topic is re-read
    assert orjson.loads(mine["f-m3"].value)["receivedAt"].endswith("Z")


def test_single_endpoints_and_segment_form(stack):
    assert stack.post("/v1/track", {"userId": "f-u2", "event": "Clicked"}).status == 200
    assert stack.post("/v1/identify", {"userId": "f-u2", "traits": {}}).status == 200
    assert stack.post("/segment", {"type": "page", "userId": "f-u2"}).status == 200
    assert stack.post("/segment", {"batch": [{"type": "screen", "userId": "f-u2"}]}).status == 200
    body = {"userId": "f-u2", "event": "W", "writeKey": "test-key"}
    assert http("POST", f"{stack.url()}/v1/track", body).status == 200


def test_bad_requests_get_clear_statuses(stack):
    r = stack.post("/v1/track", raw=b"{not json", headers=None) if False else None
    r = http(
        "POST",
        f"{stack.url()}/v1/track",
        raw=b"{not json",
        headers={"Authorization": "Basic dGVzdC1rZXk6"},
    )
    assert r.status == 400 and "malformed JSON" in r.json()["message"]
    r = stack.post("/v1/track", {"userId": "x", "event": "E"}, key="wrong-key")
    assert r.status == 401
    r = stack.post("/segment", {"type": "teleport", "userId": "x"})
    assert r.status == 400 and "teleport" in r.json()["message"]
    r = stack.post("/v1/track", {"userId": "x", "event": "E", "properties": {"s": "x" * 40000}})
    assert r.status == 413
    big = {
        "batch": [{"type": "track", "userId": "x", "event": "E", "properties": {"s": "x" * 1000}}]
        * 600
    }
    assert stack.post("/v1/batch", big).status == 413
    r = stack.post(
        "/v1/track", {"userId": "x", "event": "E", "timestamp": "2015-2-02T00:30:08.276Z"}
    )
    assert r.status == 400 and "timestamp" in r.json()["message"]


def test_one_bad_message_does_not_sink_the_batch(stack):
    batch = {
        "batch": [
            {"type": "track", "userId": "f-u3", "event": "Good", "messageId": "f-good"},
            {"type": "track", "userId": "f-u3", "messageId": "f-noevent"},
            {"type": "identify", "messageId": "f-noid", "traits": {}},
        ]
    }
    r = stack.post("/v1/batch", batch)
    assert r.status == 200
    rejected = r.json()["rejected"]
    assert [x["index"] for x in rejected] == [1, 2]
    assert "event" in rejected[0]["reason"]
    assert "userId or anonymousId" in rejected[1]["reason"]
    dead = {d.get("message_id"): d for d in _dead_letters(stack)}
    assert "event" in dead["f-noevent"]["reason"]
    assert dead["f-noevent"]["source"] == "ingest"
    ids = [
        orjson.loads(r.value)["messageId"] for r in read_topic(stack.broker_url, stack.input_topic)
    ]
    assert "f-good" in ids and "f-noevent" not in ids


def test_duplicate_message_id_is_processed_once(stack):
    msg = {"type": "track", "userId": "f-dup", "event": "Once", "messageId": "f-dup-1"}
    before = stack.metric("emd_events_deduped_total")
    assert stack.post("/v1/batch", {"batch": [msg]}).status == 200
    assert stack.post("/v1/batch", {"batch": [msg]}).status == 200
    wait_for(lambda: stack.metric("emd_events_deduped_total") == before + 1, what="dedupe")
    person = wait_for(
        lambda: (r := stack.user("acme", userId="f-dup")).status == 200 and r.json(),
        what="the person",
    )
    seen = [e for e in person["recentEvents"] if e["messageId"] == "f-dup-1"]
    assert len(seen) == 1  # applied once


def test_messages_written_straight_to_the_topic_are_validated_and_rekeyed(stack):
    import asyncio

    from aiokafka import AIOKafkaProducer

    async def produce():
        p = AIOKafkaProducer(bootstrap_servers=stack.broker_url.removeprefix("kafka://"))
        await p.start()
        try:
            good = {
                "type": "identify",
                "userId": "f-ext",
                "traits": {"firstName": "Ext"},
                "messageId": "f-ext-1",
            }
            await p.send_and_wait(stack.input_topic, json.dumps(good).encode(), key=b"whatever")
            await p.send_and_wait(stack.input_topic, b"\xff\xfe not json", key=b"k")
            bad = {"type": "track", "userId": "f-ext", "messageId": "f-ext-bad"}
            await p.send_and_wait(stack.input_topic, json.dumps(bad).encode())
        finally:
            await p.stop()

    asyncio.run(produce())

    def rekeyed():
        records = read_topic(stack.broker_url, stack.input_topic, 1.0)
        return [r for r in records if b'"f-ext-1"' in r.value and r.key == b"acme\x1fu:f-ext"]

    wait_for(rekeyed, what="the externally written event put where its person lives")
    person = wait_for(
        lambda: (r := stack.user("acme", userId="f-ext")).status == 200 and r.json(),
        what="the externally written event reaching its person",
    )
    assert person["values"]["first_name"] == "Ext"
    dead = _dead_letters(stack)
    assert any("not valid JSON" in d["reason"] and d["source"] == "input" for d in dead)
    assert any(d.get("message_id") == "f-ext-bad" and "event" in d["reason"] for d in dead)


def test_health_and_metrics(stack):
    h = http("GET", f"{stack.url()}/health").json()
    assert h["status"] == "ok" and h["broker"]["reachable"] is True
    assert sorted(h["assigned_partitions"][stack.input_topic]) == [0, 1, 2, 3]
    text = http("GET", f"{stack.url()}/metrics").body.decode()
    assert "# TYPE emd_events_in_total counter" in text
    assert 'emd_events_in_total{account="acme"}' in text


def test_restart_resumes_from_committed_offsets(broker, simulator, tmp_path):
    """Stop the worker (broker kept), write more while it is down, restart: every message
    is processed exactly once (no loss, and no replay of what was committed)."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    from tests.integration.stack import Stack, account_config

    s = Stack(broker.url, tmp_path, {"acme": account_config(simulator)}, partitions=4)
    try:
        w = s.start_worker()
        s.wait_assigned()
        first = [
            {"type": "track", "userId": f"r-u{i % 7}", "event": "E", "messageId": f"r-a{i}"}
            for i in range(60)
        ]
        assert s.post("/v1/batch", {"batch": first}).status == 200
        wait_for(lambda: s.metric("emd_events_processed_total") == 60, what="first 60 processed")
        s.stop_worker(w)

        async def produce():
            p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
            await p.start()
            try:
                for i in range(40):
                    msg = {
                        "type": "track",
                        "userId": f"r-u{i % 7}",
                        "event": "E",
                        "messageId": f"r-b{i}",
                    }
                    await p.send(
                        s.input_topic,
                        json.dumps(msg).encode(),
                        key=f"acme\x1fr-u{i % 7}".encode(),
                        headers=[("emd-account", b"acme")],
                    )
                await p.flush()
            finally:
                await p.stop()

        asyncio.run(produce())
        s.start_worker(datadir=str(tmp_path / f"{s.app_id}-data0"))
        s.wait_assigned()
        wait_for(lambda: s.metric("emd_events_processed_total") == 40, what="the 40 new ones")
        time.sleep(2)
        assert s.metric("emd_events_processed_total") == 40
        assert s.metric("emd_events_deduped_total") == 0
        # The restarted worker applied exactly the 40 new events to their persons: none of
        # the 60 committed before the stop again, none of the new ones twice.
        assert s.metric("emd_person_events_total", kind="ev") == 40
    finally:
        s.stop()
