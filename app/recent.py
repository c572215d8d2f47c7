"""What this worker saw recently, in memory: a person's last events, an account's last
Emarsys deliveries. Debugging aids for the console, deliberately not tables: a page view
that changes nothing in a person's record still writes nothing.

One instance of each per worker, made by the worker's composition root
(``app.faust_app``) and handed to the stages that write them and the web views that read
them; neither side imports the other.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict, deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

RECENT_EVENTS = 20
RECENT_PERSONS = 20_000
RECENT_DELIVERIES = 500


class RecentEvents:
    """The last events of recently active persons (since this worker owns them)."""

    def __init__(self, per_person: int = RECENT_EVENTS, persons: int = RECENT_PERSONS) -> None:
        self.per_person = per_person
        self.persons = persons
        self.by_person: OrderedDict[bytes, deque[dict[str, Any]]] = OrderedDict()

    def add(self, key: bytes, entry: dict[str, Any]) -> None:
        """``entry["at"]`` is the event time (unix seconds)."""
        ring = self.by_person.get(key)
        if ring is not None:  # most recent last, as a re-insert would put it
            self.by_person.move_to_end(key)
        else:
            ring = self.by_person[key] = deque(maxlen=self.per_person)
        while len(self.by_person) > self.persons:
            self.by_person.popitem(last=False)
        ring.appendleft(entry)

    def raw(self, key: bytes) -> list[dict[str, Any]]:
        """Newest first, as stored (for handing over with a merged person's state)."""
        return list(self.by_person.get(key, ()))

    def merge(self, key: bytes, entries: Iterable[dict[str, Any]]) -> None:
        """A merged person's events join this one's, newest first by event time."""
        mine = self.raw(key)
        seen = {e.get("messageId") for e in mine}
        both = mine + [e for e in entries if e.get("messageId") not in seen]
        both.sort(key=lambda e: e.get("at") or 0.0, reverse=True)
        self.by_person.pop(key, None)
        ring: deque[dict[str, Any]] = deque(maxlen=self.per_person)
        ring.extend(both[: self.per_person])
        self.by_person[key] = ring

    def forget(self, key: bytes) -> None:
        self.by_person.pop(key, None)

    def get(self, key: bytes) -> list[dict[str, Any]]:
        """Newest first, times as ISO UTC (formatted here, off the per-event path)."""
        return [
            {**e, "at": datetime.fromtimestamp(e["at"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
            for e in self.by_person.get(key, ())
        ]


class RecentDeliveries:
    """The latest Emarsys deliveries of each account handled by this worker's sink."""

    def __init__(self, per_account: int = RECENT_DELIVERIES) -> None:
        self.by_account: defaultdict[str, deque[dict[str, Any]]] = defaultdict(
            lambda: deque(maxlen=per_account)
        )

    def add(self, account: str, entry: dict[str, Any]) -> None:
        self.by_account[account].appendleft(entry)

    def get(self, account: str) -> list[dict[str, Any]]:
        return list(self.by_account.get(account, ()))
