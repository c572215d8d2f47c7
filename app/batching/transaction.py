"""The order of a transaction's writes, which makes a crash at any point lose nothing.

A transaction is what one fetch (or one run of the clock) did: records to send
(``Output``) and table partitions changed (``TableStates``). Its commit:

1. send the records and wait until the broker has every one of them;
2. send the changed keys to their changelogs and wait until the broker has them;
3. write them to RocksDB (one ``WriteBatch`` per partition, with the changelog offset);
4. ack the input spans in Faust's bookkeeping (Faust commits them later, after its own
   producer flush).

A crash (``kill -9``) before 2 completes leaves the state unchanged: the records are
read again and everything is sent again (Emarsys effects are idempotent, triggers carry
trigger_ids). A crash after 2 leaves state that says "done", and then everything it
stands for had already been acknowledged by the broker in 1. So no effect, hand-off
(merge state, primary-key index entry, delete) or forwarded event is ever lost, with no
bookkeeping of what was sent. (Writing state before sending, as Faust's tables do, can
lose them: the state survives in RocksDB while the records die in the producer buffer.)

``EMD_CRASH_AT=<step>[:<label>]`` makes the worker SIGKILL itself right after ``step``
(``sent``, ``changelog``, ``written``) of the first transaction carrying ``label`` (a
kind of record it sent: ``state``, ``pk``, ``delete``, ...): how the tests kill a worker
at an exact point of a hand-off. Unset, it does nothing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from typing import Any

from app.batching.partition import Partitioner
from app.batching.sender import Sender
from app.batching.state import TableStates, write_partition
from app.stages.state import Output

CRASH_ENV = "EMD_CRASH_AT"


class Transaction:
    def __init__(
        self,
        tables: dict[str, Any],
        producer: Any,
        partitioner: Partitioner,
        topics: dict[str, str],
    ) -> None:
        self.states = TableStates(tables)
        self.producer = producer
        self.partitioner = partitioner
        self.topics = topics  # logical topic (app.stages.state) -> topic name
        self.outputs: list[Output] = []
        self.labels: set[str] = set()

    def send(self, outputs: Iterable[Output], labels: Iterable[str] = ()) -> None:
        self.outputs.extend(outputs)
        self.labels.update(labels)

    async def commit(self) -> int:
        """Steps 1-3; the caller acks its spans after. Returns the records sent."""
        sent = len(self.outputs)
        if self.outputs:
            sender = Sender(self.producer, self.partitioner)
            for o in self.outputs:
                sender.add(self.topics[o.topic], o.key, o.value, o.partition, o.headers)
            self.outputs = []
            await sender.send()
        _maybe_crash("sent", self.labels)
        changes = list(self.states.changes())
        if changes:
            changelog = Sender(self.producer, self.partitioner)
            for table, partition, changed in changes:
                topic = table.changelog_topic.get_topic_name()
                for key, value in changed:
                    changelog.add(topic, key, value, partition=partition)
            last = await changelog.send()
            _maybe_crash("changelog", self.labels)
            for table, partition, changed in changes:
                offset = last[(table.changelog_topic.get_topic_name(), partition)]
                write_partition(table, partition, changed, offset)
        _maybe_crash("written", self.labels)
        return sent


def _maybe_crash(step: str, labels: set[str]) -> None:
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    want_step, _, want_label = spec.partition(":")
    if want_step == step and (not want_label or want_label in labels):
        os.kill(os.getpid(), signal.SIGKILL)
