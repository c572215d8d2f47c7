"""A minimal Faust app for the bench: one agent that counts, nothing else.

The floor for any Faust pipeline on this machine: memory store, raw serializers, no
table, no produce. Per event it does what the raw aiokafka loop does (``json.loads`` and
a dict update), so the two differ only by Faust's per-event machinery.

Run as a worker (``bench.run`` does): ``python -m faust -A bench.bare_app worker``, with
``BENCH_BROKER``, ``BENCH_TOPIC``, ``BENCH_PARTITIONS`` and ``BENCH_OUT`` (a JSON file the
agent's progress goes to: count, and wall-clock times of the first and last event).
"""

from __future__ import annotations

import json
import os
import time

import faust

BROKER = os.environ.get("BENCH_BROKER", "kafka://127.0.0.1:9092")
TOPIC = os.environ.get("BENCH_TOPIC", "bench-events")
PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", "8"))
OUT = os.environ.get("BENCH_OUT", ".bench/bare-progress.json")

app = faust.App(
    os.environ.get("BENCH_APP_ID", "emdbench-bare"),
    broker=BROKER,
    store="memory://",
    autodiscover=False,
    key_serializer="raw",
    value_serializer="raw",
    topic_partitions=PARTITIONS,
    consumer_auto_offset_reset="earliest",
    # the dev settings: fast consumer-group joins on the embedded broker
    broker_session_timeout=10.0,
    broker_heartbeat_interval=1.0,
    broker_rebalance_timeout=10.0,
    web_host="127.0.0.1",
)

topic = app.topic(TOPIC, key_type=bytes, value_type=bytes, partitions=PARTITIONS, internal=False)

PROGRESS: dict[str, float | int | None] = {"count": 0, "first": None, "last": None}
LAST_TYPE: dict[str, str] = {}


@app.agent(topic)
async def count(stream):
    async for value in stream:
        obj = json.loads(value)
        LAST_TYPE[obj.get("userId") or obj.get("anonymousId")] = obj["type"]
        now = time.time()
        if PROGRESS["first"] is None:
            PROGRESS["first"] = now
        PROGRESS["last"] = now
        PROGRESS["count"] = int(PROGRESS["count"] or 0) + 1


@app.timer(0.25)
async def report() -> None:
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        json.dump(PROGRESS, f)
    os.replace(tmp, OUT)
