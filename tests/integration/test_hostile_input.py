"""Hostile input against a real worker: straight onto the input topic and over HTTP.

Hundreds of hostile records (invalid UTF-8, 1,000-level nesting, 1e400 and 2**70, strings
around 32 KB, wrong types in every field, duplicate keys, NUL bytes, empty and non-object
values, unknown or malformed ``emd-account`` headers, tombstones) are written with
aiokafka to every partition of the input topic, and hostile bodies are posted to every
ingest endpoint. Then:

- the worker never died and ``/health`` answered 200 throughout;
- no partition stalled: a valid marker event written to each partition after the garbage
  is processed (visible through the users API);
- every reject written to the topic is in the dead-letter topic (``source: input``) with a
  non-empty reason, and no message was rejected as an internal error;
- a message whose header names an unknown account landed in no account;
- every HTTP answer to bad input is a 4xx, never a 5xx; the messages a batch answer lists
  as rejected are in the dead-letter topic (``source: ingest``).

Case counts go to stdout (``-s``) and ``.bench/fuzz-counts.json``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app import keys
from app.identity import resolve, routing_id
from app.segment.model import InvalidMessage, parse_message
from tests.hostile import (
    BATCH_SIZE_CASES,
    FIELDS,
    SIZE_CASES,
    base_messages,
    batch_body,
    encode,
    hostile_messages,
    hostile_values,
    message_bytes,
    nested,
    record_counts,
    single_body,
)
from tests.integration.stack import Stack, account_config, basic, http, read_topic, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 4
KEY = "hostile-key"
INGEST_PATHS = [
    "/segment",
    "/v1/batch",
    "/v1/import",
    *[f"/v1/{t}" for t in ("identify", "track", "page", "screen", "group", "alias")],
]


def verdict(value: bytes | None, headers: list[tuple[str, bytes]]) -> str:
    """What the link agent must do with a record (its rules, in its order): ``reject``
    (before the dedupe check, so always dead-lettered), ``reject-after-dedupe`` (an alias
    that cannot link: dead-lettered unless its messageId was seen before, i.e. a
    duplicate of a message already dead-lettered) or ``accept``."""
    names = dict(headers)
    raw = names.get("emd-account")
    account = raw.decode("utf-8", "replace") if raw is not None else None
    if (account or "acme") != "acme":
        return "reject"
    try:
        obj = orjson.loads(value if value is not None else b"None")
        msg = parse_message(obj)
    except (orjson.JSONDecodeError, InvalidMessage):
        return "reject"
    if routing_id(msg.data) is None:
        return "reject"
    if resolve(msg.data, lambda _i: None) is None:
        return "reject-after-dedupe"
    return "accept"


def collect(strategy: st.SearchStrategy[Any], n: int) -> list[Any]:
    """``n`` examples of ``strategy`` drawn by hypothesis (generation only, no shrinking)."""
    out: list[Any] = []

    @settings(
        max_examples=n,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def gather(x: Any) -> None:
        out.append(x)

    gather()
    return out


class Health:
    """Polls ``/health`` and the process in a thread for as long as the garbage flows."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.polls = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for w in self.stack.workers:
                if w.proc.poll() is not None:
                    self.failures.append(f"worker {w.index} exited with {w.proc.returncode}")
                    return
                try:
                    status = http("GET", f"{w.url}/health", timeout=5).status
                except OSError as exc:
                    status = 0
                    self.failures.append(f"/health: {type(exc).__name__}")
                self.polls += 1
                if status != 200:
                    self.failures.append(f"/health answered {status}")
            self._stop.wait(0.5)

    def __enter__(self) -> Health:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture(scope="module")
def stack(broker, simulator, tmp_path_factory):
    s = Stack(
        broker.url,
        tmp_path_factory.mktemp("hostile"),
        {"acme": account_config(simulator, api_keys=[KEY])},
        partitions=PARTITIONS,
    )
    s.start_worker()
    s.wait_assigned()
    yield s
    s.stop()


# --------------------------------------------------------------------------- the topic


def topic_records(run: str) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """(key, value, headers) of every hostile record, hypothesis-generated plus fixed edges."""
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    key = keys.key("acme", "u1")
    for body in collect(message_bytes(), 200):
        records.append((key, body, []))
    for msg in collect(hostile_messages(), 200):
        # A hostile userId may hold a lone surrogate: key it as raw bytes, as a producer
        # that does not check would.
        ident = str(msg.get("userId")).encode("utf-8", "surrogatepass")
        records.append((b"acme" + keys.SEP.encode() + ident, encode(msg), []))
    # Every field, one wrong type each, with a fresh userId (so nothing dedupes them away).
    for i, (field, value) in enumerate(
        collect(st.tuples(st.sampled_from(FIELDS), hostile_values), 80)
    ):
        msg = {"type": "track", "userId": f"{run}-wt{i}", "event": "E", field: value}
        records.append((keys.key("acme", f"{run}-wt{i}"), encode(msg), []))
    fixed: list[bytes | None] = [
        None,  # a tombstone
        b"",
        b"\x00",
        b"\xff\xfe\xfd",
        b'{"type":"track","userId":"u1","event":"E\xff"}',
        b'{"type":"track","userId":"u1","event":"E","x":"\xed\xa0\x80"}',
        b'{"type":"track","userId":"u1","event":"E\x00"}',
        b"[]",
        b"null",
        b"1e400",
        b'"a string"',
        b'{"type":"track","userId":"u1","event":"E","properties":{"n":1e400}}',
        b'{"type":"track","userId":{"a":1},"event":"E"}',
        b'{"type":"track","userId":["u1"],"event":"E"}',
        b'{"type":"track","userId":true,"event":"E"}',
        b'{"type":"track","userId":"u1","event":"E","timestamp":1700000000}',
        b'{"type":"track","userId":"u1","event":"E","properties":"not an object"}',
        b'{"type":"track","userId":"u1","event":["E"]}',
        b'{"type":"track","type":["track"],"userId":"u1","event":"E"}',
        f'{{"type":"track","userId":"u1","event":"E","properties":{{"x":{nested(1000).text}}}}}'.encode(),
        f'{{"type":"track","userId":"u1","event":"E","properties":{{"x":{nested(253).text}}}}}'.encode(),
        nested(1000, "dict").text.encode(),
        nested(5000).text.encode(),
    ]
    records += [(key, v, []) for v in fixed]
    # Valid messages under headers naming no account of this config: they must land nowhere.
    for i, header in enumerate([b"nope", b"ACME", b"acme\x00", b"acme ", b"\xff\xfe", b"x" * 5000]):
        msg = {"type": "identify", "userId": f"{run}-nohome{i}", "traits": {"firstName": "X"}}
        records.append(
            (keys.key("acme", f"{run}-nohome{i}"), encode(msg), [("emd-account", header)])
        )
    # Sizes around Segment's 32 KB, and far beyond it (the topic has no HTTP limit).
    for i, size in enumerate([32 * 1024 - 1, 32 * 1024, 32 * 1024 + 1, 200_000, 900_000]):
        body = single_body(size, f"{run}-big{i}")
        records.append((keys.key("acme", f"{run}-big{i}"), body, []))
        bad = body[:-2] + b"\xff}"  # the same, with invalid UTF-8 at the very end
        records.append((keys.key("acme", f"{run}-big{i}"), bad, []))
    # Big, valid JSON, but no usable identifier: dead-lettered with its payload.
    for size in (500_000, 990_000):
        anon = json.loads(single_body(size, "null"))
        records.append((key, encode(anon), []))
    return records


async def produce(broker_url: str, topic: str, records, partitions: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=broker_url.removeprefix("kafka://"), max_request_size=2_000_000
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=v, key=k, headers=h, partition=i % partitions)
            for i, (k, v, h) in enumerate(records)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def test_hostile_topic_records_and_http_bodies(stack: Stack) -> None:
    started = time.monotonic()
    run = uuid.uuid4().hex[:8]
    worker = stack.workers[0]
    http_counts: Counter[str] = Counter()
    batch_rejected = 0

    def post(path: str, body: bytes, headers: dict[str, str]) -> int:
        nonlocal batch_rejected
        r = http("POST", f"{worker.url}{path}", raw=body, headers=headers, timeout=60)
        http_counts[str(r.status)] += 1
        assert r.status < 500, (path, r.status, r.body[:300], body[:300])
        assert r.status in (200, 400, 401, 413), (path, r.status, r.body[:300])
        if r.status == 200:
            batch_rejected += len(r.json().get("rejected", []))
        return r.status

    with Health(stack) as health:
        # 1. Garbage straight onto the input topic, every partition.
        records = topic_records(run)
        verdicts = Counter(verdict(v, h) for _, v, h in records)
        asyncio.run(produce(stack.broker_url, stack.input_topic, records, PARTITIONS))

        # 2. Hostile bodies over HTTP, property-based (each answer checked as it comes).
        auth = basic(KEY)

        @settings(
            max_examples=450,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(path=st.sampled_from(INGEST_PATHS), body=message_bytes())
        def fuzz_bytes(path: str, body: bytes) -> None:
            post(path, body, auth)

        @settings(
            max_examples=200,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            path=st.sampled_from(["/v1/batch", "/segment"]),
            items=st.lists(st.one_of(hostile_messages(), base_messages), min_size=1, max_size=6),
        )
        def fuzz_batches(path: str, items: list[Any]) -> None:
            post(path, encode({"batch": items}), auth)

        fuzz_bytes()
        fuzz_batches()
        for _name, path, size, expected in SIZE_CASES:
            assert post(path, single_body(size, f"{run}-s{size}"), auth) == expected
        for _name, size, count, expected in BATCH_SIZE_CASES:
            assert post("/v1/batch", batch_body(size, count, f"{run}-b{size}"), auth) == expected
        # Unknown keys, and a valid key with an account header naming another account.
        assert post("/v1/track", b'{"type":"track","userId":"u1","event":"E"}', {}) == 401
        assert post("/v1/track", b"\xff", basic("no-such-key")) == 401
        smuggled = {"type": "identify", "userId": f"{run}-hdr", "traits": {}}
        assert post("/v1/identify", encode(smuggled), {**auth, "emd-account": "nope"}) == 200

        # 3. A valid marker on every partition, after all of it.
        markers = [f"{run}-marker{p}" for p in range(PARTITIONS)]
        asyncio.run(
            produce(
                stack.broker_url,
                stack.input_topic,
                [
                    (keys.key("acme", m), encode({"type": "identify", "userId": m}), [])
                    for m in markers
                ],
                PARTITIONS,
            )
        )
        # Valid however big (the topic has no 32 KB limit): processed, like the markers.
        markers += [f"{run}-big{i}" for i in range(5)]
        for m in markers:
            wait_for(
                lambda m=m: stack.user("acme", userId=m).status == 200,
                timeout=90,
                what=f"marker {m} processed (partition not stalled)",
            )

    assert not health.failures, health.failures[:10]
    assert health.polls > 0 and worker.proc.poll() is None

    # 4. Every reject is a dead letter with its reason; none was an internal error.
    def dead_letters() -> list[dict[str, Any]]:
        return [
            orjson.loads(r.value) for r in read_topic(stack.broker_url, stack.topic("dead-letters"))
        ]

    want_input = verdicts["reject"]

    def enough() -> list[dict[str, Any]] | None:
        d = dead_letters()
        n_input = sum(x["source"] == "input" for x in d)
        n_ingest = sum(x["source"] == "ingest" for x in d)
        return d if n_input >= want_input and n_ingest >= batch_rejected else None

    try:
        dead = wait_for(enough, timeout=30, what="the dead letters")
    except AssertionError:
        dead = dead_letters()
    by_reason = Counter((d["source"], d["reason"][:60]) for d in dead)
    detail = (
        f"{by_reason.most_common(40)}; topic verdicts {verdicts}; batch rejected {batch_rejected}"
    )
    assert sum(d["source"] == "input" for d in dead) >= want_input, detail
    assert sum(d["source"] == "ingest" for d in dead) >= batch_rejected, detail
    by_source = Counter(d["source"] for d in dead)
    assert all(isinstance(d["reason"], str) and d["reason"].strip() for d in dead)
    internal = [d for d in dead if d["source"] in ("link", "person")]
    assert not internal, [(d["source"], d["reason"]) for d in internal[:5]]
    # Header-smuggled messages landed in no account (the sender's key decides, not a header).
    for i in range(6):
        assert stack.user("acme", userId=f"{run}-nohome{i}").status == 404
    assert stack.user("acme", userId=f"{run}-hdr").status == 200

    seconds = round(time.monotonic() - started, 1)
    topic_counts = {
        "cases": len(records),
        "rejects": verdicts["reject"] + verdicts["reject-after-dedupe"],
        "accepted": verdicts["accept"],
        "dead_letters_input": by_source["input"],
        "crashes": 0,
        "health_polls": health.polls,
        "seconds": seconds,
    }
    http_total = sum(http_counts.values())
    record_counts("integration_topic", topic_counts)
    record_counts(
        "integration_http",
        {
            "cases": http_total,
            "crashes": sum(v for k, v in http_counts.items() if k.startswith("5")),
            "statuses": dict(sorted(http_counts.items())),
            "batch_rejected": batch_rejected,
            "dead_letters_ingest": by_source["ingest"],
            "seconds": seconds,
        },
    )
    print(json.dumps({"topic": topic_counts, "http": dict(http_counts)}))
