"""A topic's records put in event-time order within a memory budget (``replay --topic``).

Replay feeds history to the rule clock in event-time order: every record by its event
time, ties broken by partition (in the order the partitions were given) and then by
offset. Held in memory, months of a topic do not fit, so this is an external sort:
records are kept in memory until their bytes pass ``budget``, then sorted and written to
a run file in a temporary directory; the runs and what is still in memory are merged
when read (``heapq.merge``, so reading holds one record per run). More than
``MAX_RUNS`` runs are first merged into one, so the open files stay few however long the
topic. The key ``(event time, partition index, arrival number)`` is unique, so the order
does not depend on where the runs were cut: any budget gives the same sequence (a test
compares a budget of a few records with the whole in memory).

The directory is made under ``tempfile``'s (``TMPDIR``) and removed by ``close()``; the
records on disk are the events as they were in the topic (personal data: nothing else
reads them, and they live only as long as the replay).
"""

from __future__ import annotations

import heapq
import os
import shutil
import struct
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

__all__ = ["DEFAULT_BUDGET", "EventOrder"]

#: bytes of records held in memory before a run is written (``replay --buffer-mb``)
DEFAULT_BUDGET = 256 * 1024 * 1024
#: runs on disk before they are merged into one
MAX_RUNS = 64
#: what a kept record costs beside its bytes (the tuple, the float, the ints, the list slot)
_OVERHEAD = 120
# event time, partition index, arrival number, value length, account length + 1 (0: none)
_HEAD = struct.Struct("<dIQII")

_Item = tuple[float, int, int, bytes, str | None]


class EventOrder:
    """Add records in offset order per partition; read them back in event-time order."""

    def __init__(
        self,
        partitions: Iterable[int],
        *,
        budget: int = DEFAULT_BUDGET,
        directory: str | None = None,
    ) -> None:
        self._index = {p: i for i, p in enumerate(partitions)}
        self._budget = max(1, budget)
        self._parent = directory
        self._dir: str | None = None
        self._memory: list[_Item] = []
        self._held = 0
        self._runs: list[str] = []
        self._files = 0
        #: records and bytes (values) added: the replay's progress bar shows them
        self.records = 0
        self.nbytes = 0

    @property
    def runs(self) -> int:
        """Run files on disk now."""
        return len(self._runs)

    def add(self, partition: int, event_time: float, value: bytes, account: str | None) -> None:
        """One record of ``partition`` (records of a partition in offset order)."""
        self.records += 1  # also the arrival number: unique, in offset order per partition
        self._memory.append((event_time, self._index[partition], self.records, value, account))
        self.nbytes += len(value)
        self._held += len(value) + (len(account) if account else 0) + _OVERHEAD
        if self._held >= self._budget:
            self._spill()

    def __iter__(self) -> Iterator[tuple[bytes, str | None]]:
        """Every record as (value, account), in event-time order."""
        self._memory.sort()
        streams: list[Iterator[_Item]] = [_read(path) for path in self._runs]
        streams.append(iter(self._memory))
        for _, _, _, value, account in heapq.merge(*streams):
            yield value, account

    def close(self) -> None:
        """Remove the run files (and forget what is in memory)."""
        self._memory = []
        self._runs = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> EventOrder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ runs

    def _path(self) -> str:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="emd-replay-", dir=self._parent)
        self._files += 1
        return os.path.join(self._dir, f"run-{self._files:06d}")

    def _spill(self) -> None:
        self._memory.sort()
        self._runs.append(_write(self._path(), self._memory))
        self._memory = []
        self._held = 0
        if len(self._runs) > MAX_RUNS:
            self._compact()

    def _compact(self) -> None:
        old = self._runs
        path = _write(self._path(), heapq.merge(*(_read(path) for path in old)))
        for p in old:
            os.unlink(p)
        self._runs = [path]


def _write(path: str, items: Iterable[_Item]) -> str:
    with open(path, "wb", buffering=1 << 20) as out:
        for ts, part, n, value, account in items:
            acct = b"" if account is None else account.encode()
            alen = 0 if account is None else len(acct) + 1
            out.write(_HEAD.pack(ts, part, n, len(value), alen))
            out.write(value)
            out.write(acct)
    return path


def _read(path: str) -> Iterator[_Item]:
    with open(path, "rb", buffering=1 << 16) as f:
        yield from _frames(f)


def _frames(f: IO[bytes]) -> Iterator[_Item]:
    size = _HEAD.size
    while True:
        head = f.read(size)
        if not head:
            return
        ts, part, n, vlen, alen = _HEAD.unpack(head)
        value = f.read(vlen)
        account = f.read(alen - 1).decode() if alen else None
        yield ts, part, n, value, account
