"""Reading the live input topic for ``replay --topic`` and the console's backtest.

Its own consumer with no group: it never joins the workers' consumer group, commits
nothing and shares no state. It reads every partition from the beginning to the end
(past the broker's reported end, which the embedded broker under-reports), then merges
the partitions in event-time order, so the replay clock sees history as it happened.
What it reads is held in memory up to a budget and spilled to sorted run files beyond
it (``app.replay.event_order``), so a topic of months replays in bounded memory.

``--from``/``--to`` filter by event time while reading (what is outside is never kept):
the embedded broker answers offset-by-timestamp lookups with its append time, not the
events' time, so the whole topic is read. (On a large topic this costs time, not
correctness.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from app.replay.event_order import DEFAULT_BUDGET, EventOrder
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


def topic_items(
    broker_url: str,
    topic: str,
    start: float | None = None,
    end: float | None = None,
    *,
    budget: int = DEFAULT_BUDGET,
) -> EventOrder:
    """Every message of ``topic`` with ``start <= event time < end``, as (raw value,
    account header) when iterated, in event-time order (in memory up to ``budget`` bytes,
    the rest in run files). ``close()`` it (or use it as a context manager) to remove what
    it spilled to disk."""

    async def read() -> EventOrder:
        consumer = consumer_for(broker_url, "emd-replay")
        await consumer.start()
        try:
            tps = await partitions(consumer, topic)
            if not tps:
                raise LookupError(f"topic {topic!r} does not exist on {broker_url}")
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            order = EventOrder((tp.partition for tp in tps), budget=budget)

            def keep(r: Any) -> None:
                if r.value is None:
                    return
                ts = event_time(r.value, r.timestamp / 1000.0)
                if (start is None or ts >= start) and (end is None or ts < end):
                    order.add(r.partition, ts, r.value, _account(r.headers))

            try:
                await read_to_end(consumer, tps, keep, fetch_ms=500)
            except BaseException:
                order.close()
                raise
            return order
        finally:
            await consumer.stop()

    return asyncio.run(read())
