"""Topic creation: every topic the app uses, created up front with one partition count.

Tansu auto-creates a topic with 4 partitions on a producer's first send, and Faust then
fails with PartitionsMismatch; creating each topic explicitly before any client touches
it avoids that. An existing topic with another partition count is a clear error.
"""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger("emd.topics")


class TopicMismatch(RuntimeError):
    pass


def bootstrap_servers(broker_url: str) -> str:
    """``kafka://h1:9092;kafka://h2:9092`` -> ``h1:9092,h2:9092``."""
    hosts = []
    for part in broker_url.replace(",", ";").split(";"):
        part = part.strip()
        for prefix in ("kafka://", "aiokafka://"):
            part = part.removeprefix(prefix)
        if part:
            hosts.append(part)
    return ",".join(hosts)


async def ensure_topics(
    broker_url: str,
    topics: dict[str, int],
    replication: int = 1,
    compacted: frozenset[str] | set[str] = frozenset(),
    configs: dict[str, dict[str, str]] | None = None,
) -> None:
    """Create the missing ones; ``configs`` are topic configs by name (else compacted
    topics get ``cleanup.policy=compact``)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers(broker_url), client_id="emd-admin"
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=name,
                num_partitions=partitions,
                replication_factor=replication,
                topic_configs=(configs or {}).get(name)
                or ({"cleanup.policy": "compact"} if name in compacted else {}),
            )
            for name, partitions in topics.items()
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:  # a peer worker won the race
                pass
            log.info("created topics: %s", ", ".join(t.name for t in missing))
        present = [n for n in topics if n in existing]
        if present:
            for desc in await admin.describe_topics(present):
                name = desc["topic"]
                count = len(desc.get("partitions") or [])
                if count and count != topics[name]:
                    raise TopicMismatch(
                        f"topic {name!r} exists with {count} partitions, but the config says "
                        f"{topics[name]}: use a new app_id or input_topic, or recreate the topic"
                    )
    finally:
        await admin.close()
