"""The upgrade that moves anonymous visitors' state (``app.stages.relocation``), live.

The versions before this one kept an anonymous visitor's person where its whole key
hashed; now it lives with its input key. Here the state the old version left is made by
the stages with the old partitioner (``tests.live_sim``, the old version's decisions)
and written to the changelogs where it would have been; a worker restores it from them,
moves what is misplaced, and the visitors' next steps, posted over HTTP, fire what
replay says, with the value seen while anonymous on the contact.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from app.batching.partition import Partitioner
from app.config import load_config
from app.stages.relocation import RELOCATION
from tests.integration.stack import Stack, wait_for
from tests.integration.test_handoff_live import accounts, check_every_visitor, journey
from tests.live_sim import LiveSim

PARTITIONS = 4
TABLES = ("links", "dedupe", "persons", "deliveries", "pkindex", "funnel")


def write_changelogs(stack: Stack, entries: list[tuple[str, int, bytes, bytes | None]]) -> None:
    """(table, partition, key, value or None for a delete), as Faust's tables write."""
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        p = AIOKafkaProducer(bootstrap_servers=stack.broker_url.removeprefix("kafka://"))
        await p.start()
        try:
            for table, partition, key, value in entries:
                await p.send(stack.topic(f"{table}-changelog"), value, key=key, partition=partition)
            await p.flush()
        finally:
            await p.stop()

    asyncio.run(run())


def test_an_upgrade_moves_visitors_state_and_their_rules_fire(broker, simulator, tmp_path):
    s = Stack(broker.url, tmp_path, accounts(simulator), partitions=PARTITIONS)
    try:
        first = s.start_worker()  # creates the topics
        s.wait_assigned()
        s.stop_worker(first)

        tag, n, t0 = f"g{uuid.uuid4().hex[:6]}", 40, time.time() - 240
        journeys = [journey(tag, i, t0 + i * 0.01) for i in range(n)]
        old = LiveSim(load_config(str(s.config_path)), partitions=PARTITIONS, started=False)
        old.upgrade(Partitioner(PARTITIONS, as_before=True), None)  # the version before
        old.now = time.time()
        for j in journeys:
            old.ingest(j[0], "acme")  # Viewed Pricing, while anonymous
        old.drain()
        new = Partitioner(PARTITIONS)
        entries: list[tuple[str, int, bytes, bytes | None]] = [
            (table, p, key, value)
            for (table, p), t in old.tables.tables.items()
            for key, value in t.data.items()
        ]
        moving = [e for e in entries if e[0] == "persons" and new(e[2]) != e[1]]
        assert len(moving) > n // 2  # most visitors' state is where the new rule won't look
        # The old version never wrote what the first worker (this version) just did.
        entries += [("persons", p, RELOCATION, None) for p in range(PARTITIONS)]
        write_changelogs(s, entries)

        s.start_worker(datadir=str(tmp_path / "restored"))  # restores from the changelogs
        s.wait_assigned()
        later = [m for j in journeys for m in j[1:]]
        r = s.post("/v1/batch", {"batch": later})
        assert r.status == 200, r.body
        check_every_visitor(simulator, s, tag, n, [m for j in journeys for m in j])
        moved = wait_for(
            lambda: s.metric("emd_relocated_total", table="persons"),
            what="the relocation counted",
        )
        assert moved >= len(moving)
    finally:
        s.stop()
