"""What the web views may read of a worker: its tables and its recent activity.

Built by the composition root (``app.faust_app``) and handed to the views, so a view
never imports the agents, the stages or a module-level worker: it asks this object.
Reads only; every write goes through the batch path.

Table reads happen outside stream iteration, where Faust's RocksDB store looks a key up
in every partition database this worker holds (``Store._get_bucket_for_key``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from app.batching.partition import Partitioner
from app.recent import RecentDeliveries, RecentEvents
from tables import Tables


class StateReader:
    def __init__(
        self,
        app: Any,
        tables: Tables,
        recent_events: RecentEvents,
        recent_deliveries: RecentDeliveries,
        person_topic: str,
        partitions: int,
        delivery_status: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        self.app = app
        self.tables = tables
        self.recent_events = recent_events
        self.recent_deliveries = recent_deliveries
        self.person_topic = person_topic
        self.partition_of = Partitioner(partitions)
        self._delivery_status = delivery_status

    def delivery_status(self, account: str) -> dict[str, Any] | None:
        """This worker's delivery lane of ``account``: backlog, parking, calls retrying."""
        return self._delivery_status(account) if self._delivery_status else None

    def link(self, key: bytes) -> bytes | None:
        return self.tables.links.get(key)

    def pk(self, key: bytes) -> bytes | None:
        return self.tables.pk_index.get(key)

    def person(self, key: bytes) -> bytes | None:
        return self.tables.persons.get(key)

    def deliveries(self, key: bytes) -> bytes | None:
        return self.tables.deliveries.get(key)

    def owned_person_partitions(self) -> set[int]:
        """The person-events partitions this worker owns (their tables are here)."""
        return {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.person_topic
        }

    def items(self, table: Any, partitions: set[int]) -> Iterator[tuple[bytes, bytes]]:
        """Entries of ``table`` in the given partitions (its local databases)."""
        store = table.data
        for partition in sorted(partitions):
            try:
                db = store._db_for_partition(partition)
            except Exception:
                continue
            for key, value in db.items():
                if key != store.offset_key:
                    yield key, value
