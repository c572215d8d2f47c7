"""Segment messages (identify, track, page, screen, group, alias, delete): validation.

``parse_message`` is the single entry point: the HTTP ingest calls it on every message it
receives and agent A calls it again on every message read from the input topic, so both
paths accept and reject exactly the same things. It never raises anything but
``InvalidMessage``, whose ``reason`` is short, names the field and never echoes personal
data (only types, timestamps and truncated type names appear in it).

Choices worth knowing (also in the README):

- The message keeps every field its sender sent (``extra="allow"``): ``ParsedMessage.data``
  is a shallow copy of the input with only these changes: ``writeKey`` is removed (it is
  a credential, not part of the message), numeric ``userId``/``anonymousId``/
  ``previousId``/``groupId``/``messageId`` become strings, ``messageId`` is ensured and,
  when the caller passes ``received_at`` and the message has no ``receivedAt``, the
  receive time is stamped there (as Segment's own API does), so re-reading the message
  from the topic later gives the same event time.
- An empty or null ``userId``/``anonymousId`` counts as absent; the parsed ``user_id`` and
  ``anonymous_id`` are the values to key on, not ``data``.
- Timestamps: ISO 8601, ``YYYY-MM-DD`` + ``T`` or space + ``HH:MM[:SS[.f…]]`` + optional
  ``Z`` or ``±HH[:MM]``. No offset means UTC. A date-only value (``2015-02-02``) is
  accepted as midnight UTC. Anything else (``2015-2-02T…``, unix numbers) is rejected.
- Event time: ``timestamp``, else ``originalTimestamp``, ``sentAt``, ``receivedAt``, else
  the caller's ``received_at``, else now.
- Clock skew, corrected as Segment does: a message straight from a library (the caller
  passes ``received_at`` and the message has no ``receivedAt`` yet) that carries
  ``sentAt`` and a client time (``timestamp``, else ``originalTimestamp``) gets
  ``timestamp = received_at - (sentAt - client time)``: the delay the device measured on
  its own clock, applied to ours, so a phone an hour fast gets the right time, neither
  an hour ahead nor "now". The client's time is kept as ``originalTimestamp``. A
  correction that lands after ``received_at`` (``sentAt`` before the client time: the
  device's clock jumped) is ``received_at``: nothing happens after it arrived. Messages
  that already have ``receivedAt`` (relayed by Segment, which corrected them) are left
  alone.
- A missing, null or blank ``messageId`` gets ``content_message_id``: a hash of the
  message's content, so a retried identical body is deduplicated (and, equally, two
  identical bodies without any timestamp count as one).
- ``data`` is guaranteed to be serialisable by orjson, also inside the envelopes it
  travels in later (person-events, dead letters): nesting deeper than orjson's 254 levels
  minus ``ENVELOPE_DEPTH``, or integers beyond 64 bits, are rejected here, not inside a
  worker after the sender was told 200.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, ClassVar, Final

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.functional_validators import PlainValidator
from pydantic_core import PydanticCustomError

MESSAGE_LIMIT: Final = 32 * 1024
BATCH_LIMIT: Final = 500 * 1024
BATCH_MAX_MESSAGES: Final = 2500
MESSAGE_TYPES: Final = frozenset(
    {"identify", "track", "page", "screen", "group", "alias", "delete"}
)
MESSAGE_ID_MAX: Final = 100
TIMESTAMP_FIELDS: Final = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
"""In order of preference for the event time."""

ENVELOPE_DEPTH: Final = 8
"""Nesting levels kept free for the envelopes a message is wrapped in after ingest."""

_TYPES_TEXT = "identify, track, page, screen, group, alias or delete"
_ISO_EXPECTED = "expected YYYY-MM-DDTHH:MM:SS[.fff]Z"


class InvalidMessage(ValueError):
    """A message (or batch) the sender must fix; ``reason`` names the field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


# --------------------------------------------------------------------------- timestamps

_ISO_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?"
    r"(Z|z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?",
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
    m = _ISO_RE.fullmatch(text) if len(text) <= _ISO_MAX_LEN else None
    if m is None:
        raise ValueError(f"{_short(text)} is not an ISO 8601 date-time ({_ISO_EXPECTED})")
    try:
        # C-fast for every shape the pattern admits except lowercase t/z and >24h offsets.
        dt = datetime.fromisoformat(text)
    except ValueError:
        return _parse_iso_slow(text, m)
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


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


def format_millis(dt: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.fffZ`` of an aware (or UTC-naive) datetime."""
    if dt.tzinfo is not None and dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}.{dt.microsecond // 1000:03d}Z"
    )


# --------------------------------------------------------------------------- field types


def _err(message: str) -> PydanticCustomError:
    return PydanticCustomError("segment", message)


def _type_name(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list | tuple):
        return "a list"
    return type(v).__name__


def _identifier(v: object) -> str | None:
    """Ids are strings; numbers (some libraries send numeric ids) become their text."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        raise _err("must be a string or a number, not a boolean")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise _err("must be a finite number")
        return str(int(v)) if v.is_integer() else repr(v)
    raise _err(f"must be a string or a number, not {_type_name(v)}")


def _message_id(v: object) -> str | None:
    s = _identifier(v)
    if s is not None and len(s) > MESSAGE_ID_MAX:
        raise _err(f"longer than {MESSAGE_ID_MAX} characters")
    return s


def _timestamp(v: object) -> datetime | None:
    if v is None:
        return None
    if not isinstance(v, str):
        raise _err(f"must be an ISO 8601 date-time string, not {_type_name(v)}")
    try:
        return parse_iso_utc(v)
    except ValueError as e:
        raise _err(str(e)) from None


def _object(v: object) -> dict[str, Any] | None:
    if v is None or isinstance(v, dict):
        return v
    raise _err("must be an object")


def _text(v: object) -> str | None:
    if v is None or isinstance(v, str):
        return v
    raise _err(f"must be a string, not {_type_name(v)}")


def _version(v: object) -> int | float | str | None:
    if v is None or (isinstance(v, int | float | str) and not isinstance(v, bool)):
        return v
    raise _err("must be a number or a string")


Identifier = Annotated[str | None, PlainValidator(_identifier)]
MessageId = Annotated[str | None, PlainValidator(_message_id)]
Timestamp = Annotated[datetime | None, PlainValidator(_timestamp)]
JsonObject = Annotated[dict[str, Any] | None, PlainValidator(_object)]
Text = Annotated[str | None, PlainValidator(_text)]
Version = Annotated[int | float | str | None, PlainValidator(_version)]


def _present(v: str | None) -> bool:
    return v is not None and v.strip() != ""


# --------------------------------------------------------------------------- models


class SegmentMessage(BaseModel):
    """Fields every message may carry. Unknown fields are kept (``extra="allow"``).

    Timestamps are validated into aware UTC datetimes here, but ``ParsedMessage.data``
    keeps the text as sent. Null counts as absent for every optional field.
    """

    model_config = ConfigDict(extra="allow", validate_default=False)

    message_type: ClassVar[str] = ""

    type: str
    messageId: MessageId = None
    userId: Identifier = None
    anonymousId: Identifier = None
    timestamp: Timestamp = None
    originalTimestamp: Timestamp = None
    sentAt: Timestamp = None
    receivedAt: Timestamp = None
    context: JsonObject = None
    integrations: JsonObject = None
    version: Version = None

    def _check_type(self) -> None:
        """Per-type required fields (before the identity check, whose text is generic)."""

    @model_validator(mode="after")
    def _required(self) -> SegmentMessage:
        self._check_type()
        if not (_present(self.userId) or _present(self.anonymousId)):
            raise _err("userId or anonymousId is required")
        return self

    def event_time(self) -> datetime | None:
        """The first timestamp present in order of preference, in UTC."""
        return self.timestamp or self.originalTimestamp or self.sentAt or self.receivedAt


class IdentifyMessage(SegmentMessage):
    message_type: ClassVar[str] = "identify"
    traits: JsonObject = None


class TrackMessage(SegmentMessage):
    message_type: ClassVar[str] = "track"
    event: Text = None
    properties: JsonObject = None

    def _check_type(self) -> None:
        if not _present(self.event):
            raise _err("track needs an event name (event)")


class PageMessage(SegmentMessage):
    message_type: ClassVar[str] = "page"
    properties: JsonObject = None


class ScreenMessage(SegmentMessage):
    message_type: ClassVar[str] = "screen"
    properties: JsonObject = None


class GroupMessage(SegmentMessage):
    message_type: ClassVar[str] = "group"
    groupId: Identifier = None
    traits: JsonObject = None

    def _check_type(self) -> None:
        if not _present(self.groupId):
            raise _err("group needs a groupId (groupId)")


class AliasMessage(SegmentMessage):
    """Links ``previousId`` (usually the anonymousId) to ``userId``: both are required."""

    message_type: ClassVar[str] = "alias"
    previousId: Identifier = None

    def _check_type(self) -> None:
        if not _present(self.previousId):
            raise _err("alias needs a previousId (previousId)")
        if not _present(self.userId):
            raise _err("alias needs a userId (userId)")


class DeleteMessage(SegmentMessage):
    """A user deletion request (sent by Segment to webhooks): only a userId makes sense."""

    message_type: ClassVar[str] = "delete"

    def _check_type(self) -> None:
        if not _present(self.userId):
            raise _err("delete needs a userId (userId)")


MODELS: Final[dict[str, type[SegmentMessage]]] = {
    m.message_type: m
    for m in (
        IdentifyMessage,
        TrackMessage,
        PageMessage,
        ScreenMessage,
        GroupMessage,
        AliasMessage,
        DeleteMessage,
    )
}
assert frozenset(MODELS) == MESSAGE_TYPES

# Identifier fields (per type) whose numeric values are written back to ``data`` as text.
_ID_FIELDS: Final = {
    t: tuple(
        f
        for f in ("messageId", "userId", "anonymousId", "previousId", "groupId")
        if f in m.model_fields
    )
    for t, m in MODELS.items()
}


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """A valid message: ``data`` is what goes on the topic; the rest is derived from it."""

    data: dict[str, Any]
    type: str
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    event_time: datetime

    def event_time_iso(self) -> str:
        """``YYYY-MM-DDTHH:MM:SS.fffZ``."""
        return format_millis(self.event_time)


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


def _reason(e: ValidationError) -> str:
    first = e.errors(include_url=False, include_context=False, include_input=False)[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"]
    if first["type"] == "invalid_key":
        return "message: keys must be strings"
    if first["type"] == "missing":
        msg = "is required"
    return f"{loc}: {msg}" if loc else msg


def _as_utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt if dt.tzinfo is UTC else dt.astimezone(UTC)


def parse_message(obj: object, *, received_at: datetime | None = None) -> ParsedMessage:
    """Validate one Segment message; ``InvalidMessage`` (and nothing else) when it is wrong.

    ``received_at`` is when the ingest received it (naive means UTC): the event time of a
    message without timestamps, and stamped as ``receivedAt`` when the message has none.
    """
    if not isinstance(obj, dict):
        raise InvalidMessage(f"message: must be a JSON object, not {_type_name(obj)}")
    t = obj.get("type")
    if t is None:
        raise InvalidMessage(f"type is required ({_TYPES_TEXT})")
    if not isinstance(t, str):
        raise InvalidMessage(f"type: must be a string, not {_type_name(t)}")
    model = MODELS.get(t)
    if model is None:
        raise InvalidMessage(f"type: unknown type {_short(t, 30)} (expected {_TYPES_TEXT})")
    try:
        msg = model.model_validate(obj)
    except ValidationError as e:
        raise InvalidMessage(_reason(e)) from None

    data = dict(obj)
    data.pop("writeKey", None)
    for name in _ID_FIELDS[t]:
        raw_id = obj.get(name)
        if raw_id is not None and not isinstance(raw_id, str):
            data[name] = getattr(msg, name)

    message_id = msg.messageId
    if message_id is None or not _present(message_id):
        raw = dict(obj)
        raw.pop("writeKey", None)
        message_id = content_message_id(raw)
        data["messageId"] = message_id
    _check_encodable(data)

    event_time = msg.event_time()
    if received_at is not None and msg.receivedAt is None:
        received = _as_utc(received_at)
        corrected = _skew_corrected(msg, received)
        if corrected is not None:
            if msg.originalTimestamp is None:
                data["originalTimestamp"] = obj["timestamp"]
            data["timestamp"] = format_millis(corrected)
            event_time = corrected
        data["receivedAt"] = format_millis(received)
    if event_time is None:
        event_time = _as_utc(received_at) if received_at is not None else datetime.now(UTC)

    return ParsedMessage(
        data=data,
        type=t,
        message_id=message_id,
        user_id=msg.userId if _present(msg.userId) else None,
        anonymous_id=msg.anonymousId if _present(msg.anonymousId) else None,
        event_time=event_time,
    )


def _skew_corrected(msg: SegmentMessage, received: datetime) -> datetime | None:
    """Segment's ``receivedAt - (sentAt - client time)``; None when it does not apply."""
    client = msg.timestamp or msg.originalTimestamp
    if msg.sentAt is None or client is None:
        return None
    try:
        corrected = received - (msg.sentAt - client)
    except OverflowError:
        raise InvalidMessage(
            "sentAt/timestamp: too far apart to correct the device's clock"
        ) from None
    return min(corrected, received)


def split_batch(body: dict[str, Any]) -> list[object]:
    """The messages of a ``{"batch": [...]}`` body, with the batch-level defaults merged in.

    Batch-level ``context`` and ``integrations`` are defaults: a message's own keys win,
    merged one level deep (``{**batch_context, **message_context}``; nested objects such
    as ``context.device`` are not merged further). A batch-level ``sentAt`` (what
    analytics-python and analytics-node send: the batch's send time on the device's
    clock) is every message's ``sentAt`` unless it has its own, so the clock-skew
    correction of ``parse_message`` applies. ``writeKey`` is not copied. Items that
    are not objects are returned as they are, so ``parse_message`` rejects them one by
    one. Limits (``BATCH_LIMIT``, ``BATCH_MAX_MESSAGES``) are the caller's to enforce.
    """
    items = body.get("batch") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise InvalidMessage("batch: must be a list")
    defaults: dict[str, dict[str, Any]] = {}
    for key in ("context", "integrations"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise InvalidMessage(f"{key}: must be an object (batch-level)")
        if value:
            defaults[key] = value
    sent_at = body.get("sentAt")
    if sent_at is not None:
        try:
            _timestamp(sent_at)
        except PydanticCustomError as e:
            raise InvalidMessage(f"sentAt: {e} (batch-level)") from None
    if not defaults and sent_at is None:
        return list(items)
    out: list[object] = []
    for item in items:
        if isinstance(item, dict):
            item = dict(item)
            for key, default in defaults.items():
                own = item.get(key)
                if own is None:
                    item[key] = dict(default)
                elif isinstance(own, dict):
                    item[key] = {**default, **own}
            if sent_at is not None and item.get("sentAt") is None:
                item["sentAt"] = sent_at
        out.append(item)
    return out
