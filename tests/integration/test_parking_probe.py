"""``agents.parking_probe`` against the embedded broker, and a worker that uses it.

The probe decides whether a lane may deliver a partition's effects directly after an
assignment, so a wrong "drained" would let new effects overtake parked ones. It is
checked where the broker is least trustworthy: right after a multi-record batch (whose
end offset this broker under-reports) and with the committed offset inside that batch.
"""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest

from agents.parking_probe import ParkingProbe
from app.topics import ensure_topics
from tests.integration.stack import account_config, admin, http, read_topic, wait_for

pytestmark = pytest.mark.integration


async def _produce_batch(bootstrap: str, topic: str, partition: int, n: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, b"parked %d" % i, key=b"acme\x1fc", partition=partition)
            for i in range(n)
        ]
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def identify(stack, email: str, name: str, worker: int) -> None:
    """An identify for ``email`` (a new first name) posted to ``worker``."""
    body = {
        "type": "identify",
        "userId": email,
        "traits": {"firstName": name, "email": email},
        "context": {"traits": {"email": email}},
    }
    assert stack.post("/v1/identify", body, i=worker).status == 200


def first_name(simulator, email: str) -> str | None:
    """The contact's first name (field 1) in the simulated Emarsys."""
    fields = simulator.contact(email)
    return fields.get("1") if fields else None


def test_the_probe_finds_parked_effects_and_only_then_says_drained(broker) -> None:
    topic = f"probe-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(broker.url, {topic: 2}))
    asyncio.run(_produce_batch(broker.bootstrap, topic, 0, 3))  # one batch: offsets 0..2
    committed: dict[int, int | None] = {0: None, 1: None}
    probe = ParkingProbe(lambda: broker.url, lambda t, p: committed[p])

    async def ask() -> dict[int, bool]:
        answers = await asyncio.gather(probe.drained(topic, 0), probe.drained(topic, 1))
        return dict(enumerate(answers))

    # nothing committed: partition 0 holds three effects, partition 1 never held one
    assert asyncio.run(ask()) == {0: False, 1: True}
    committed[0] = 1  # inside the batch (the broker reports its end as less than 3)
    assert asyncio.run(ask()) == {0: False, 1: True}
    committed[0] = 3  # every parked effect delivered and committed
    assert asyncio.run(ask()) == {0: True, 1: True}


def test_a_probe_that_cannot_reach_the_broker_says_not_drained() -> None:
    from app.broker import free_port

    probe = ParkingProbe(lambda: f"kafka://127.0.0.1:{free_port()}", lambda t, p: None)
    assert asyncio.run(probe.drained("nowhere", 0)) is False


def test_a_worker_restarted_without_an_outage_parks_nothing(make_stack, simulator) -> None:
    """Before the probe, every partition of a (re)started worker parked its first effects
    (the parking hop: a produce, a fetch and a commit before they reached Emarsys), and
    the account showed ``emd_account_parked 1`` until its next effect."""
    stack = make_stack({"acme": account_config(simulator)})
    stack.start_worker()
    stack.wait_assigned()
    email = f"probe-{uuid.uuid4().hex[:8]}@example.com"
    identify(stack, email, "Ada", 0)
    wait_for(lambda: first_name(simulator, email) == "Ada", what="the first identify in Emarsys")
    stack.stop_worker(stack.workers[0])
    stack.start_worker()
    stack.wait_assigned()
    identify(stack, email, "Grace", 1)
    wait_for(lambda: first_name(simulator, email) == "Grace", what="the identify after the restart")
    parked = read_topic(stack.broker_url, stack.topic("parked-acme"))
    assert [orjson.loads(r.value) for r in parked] == []
    assert stack.metric("emd_account_parked", i=1, account="acme") == 0


def test_a_worker_taking_over_a_parked_backlog_goes_direct_once_it_is_delivered(
    make_stack, simulator
) -> None:
    """A worker stopped during an outage leaves its parked effects behind; the next
    worker finds them (the probe), delivers them once Emarsys is back, and goes direct
    by itself, with no new effect needed: the account no longer shows parked, and its
    next effect reaches Emarsys without taking the parking hop."""
    stack = make_stack(
        {"acme": account_config(simulator)},
        extra={"sink": {"flush_interval": "0.2s", "park_after": "1s"}},
    )
    tag = f"takeover-{uuid.uuid4().hex[:6]}"
    emails = [f"{tag}-{i}@example.com" for i in range(20)]

    def parked() -> list[bytes]:
        return [r.value for r in read_topic(stack.broker_url, stack.topic("parked-acme"))]

    simulator.post("/_sim/faults", {"outage_seconds": 600})
    try:
        stack.start_worker()
        stack.wait_assigned()
        for email in emails:
            identify(stack, email, "Ada", 0)
        wait_for(lambda: len(parked()) >= len(emails), timeout=60, what="the effects parked")
        stack.stop_worker(stack.workers[0])
    finally:
        simulator.post("/_sim/faults", {"outage_seconds": 0})
    backlog = len(parked())

    stack.start_worker()
    stack.wait_assigned()
    wait_for(
        lambda: all(first_name(simulator, e) == "Ada" for e in emails),
        timeout=60,
        what="the parked backlog delivered by the new worker",
    )

    def direct() -> bool:
        r = http("GET", f"{stack.url(1)}/api/accounts/acme/deliveries", headers=admin())
        body = r.json()
        return body["backlog"]["state"] != "parked" and body["workers"][0][
            "directPartitions"
        ] == list(range(stack.partitions))

    wait_for(direct, timeout=30, what="the new worker delivering directly, with no new effect")
    assert stack.metric("emd_account_parked", i=1, account="acme") == 0
    identify(stack, emails[0], "Grace", 1)
    wait_for(lambda: first_name(simulator, emails[0]) == "Grace", what="the next effect in Emarsys")
    assert len(parked()) == backlog  # it went straight to Emarsys
