"""A partition's records through the stages, with what stays in the partition kept here.

The identity stage sends each event to its person; when the person lives in the very
partition being processed (every event keyed by its person: ``app.identity.partition_id``)
the person stage takes it in the same transaction instead of a round trip through the
person-events topic (and as the decoded body it was made from, when it was made with
``Output.of``: no JSON round trip). The same holds for whatever the person stage sends to its own
partition. What goes to other person partitions leaves in bundles, one per partition
(``app.stages.bundle``). The worker's pipeline and the tests' live simulation both go
through here, so what the tests prove about interleavings is what the worker does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from app.stages.bundle import Bundles, bundlable
from app.stages.link import LinkStage
from app.stages.person import PersonStage
from app.stages.state import PERSON, LocalRecord, Output, RecordLike, Tables

#: rounds of records a person stage sends to its own partition (a forward chain is bounded
#: by MAX_FORWARDS already; this bounds the loop whatever the records say)
MAX_LOCAL_ROUNDS = 16


class PartitionFlow:
    def __init__(
        self, link: LinkStage, person: PersonStage, partition_of: Callable[[bytes], int]
    ) -> None:
        self.link = link
        self.person = person
        self.partition_of = partition_of

    def input(
        self, partition: int, records: Sequence[RecordLike], tables: Tables, now: float
    ) -> list[Output]:
        return self._local(
            partition, self.link.handle(partition, records, tables, now), tables, now
        )

    def person_events(
        self, partition: int, records: Sequence[RecordLike], tables: Tables, now: float
    ) -> list[Output]:
        outputs = self.person.handle_fetched(partition, records, tables, now)
        return self._local(partition, outputs, tables, now)

    def clock(self, partition: int, tables: Tables, now: float) -> list[Output]:
        return self._local(partition, self.person.fire_due(partition, tables, now), tables, now)

    def _local(
        self, partition: int, outputs: list[Output], tables: Tables, now: float
    ) -> list[Output]:
        sent: list[Output] = []
        bundles = Bundles()  # for the other person partitions, in order
        for _ in range(MAX_LOCAL_ROUNDS):
            here: list[LocalRecord] = []
            for o in outputs:
                to = self.partition_of(o.key) if o.topic == PERSON and o.partition is None else -1
                if to == partition:
                    here.append(LocalRecord(o, partition))
                    continue
                o.encode()  # leaves: the body is garbage from here on
                if to >= 0 and bundlable(o):
                    bundles.add(to, o)
                else:
                    sent.append(o)
            if not here:
                return sent + bundles.outputs()
            outputs = self.person.handle(partition, here, tables, now)
        for o in outputs:
            if bundlable(o):
                bundles.add(self.partition_of(o.key), o)
            else:
                sent.append(o)
        return sent + bundles.outputs()
