"""Records out as one producer batch per topic partition, on the producer Faust runs.

``aiokafka``'s ``send`` costs a partitioner call, a serializer and an accumulator lookup
per record; ``create_batch``/``send_batch`` build the batch directly. The batches go
through Faust's own producer, so its flush before every commit covers them. A batch is
closed before it is queued, so it does not wait out ``producer_linger``.

Keys are partitioned exactly as aiokafka's ``DefaultPartitioner`` does
(``app.batching.partition``), so a record lands where Faust's router and ``table_route``
look for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from app.batching.partition import Partitioner


class Sender:
    """Records for one send, grouped by (topic, partition)."""

    def __init__(self, producer: Any, partitioner: Partitioner) -> None:
        self.producer = producer  # aiokafka's AIOKafkaProducer
        self.partitioner = partitioner
        self._records: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, Any]]] = {}
        self.count = 0

    def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: Mapping[str, bytes] | None = None,
    ) -> None:
        if partition is None:
            if key is None:
                raise ValueError(f"a record for {topic} needs a key or a partition")
            partition = self.partitioner(key)
        hdrs = list(headers.items()) if headers else []
        self._records.setdefault((topic, partition), []).append((key, value, hdrs))
        self.count += 1

    async def send(self) -> dict[tuple[str, int], int]:
        """Queue every batch; wait until the broker has all of them. Returns the last
        offset written per (topic, partition)."""
        pending: list[tuple[tuple[str, int], int, asyncio.Future[Any]]] = []
        for (topic, partition), records in self._records.items():
            builder = self.producer.create_batch()
            count = 0
            for key, value, headers in records:
                if builder.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    pending.append(await self._queue(builder, topic, partition, count))
                    builder, count = self.producer.create_batch(), 0
                    if (
                        builder.append(key=key, value=value, timestamp=None, headers=headers)
                        is None
                    ):
                        raise ValueError(f"a record for {topic} is larger than a producer batch")
                count += 1
            if count:
                pending.append(await self._queue(builder, topic, partition, count))
        self._records.clear()
        self.count = 0
        last: dict[tuple[str, int], int] = {}
        for tp, count, future in pending:
            meta = await future
            end = meta.offset + count - 1
            if end > last.get(tp, -1):
                last[tp] = end
        return last

    async def _queue(self, builder: Any, topic: str, partition: int, count: int):
        builder.close()
        future = await self.producer.send_batch(builder, topic, partition=partition)
        return (topic, partition), count, future


class Outbox:
    """Sends stage ``Output``\\ s (logical topics) on the app's producer, waiting for the
    broker: for work outside a transaction (the sink's reports)."""

    def __init__(
        self, producer: Callable[[], Any], partitioner: Partitioner, topics: Mapping[str, str]
    ):
        self._producer = producer
        self.partitioner = partitioner
        self.topics = topics

    async def send(self, outputs: list[Any]) -> None:
        if not outputs:
            return
        sender = Sender(self._producer(), self.partitioner)
        for o in outputs:
            sender.add(self.topics[o.topic], o.key, o.value, o.partition, o.headers)
        await sender.send()
