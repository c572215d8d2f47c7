"""Reading the live input topic for ``replay --topic`` and the console's backtest.

Its own consumer with no group: it never joins the workers' consumer group, commits
nothing and shares no state. It reads every partition from the beginning to the end
(past the broker's reported end, which the embedded broker under-reports), then merges
the partitions in event-time order, so the replay clock sees history as it happened.

``--from``/``--to`` filter by event time after reading: the embedded broker answers
offset-by-timestamp lookups with its append time, not the events' time, so the whole
topic is read. (On a large topic this costs time, not correctness.)
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterator
from typing import Any

import orjson

from app.segment.model import parse_iso_utc
from app.topic_reader import consumer_for, partitions, read_to_end

ACCOUNT_HEADER = "emd-account"
_TIME_FIELDS = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")


def event_time(value: bytes, fallback: float) -> float:
    """The Segment event time of a raw message, else ``fallback`` (the record's time)."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return fallback
    if isinstance(obj, dict):
        for name in _TIME_FIELDS:
            text = obj.get(name)
            if isinstance(text, str):
                try:
                    return parse_iso_utc(text).timestamp()
                except ValueError:
                    continue
    return fallback


def _account(headers: Any) -> str | None:
    for k, v in headers or ():
        if k == ACCOUNT_HEADER and v is not None:
            return v.decode("utf-8", "replace")
    return None


async def read_partitions(
    broker_url: str, topic: str
) -> dict[int, list[tuple[float, bytes, str | None]]]:
    consumer = consumer_for(broker_url, "emd-replay")
    await consumer.start()
    try:
        tps = await partitions(consumer, topic)
        if not tps:
            raise LookupError(f"topic {topic!r} does not exist on {broker_url}")
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: dict[int, list[tuple[float, bytes, str | None]]] = {tp.partition: [] for tp in tps}

        def keep(r: Any) -> None:
            if r.value is not None:
                ts = event_time(r.value, r.timestamp / 1000.0)
                out[r.partition].append((ts, r.value, _account(r.headers)))

        await read_to_end(consumer, tps, keep, fetch_ms=500)
        return out
    finally:
        await consumer.stop()


def topic_items(
    broker_url: str,
    topic: str,
    start: float | None = None,
    end: float | None = None,
) -> list[tuple[bytes, str | None]]:
    """Every message of ``topic`` as (raw value, account header), in event-time order,
    restricted to ``start <= event time < end``."""
    parts = asyncio.run(read_partitions(broker_url, topic))
    return list(_merged(parts, start, end))


def _merged(parts, start: float | None, end: float | None) -> Iterator[tuple[bytes, str | None]]:
    # Each partition is (nearly) in event-time order; a stable sort keeps a person's
    # events in partition order when their times tie.
    streams = [sorted(recs, key=lambda r: r[0]) for recs in parts.values()]
    for ts, value, account in heapq.merge(*streams, key=lambda r: r[0]):
        if start is not None and ts < start:
            continue
        if end is not None and ts >= end:
            continue
        yield value, account
