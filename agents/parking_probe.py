"""Whether a parking partition still holds effects, asked of the broker once it is assigned.

After an assignment a lane does not know whether a previous owner left effects in an
account's parking partition. Delivering new effects directly before those would break
the order per contact, so a partition waits for the answer here, its new effects held in
memory. A parking partition is **drained** when nothing is stored from the group's
committed offset on: its reported end offset is not past that offset, **and** a fetch at
that offset, answered by the broker, came back empty. The end offset alone is not trusted
(the embedded broker under-reports it after a batch produce); the fetch alone is not
either (a fresh consumer's first fetches can come back empty before the broker has
answered): the same guard as ``app.topic_reader``.

One consumer of its own (no group, no commits) answers every partition asked about in the
same turn of the event loop (a fetch's first effects for all its partitions), in one
round trip of a few hundred milliseconds. Anything unclear (an error, no answer within
``deadline``) is "not drained": the lane then parks as it did before this probe existed,
and learns where the backlog ends from the first effect it parks itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

from app.topic_reader import consumer_for

log = logging.getLogger("emd.sink")

FETCH_MS = 200  # how long one fetch of the probe may wait for records
DEADLINE = 10.0  # seconds; no answer by then counts as "not drained"

Key = tuple[str, int]


class ParkingProbe:
    def __init__(
        self,
        broker_url: Callable[[], str],
        committed: Callable[[str, int], int | None],
        *,
        fetch_ms: int = FETCH_MS,
        deadline: float = DEADLINE,
    ) -> None:
        self.broker_url = broker_url
        self.committed = committed  # the group's next offset to read, None: none committed
        self.fetch_ms = fetch_ms
        self.deadline = deadline
        self._pending: dict[Key, asyncio.Future[bool]] = {}
        self._task: asyncio.Task[None] | None = None

    async def drained(self, topic: str, partition: int) -> bool:
        """True when the parking partition holds nothing from the committed offset on."""
        key = (topic, partition)
        fut = self._pending.get(key)
        if fut is None:
            fut = self._pending[key] = asyncio.get_running_loop().create_future()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return await asyncio.shield(fut)

    async def _run(self) -> None:
        await asyncio.sleep(0)  # the other partitions of the same fetch ask in this turn
        while self._pending:
            batch, self._pending = self._pending, {}
            try:
                answers = await self._read(list(batch))
            except asyncio.CancelledError:
                for fut in batch.values():
                    fut.cancel()
                raise
            except Exception:
                log.warning(
                    "probing the parking partitions failed; they start parked", exc_info=True
                )
                answers = {}
            for key, fut in batch.items():
                if not fut.done():
                    fut.set_result(answers.get(key, False))

    async def _read(self, keys: list[Key]) -> dict[Key, bool]:
        consumer = consumer_for(
            self.broker_url(),
            "emd-parking-probe",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.fetch_ms // 2,  # the embedded broker answers at its end
        )
        await consumer.start()
        try:
            return await self._probe(consumer, keys)
        finally:
            await consumer.stop()

    async def _probe(self, consumer: Any, keys: list[Key]) -> dict[Key, bool]:
        tps = {TopicPartition(t, p): (t, p) for t, p in keys}
        consumer.assign(list(tps))
        never: list[TopicPartition] = []  # nothing committed: from the log's start
        for tp, (topic, partition) in tps.items():
            start = self.committed(topic, partition)
            if start is None:
                never.append(tp)
            else:
                consumer.seek(tp, start)
        if never:
            await consumer.seek_to_beginning(*never)  # one request for all of them
        ends = await consumer.end_offsets(list(tps))
        answers: dict[Key, bool] = {}
        undecided = []
        for tp, key in tps.items():
            if ends[tp] > await consumer.position(tp):
                answers[key] = False  # stored past the committed offset: a backlog
            else:
                undecided.append(tp)
        deadline = time.monotonic() + self.deadline
        while undecided and time.monotonic() < deadline:
            # answered before this fetch (a fetch response sets the poll timestamp): any
            # records of that answer are returned by it
            answered = [tp for tp in undecided if consumer.last_poll_timestamp(tp) is not None]
            batch = await consumer.getmany(*undecided, timeout_ms=self.fetch_ms)
            for tp, records in batch.items():
                if records:
                    answers[tps[tp]] = False
            if not any(batch.values()):
                for tp in answered:
                    answers[tps[tp]] = True
            undecided = [tp for tp in undecided if tps[tp] not in answers]
        return answers
