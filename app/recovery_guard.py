"""Guard against a broker that under-reports a partition's end offset.

The embedded broker (Tansu) reports a partition's end offset ("latest") too low when the
last produce was a multi-record batch. Faust recovers a table only up to that highwater,
so the changelog's tail is never restored (20,000 counted events came back as 19,998),
and a worker restarting with local state crashes with ConsistencyError ("persisted offset
is higher than the highwater").

The guard: after asking for the end offsets, read on from each reported end with a
separate consumer until a fetch comes back empty, and report the true end. On Apache
Kafka the first fetch is empty, so the guard costs one short fetch per recovery.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger("emd.recovery")

PROBE_TIMEOUT_MS = 400


async def true_end_offsets(
    bootstrap_servers: str | list[str],
    reported: Mapping[Any, int | None],
    probe_timeout_ms: int = PROBE_TIMEOUT_MS,
) -> dict[Any, int | None]:
    """``reported`` corrected by reading past each end until a fetch is empty."""
    ends: dict[Any, int | None] = dict(reported)
    tps = [tp for tp, end in reported.items() if end is not None]
    if not tps:
        return ends
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        group_id=None,
        client_id="emd-end-offset-probe",
    )
    await consumer.start()
    try:
        keyed = {TopicPartition(tp.topic, tp.partition): tp for tp in tps}
        consumer.assign(list(keyed))
        for ktp, tp in keyed.items():
            consumer.seek(ktp, int(reported[tp] or 0))
        while True:
            batch = await consumer.getmany(timeout_ms=probe_timeout_ms)
            records = {k: v for k, v in batch.items() if v}
            if not records:
                break
            for ktp, recs in records.items():
                tp = keyed[ktp]
                end = recs[-1].offset + 1
                if end > (ends[tp] or 0):
                    ends[tp] = end
    finally:
        await consumer.stop()
    for tp in tps:
        if ends[tp] != reported[tp]:
            log.warning(
                "broker under-reported the end of %s[%d]: %s, true end %s",
                tp.topic,
                tp.partition,
                reported[tp],
                ends[tp],
            )
    return ends


def install() -> None:
    """Patch Faust's aiokafka consumer so every highwater lookup is guarded."""
    from faust.transport.drivers import aiokafka as driver

    cls: Any = driver.AIOKafkaConsumerThread
    if getattr(cls, "_emd_guarded", False):
        return
    original = cls._highwaters

    async def _highwaters(self: Any, partitions: Iterable[Any]) -> Mapping[Any, int]:
        partitions = list(partitions)
        reported = await original(self, partitions)
        if self.consumer.in_transaction:
            return reported
        transport = self.transport
        servers = driver.server_list(transport.url, transport.default_port)
        return await true_end_offsets(servers, reported)  # type: ignore[return-value]

    cls._highwaters = _highwaters
    cls._emd_guarded = True
