"""Wire formats of the internal topics (JSON via orjson).

person-events (key ``account \\x1f person``): ``{"k": kind, ...}`` with kinds
``ev`` (a Segment event), ``merge`` (hand your state to ``into``), ``state`` (merged state
arriving), ``dlv`` (an Emarsys delivery outcome), ``tick`` (clock), ``pk`` (index entry).

emarsys-effects (key ``account \\x1f contact``): the effect dicts of ``app.person``.

dead-letters: ``{"source", "reason", "account", "message_id", "at", "payload"}``.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import orjson

MAX_DEAD_LETTER_PAYLOAD = 64 * 1024
MAX_ID = 200


def dumps(obj: Any) -> bytes:
    """JSON bytes; keys that are not text (an int, a text subclass) are written as text.

    ``OPT_NON_STR_KEYS`` doubles orjson's time even when every key is text (as nearly
    always), so it is the fallback: for text keys both give the same bytes."""
    try:
        return orjson.dumps(obj)
    except TypeError:  # orjson.JSONEncodeError: a key that is not text, or a real error
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
    with replacement characters (and cut at 64 KB) so the record itself is always JSON; so
    is a ``payload`` orjson cannot write (nested too deeply...), with ``payload_error``."""
    if not isinstance(message_id, str):
        message_id = None  # an unvalidated message's "messageId" may be anything
    record: dict[str, Any] = {
        "source": source,
        "reason": reason,
        "account": account,
        "message_id": message_id[:MAX_ID] if message_id is not None else None,
        "at": now_iso(),
        "ts": time.time(),
    }
    if payload is not None:
        record["payload"] = payload
    elif raw is not None:
        text = raw[:MAX_DEAD_LETTER_PAYLOAD].decode("utf-8", errors="replace")
        record["raw"] = text
        record["truncated"] = len(raw) > MAX_DEAD_LETTER_PAYLOAD
    try:
        return dumps(record)
    except TypeError as exc:  # orjson.JSONEncodeError: nested too deeply, int over 64 bits
        # The reject itself must never fail (the ingest would answer 503 to bad input and
        # the sender retry it forever): keep the payload as text, as far as it goes.
        record.pop("payload", None)
        try:
            text = json.dumps(payload, default=repr)
        except (RecursionError, ValueError, TypeError):
            text = ""
        record["raw"] = text[:MAX_DEAD_LETTER_PAYLOAD]
        record["truncated"] = len(text) > MAX_DEAD_LETTER_PAYLOAD or not text
        record["payload_error"] = f"not encodable as JSON: {exc}"
        return dumps(record)
