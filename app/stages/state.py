"""The state a stage sees during one batch, and the records it asks to send.

``Table`` is one table partition as seen by one batch: the agent layer backs it with a
per-batch cache over the partition's RocksDB (``app.batching.state``), the tests with a
dict. Values are bytes, as on the changelog.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from app.envelope import dumps

#: logical topics a stage sends to; the agent layer maps them to the app's topic names
INPUT = "input"
PERSON = "person"
EFFECTS = "effects"
DEAD = "dead"


class Table(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def set(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def prefetch(self, keys: Iterable[bytes]) -> None:
        """Read these keys now, in one go (a hint: ``get`` works without it)."""

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Every entry of the partition whose key begins with ``prefix`` (scans:
        rebuilding indexes after an assignment)."""


class Tables(Protocol):
    def __call__(self, name: str, partition: int) -> Table: ...


class Output:
    """A record to send. ``Output.of`` keeps the body decoded and encodes it only when the
    record is sent: a record the pipeline hands to a stage of the same partition
    (``app.stages.flow``) is read as that body, with no JSON round trip. A body given to
    ``of`` must not change afterwards."""

    __slots__ = ("_value", "body", "headers", "key", "partition", "topic")

    def __init__(
        self,
        topic: str,
        key: bytes,
        value: bytes | None,
        partition: int | None = None,
        headers: Mapping[str, bytes] | None = None,
        body: Any = None,
    ) -> None:
        self.topic = topic
        self.key = key
        self._value = value
        self.partition = partition
        self.headers = headers
        self.body = body

    @classmethod
    def of(cls, topic: str, key: bytes, body: dict[str, Any]) -> Output:
        return cls(topic, key, None, body=body)

    @property
    def value(self) -> bytes:
        if self._value is None:
            self._value = dumps(self.body)
        return self._value

    def encode(self) -> None:
        """Encode now and let go of the body (the record will only be sent)."""
        self._value = self.value
        self.body = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Output):
            return NotImplemented
        return (self.topic, self.key, self.value, self.partition, self.headers) == (
            other.topic,
            other.key,
            other.value,
            other.partition,
            other.headers,
        )

    def __repr__(self) -> str:
        return f"Output({self.topic!r}, {self.key!r}, {self.value!r}, {self.partition!r})"


class RecordLike(Protocol):
    """What a stage reads of an input record: aiokafka's ConsumerRecord has these."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def headers(self) -> Any: ...


@dataclass(slots=True)
class Record:
    """An input record built by hand (tests, the live simulation)."""

    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    headers: tuple[tuple[str, bytes], ...] | list[tuple[str, bytes]] = ()


class LocalRecord:
    """An ``Output`` read by a stage of the partition it was made in: its body as is (or,
    with no ``Output``, a body decoded with others: an item of a bundle)."""

    __slots__ = ("_output", "body", "key", "offset", "partition")

    headers: tuple[tuple[str, bytes], ...] = ()

    def __init__(self, output: Output | None, partition: int, key: bytes = b"", body: Any = None):
        self._output = output
        if output is not None:
            key, body = output.key, output.body
        self.key = key
        self.body = body
        self.partition = partition
        self.offset = -1

    @property
    def value(self) -> bytes:
        if self._output is None:
            return dumps(self.body)
        return self._output.value


def header(record: RecordLike, name: str) -> str | None:
    for k, v in record.headers or ():
        if k == name and v is not None:
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return None


@dataclass
class DictTable:
    """A table partition in a dict: tests, the live simulation, and replay-like tools."""

    data: dict[bytes, bytes] = field(default_factory=dict)

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def set(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)

    def prefetch(self, keys: Iterable[bytes]) -> None:
        return None

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return iter([(k, v) for k, v in self.data.items() if k.startswith(prefix)])


class DictTables:
    """``Tables`` over dicts, one per (table, partition)."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, int], DictTable] = {}

    def __call__(self, name: str, partition: int) -> DictTable:
        table = self.tables.get((name, partition))
        if table is None:
            table = self.tables[(name, partition)] = DictTable()
        return table


class JsonView:
    """A table partition decoded once per batch: reads decode at most once, writes are
    kept decoded and encoded once at ``flush`` (the last value of a key wins)."""

    __slots__ = ("_cache", "_dirty", "table")

    def __init__(self, table: Table) -> None:
        self.table = table
        self._cache: dict[bytes, object] = {}
        self._dirty: set[bytes] = set()

    def get(self, key: bytes) -> object:
        try:
            return self._cache[key]
        except KeyError:
            raw = self.table.get(key)
            value = orjson.loads(raw) if raw is not None else None
            self._cache[key] = value
            return value

    def put(self, key: bytes, value: object) -> None:
        self._cache[key] = value
        self._dirty.add(key)

    def delete(self, key: bytes) -> None:
        self.put(key, None)

    def flush(self) -> None:
        for key in self._dirty:
            value = self._cache[key]
            if value is None:
                self.table.delete(key)
            else:
                self.table.set(key, dumps(value))
        self._dirty.clear()


def log_failure(log: logging.Logger, what: str, exc: BaseException) -> None:
    """A stage's own failure, for operators: the exception's type and where it was raised
    (file and line of every frame), never its message or locals, which may hold a
    person's data."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in reversed(frames))
    log.error("%s: %s at %s", what, type(exc).__name__, where or "?")
