"""When each person of a partition next needs the clock: per-partition min-heaps.

Entries are hints: the record's own wake time (``app.timeline.wake_time``) is checked
before anything fires, so a stale entry costs one lookup. A partition's heap is rebuilt
from its table the first time it is asked for after an assignment (``reset``).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class WakeIndex:
    def __init__(self) -> None:
        self.heaps: dict[int, list[tuple[float, bytes]]] = {}

    def reset(self) -> None:
        """Partitions were (re)assigned: every heap is rebuilt before it is used."""
        self.heaps.clear()

    def built(self, partition: int) -> bool:
        return partition in self.heaps

    def rebuild(self, partition: int, entries: Iterable[tuple[float, bytes]]) -> None:
        heap = list(entries)
        heapq.heapify(heap)
        self.heaps[partition] = heap

    def push(self, partition: int, key: bytes, at: float | None) -> None:
        if at is None:
            return
        heap = self.heaps.get(partition)
        if heap is not None:  # not built: the rebuild will find it in the table
            heapq.heappush(heap, (at, key))

    def next_at(self, partition: int) -> float | None:
        heap = self.heaps.get(partition)
        return heap[0][0] if heap else None

    def pop_due(self, partition: int, now: float) -> list[bytes]:
        heap = self.heaps.get(partition) or []
        out: list[bytes] = []
        seen: set[bytes] = set()
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            if key not in seen:
                seen.add(key)
                out.append(key)
        return out

    def size(self) -> int:
        return sum(len(h) for h in self.heaps.values())
