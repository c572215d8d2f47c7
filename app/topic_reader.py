"""Reading a topic to its end with a consumer of our own (no group, no commits).

"The end" needs care on the embedded broker: it under-reports a partition's end offset
after a batch produce (see ``recovery_guard``), and a fresh consumer's first fetches can
come back empty before the data arrives. So: read until every partition's position has
reached its reported end AND a fetch comes back empty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from app.topics import bootstrap_servers


def consumer_for(broker_url: str, client_id: str, **options: Any) -> AIOKafkaConsumer:
    """A consumer of our own: no group, no commits (``options``: more of aiokafka's)."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(broker_url),
        enable_auto_commit=False,
        group_id=None,
        client_id=client_id,
        **options,
    )


async def partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(parts or ())]


async def read_to_end(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    on_record: Callable[[Any], None],
    *,
    fetch_ms: int = 300,
) -> None:
    """Pass every record from each partition's current position to its end to
    ``on_record`` (the consumer is assigned ``tps`` and positioned already)."""
    if not tps:
        return
    ends = await consumer.end_offsets(tps)
    while True:
        batch = await consumer.getmany(*tps, timeout_ms=fetch_ms, max_records=5000)
        records = [r for recs in batch.values() for r in recs]
        if records:
            for r in records:
                on_record(r)
            continue
        positions = [await consumer.position(tp) for tp in tps]
        if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
            return
