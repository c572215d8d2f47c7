"""Wire formats of the internal topics (JSON via orjson).

person-events (key ``account \\x1f person``): ``{"k": kind, ...}`` with kinds
``ev`` (a Segment event), ``merge`` (hand your state to ``into``), ``state`` (merged state
arriving), ``dlv`` (an Emarsys delivery outcome), ``tick`` (clock), ``pk`` (index entry).

emarsys-effects (key ``account \\x1f contact``): the effect dicts of ``app.person``.

dead-letters: ``{"source", "reason", "account", "message_id", "at", "payload"}``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson

MAX_DEAD_LETTER_PAYLOAD = 64 * 1024


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)


def loads(raw: bytes | str) -> Any:
    return orjson.loads(raw)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def dead_letter(
    source: str,
    reason: str,
    *,
    account: str | None = None,
    message_id: str | None = None,
    payload: Any = None,
    raw: bytes | None = None,
) -> bytes:
    """A dead-letter record. ``raw`` bytes that are not valid UTF-8 JSON are kept as text
    with replacement characters (and cut at 64 KB) so the record itself is always JSON."""
    record: dict[str, Any] = {
        "source": source,
        "reason": reason,
        "account": account,
        "message_id": message_id,
        "at": now_iso(),
        "ts": time.time(),
    }
    if payload is not None:
        record["payload"] = payload
    elif raw is not None:
        text = raw[:MAX_DEAD_LETTER_PAYLOAD].decode("utf-8", errors="replace")
        record["raw"] = text
        record["truncated"] = len(raw) > MAX_DEAD_LETTER_PAYLOAD
    return dumps(record)
