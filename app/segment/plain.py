"""Segment messages, the plain case: what nearly every message looks like, checked
without building the pydantic model (``app.segment.model``, the only source of rejection
reasons), and the timestamp parsing both share. No pydantic here, so that this module can
be compiled (``app.native``).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

import orjson

from app.segment.parsed import InvalidMessage, ParsedMessage, format_millis

MESSAGE_ID_MAX: Final = 100
TIMESTAMP_FIELDS: Final = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
"""In order of preference for the event time."""

ENVELOPE_DEPTH: Final = 8
"""Nesting levels kept free for the envelopes a message is wrapped in after ingest."""

_ISO_EXPECTED = "expected YYYY-MM-DDTHH:MM:SS[.fff]Z"

_ISO_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?"
    r"(Z|z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?",
    re.ASCII,
)
#: the same language without groups, for the yes/no on every timestamp (a fifth cheaper)
_ISO_SHAPE = re.compile(
    r"\d{4}-\d\d-\d\d(?:[Tt ]\d\d:\d\d(?::\d\d(?:[.,]\d{1,9})?)?(?:[Zz]|[+-]\d\d(?::?\d\d)?)?)?",
    re.ASCII,
)
_ISO_MAX_LEN = 40
_ZERO = timedelta(0)


def _short(value: str, limit: int = 40) -> str:
    """``repr`` of a value for an error message, cut so a huge input stays a short reason."""
    if len(value) > limit:
        return repr(value[:limit]) + "…"
    return repr(value)


def parse_iso(text: str) -> datetime:
    """An aware datetime in the offset as written (none: UTC; date only: midnight UTC).

    ``ValueError`` says why ``text`` is not an ISO 8601 date-time (without the field name).
    """
    if not _usual_shape(text) and (len(text) > _ISO_MAX_LEN or _ISO_SHAPE.fullmatch(text) is None):
        raise ValueError(f"{_short(text)} is not an ISO 8601 date-time ({_ISO_EXPECTED})")
    try:
        # C-fast for every shape the pattern admits except lowercase t/z and >24h offsets.
        dt = datetime.fromisoformat(text)
    except ValueError:
        m = _ISO_RE.fullmatch(text)
        if m is None:  # the usual shape, with something else than digits in it
            raise ValueError(
                f"{_short(text)} is not an ISO 8601 date-time ({_ISO_EXPECTED})"
            ) from None
        return _parse_iso_slow(text, m)
    if dt.tzinfo is not None:
        return dt
    # No offset: UTC. The constructor is a third of ``replace(tzinfo=...)``'s cost.
    return datetime(dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond, UTC)


def _usual_shape(text: str) -> bool:
    """Whether ``text`` is laid out as ``YYYY-MM-DDTHH:MM:SS.fffZ`` (what Segment's
    libraries write), its digits left to ``datetime.fromisoformat``, which accepts only
    ASCII digits where digits belong: such a text is in ``_ISO_SHAPE``'s language exactly
    when ``fromisoformat`` takes it, so the pattern need not run (a tenth of the cost).
    Anything ``fromisoformat`` refuses goes on to ``_parse_iso_slow``, which gives the
    reason."""
    return (
        len(text) == 24
        and text[23] == "Z"
        and text[19] == "."
        and text[10] == "T"
        and text[4] == "-"
        and text[7] == "-"
        and text[13] == ":"
        and text[16] == ":"
        and text.isascii()
    )


def _parse_iso_slow(text: str, m: re.Match[str]) -> datetime:
    year, month, day, hh, mi, ss, frac, off = m.groups()
    tz: timezone = UTC
    if off and off not in ("Z", "z"):
        sign = -1 if off[0] == "-" else 1
        digits = off[1:].replace(":", "")
        oh, om = int(digits[:2]), int(digits[2:] or 0)
        if oh > 23 or om > 59:
            raise ValueError(f"{_short(text)} has an invalid UTC offset ({_ISO_EXPECTED})")
        if oh or om:
            tz = timezone(sign * timedelta(hours=oh, minutes=om))
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hh or 0),
            int(mi or 0),
            int(ss or 0),
            int(frac[:6].ljust(6, "0")) if frac else 0,
            tzinfo=tz,
        )
    except ValueError as e:
        raise ValueError(f"{_short(text)} is not a valid date-time ({e})") from None


def parse_iso_utc(text: str) -> datetime:
    """``parse_iso`` converted to UTC; ``ValueError`` also when the result leaves year 1-9999."""
    dt = parse_iso(text)
    if dt.tzinfo is UTC or dt.utcoffset() == _ZERO:
        return dt
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{_short(text)} is out of range in UTC") from None


def _present(v: Any) -> bool:
    return v is not None and v.strip() != ""


def content_message_id(raw: dict[str, Any]) -> str:
    """``emd-`` + hex SHA-1 of the canonical JSON (sorted keys) of ``raw``.

    Deterministic, so a retried identical body gets the same id and is deduplicated.
    ``InvalidMessage`` when ``raw`` is not serialisable as JSON.
    """
    try:
        canonical = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError) as e:
        raise InvalidMessage(f"message: cannot be encoded as JSON ({e})") from None
    return "emd-" + hashlib.sha1(canonical, usedforsecurity=False).hexdigest()


def _check_encodable(data: dict[str, Any]) -> None:
    """``InvalidMessage`` unless orjson can write ``data`` inside ``ENVELOPE_DEPTH`` more
    levels: a message that only just fits would fail in the link agent's envelope."""
    wrapped: Any = data
    for _ in range(ENVELOPE_DEPTH):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except (orjson.JSONEncodeError, TypeError) as e:
        if "ecursion" in str(e):
            raise InvalidMessage("message: cannot be encoded as JSON (nested too deeply)") from None
        raise InvalidMessage(f"message: cannot be encoded as JSON ({e})") from None


def _as_utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt if dt.tzinfo is UTC else dt.astimezone(UTC)


_VERSION_TYPES: Final = (int, float, str)


#: type -> (its model's text fields, its model's object fields): filled in by
#: ``app.segment.model`` when it is imported (the fields are the pydantic models')
PLAIN_FIELDS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {}


def parse_usual(obj: Any) -> ParsedMessage | None:
    """``parse_message(obj)`` (no ``received_at``) for a plain message of a known type,
    all in compiled code; None for anything else, which ``parse_message`` then decides,
    with the reason. What the topic's readers (the link stage, replay) call first."""
    if type(obj) is not dict:
        return None
    t = obj.get("type")
    if type(t) is not str:
        return None
    fields = PLAIN_FIELDS.get(t)
    if fields is None:
        return None
    return parse_plain(obj, t, None, fields)


def parse_plain(
    obj: Any, t: str, received_at: datetime | None, fields: tuple[tuple[str, ...], tuple[str, ...]]
) -> ParsedMessage | None:
    """``parse_message`` for a message whose validated fields all have their plain JSON
    types (ids as text, timestamps as valid ISO text, objects as dicts): what nearly every
    message looks like. None for anything else, which then takes the pydantic model (the
    only source of rejection reasons): this path accepts only what the model accepts and
    gives what it gives, without building the model (the most expensive step per message).
    """
    if type(obj) is not dict:
        return None
    get = obj.get
    if received_at is not None and get("receivedAt") is None and get("sentAt") is not None:
        return None  # the device's clock may need correcting: the model path does that
    texts, objects = fields  # the type's text and object fields (its model's)
    for name in texts:
        value = get(name)
        if value is not None and type(value) is not str:
            return None
    for name in objects:
        value = get(name)
        if value is not None and type(value) is not dict:
            return None
    version = get("version")
    if version is not None and type(version) not in _VERSION_TYPES:
        return None
    event_time: datetime | None = None
    for name in TIMESTAMP_FIELDS:  # all validated; the first present is the event time
        value = get(name)
        if value is not None:
            if type(value) is not str:
                return None
            try:
                parsed = parse_iso_utc(value)
            except ValueError:
                return None
            if event_time is None:
                event_time = parsed
    message_id = get("messageId")
    if message_id is not None and len(message_id) > MESSAGE_ID_MAX:
        return None
    # the model's checks: per type (``_check_type``), then an identity
    if t == "track":
        if not _present(get("event")):
            return None
    elif t == "group":
        if not _present(get("groupId")):
            return None
    elif t == "alias":
        if not (_present(get("previousId")) and _present(get("userId"))):
            return None
    elif t == "delete" and not _present(get("userId")):
        return None
    user_id = get("userId")
    anonymous_id = get("anonymousId")
    if not (_present(user_id) or _present(anonymous_id)):
        return None

    data = dict(obj)
    data.pop("writeKey", None)
    if message_id is None or not _present(message_id):
        raw = dict(obj)
        raw.pop("writeKey", None)
        try:
            message_id = content_message_id(raw)
        except InvalidMessage:
            return None  # keys that are not text: the model says so first
        data["messageId"] = message_id
    try:
        _check_encodable(data)
    except InvalidMessage:
        return None  # the same again (the model rejects non-text keys before this)

    if event_time is None:
        event_time = _as_utc(received_at) if received_at is not None else datetime.now(UTC)
    if received_at is not None and get("receivedAt") is None:
        data["receivedAt"] = format_millis(_as_utc(received_at))
    return ParsedMessage(
        data,
        t,
        message_id,
        user_id if _present(user_id) else None,
        anonymous_id if _present(anonymous_id) else None,
        event_time,
    )
