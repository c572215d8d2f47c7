"""The worker's hot topics on the batch path: identity, persons, and the Emarsys sink.

Faust hands each fetch to ``Pipeline.handle`` (``app.batching.consumer``): input records
go through the identity stage, person-events through the person stage, each partition's
records as one list, all of one fetch in one transaction (``app.batching.transaction``),
whose spans are acked once the transaction is committed. Effects (and the accounts'
parking topics) go to the sink's lanes (``agents.sink``), which ack theirs when Emarsys
has answered or the effects are parked. After every fetch the
clock runs (``idle``): due deadlines and closing lateness windows of the person
partitions this worker owns and has recovered, in a transaction of their own.

Faust still needs an agent on each topic so that its consumer subscribes to it and the
partitions are assigned: ``subscribe`` registers one that never receives anything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agents.sink import Sink
from app.batching.consumer import BatchConsumer, Held
from app.batching.partition import Partitioner
from app.batching.transaction import CRASH_ENV, Transaction
from app.stages.bundle import HEAD as BUNDLE_HEAD
from app.stages.bundle import kinds as bundle_kinds
from app.stages.flow import PartitionFlow
from app.stages.state import DEAD, EFFECTS, INPUT, PERSON, Output
from tables import Tables

log = logging.getLogger("emd.pipeline")

BEGAN = "processing began: the first fetch after an assignment, %d records"
MIN_POLL = 0.05
MAX_POLL = 1.0
#: records the stages handle between two turns of the event loop (~10-40 ms of work)
SLICE = 200


@dataclass(frozen=True)
class TopicNames:
    input: str
    person: str
    effects: str
    dead: str

    def logical(self) -> dict[str, str]:
        return {INPUT: self.input, PERSON: self.person, EFFECTS: self.effects, DEAD: self.dead}


def subscribe(app: Any, topics: list[Any]) -> None:
    """One agent per batch topic, so Faust subscribes and assigns it."""
    for topic in topics:

        async def placeholder(stream: Any) -> None:
            async for _ in stream:  # never reached: the batch path takes these records
                log.error("a batch topic's record took Faust's per-message path")

        app.agent(topic, name=f"batch-{topic.get_topic_name()}")(placeholder)


class Pipeline:
    def __init__(
        self,
        app: Any,
        topics: TopicNames,
        tables: Tables,
        flow: PartitionFlow,
        sink: Sink,
        partitioner: Partitioner,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.topics = topics
        self.tables = tables.by_name()
        self.flow = flow
        self.person = flow.person
        self.sink = sink
        self.partitioner = partitioner
        self.clock = clock
        self._claimed = {topics.input, topics.person}
        self._labels = bool(os.environ.get(CRASH_ENV))
        self._began = False  # a fetch handled since the last assignment

    # ------------------------------------------------------------------ BatchHandler

    def claims(self, topic: str) -> bool:
        return topic in self._claimed or self.sink.claims(topic)

    def _transaction(self) -> Transaction:
        producer = self.app.producer._ensure_producer()
        return Transaction(self.tables, producer, self.partitioner, self.topics.logical())

    async def handle(self, batches: Mapping[Any, list[Any]], consumer: BatchConsumer) -> None:
        if not self._began:
            # When work began after an assignment (operators; ``make bench`` times from it).
            self._began = True
            log.info(BEGAN, sum(len(r) for r in batches.values()))
        now = self.clock()
        tx = self._transaction()
        staged: list[tuple[Any, list[Any], Held]] = []
        for tp, records in batches.items():
            held = consumer.hold(tp, records[0].offset, records[-1].offset)
            if self.sink.claims(tp.topic):  # emarsys-effects and the parking topics
                # first, so the lanes have them while the stages work
                self.sink.accept(tp, records, held, consumer)
            else:
                staged.append((tp, records, held))
        spans: list[Held] = []
        for tp, records, held in staged:
            stage = self.flow.input if tp.topic == self.topics.input else self.flow.person_events
            for start in range(0, len(records), SLICE):
                outputs = stage(tp.partition, records[start : start + SLICE], tx.states, now)
                tx.send(outputs, _labels(outputs) if self._labels else ())
                # The stages are CPU work with no await: a fetch of 5,000 records is up
                # to a second of it. A turn of the event loop in between lets the sink's
                # lanes (an Emarsys call takes a few turns), the parking probe's round
                # trips, Faust's commit timer and the web views go on meanwhile.
                await asyncio.sleep(0)
            spans.append(held)
        if spans:
            await tx.commit()
            for held in spans:
                consumer.ack_span(held)

    async def idle(self, consumer: BatchConsumer) -> None:
        now = self.clock()
        due = [p for p in self._person_partitions(consumer) if self._is_due(p, now)]
        if not due:
            return
        busy = consumer.busy()
        try:
            tx = self._transaction()
            for partition in due:
                outputs = self.flow.clock(partition, tx.states, now)
                tx.send(outputs, _labels(outputs) if self._labels else ())
            await tx.commit()
        finally:
            consumer.idle_done(busy)

    def poll_timeout(self) -> float:
        now = self.clock()
        wakes = [w for w in self.person.wake.heaps.values() if w]
        if not wakes:
            return MAX_POLL
        soonest = min(h[0][0] for h in wakes)
        return max(MIN_POLL, min(MAX_POLL, soonest - now))

    def prioritised(self, topic: str) -> bool:
        """Everything but the input: what the stages and the sink wrote (hand-offs,
        effects, outcomes) is read before more of an input backlog."""
        return topic != self.topics.input

    def on_flow_stopped(self) -> None:
        self.sink.on_flow_stopped()

    def partitions_assigned(self) -> None:
        """Every person partition's wake index is rebuilt from its table before use."""
        self.person.partitions_changed()
        self._began = False

    # ------------------------------------------------------------------ helpers

    def _person_partitions(self, consumer: BatchConsumer) -> list[int]:
        """Person partitions this worker owns and may process (recovered, not paused)."""
        active = consumer._get_active_partitions()
        return sorted(tp.partition for tp in active if tp.topic == self.topics.person)

    def _is_due(self, partition: int, now: float) -> bool:
        if not self.person.wake.built(partition):
            return True
        at = self.person.next_wake(partition)
        return at is not None and at <= now


def _labels(outputs: list[Output]) -> set[str]:
    """What kinds of records a transaction sends (``EMD_CRASH_AT``'s labels)."""
    labels: set[str] = set()
    for o in outputs:
        head = o.value[:24]
        if head.startswith(BUNDLE_HEAD):
            labels |= bundle_kinds(o.value)
        elif head.startswith(b'{"k":"'):
            labels.add(head[6:].split(b'"', 1)[0].decode())
        elif head.startswith(b'{"op":"'):
            labels.add(head[7:].split(b'"', 1)[0].decode())
        else:
            labels.add(o.topic)
    return labels
