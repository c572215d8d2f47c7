"""A person's delivery log (the ``deliveries`` table): appended to without being parsed.

The log keeps a person's last ``limit`` Emarsys outcomes for the person page. Each sink
batch that delivers something for the person adds an entry or two; parsed and written
again whole, a full log (50 entries, ~9 KB of JSON) cost ~30 µs per delivery, as much as
the rest of the person's work, and a returning customer's log is always full. So the
stored value is the entries' JSON followed by their byte lengths:

    {"e":[<entry>,<entry>,...],"~n":[<length>,<length>,...]}

An append parses only the lengths: it cuts the oldest entries off as bytes and puts the
new ones' JSON after the rest. The value stays JSON (``entries`` is ``loads(value)["e"]``
for any reader). A value whose lengths do not add up (a log written before this layout,
a plain JSON list; or rewritten since by other code) is parsed whole, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from app.envelope import dumps

_HEAD = b'{"e":['
_SEP = b'],"~n":['


def entries(raw: bytes | None) -> list[Any]:
    """The log's entries, oldest first."""
    if raw is None:
        return []
    value = orjson.loads(raw)
    if isinstance(value, dict):
        found = value.get("e")
        return found if isinstance(found, list) else []
    return value if isinstance(value, list) else []


def append(raw: bytes | None, new: Sequence[Any], limit: int) -> bytes:
    """The log ``raw`` (None: empty) with ``new`` added, keeping the last ``limit``."""
    texts = [dumps(e) for e in new[-limit:]]
    kept_text = b""
    kept: list[int] = []
    if raw is not None:
        split = _split(raw)
        if split is None:  # not this layout: parse it whole, once
            texts = ([dumps(e) for e in entries(raw)] + texts)[-limit:]
        else:
            body, lengths = split
            drop = max(0, len(lengths) + len(texts) - limit)
            if drop < len(lengths):
                start = sum(lengths[:drop]) + drop  # the entries and their commas
                kept_text = body[start:]
                kept = lengths[drop:]
    lengths = [*kept, *(len(t) for t in texts)]
    parts = [kept_text, *texts] if kept_text else texts
    return b"".join((_HEAD, b",".join(parts), _SEP, dumps(lengths)[1:], b"}"))


def _split(raw: bytes) -> tuple[bytes, list[int]] | None:
    """(the entries' JSON between the brackets, their lengths), or None."""
    if not raw.startswith(_HEAD) or not raw.endswith(b"]}"):
        return None
    pos = raw.rfind(_SEP)  # the lengths hold no "]": the last one is the separator
    if pos < 0:
        return None
    try:
        lengths = orjson.loads(raw[pos + len(_SEP) - 1 : -1])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(lengths, list) or not all(type(n) is int and n > 0 for n in lengths):
        return None
    body = raw[len(_HEAD) : pos]
    if sum(lengths) + max(0, len(lengths) - 1) != len(body):
        return None
    return body, lengths


class LogAppends:
    """One batch's additions to the logs of a table partition (any table with ``get``,
    ``set``, ``delete`` and ``prefetch``), written at ``flush``, each log once."""

    __slots__ = ("_new", "_reset", "limit", "table")

    def __init__(self, table: Any, limit: int) -> None:
        self.table = table
        self.limit = limit
        self._new: dict[bytes, list[Any]] = {}
        self._reset: set[bytes] = set()

    def add(self, key: bytes, entry: Any) -> None:
        found = self._new.get(key)
        if found is None:
            self._new[key] = [entry]
        else:
            found.append(entry)

    def delete(self, key: bytes) -> None:
        """Forget the log (what this batch added to it too)."""
        self._new.pop(key, None)
        self._reset.add(key)

    def flush(self) -> None:
        reset = self._reset
        for key in reset:
            if key not in self._new:
                self.table.delete(key)
        self.table.prefetch([k for k in self._new if k not in reset])
        for key, new in self._new.items():
            raw = None if key in reset else self.table.get(key)
            self.table.set(key, append(raw, new, self.limit))
        self._new = {}
        self._reset = set()
