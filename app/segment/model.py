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

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.functional_validators import PlainValidator
from pydantic_core import PydanticCustomError

from app.segment.parsed import InvalidMessage, ParsedMessage
from app.segment.plain import (
    _ISO_RE as _ISO_RE,
)
from app.segment.plain import (
    _ISO_SHAPE as _ISO_SHAPE,
)
from app.segment.plain import (
    ENVELOPE_DEPTH as ENVELOPE_DEPTH,
)
from app.segment.plain import (
    MESSAGE_ID_MAX,
    PLAIN_FIELDS,
    TIMESTAMP_FIELDS,
    _as_utc,
    _check_encodable,
    _present,
    _short,
    content_message_id,
    parse_iso_utc,
    parse_plain,
)
from app.segment.plain import (
    format_millis as format_millis,
)
from app.segment.plain import (
    parse_iso as parse_iso,
)

MESSAGE_LIMIT: Final = 32 * 1024
BATCH_LIMIT: Final = 500 * 1024
BATCH_MAX_MESSAGES: Final = 2500
MESSAGE_TYPES: Final = frozenset(
    {"identify", "track", "page", "screen", "group", "alias", "delete"}
)
_TYPES_TEXT = "identify, track, page, screen, group, alias or delete"


# --------------------------------------------------------------------------- timestamps

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


def _reason(e: ValidationError) -> str:
    first = e.errors(include_url=False, include_context=False, include_input=False)[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"]
    if first["type"] == "invalid_key":
        return "message: keys must be strings"
    if first["type"] == "missing":
        msg = "is required"
    return f"{loc}: {msg}" if loc else msg


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
    fast = _parse_plain(obj, t, received_at)
    if fast is not None:
        return fast
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


# The fields each type's model validates, by kind (what ``_parse_plain`` checks itself).
_KIND_OF: Final = {
    "type": "type",
    "messageId": "id",
    "userId": "id",
    "anonymousId": "id",
    "previousId": "id",
    "groupId": "id",
    "event": "id",  # text, like an id (``_text``)
    "timestamp": "time",
    "originalTimestamp": "time",
    "sentAt": "time",
    "receivedAt": "time",
    "context": "object",
    "integrations": "object",
    "traits": "object",
    "properties": "object",
    "version": "version",
}
assert all(f in _KIND_OF for m in MODELS.values() for f in m.model_fields)
assert all(
    tuple(f for f in m.model_fields if _KIND_OF[f] == "time") == TIMESTAMP_FIELDS
    for m in MODELS.values()
)


def _fields_of(model: type[SegmentMessage], kind: str) -> tuple[str, ...]:
    return tuple(f for f in model.model_fields if _KIND_OF[f] == kind)


# type -> (text fields, object fields), for the compiled plain path (``plain.parse_usual``
# reads it too); every type has the timestamps and ``version``
PLAIN_FIELDS.update({t: (_fields_of(m, "id"), _fields_of(m, "object")) for t, m in MODELS.items()})


def _parse_plain(obj: dict[str, Any], t: str, received_at: datetime | None) -> ParsedMessage | None:
    """``app.segment.plain.parse_plain`` with the type's fields (its model's)."""
    return parse_plain(obj, t, received_at, PLAIN_FIELDS[t])


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
