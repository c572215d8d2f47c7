"""Segment message validation: the doc examples, each rule, and arbitrary input."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.segment import (
    BATCH_LIMIT,
    BATCH_MAX_MESSAGES,
    MESSAGE_LIMIT,
    MESSAGE_TYPES,
    InvalidMessage,
    ParsedMessage,
    content_message_id,
    parse_iso,
    parse_iso_utc,
    parse_message,
    split_batch,
)
from app.segment.model import MODELS, TrackMessage, format_millis

EXAMPLES = Path("/work/shared/data/segment-examples")
NOW = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
NO_TYPE = "type is required (identify, track, page, screen, group, alias or delete)"
NO_ID = "userId or anonymousId is required"
BAD_2015 = (
    "timestamp: '2015-2-02T00:30:{}Z' is not an ISO 8601 date-time "
    "(expected YYYY-MM-DDTHH:MM:SS[.fff]Z)"
)
SEG = "022bb90c-bbac-11e4-8dfc-aa07a5b093db"
NOW_ISO = "2030-01-02T03:04:05.678Z"


def ok(
    type_: str, user: str | None, anon: str | None, time: str, message_id: str | None = None
) -> tuple[Any, ...]:
    """Expect a parse: ``message_id`` None means a content id (``emd-...``)."""
    return ("ok", type_, user, anon, time, message_id)


def rejected(reason: str) -> tuple[str, str]:
    return ("rejected", reason)


# Every file of the examples folder, message by message (a batch has one entry per item).
EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "action-destinations-create-test-event-track.json": [
        ok(
            "track",
            "user1234",
            "anonId1234",
            "2024-01-01T00:00:00.000Z",
            "00000000-0000-4000-8000-000000000000",
        )
    ],
    "direct-destination-01-identify.json": [
        # no timestamp: originalTimestamp is absent too, so sentAt is the event time
        ok("identify", "5678", "1234", "2015-02-23T22:28:55.111Z", SEG)
    ],
    "ecommerce-v2-order-completed-track.json": [
        ok(
            "track",
            "AiUGstSDIg",
            "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
            "2015-12-12T19:11:01.249Z",
            "ajs-f8ca1e4de5024d9430b3928bd8ac6b97",
        )
    ],
    # The single-message HTTP API bodies carry no type: the endpoint path gives it
    # (see test_httpapi_bodies_with_type_from_the_path).
    "httpapi-01-POST-v1-identify.json": [rejected(NO_TYPE)],
    "httpapi-02-POST-v1-track.json": [rejected(NO_TYPE)],
    "httpapi-03-POST-v1-page.json": [rejected(NO_TYPE)],
    "httpapi-04-POST-v1-screen.json": [rejected(NO_TYPE)],
    "httpapi-05-POST-v1-group.json": [rejected(NO_TYPE)],
    "httpapi-06-POST-v1-alias.json": [rejected(NO_TYPE)],
    "httpapi-07-POST-v1-batch.json": [
        ok("identify", "019mr8mf4r", None, "2012-12-02T00:30:08.276Z"),
        ok("track", "019mr8mf4r", None, "2012-12-02T00:30:12.984Z"),
        rejected(BAD_2015.format("08.276")),
        rejected(BAD_2015.format("12.984")),
    ],
    "httpapi-08-POST-v1-identify-integrations.json": [rejected(NO_TYPE)],
    "spec-alias-01-alias.json": [ok("alias", "507f191e81", None, NOW_ISO)],
    "spec-alias-02-alias.json": [
        ok("alias", "507f191e81", "507f191e810c19729de860ea", "2015-02-23T22:28:55.111Z", SEG)
    ],
    "spec-common-01-track.json": [
        ok("track", "97980cfea0067", "507f191e810c19729de860ea", "2015-12-10T04:08:31.905Z", SEG)
    ],
    "spec-group-01-group.json": [rejected(NO_ID)],
    "spec-group-02-group.json": [
        ok("group", "97980cfea0067", "507f191e810c19729de860ea", "2015-02-23T22:28:55.111Z", SEG)
    ],
    "spec-identify-01-identify.json": [ok("identify", "97980cfea0067", None, NOW_ISO)],
    "spec-identify-02-identify.json": [
        ok(
            "identify",
            "97980cfea0067",
            "507f191e810c19729de860ea",
            "2015-02-23T22:28:55.111Z",
            SEG,
        )
    ],
    "spec-page-01-page.json": [rejected(NO_ID)],
    "spec-page-02-page.json": [
        ok("page", "97980cfea0067", "507f191e810c19729de860ea", "2015-02-23T22:28:55.111Z", SEG)
    ],
    "spec-screen-01-screen.json": [rejected(NO_ID)],
    "spec-screen-02-screen.json": [
        ok(
            "screen",
            "97980cfea0067",
            "3a12eab0-bca7-11e4-8dfc-aa07a5b093db",
            "2015-02-23T22:28:55.111Z",
            SEG,
        )
    ],
    "spec-track-01-track.json": [rejected(NO_ID)],
    "spec-track-02-track.json": [
        ok(
            "track",
            "AiUGstSDIg",
            "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
            "2015-12-12T19:11:01.249Z",
            "ajs-f8ca1e4de5024d9430b3928bd8ac6b96",
        )
    ],
    "spec-track-03-track.json": [
        ok(
            "track",
            "AiUGstSDIg",
            "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
            "2015-12-12T19:11:01.249Z",
            "ajs-f8ca1e4de5024d9430b3928bd8ac6b96",
        )
    ],
    "webhooks-classic-01-page.json": [ok("page", "019mr8mf4r", None, "2012-12-02T00:30:08.276Z")],
    "webhooks-classic-02-screen.json": [
        ok("screen", "019mr8mf4r", None, "2012-12-02T00:30:08.276Z")
    ],
    "webhooks-classic-03-identify.json": [
        ok("identify", "019mr8mf4r", None, "2012-12-02T00:30:08.276Z")
    ],
    "webhooks-classic-04-track.json": [ok("track", "019mr8mf4r", None, "2012-12-02T00:30:08.276Z")],
    # "Previous ID"/"User ID" are not previousId/userId (a doc typo): nothing to link.
    "webhooks-classic-05-alias.json": [rejected("alias needs a previousId (previousId)")],
    "webhooks-classic-06-group.json": [ok("group", "019mr8mf4r", None, "2012-12-02T00:30:08.276Z")],
    "webhooks-classic-07-delete.json": [
        ok("delete", "019mr8mf4r", None, "2012-12-02T00:30:08.276Z")
    ],
}


def load(name: str) -> dict[str, Any]:
    body = json.loads((EXAMPLES / name).read_text())
    body.pop("_note", None)
    return body


def messages_of(body: dict[str, Any]) -> list[object]:
    if "batch" in body:
        return split_batch(body)
    return [body]


def test_the_table_covers_every_example_file() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example(name: str) -> None:
    body = load(name)
    messages = messages_of(body)
    expected = EXPECTED[name]
    assert len(messages) == len(expected)
    for raw, exp in zip(messages, expected, strict=True):
        assert isinstance(raw, dict)
        if exp[0] == "rejected":
            with pytest.raises(InvalidMessage) as info:
                parse_message(raw, received_at=NOW)
            assert info.value.reason == exp[1]
            assert str(info.value) == exp[1]
            continue
        _, type_, user, anon, time, message_id = exp
        p = parse_message(raw, received_at=NOW)
        assert (p.type, p.user_id, p.anonymous_id, p.event_time_iso()) == (
            type_,
            user,
            anon,
            time,
        )
        sent = {k: v for k, v in raw.items() if k != "writeKey"}
        if message_id is None:
            assert p.message_id == content_message_id(sent)
            assert p.message_id.startswith("emd-")
        else:
            assert p.message_id == message_id
        # round trip: every field the sender sent, unchanged, plus messageId/receivedAt
        expected_data = dict(sent)
        expected_data["messageId"] = p.message_id
        expected_data.setdefault("receivedAt", NOW_ISO)
        assert p.data == expected_data
        assert orjson.loads(orjson.dumps(p.data)) == expected_data


@pytest.mark.parametrize(
    ("name", "type_"),
    [
        ("httpapi-01-POST-v1-identify.json", "identify"),
        ("httpapi-02-POST-v1-track.json", "track"),
        ("httpapi-03-POST-v1-page.json", "page"),
        ("httpapi-04-POST-v1-screen.json", "screen"),
        ("httpapi-05-POST-v1-group.json", "group"),
        ("httpapi-06-POST-v1-alias.json", "alias"),
        ("httpapi-08-POST-v1-identify-integrations.json", "identify"),
    ],
)
def test_httpapi_bodies_with_type_from_the_path(name: str, type_: str) -> None:
    body = load(name)
    p = parse_message({**body, "type": type_})
    assert p.type == type_
    assert p.user_id == "019mr8mf4r"
    assert p.event_time == parse_iso_utc(body["timestamp"])
    assert "writeKey" not in p.data
    assert p.data["timestamp"] == body["timestamp"]


def test_httpapi_batch_context_default_reaches_every_message() -> None:
    items = split_batch(load("httpapi-07-POST-v1-batch.json"))
    assert len(items) == 4
    for item in items:
        assert isinstance(item, dict)
        assert item["context"] == {"device": {"type": "phone", "name": "Apple iPhone 6"}}
        assert "writeKey" not in item


# --------------------------------------------------------------------------- helpers


def track(**fields: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "track", "event": "Signed Up", "userId": "u1"}
    msg.update(fields)
    return {k: v for k, v in msg.items() if v is not ...}


def reason_of(obj: object, **kw: Any) -> str:
    with pytest.raises(InvalidMessage) as info:
        parse_message(obj, **kw)
    assert isinstance(info.value, ValueError)
    return info.value.reason


# --------------------------------------------------------------------------- constants


def test_constants() -> None:
    assert MESSAGE_LIMIT == 32768
    assert BATCH_LIMIT == 512000
    assert BATCH_MAX_MESSAGES == 2500
    assert sorted(MESSAGE_TYPES) == [
        "alias",
        "delete",
        "group",
        "identify",
        "page",
        "screen",
        "track",
    ]
    assert set(MODELS) == MESSAGE_TYPES


# --------------------------------------------------------------------------- type


@pytest.mark.parametrize("type_", sorted(MESSAGE_TYPES))
def test_each_type_parses(type_: str) -> None:
    msg = {"type": type_, "userId": "u", "event": "E", "previousId": "a", "groupId": "g"}
    assert parse_message(msg).type == type_


def test_unknown_type() -> None:
    assert reason_of({"type": "x", "userId": "u"}) == (
        "type: unknown type 'x' (expected identify, track, page, screen, group, alias or delete)"
    )
    assert "unknown type 'Track'" in reason_of({"type": "Track", "userId": "u"})


def test_type_missing_or_not_a_string() -> None:
    assert reason_of({"userId": "u"}) == NO_TYPE
    assert reason_of({"type": None, "userId": "u"}) == NO_TYPE
    assert reason_of({"type": 3, "userId": "u"}) == "type: must be a string, not a number"


def test_huge_unknown_type_gives_a_short_reason() -> None:
    r = reason_of({"type": "x" * 1_000_000, "userId": "u"})
    assert len(r) < 150
    assert r.startswith("type: unknown type 'xxxx")


# --------------------------------------------------------------------------- identity


def test_user_or_anonymous_id_required() -> None:
    assert reason_of({"type": "identify"}) == NO_ID
    assert reason_of({"type": "identify", "userId": "", "anonymousId": None}) == NO_ID
    assert reason_of({"type": "identify", "userId": "  "}) == NO_ID


def test_anonymous_id_alone_is_enough() -> None:
    p = parse_message({"type": "page", "anonymousId": "a1"})
    assert (p.user_id, p.anonymous_id) == (None, "a1")


def test_blank_user_id_counts_as_absent() -> None:
    p = parse_message({"type": "page", "anonymousId": "a1", "userId": ""})
    assert (p.user_id, p.anonymous_id) == (None, "a1")
    assert p.data["userId"] == ""


def test_numeric_ids_become_strings() -> None:
    p = parse_message(
        {"type": "group", "userId": 12345, "anonymousId": 7.0, "groupId": 99, "messageId": 5}
    )
    assert (p.user_id, p.anonymous_id, p.message_id) == ("12345", "7", "5")
    assert p.data["userId"] == "12345"
    assert p.data["anonymousId"] == "7"
    assert p.data["groupId"] == "99"
    assert p.data["messageId"] == "5"
    assert parse_message({"type": "page", "userId": 1.5}).user_id == "1.5"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (True, "userId: must be a string or a number, not a boolean"),
        ({"a": 1}, "userId: must be a string or a number, not an object"),
        ([1], "userId: must be a string or a number, not a list"),
        (float("nan"), "userId: must be a finite number"),
    ],
)
def test_bad_user_id(value: Any, reason: str) -> None:
    assert reason_of(track(userId=value)) == reason


def test_delete_needs_user_id() -> None:
    assert reason_of({"type": "delete", "anonymousId": "a"}) == "delete needs a userId (userId)"
    assert parse_message({"type": "delete", "userId": "u"}).user_id == "u"


# --------------------------------------------------------------------------- per type


def test_track_needs_event() -> None:
    assert reason_of(track(event=...)) == "track needs an event name (event)"
    assert reason_of(track(event="")) == "track needs an event name (event)"
    assert reason_of(track(event=" ")) == "track needs an event name (event)"
    assert reason_of(track(event=None)) == "track needs an event name (event)"
    assert reason_of(track(event=5)) == "event: must be a string, not a number"


def test_event_is_not_required_for_other_types() -> None:
    assert parse_message({"type": "identify", "userId": "u"}).type == "identify"


def test_alias_needs_previous_id_and_user_id() -> None:
    assert reason_of({"type": "alias", "userId": "u"}) == "alias needs a previousId (previousId)"
    assert (
        reason_of({"type": "alias", "previousId": "a", "anonymousId": "a"})
        == "alias needs a userId (userId)"
    )
    p = parse_message({"type": "alias", "previousId": 42, "userId": "u"})
    assert p.data["previousId"] == "42"


def test_group_needs_group_id() -> None:
    assert reason_of({"type": "group", "userId": "u"}) == "group needs a groupId (groupId)"
    assert reason_of({"type": "group", "userId": "u", "groupId": ""}) == (
        "group needs a groupId (groupId)"
    )


# --------------------------------------------------------------------------- fields


def test_unknown_fields_are_kept() -> None:
    msg = track(channel="server", custom={"deep": [1, {"x": None}]}, **{"Odd Key": 1})
    msg["model_config"] = "x"  # names that clash with pydantic internals are plain data
    msg["_private"] = 1
    p = parse_message(msg)
    assert p.data == {**msg, "messageId": p.message_id}


def test_version_number_or_string() -> None:
    for v in (1, 2, "1.1", 1.5):
        assert parse_message(track(version=v)).data["version"] == v
    assert reason_of(track(version=True)) == "version: must be a number or a string"
    assert reason_of(track(version={})) == "version: must be a number or a string"


@pytest.mark.parametrize("field", ["properties", "traits", "context", "integrations"])
def test_objects_must_be_objects(field: str) -> None:
    msg = {"type": "identify" if field == "traits" else "track", "event": "E", "userId": "u"}
    assert reason_of({**msg, field: "x"}) == f"{field}: must be an object"
    assert reason_of({**msg, field: [1]}) == f"{field}: must be an object"
    assert parse_message({**msg, field: None}).data[field] is None
    assert parse_message({**msg, field: {}}).data[field] == {}


def test_traits_on_group_must_be_an_object() -> None:
    msg = {"type": "group", "groupId": "g", "userId": "u", "traits": 3}
    assert reason_of(msg) == "traits: must be an object"


def test_not_a_dict() -> None:
    assert reason_of("x") == "message: must be a JSON object, not a string"
    assert reason_of([]) == "message: must be a JSON object, not a list"
    assert reason_of(None) == "message: must be a JSON object, not null"
    assert reason_of(3) == "message: must be a JSON object, not a number"


def test_non_string_keys() -> None:
    msg: dict[Any, Any] = {**track(), 1: 2}
    assert reason_of(msg) == "message: keys must be strings"


def test_write_key_is_not_part_of_the_message() -> None:
    p = parse_message(track(writeKey="secret", messageId="m1"))
    assert "writeKey" not in p.data
    # the content id does not depend on how the sender authenticated
    a = parse_message(track(writeKey="secret"))
    b = parse_message(track())
    assert a.message_id == b.message_id


def test_deep_nesting_is_rejected_not_crashing() -> None:
    deep: Any = "x"
    for _ in range(400):
        deep = {"a": deep}
    assert reason_of(track(properties=deep)).startswith("message: cannot be encoded as JSON")
    assert reason_of(track(properties=deep, messageId="m")).startswith(
        "message: cannot be encoded as JSON"
    )


def test_integer_beyond_64_bits_is_rejected() -> None:
    r = reason_of(track(properties={"n": 2**70}, messageId="m"))
    assert r.startswith("message: cannot be encoded as JSON")


def test_huge_strings_are_fine_where_text_is_free() -> None:
    p = parse_message(track(properties={"blob": "x" * 1_000_000}))
    assert len(p.data["properties"]["blob"]) == 1_000_000


# --------------------------------------------------------------------------- messageId


def test_message_id_kept() -> None:
    p = parse_message(track(messageId="abc"))
    assert p.message_id == "abc"
    assert p.data["messageId"] == "abc"


def test_message_id_length() -> None:
    assert parse_message(track(messageId="m" * 100)).message_id == "m" * 100
    assert reason_of(track(messageId="m" * 101)) == "messageId: longer than 100 characters"


def test_message_id_wrong_type() -> None:
    assert reason_of(track(messageId={})) == (
        "messageId: must be a string or a number, not an object"
    )


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_blank_message_id_gets_a_content_id(blank: Any) -> None:
    msg = track(messageId=blank)
    p = parse_message(msg)
    assert p.message_id == content_message_id(msg)
    assert p.data["messageId"] == p.message_id


def test_content_message_id_is_sha1_of_canonical_json() -> None:
    msg = {"userId": "u", "type": "track", "event": "E", "properties": {"b": 1, "a": 2}}
    canonical = b'{"event":"E","properties":{"a":2,"b":1},"type":"track","userId":"u"}'
    assert content_message_id(msg) == "emd-" + hashlib.sha1(canonical).hexdigest()
    reordered = {"properties": {"a": 2, "b": 1}, "event": "E", "type": "track", "userId": "u"}
    assert content_message_id(reordered) == content_message_id(msg)
    assert content_message_id({**msg, "event": "F"}) != content_message_id(msg)


def test_retried_identical_body_gets_the_same_id() -> None:
    msg = track(timestamp="2024-05-01T10:00:00Z")
    first = parse_message(json.loads(json.dumps(msg)), received_at=NOW)
    retry = parse_message(json.loads(json.dumps(msg)), received_at=NOW + timedelta(minutes=5))
    assert first.message_id == retry.message_id


def test_content_message_id_on_unencodable_input() -> None:
    with pytest.raises(InvalidMessage, match="cannot be encoded as JSON"):
        content_message_id({"n": 2**80})


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05.678Z", "2024-01-02T03:04:05.678Z"),
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05.000Z"),
        ("2024-01-02 03:04:05Z", "2024-01-02T03:04:05.000Z"),
        ("2024-01-02T03:04Z", "2024-01-02T03:04:00.000Z"),
        ("2024-01-02T03:04:05.1Z", "2024-01-02T03:04:05.100Z"),
        ("2024-01-02T03:04:05.123456789Z", "2024-01-02T03:04:05.123Z"),
        ("2024-01-02T03:04:05+02:00", "2024-01-02T01:04:05.000Z"),
        ("2024-01-02T03:04:05-0530", "2024-01-02T08:34:05.000Z"),
        ("2024-01-02T03:04:05+01", "2024-01-02T02:04:05.000Z"),
        ("2024-01-02T00:30:00+01:00", "2024-01-01T23:30:00.000Z"),
        ("2024-01-02T03:04:05-00:00", "2024-01-02T03:04:05.000Z"),
        ("2024-01-02t03:04:05z", "2024-01-02T03:04:05.000Z"),
        # naive: UTC
        ("2024-01-02T03:04:05.678", "2024-01-02T03:04:05.678Z"),
        # date only: midnight UTC
        ("2024-01-02", "2024-01-02T00:00:00.000Z"),
    ],
)
def test_timestamp_formats(text: str, expected: str) -> None:
    p = parse_message(track(timestamp=text))
    assert p.event_time_iso() == expected
    assert p.event_time.tzinfo is not None
    assert p.event_time.utcoffset() == timedelta(0)
    assert p.data["timestamp"] == text  # kept as sent


@pytest.mark.parametrize(
    "text",
    [
        "2015-2-02T00:30:08.276Z",
        "15-02-02T00:30:08Z",
        "2015-02-2T00:30:08Z",
        "2015/02/02T00:30:08Z",
        "20150202T003008Z",
        "2015-02-02T0:30:08Z",
        "2015-02-02T00:30:08.Z",
        "2015-02-02T00:30:08ZZ",
        "2015-02-02T00:30:08 +01:00",
        "2015-02-02T00:30:08.1234567890Z",
        "2015-W05-1",
        "yesterday",
        "",
        "2015-02-02T00:30:08.276Z\n",
        "٢٠١٥-02-02T00:30:08Z",
    ],
)
def test_bad_timestamp_format(text: str) -> None:
    assert reason_of(track(timestamp=text)) == (
        f"timestamp: {text!r} is not an ISO 8601 date-time (expected YYYY-MM-DDTHH:MM:SS[.fff]Z)"
    )


def test_the_documented_reason_for_the_2015_typo() -> None:
    assert reason_of(track(timestamp="2015-2-02T00:30:08.276Z")) == (
        "timestamp: '2015-2-02T00:30:08.276Z' is not an ISO 8601 date-time "
        "(expected YYYY-MM-DDTHH:MM:SS[.fff]Z)"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "2015-02-30T00:00:00Z",
            "'2015-02-30T00:00:00Z' is not a valid date-time (day is out of range for month)",
        ),
        (
            "2015-13-01T00:00:00Z",
            "'2015-13-01T00:00:00Z' is not a valid date-time (month must be in 1..12)",
        ),
        (
            "2015-01-01T24:00:00Z",
            "'2015-01-01T24:00:00Z' is not a valid date-time (hour must be in 0..23)",
        ),
        (
            "2015-01-01T00:00:00+24:00",
            "'2015-01-01T00:00:00+24:00' has an invalid UTC offset "
            "(expected YYYY-MM-DDTHH:MM:SS[.fff]Z)",
        ),
        ("0001-01-01T00:00:00+01:00", "'0001-01-01T00:00:00+01:00' is out of range in UTC"),
        (
            "0000-01-01T00:00:00Z",
            "'0000-01-01T00:00:00Z' is not a valid date-time (year 0 is out of range)",
        ),
    ],
)
def test_impossible_timestamps(text: str, reason: str) -> None:
    assert reason_of(track(timestamp=text)) == f"timestamp: {reason}"


def test_huge_timestamp_gives_a_short_reason() -> None:
    r = reason_of(track(timestamp="2015-02-02T00:30:08" + "9" * 1_000_000 + "Z"))
    assert r.startswith("timestamp: '2015-02-02T00:30:08999")
    assert len(r) < 150


@pytest.mark.parametrize("field", ["timestamp", "originalTimestamp", "sentAt", "receivedAt"])
def test_every_timestamp_field_is_checked(field: str) -> None:
    assert reason_of(track(**{field: 1700000000})) == (
        f"{field}: must be an ISO 8601 date-time string, not a number"
    )
    assert reason_of(track(**{field: "2015-2-02T00:30:08.276Z"})).startswith(
        f"{field}: '2015-2-02T00:30:08.276Z' is not an ISO 8601 date-time"
    )


def test_event_time_order() -> None:
    times = {
        "timestamp": "2024-01-01T00:00:01Z",
        "originalTimestamp": "2024-01-01T00:00:02Z",
        "sentAt": "2024-01-01T00:00:03Z",
        "receivedAt": "2024-01-01T00:00:04Z",
    }
    fields = list(times)
    for i, name in enumerate(fields):
        present = {k: times[k] for k in fields[i:]}
        p = parse_message(track(**present), received_at=NOW)
        assert p.event_time_iso() == times[name].replace("Z", ".000Z")
    p = parse_message(track(timestamp=None, sentAt="2024-01-01T00:00:03Z"))
    assert p.event_time_iso() == "2024-01-01T00:00:03.000Z"


def test_event_time_falls_back_to_received_at() -> None:
    p = parse_message(track(), received_at=NOW)
    assert p.event_time == NOW
    assert p.data["receivedAt"] == NOW_ISO
    # re-reading the stamped message from the topic gives the same event time
    again = parse_message(p.data)
    assert again.event_time == NOW
    assert again.message_id == p.message_id


def test_received_at_naive_means_utc_and_offsets_are_converted() -> None:
    naive = datetime(2030, 1, 2, 3, 4, 5, 678000)
    assert parse_message(track(), received_at=naive).event_time == NOW
    cet = NOW.astimezone(timezone(timedelta(hours=1)))
    p = parse_message(track(), received_at=cet)
    assert p.event_time == NOW
    assert p.event_time.utcoffset() == timedelta(0)


def test_sender_received_at_is_kept() -> None:
    p = parse_message(track(receivedAt="2024-01-01T00:00:04+01:00"), received_at=NOW)
    assert p.data["receivedAt"] == "2024-01-01T00:00:04+01:00"
    assert p.event_time_iso() == "2023-12-31T23:00:04.000Z"


def test_event_time_without_anything_is_now() -> None:
    before = datetime.now(UTC)
    p = parse_message(track())
    assert before <= p.event_time <= datetime.now(UTC)
    assert "receivedAt" not in p.data


def test_event_time_iso_format() -> None:
    p = ParsedMessage(
        data={},
        type="track",
        message_id="m",
        user_id="u",
        anonymous_id=None,
        event_time=datetime(5, 1, 2, 3, 4, 5, 999999, tzinfo=UTC),
    )
    assert p.event_time_iso() == "0005-01-02T03:04:05.999Z"


def test_parse_iso_keeps_the_offset_as_written() -> None:
    dt = parse_iso("2024-01-02T00:30:00+01:00")
    assert (dt.year, dt.month, dt.day, dt.hour) == (2024, 1, 2, 0)
    assert dt.utcoffset() == timedelta(hours=1)
    assert parse_iso_utc("2024-01-02T00:30:00+01:00") == datetime(2024, 1, 1, 23, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="is not an ISO 8601 date-time"):
        parse_iso("2024-1-02")


# --------------------------------------------------------------------------- batch


def test_split_batch_merges_defaults_shallowly() -> None:
    body = {
        "writeKey": "k",
        "context": {"ip": "1.1.1.1", "device": {"type": "phone"}, "locale": "en"},
        "integrations": {"All": False},
        "batch": [
            {"type": "track", "context": {"ip": "2.2.2.2", "device": {"name": "x"}}},
            {"type": "page", "integrations": {"Mixpanel": True}},
            {"type": "page", "context": None},
            "not an object",
        ],
    }
    items = split_batch(body)
    assert items == [
        {
            "type": "track",
            "context": {"ip": "2.2.2.2", "device": {"name": "x"}, "locale": "en"},
            "integrations": {"All": False},
        },
        {
            "type": "page",
            "context": {"ip": "1.1.1.1", "device": {"type": "phone"}, "locale": "en"},
            "integrations": {"All": False, "Mixpanel": True},
        },
        {
            "type": "page",
            "context": {"ip": "1.1.1.1", "device": {"type": "phone"}, "locale": "en"},
            "integrations": {"All": False},
        },
        "not an object",
    ]
    # the body is not mutated
    assert body["batch"][0]["context"] == {"ip": "2.2.2.2", "device": {"name": "x"}}  # type: ignore[index]


def test_split_batch_item_with_non_object_context_is_left_for_parse_to_reject() -> None:
    items = split_batch({"context": {"ip": "x"}, "batch": [track(context="bad")]})
    assert reason_of(items[0]) == "context: must be an object"


def test_split_batch_without_defaults() -> None:
    items = split_batch({"batch": [track()]})
    assert items == [track()]


@pytest.mark.parametrize("batch", [None, {}, "x", 3])
def test_split_batch_not_a_list(batch: Any) -> None:
    with pytest.raises(InvalidMessage) as info:
        split_batch({"batch": batch})
    assert info.value.reason == "batch: must be a list"
    with pytest.raises(InvalidMessage, match="batch: must be a list"):
        split_batch({})


def test_split_batch_bad_batch_level_context() -> None:
    with pytest.raises(InvalidMessage) as info:
        split_batch({"batch": [], "context": "x"})
    assert info.value.reason == "context: must be an object (batch-level)"


def test_pydantic_models_are_usable_directly() -> None:
    m = TrackMessage.model_validate(
        {"type": "track", "event": "E", "userId": 5, "timestamp": "2024-01-01T00:00:00+01:00"}
    )
    assert m.userId == "5"
    assert m.timestamp == datetime(2023, 12, 31, 23, tzinfo=UTC)


# --------------------------------------------------------------------------- property tests

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

field_names = st.sampled_from(
    [
        "userId",
        "anonymousId",
        "messageId",
        "event",
        "previousId",
        "groupId",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "receivedAt",
        "properties",
        "traits",
        "context",
        "integrations",
        "version",
        "writeKey",
        "name",
    ]
)
timestamps = st.one_of(
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    st.from_regex(r"\A[0-9]{4}-[0-9]{1,2}-[0-9]{2}([T ][0-9:.+Zz-]{0,20})?\Z"),
)
# A valid message of a random type, then a few fields overwritten with anything.
valid_bases = st.builds(
    lambda t, uid, ts: {
        "type": t,
        "userId": uid,
        "event": "E",
        "previousId": "p",
        "groupId": "g",
        "timestamp": ts,
    },
    st.sampled_from([*sorted(MESSAGE_TYPES), "Track", "", "other"]),
    st.text(min_size=1, max_size=5) | st.integers(),
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
)
messages = st.tuples(
    valid_bases, st.dictionaries(field_names, json_values | timestamps, max_size=3)
).map(lambda pair: {**pair[0], **pair[1]})


def check_parse(obj: object) -> None:
    try:
        p = parse_message(obj, received_at=NOW)
    except InvalidMessage as e:
        assert isinstance(e.reason, str)
        assert e.reason
        assert str(e) == e.reason
        return
    assert p.type in MESSAGE_TYPES
    assert "writeKey" not in p.data
    assert p.user_id or p.anonymous_id
    assert p.event_time.utcoffset() == timedelta(0)
    assert p.data["messageId"] == p.message_id
    assert isinstance(obj, dict)
    corrected = (
        obj.get("receivedAt") is None
        and obj.get("sentAt") is not None
        and (obj.get("timestamp") is not None or obj.get("originalTimestamp") is not None)
    )
    if corrected:
        # Clock-skew correction: the event time is on our clock, never after receipt,
        # and the client's own time is kept as originalTimestamp.
        assert p.event_time <= NOW
        own = obj.get("originalTimestamp")
        assert p.data["originalTimestamp"] == (own if own is not None else obj["timestamp"])
    for key, value in obj.items():
        if key in ("writeKey", "messageId") or (key == "receivedAt" and value is None):
            continue
        if corrected and key in ("timestamp", "originalTimestamp"):
            continue
        declared = key in MODELS[p.type].model_fields
        if (
            declared
            and key in ("userId", "anonymousId", "previousId", "groupId")
            and not (isinstance(value, str | None))
        ):
            assert p.data[key] == str(value) or isinstance(value, float)
            continue
        assert p.data[key] is value
    orjson.dumps(p.data)
    assert len(p.event_time_iso()) == 24


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_parse_message_never_crashes_on_any_json_value(value: Any) -> None:
    check_parse(value)


@settings(max_examples=600, deadline=None)
@given(messages)
def test_parse_message_never_crashes_on_message_like_input(msg: dict[str, Any]) -> None:
    check_parse(msg)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5) | json_values)
def test_split_batch_never_crashes(body: Any) -> None:
    try:
        items = split_batch({"batch": body} if not isinstance(body, dict) else body)
    except InvalidMessage:
        return
    for item in items:
        check_parse(item)


# --------------------------------------------------------------------------- clock skew

RECEIVED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _library_message(clock_offset: timedelta, queued: timedelta) -> dict[str, Any]:
    """What a library on a device whose clock is ``clock_offset`` off sends: the event
    happened ``queued`` before the batch left, both read on the device's clock."""
    happened = RECEIVED - queued  # true time (no network delay, for simplicity)
    device = happened + clock_offset
    return {
        "type": "track",
        "userId": "u1",
        "event": "E",
        "timestamp": (device).isoformat(),
        "sentAt": (device + queued).isoformat(),
    }


@pytest.mark.parametrize("offset_hours", [1, -1, 0, 26, -9])
def test_a_device_clock_off_by_hours_gets_the_true_event_time(offset_hours: int) -> None:
    queued = timedelta(seconds=42)
    msg = _library_message(timedelta(hours=offset_hours), queued)
    p = parse_message(msg, received_at=RECEIVED)
    assert p.event_time == RECEIVED - queued  # neither an hour ahead nor "now"
    assert p.data["timestamp"] == format_millis(RECEIVED - queued)
    assert p.data["originalTimestamp"] == msg["timestamp"]  # the device's own reading
    assert p.data["receivedAt"] == format_millis(RECEIVED)
    again = parse_message(p.data)  # read back from the topic: the same time, not re-corrected
    assert again.event_time == p.event_time


def test_a_message_relayed_by_segment_is_not_corrected_again() -> None:
    msg = {
        **_library_message(timedelta(hours=1), timedelta(seconds=5)),
        "receivedAt": "2026-03-01T11:00:00Z",
    }
    p = parse_message(msg, received_at=RECEIVED)
    assert p.data["timestamp"] == msg["timestamp"] and "originalTimestamp" not in p.data


def test_without_sent_at_nothing_is_corrected() -> None:
    msg = {"type": "track", "userId": "u1", "event": "E", "timestamp": "2026-03-01T13:00:00Z"}
    p = parse_message(msg, received_at=RECEIVED)
    assert p.data["timestamp"] == msg["timestamp"]
    assert p.event_time == datetime(2026, 3, 1, 13, tzinfo=UTC)


def test_original_timestamp_is_the_client_time_when_there_is_no_timestamp() -> None:
    msg = {
        "type": "track",
        "userId": "u1",
        "event": "E",
        "originalTimestamp": "2026-03-01T13:00:00Z",
        "sentAt": "2026-03-01T13:00:10Z",
    }
    p = parse_message(msg, received_at=RECEIVED)
    assert p.event_time == RECEIVED - timedelta(seconds=10)
    assert p.data["originalTimestamp"] == msg["originalTimestamp"]


def test_a_correction_past_the_receive_time_is_the_receive_time() -> None:
    msg = {
        "type": "track",
        "userId": "u1",
        "event": "E",
        "timestamp": "2026-03-01T13:00:10Z",
        "sentAt": "2026-03-01T13:00:00Z",  # sent before it happened: the clock jumped
    }
    assert parse_message(msg, received_at=RECEIVED).event_time == RECEIVED


def test_batch_level_sent_at_applies_to_every_message_without_its_own() -> None:
    sent = "2026-03-01T13:00:42Z"  # the device is an hour fast
    body = {
        "sentAt": sent,
        "batch": [
            {"type": "track", "userId": "u1", "event": "E", "timestamp": "2026-03-01T13:00:00Z"},
            {
                "type": "track",
                "userId": "u1",
                "event": "E",
                "timestamp": "2026-03-01T13:00:00Z",
                "sentAt": "2026-03-01T13:00:01Z",
            },
        ],
    }
    first, second = (parse_message(m, received_at=RECEIVED) for m in split_batch(body))
    assert first.event_time == RECEIVED - timedelta(seconds=42)
    assert second.event_time == RECEIVED - timedelta(seconds=1)  # its own sentAt wins


@pytest.mark.parametrize("sent_at", [5, "yesterday", {"a": 1}])
def test_an_invalid_batch_level_sent_at_is_refused(sent_at: Any) -> None:
    with pytest.raises(InvalidMessage) as err:
        split_batch({"sentAt": sent_at, "batch": []})
    assert err.value.reason.startswith("sentAt:") and "batch-level" in err.value.reason


def _parse_iso_by_the_pattern(text: str) -> datetime:
    """What ``parse_iso`` answers, decided by the ISO pattern alone (no shortcut)."""
    from app.segment import plain

    if len(text) > 40 or plain._ISO_SHAPE.fullmatch(text) is None:
        raise ValueError(f"{plain._short(text)} is not an ISO 8601 date-time")
    match = plain._ISO_RE.fullmatch(text)
    assert match is not None
    return plain._parse_iso_slow(text, match)


_USUAL_CHARS = st.sampled_from("0123456789012345678901234567890123456789x-:. Tz٣+")


@settings(max_examples=3000, deadline=None)
@given(st.lists(_USUAL_CHARS, min_size=17, max_size=17), st.booleans())
def test_the_usual_timestamp_shape_parses_as_the_pattern_says(digits: list[str], real: bool):
    """Timestamps laid out as Segment writes them skip the pattern (``_usual_shape``):
    whatever stands where the digits belong (valid or not, other digits, letters), the
    answer, or the rejection, is the pattern's."""
    if real:  # a valid date with what is not a digit put in: both sides are exercised
        digits = [
            c if not c.isdigit() else b for b, c in zip("20261202011150963", digits, strict=True)
        ]
    d = "".join(digits)
    text = f"{d[0:4]}-{d[4:6]}-{d[6:8]}T{d[8:10]}:{d[10:12]}:{d[12:14]}.{d[14:17]}Z"
    try:
        expected: datetime | str = _parse_iso_by_the_pattern(text)
    except ValueError as exc:
        expected = str(exc).split(" (")[0]
    try:
        got: datetime | str = parse_iso(text)
    except ValueError as exc:
        got = str(exc).split(" (")[0]
    assert got == expected
    if isinstance(got, datetime):
        assert isinstance(expected, datetime) and got.utcoffset() == expected.utcoffset()
