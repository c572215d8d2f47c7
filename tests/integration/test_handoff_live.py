"""Rules follow the person, live (issue 9): real workers, the embedded broker, the simulator.

The journey of the issue: an anonymous visitor views pricing, identifies (or is aliased)
a minute later, and signs up by userId a minute after that. Every visitor must trigger
exactly once, with the variables of both eras, and the contact must carry the value seen
while anonymous; replay of the same events must give the same triggers. Also after a
``kill -9`` mid-stream, with the visitor and the user owned by different workers, and
with a worker killing itself at each point of an identity hand-off (``EMD_CRASH_AT``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from app import keys
from app.identity import partition_id
from tests.integration.stack import Stack, account_config, http, replayed_triggers, wait_for

PLAN_FIELD = "4711"  # the simulator's custom field "Loyalty tier" (short text)
RULE = {
    "name": "viewed-then-signed-up",
    "lifetime": "1h",
    "conditions": [
        {"sequence": 0, "type": "start", "on": "track", "match": 'ecom_event = "Viewed Pricing"'},
        {"sequence": 1, "type": "step", "on": "track", "match": 'ecom_event = "Signed Up"'},
        {"sequence": 2, "type": "exit", "trigger": 1301, "variables": ["plan", "first_name"]},
    ],
}


def accounts(simulator) -> dict[str, Any]:
    cfg = account_config(simulator, rules=[RULE])
    cfg["data_maps"] = [
        *cfg["data_maps"],
        {"name": "plan", "path": "properties.plan", "type": "string", "field": int(PLAN_FIELD)},
    ]
    return {"acme": cfg}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def journey(tag: str, i: int, t0: float, *, alias: bool = False) -> list[dict[str, Any]]:
    """Viewed Pricing (anonymous), identify or alias a minute later, Signed Up by userId."""
    a, u = f"{tag}-a{i}", f"{tag}-u{i}"
    email = f"{u}@example.com"
    vp = {"type": "track", "event": "Viewed Pricing", "anonymousId": a,
          "properties": {"plan": "pro"}, "timestamp": iso(t0), "messageId": f"{u}-1"}  # fmt: skip
    ident = {"type": "identify", "userId": u, "traits": {"firstName": "Ann"},
             "context": {"traits": {"email": email}}, "timestamp": iso(t0 + 60),
             "messageId": f"{u}-2"}  # fmt: skip
    su = {"type": "track", "event": "Signed Up", "userId": u, "timestamp": iso(t0 + 120),
          "messageId": f"{u}-3"}  # fmt: skip
    if not alias:
        ident["anonymousId"] = a
        return [vp, ident, su]
    link = {"type": "alias", "previousId": a, "userId": u, "timestamp": iso(t0 + 90),
            "messageId": f"{u}-a"}  # fmt: skip
    return [vp, ident, link, su]


def write_to_topic(stack: Stack, messages: list[dict[str, Any]]) -> None:
    """As another tool (or Segment's Kafka destination) would: keyed like the ingest."""
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        p = AIOKafkaProducer(bootstrap_servers=stack.broker_url.removeprefix("kafka://"))
        await p.start()
        try:
            for m in messages:
                await p.send(
                    stack.input_topic,
                    orjson.dumps(m),
                    key=keys.key("acme", partition_id(m) or ""),
                    headers=[("emd-account", b"acme")],
                )
            await p.flush()
        finally:
            await p.stop()

    asyncio.run(run())


def fired(simulator, tag: str) -> dict[str, list[dict[str, Any]]]:
    """The simulator's triggers of event 1301 for this test's visitors, by e-mail."""
    out: dict[str, list[dict[str, Any]]] = {}
    for f in simulator.get("/_sim/triggers?event_id=1301")["fired"]:
        if str(f["external_id"]).startswith(f"{tag}-"):
            out.setdefault(f["external_id"], []).append(f)
    return out


def check_every_visitor(simulator, stack: Stack, tag: str, n: int, messages, timeout=120):
    """Each visitor triggered once, with both eras' variables and the anonymous value on
    the contact; the triggers are replay's, trigger_ids included."""
    got = wait_for(
        lambda: (f := fired(simulator, tag)) and len(f) >= n and f,
        timeout=timeout,
        interval=1,
        what=f"{n} visitors triggered",
    )
    assert len(got) == n
    twice = {e: [f["trigger_id"] for f in fs] for e, fs in got.items() if len(fs) != 1}
    assert twice == {}, f"fired more than once: {dict(list(twice.items())[:3])}"
    assert {json.dumps(fs[0]["data"], sort_keys=True) for fs in got.values()} == {
        json.dumps({"global": {"plan": "pro", "first_name": "Ann"}}, sort_keys=True)
    }
    for email in list(got)[:25]:
        assert simulator.contact(email)[PLAN_FIELD] == "pro", email
    live = {
        (f["trigger_id"], f["external_id"], f["event_time"], json.dumps(f["data"], sort_keys=True))
        for fs in got.values()
        for f in fs
    }
    assert live == replayed_triggers(stack.config_path, messages)


@pytest.fixture
def stack(broker, simulator, tmp_path):
    # The lateness window re-sorts an anonymous event that reaches the user after its own
    # link (README, "Identity"): give it the span a real deployment has, not the test
    # stack's second.
    s = Stack(
        broker.url, tmp_path, accounts(simulator), partitions=4,
        extra={"allowed_lateness": "30s"},
    )  # fmt: skip
    yield s
    s.stop()


def test_2000_visitors_written_to_the_topic_each_trigger_once(stack, simulator):
    """The issue's failure: 0 of 2,000 triggered, while replay fired all 2,000."""
    stack.start_worker()
    stack.wait_assigned()
    tag, n, t0 = f"h{uuid.uuid4().hex[:6]}", 2000, time.time() - 240
    messages = [m for i in range(n) for m in journey(tag, i, t0 + i * 0.01)]
    write_to_topic(stack, messages)
    check_every_visitor(simulator, stack, tag, n, messages)


def test_the_journey_in_one_batch_and_by_alias(stack, simulator):
    """All three calls in one /v1/batch (as analytics.js sends them), and via alias."""
    stack.start_worker()
    stack.wait_assigned()
    tag, n, t0 = f"b{uuid.uuid4().hex[:6]}", 300, time.time() - 240
    batched = [journey(tag, i, t0 + i * 0.01) for i in range(n)]
    aliased = [journey(tag, i, t0 + i * 0.01, alias=True) for i in range(n, 2 * n)]
    for j in batched + aliased:
        r = stack.post("/v1/batch", {"batch": j})
        assert r.status == 200, r.body
    check_every_visitor(simulator, stack, tag, 2 * n, [m for j in batched + aliased for m in j])


def test_a_kill_9_mid_stream_loses_nothing_and_fires_nothing_twice(stack, simulator, tmp_path):
    worker = stack.start_worker()
    stack.wait_assigned()
    tag, n, t0 = f"k{uuid.uuid4().hex[:6]}", 2000, time.time() - 240
    messages = [m for i in range(n) for m in journey(tag, i, t0 + i * 0.01)]
    write_to_topic(stack, messages)
    wait_for(
        lambda: stack.metric("emd_events_processed_total") >= len(messages) // 3,
        timeout=60,
        interval=0.1,
        what="a third of the events processed",
    )
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait(10)
    stack.start_worker(datadir=str(tmp_path / f"{stack.app_id}-data0"))
    stack.wait_assigned()
    check_every_visitor(simulator, stack, tag, n, messages, timeout=180)


def test_visitor_and_user_on_different_workers(stack, simulator):
    stack.start_worker()
    stack.start_worker()
    stack.wait_assigned()
    owners: dict[int, int] = {}
    for w in stack.live():
        parts = http("GET", f"{w.url}/health").json()["assigned_partitions"]
        for p in parts.get(stack.input_topic, []):
            owners[p] = w.index
    from app.batching.partition import Partitioner

    part = Partitioner(4)
    tag, n, t0 = f"w{uuid.uuid4().hex[:6]}", 400, time.time() - 240
    apart = [
        i
        for i in range(n)
        if owners[part(keys.key("acme", f"{tag}-a{i}"))]
        != owners[part(keys.key("acme", f"u:{tag}-u{i}"))]
    ]
    assert len(apart) > n // 4  # about half: the test means something
    journeys = [journey(tag, i, t0 + i * 0.01) for i in range(n)]
    for i, j in enumerate(journeys):
        r = stack.post("/v1/batch", {"batch": j}, i=i % 2)
        assert r.status == 200, r.body
    check_every_visitor(simulator, stack, tag, n, [m for j in journeys for m in j])


# (step of the transaction, the record it sent): the worker SIGKILLs itself there. CI runs
# the first; `make reliability` every one (each costs a worker restart, ~40 s).
HANDOFF_CRASHES = [
    ("sent", "state"),  # the visitor's state acknowledged by the broker, tombstone unwritten
]
SLOW_CRASHES = [
    ("changelog", "state"),  # the tombstone in the changelog, not in RocksDB
    ("written", "state"),  # written everywhere, the offsets not committed
    ("sent", "trigger"),  # the trigger acknowledged, the user's state (window) unwritten
    ("written", "trigger"),
    ("sent", "pk"),  # a primary-key index entry acknowledged, the record unwritten
    ("changelog", "pk"),
]


def _tag_apart(partitions: int) -> str:
    """A tag whose records of a hand-off all cross partitions: the visitor's person
    (``a:``, which sends its state) and its primary-key entry (``k:``) each on another
    partition than the user's. A record for the partition in hand is applied inside the
    same transaction and never sent (``app.stages.flow``), so there would be no ``state``
    or ``pk`` record to crash after (the link partition, keyed by the bare anonymousId,
    does not matter: its merge request is a record of its own)."""
    from app.batching.partition import Partitioner

    part = Partitioner(partitions)
    while True:
        tag = f"c{uuid.uuid4().hex[:6]}"
        user = part(keys.key("acme", keys.user_person(f"{tag}-u0")))
        visitor = part(keys.key("acme", keys.anon_person(f"{tag}-a0")))
        pk = part(keys.key("acme", keys.pk_index_id(f"{tag}-u0@example.com")))
        if visitor != user and pk != user:
            return tag


def _crash_and_recover(stack: Stack, simulator, tmp_path, step: str, label: str) -> None:
    worker = stack.start_worker(env={"EMD_CRASH_AT": f"{step}:{label}"})
    stack.wait_assigned()
    tag, t0 = _tag_apart(stack.partitions), time.time() - 240
    messages = journey(tag, 0, t0)
    # The visitor first, so that it has state to hand over when the identify links it.
    assert stack.post("/v1/batch", {"batch": messages[:1]}).status == 200
    wait_for(
        lambda: stack.user("acme", anonymousId=f"{tag}-a0").status == 200,
        timeout=60,
        what="the anonymous visitor",
    )
    r = stack.post("/v1/batch", {"batch": messages[1:]})
    assert r.status == 200, r.body
    wait_for(lambda: worker.proc.poll() is not None, timeout=90, what=f"the crash at {step}")
    assert worker.proc.returncode == -signal.SIGKILL
    stack.start_worker(datadir=str(tmp_path / f"{stack.app_id}-data0"))
    stack.wait_assigned()
    check_every_visitor(simulator, stack, tag, 1, messages, timeout=180)
    email = f"{tag}-u0@example.com"
    found = wait_for(
        lambda: (r := stack.user("acme", primaryKey=email)).status == 200 and r.json(),
        timeout=90,
        what="the person by primary key",
    )
    assert found["userId"] == f"{tag}-u0"
    assert f"{tag}-a0" in found["anonymousIds"]


@pytest.mark.parametrize(("step", "label"), HANDOFF_CRASHES)
def test_a_kill_9_inside_a_hand_off_loses_nothing(stack, simulator, tmp_path, step, label):
    _crash_and_recover(stack, simulator, tmp_path, step, label)


@pytest.mark.slow
@pytest.mark.parametrize(("step", "label"), SLOW_CRASHES)
def test_a_kill_9_inside_a_hand_off_loses_nothing_slow(stack, simulator, tmp_path, step, label):
    _crash_and_recover(stack, simulator, tmp_path, step, label)


@pytest.mark.parametrize("step", ["sent", pytest.param("changelog", marks=pytest.mark.slow)])
def test_a_kill_9_inside_a_delete_still_deletes(stack, simulator, tmp_path, step):
    worker = stack.start_worker(env={"EMD_CRASH_AT": f"{step}:delete"})
    stack.wait_assigned()
    tag = f"d{uuid.uuid4().hex[:6]}"
    u, email = f"{tag}-u", f"{tag}-u@example.com"
    ident = {"type": "identify", "userId": u, "context": {"traits": {"email": email}},
             "traits": {"firstName": "Del"}, "messageId": f"{u}-1"}  # fmt: skip
    assert stack.post("/v1/identify", ident).status == 200
    wait_for(lambda: simulator.contact(email), what="the contact created")
    delete = {"type": "delete", "userId": u, "messageId": f"{u}-2"}
    assert stack.post("/segment", delete).status == 200
    wait_for(lambda: worker.proc.poll() is not None, timeout=90, what=f"the crash at {step}")
    stack.start_worker(datadir=str(tmp_path / f"{stack.app_id}-data0"))
    stack.wait_assigned()
    wait_for(lambda: simulator.contact(email) is None, timeout=60, what="the contact deleted")
    wait_for(lambda: stack.user("acme", userId=u).status == 404, timeout=30, what="the person gone")
