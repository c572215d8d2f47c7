"""The pure core's fast paths against the plain code they stand for.

Each fast path (issue 10, "a fast pure core") must decide exactly what the code it
short-cuts decides: the parse of a plain message against the pydantic model, one walk over
many paths against ``read`` per path, the projection's copy (and the data map values it
hands over) against reading each prefix, the compiled filter closures against the general
ones, the identity checks against the regex they replaced, the contact update against
building the wanted fields first, and the JSON encoding against ``OPT_NON_STR_KEYS``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import envelope
from app.account import Account
from app.config.model import AccountConfig, DataMapConfig
from app.datamaps import DataMaps
from app.identity import _JUNK, MAX_ID_LENGTH, is_placeholder, usable_id
from app.jsonpath import MISSING, PathSet, compile_path, read
from app.person import contact_update, iso_z
from app.projection import ALWAYS, Projection
from app.rules import fql
from app.segment import model as segment_model
from app.segment.model import InvalidMessage, ParsedMessage, parse_message
from app.segment.plain import parse_usual
from app.timeline import _order, _overtaken

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RECEIVED = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

# --------------------------------------------------------------------------- values

TIMESTAMPS = [
    "2026-01-02T03:04:05.678Z", "2026-01-02T03:04:05Z", "2026-01-02T03:04:05+01:00",
    "2026-01-02 03:04", "2026-01-02", "2026-01-02t03:04:05z", "2026-02-30T00:00:00Z",
    "2026-01-02T24:00:00Z", "2026-01-02T03:04:05+25:00", "20260102", "2026-W01-1", "",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-01-02T03:04:05.1234567890Z",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", " ", "x", " a ", "null", "0", "00-0", "-1", "u1", "Undefined", "Ü"]),
    st.sampled_from(TIMESTAMPS),
    st.text(max_size=8),
    st.just("m" * 101),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = [
    "type", "messageId", "userId", "anonymousId", "previousId", "groupId", "event", "name",
    "timestamp", "originalTimestamp", "sentAt", "receivedAt", "context", "integrations",
    "traits", "properties", "version", "writeKey", "extra",
]  # fmt: skip


@st.composite
def messages(draw: Any) -> dict[Any, Any]:
    """Mostly valid messages (the plain path's case), each with a few fields changed."""
    t = draw(st.sampled_from(["identify", "track", "page", "screen", "group", "alias", "delete"]))
    msg: dict[Any, Any] = {"type": t, "userId": "u1", "anonymousId": "a-1", "messageId": "m1"}
    msg |= {"timestamp": "2026-01-02T03:04:05.678Z", "context": {"ip": "1"}, "properties": {}}
    msg |= {"track": {"event": "E"}, "group": {"groupId": "g"}, "alias": {"previousId": "p"}}.get(
        t, {}
    )
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        if draw(st.integers(0, 4)) == 0:
            msg.pop(name, None)
        elif name in ("userId", "anonymousId", "previousId", "groupId", "event", "messageId"):
            msg[name] = draw(st.one_of(st.sampled_from(["u1", "a-1", " ", ""]), scalars))
        elif name in ("timestamp", "originalTimestamp", "sentAt", "receivedAt"):
            msg[name] = draw(st.one_of(st.sampled_from(TIMESTAMPS), scalars))
        else:
            msg[name] = draw(json_values)
    if draw(st.integers(0, 30)) == 0:
        msg[draw(st.sampled_from([1, None, 2.5]))] = "non-text key"
    return msg


# --------------------------------------------------------------------------- parse_message


def _outcome(obj: Any, received_at: datetime | None) -> Any:
    try:
        return parse_message(obj, received_at=received_at)
    except InvalidMessage as e:
        return ("invalid", e.reason)


@SETTINGS
@given(messages(), st.booleans())
def test_a_plain_message_parses_as_the_model_parses_it(msg, stamp):
    received = RECEIVED if stamp else None
    fast = _outcome(msg, received)
    original = segment_model._parse_plain
    segment_model._parse_plain = lambda *_, **__: None  # type: ignore[assignment]
    try:
        slow = _outcome(msg, received)
    finally:
        segment_model._parse_plain = original
    timeless = all(msg.get(f) is None for f in segment_model.TIMESTAMP_FIELDS)
    if received is None and timeless and isinstance(fast, ParsedMessage):
        # no timestamp and no receive time: both take "now", which moved in between
        assert isinstance(slow, ParsedMessage)
        assert fast._replace(event_time=None) == slow._replace(event_time=None)
        return
    assert fast == slow


@SETTINGS
@given(st.one_of(messages(), json_values))
def test_the_readers_shortcut_gives_what_parse_message_gives(msg):
    """The link stage and replay call ``parse_usual`` first: where it answers, its
    answer is ``parse_message``'s; where it does not, ``parse_message`` decides."""
    usual = parse_usual(msg)
    if usual is None:
        return
    slow = _outcome(msg, None)
    if all(msg.get(f) is None for f in segment_model.TIMESTAMP_FIELDS):
        assert isinstance(slow, ParsedMessage)  # both took "now", which moved in between
        assert usual._replace(event_time=None) == slow._replace(event_time=None)
    else:
        assert usual == slow


def test_the_readers_shortcut_takes_the_usual_message():
    assert parse_usual({"type": "track", "event": "E", "userId": "u1"}) is not None
    for odd in ([], {"type": 5, "userId": "u1"}, {"type": "kiss", "userId": "u1"}):
        assert parse_usual(odd) is None


def test_the_plain_path_takes_the_usual_message():
    msg = {
        "type": "track",
        "event": "Order Completed",
        "userId": "u1",
        "messageId": "m1",
        "timestamp": "2026-01-02T03:04:05.678Z",
        "properties": {"revenue": 5},
        "context": {"traits": {"email": "a@b.c"}},
        "version": 2,
    }
    assert segment_model._parse_plain(msg, "track", None) is not None
    assert segment_model._parse_plain({**msg, "userId": 5}, "track", None) is None


# --------------------------------------------------------------------------- paths


class _Map(Mapping[str, Any]):
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self):
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


PATHS = [
    "type", "event", "userId", "context.traits.email", "context.locale", "context.page.path",
    "traits.address.city", "traits", "properties.products[0].sku", "properties.products[1]",
    "properties.products[0]", "properties.revenue", "a[0][1].b", "a[0]", "a", "a.b.c",
]  # fmt: skip
objects = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from(["a", "b", "c", "traits", "products", "sku"]), inner),
        st.dictionaries(st.sampled_from(["a", "b", "email", "page", "path"]), inner).map(_Map),
        st.dictionaries(st.sampled_from(["a", "b", "city", "address"]), inner).map(
            MappingProxyType
        ),
    ),
    max_leaves=12,
)


@st.composite
def documents(draw: Any) -> Any:
    doc = draw(objects)
    if isinstance(doc, dict) and draw(st.booleans()):
        doc.update(
            draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "context": st.fixed_dictionaries(
                            {}, optional={"traits": objects, "page": objects, "locale": scalars}
                        ),
                        "traits": objects,
                        "properties": st.fixed_dictionaries(
                            {}, optional={"products": objects, "revenue": scalars}
                        ),
                        "a": objects,
                        "type": scalars,
                    },
                )
            )
        )
    return doc


@SETTINGS
@given(documents(), st.lists(st.sampled_from(PATHS), min_size=1, max_size=8))
def test_one_walk_reads_what_read_reads(doc, paths):
    steps = [compile_path(p) for p in paths]
    expected = [(i, v) for i, s in enumerate(steps) if (v := read(doc, s)) is not MISSING]
    got = PathSet(steps).present(doc)
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert all(a is b for (_, a), (_, b) in zip(got, expected, strict=True))


def _reference_projection(prefixes: tuple[tuple[str, ...], ...], message: Any) -> dict:
    out: dict[str, Any] = {}
    for prefix in prefixes:
        value = read(message, prefix)
        if value is MISSING:
            continue
        node = out
        for step in prefix[:-1]:
            nxt = node.get(step)
            if nxt is None:
                nxt = node[step] = {}
            node = nxt
        node[prefix[-1]] = value
    return out


@SETTINGS
@given(documents(), st.lists(st.sampled_from(PATHS), max_size=8), st.booleans())
def test_the_projection_copies_what_reading_each_prefix_copies(doc, paths, with_reads):
    steps = [compile_path(p) for p in paths]
    reads = PathSet(steps) if with_reads else None
    projection = Projection(steps, reads=reads)
    copy = projection(doc)
    assert copy == _reference_projection(projection.prefixes, doc)
    for i, s in enumerate(steps):  # deciding on the copy is deciding on the message
        assert read(copy, s) == read(doc, s) or read(copy, s) is read(doc, s), (i, s)
    if reads is not None:  # what it handed over is what a walk of the copy finds
        handed = reads.present(copy)
        walked = PathSet(steps).present(copy)
        assert [i for i, _ in handed] == [i for i, _ in walked]
        assert all(a is b for (_, a), (_, b) in zip(handed, walked, strict=True))


def test_the_always_paths_are_kept():
    assert set(Projection([]).prefixes) == {tuple(map(str, p)) for p in ALWAYS}


MAPS = [
    {"name": "email", "path": "context.traits.email", "type": "string", "field": 3},
    {"name": "first", "path": "traits.firstName", "type": "string", "field": 1},
    {"name": "sku", "path": "properties.products[0].sku", "type": "string", "field": 7},
    {"name": "price", "path": "properties.products[1].price", "type": "numeric"},
    {"name": "page", "path": "context.page", "type": "string", "field": 8},
    {"name": "path", "path": "context.page.path", "type": "string", "field": 8},
    {"name": "birthday", "path": "traits.birthday", "type": "date", "field": 4},
    {"name": "at", "path": "traits.createdAt", "type": "datetime"},
    {"name": "again", "path": "traits.firstName", "type": "string", "field": 1},
]


@SETTINGS
@given(documents())
def test_data_maps_on_the_projection_give_what_they_give_on_the_message(doc):
    maps = [DataMapConfig.model_validate(m) for m in MAPS]
    account = Account(
        "a",
        AccountConfig.model_validate(
            {
                "api_keys": ["k"],
                "primary_key": "context.traits.email",
                "emarsys": {"api_url": "http://x/api/v3", "client_id": "c", "client_secret": "s"},
                "data_maps": MAPS,
            }
        ),
    )
    copy = account.projection(doc)
    assert account.data_maps.evaluate_with_reasons(copy) == DataMaps(maps).evaluate_with_reasons(
        doc
    )


# --------------------------------------------------------------------------- identity

_ALL_ZEROS = re.compile(r"^[0\-]+$")


def _reference_placeholder(text: str) -> bool:
    t = text.strip()
    return t.lower() in _JUNK or bool(_ALL_ZEROS.match(t))


def _reference_usable(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        value = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _reference_placeholder(text) or len(text) > MAX_ID_LENGTH:
        return None
    return text


ids = st.one_of(
    scalars,
    st.text(alphabet="0-\n \t\u0130I\u0131[]objectNULundfia", max_size=40),
    st.sampled_from(sorted(_JUNK)).map(lambda j: f" {j.upper()}\n"),
    st.text(min_size=195, max_size=205),
)


@SETTINGS
@given(ids)
def test_usable_ids_are_those_the_regex_allowed(value):
    assert usable_id(value) == _reference_usable(value)
    if isinstance(value, str):
        assert is_placeholder(value) == _reference_placeholder(value)


# --------------------------------------------------------------------------- filters

FILTERS = [
    'a = "x"', 'a != "x"', "a = 1", "a != 1.5", "a = true", "a != false", "a = null",
    "a != null", "user.a = 2", 'user.a != "x"', "user.a = null", "user.a != null",
    "user.a = true", "a >= 3", "a < 2.5", 'a > "m"', '"m" <= a', "3 > user.a", 'user.a <= "b"',
    "a", "user.a", "not a", 'a = "x" and b >= 1 and user.a != null', "a = 1 or b = 2 or c",
    'a in ["x", "y"]', "a > true", "a = [1]",
]  # fmt: skip
filter_values = st.one_of(
    scalars, st.sampled_from(["x", "y", "m", "b", 1, 1.0, 2, 2.5, 3, True, False, None])
)


@SETTINGS
@given(
    st.sampled_from(FILTERS),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), filter_values),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), filter_values),
)
def test_direct_comparisons_decide_as_the_general_ones(text, values, user):
    fast = fql.compile_filter(text, ["a", "b", "c"])
    original = fql._direct_equals, fql._direct_ordered
    fql._direct_equals = lambda *_, **__: None  # type: ignore[assignment]
    fql._direct_ordered = lambda *_, **__: None  # type: ignore[assignment]
    try:
        general = fql.compile_filter(text, ["a", "b", "c"])
    finally:
        fql._direct_equals, fql._direct_ordered = original
    event = {"type": "track", "event": "E"}
    assert fast.evaluate(event, values, user) is general.evaluate(event, values, user)


# --------------------------------------------------------------------------- person


def _reference_update(account: Account, record: dict[str, Any]) -> dict[str, Any] | None:
    pk = record["pk"]
    if pk is None:
        return None
    key_field = str(account.key_field)
    wanted = account.data_maps.fields(record["vals"])
    wanted[key_field] = pk
    sent = record["sent"]
    changed = {f: v for f, v in wanted.items() if v is not None and sent.get(f) != v}
    if not changed:
        return None
    changed[key_field] = pk
    sent.update(changed)
    return changed


@SETTINGS
@given(
    st.lists(st.sampled_from([None, 1, 2, 3, 3, 5]), min_size=0, max_size=6),
    st.sampled_from([3, 5, 9]),
    st.data(),
)
def test_the_contact_update_carries_what_differs_in_the_same_order(fields, key_field, data):
    maps = [
        {"name": f"m{i}", "path": f"traits.m{i}", "type": "string"}
        | ({"field": f} if f is not None else {})
        for i, f in enumerate(fields)
    ]
    account = Account(
        "a",
        AccountConfig.model_validate(
            {
                "api_keys": ["k"],
                "primary_key": "traits.email",
                "emarsys": {
                    "api_url": "http://x/api/v3",
                    "client_id": "c",
                    "client_secret": "s",
                    "key_field": key_field,
                },
                "data_maps": maps,
            }
        ),
    )
    vals = data.draw(
        st.dictionaries(st.sampled_from([m["name"] for m in maps] or ["x"]), filter_values)
    )
    sent = data.draw(st.dictionaries(st.sampled_from(["1", "2", "3", "5", "9"]), filter_values))
    pk = data.draw(st.sampled_from([None, "pk", "x"]))
    mine = {"pk": pk, "vals": dict(vals), "sent": dict(sent)}
    theirs = {"pk": pk, "vals": dict(vals), "sent": dict(sent)}
    update = contact_update(account, "p", mine, 0.0)
    expected = _reference_update(account, theirs)
    assert (update and update["fields"]) == expected or update is expected
    if update is not None:
        assert list(update["fields"].items()) == list(expected.items())
    assert list(mine["sent"].items()) == list(theirs["sent"].items())


@SETTINGS
@given(
    st.one_of(
        st.floats(min_value=-6.2e10, max_value=2.5e11),
        st.integers(min_value=-62_000_000_000, max_value=250_000_000_000).map(float),
        st.floats(min_value=1.7e9, max_value=1.8e9).map(lambda f: int(f) + 0.9999996),
    )
)
def test_iso_z_writes_what_strftime_writes(ts):
    assert iso_z(ts) == datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@SETTINGS
@given(
    st.lists(st.tuples(st.sampled_from([1.0, 2.0, 3.0]), st.booleans()), min_size=0, max_size=6),
    st.tuples(st.sampled_from([1.0, 2.0, 3.0, 2.5]), st.booleans()),
)
def test_a_late_input_is_told_as_the_order_tuples_tell_it(inputs, new):
    items = [{"t": t, "s": s} | ({"merge": "x"} if m else {}) for s, (t, m) in enumerate(inputs)]
    item = {"t": new[0], "s": len(items)} | ({"merge": "x"} if new[1] else {})
    latest = max((_order(i) for i in items), default=None)
    assert _overtaken(items, item) == (latest is not None and _order(item) < latest)


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1.5, None, True], "c": {"d": "é"}},
        {"a": {1: "int key"}},
        {"a": {str.__new__(type("S", (str,), {}), "k"): 1}},
        [{"x": float("nan")}],
    ],
)
def test_dumps_writes_the_bytes_of_the_non_text_keys_option(value):
    assert envelope.dumps(value) == orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def test_dumps_still_refuses_what_orjson_refuses():
    with pytest.raises(TypeError):
        envelope.dumps({"a": 2**70})


@SETTINGS
@given(
    st.one_of(
        st.from_regex(segment_model._ISO_RE, fullmatch=True),
        st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt x][0-9:.,Zz+\-]{0,20}", fullmatch=True),
        st.text(max_size=30),
    )
)
def test_the_timestamp_shape_is_the_pattern_without_its_groups(text):
    assert (segment_model._ISO_SHAPE.fullmatch(text) is None) == (
        segment_model._ISO_RE.fullmatch(text) is None
    )
