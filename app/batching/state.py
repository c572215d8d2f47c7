"""Faust tables as one transaction sees them: read once, written once.

Each ``app.Table`` keeps its changelog topic, its RocksDB store (one database per
partition), recovery, standbys and routing; only the write path changes. A transaction
reads a partition's keys with one multi-get, keeps what it reads and writes in a dict,
and at its end (``TableStates.changes``) hands over one change per key written. The
caller (``app.batching.transaction``) sends them to the changelog as producer batches,
raw bytes exactly as Faust's ``Table.on_key_set`` would (a delete is a tombstone), and
once the broker has them writes them to RocksDB in one ``WriteBatch`` per partition
together with the last changelog offset (``Store.offset_key``, what
``set_persisted_offset`` writes), so recovery resumes exactly after them.

Faust's own ``Table.__setitem__`` would produce a changelog record per write, each with
a RocksDB put of the record and another of the offset, and only inside stream iteration.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import rocksdict

_ABSENT = object()


class PartitionState:
    """One table partition during one transaction (``app.stages.state.Table``)."""

    __slots__ = ("_cache", "_dirty", "db", "offset_key", "partition")

    def __init__(self, db: Any, partition: int, offset_key: bytes) -> None:
        self.db = db
        self.partition = partition
        self.offset_key = offset_key
        self._cache: dict[bytes, bytes | None] = {}
        self._dirty: set[bytes] = set()

    def get(self, key: bytes) -> bytes | None:
        value = self._cache.get(key, _ABSENT)
        if value is _ABSENT:
            value = self.db.get(key)
            self._cache[key] = value
        return value  # type: ignore[return-value]

    def prefetch(self, keys: Iterable[bytes]) -> None:
        missing = [k for k in keys if k not in self._cache]
        if missing:
            for key, value in zip(missing, self.db.get(missing), strict=True):
                self._cache[key] = value

    def set(self, key: bytes, value: bytes) -> None:
        self._cache[key] = value
        self._dirty.add(key)

    def delete(self, key: bytes) -> None:
        self._cache[key] = None
        self._dirty.add(key)

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Committed entries of the partition whose key begins with ``prefix``, in key
        order (the transaction's own writes excluded)."""
        offset_key = self.offset_key
        for key, value in self.db.items(from_key=prefix) if prefix else self.db.items():
            if not key.startswith(prefix):
                return
            if key != offset_key:
                yield key, value

    def changes(self) -> list[tuple[bytes, bytes | None]]:
        return [(k, self._cache[k]) for k in self._dirty]


class TableStates:
    """Every table partition one transaction touched."""

    def __init__(self, tables: dict[str, Any]) -> None:
        self.tables = tables  # name -> faust Table
        self._open: dict[tuple[str, int], PartitionState] = {}

    def __call__(self, name: str, partition: int) -> PartitionState:
        view = self._open.get((name, partition))
        if view is None:
            table = self.tables[name]
            store = table.data
            view = PartitionState(store._db_for_partition(partition), partition, store.offset_key)
            self._open[(name, partition)] = view
        return view

    def changes(self) -> Iterator[tuple[Any, int, list[tuple[bytes, bytes | None]]]]:
        """(table, partition, [(key, value or None)]) for each partition written."""
        for (name, partition), view in self._open.items():
            changed = view.changes()
            if changed:
                yield self.tables[name], partition, changed


def write_partition(
    table: Any, partition: int, changed: list[tuple[bytes, bytes | None]], offset: int
) -> None:
    """Apply a partition's changes locally, with the changelog offset they ended at."""
    store = table.data
    batch = rocksdict.WriteBatch(raw_mode=True)
    for key, value in changed:
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
    batch.put(store.offset_key, str(offset).encode())
    store._db_for_partition(partition).write(batch)
