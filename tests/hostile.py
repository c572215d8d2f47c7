"""Hostile Segment input for the fuzz tests (unit: HTTP ingest; integration: HTTP + topic).

Bodies are built as bytes, not with ``json.dumps`` alone, so they can hold what no JSON
library writes: numbers beyond double range (``1e400``), integers beyond 64 bits, NaN,
duplicate keys, nesting deeper than any recursion limit, invalid UTF-8, raw NUL bytes.
``Raw(text)`` marks a JSON fragment spliced in verbatim.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from app.segment.model import BATCH_LIMIT, BATCH_MAX_MESSAGES, MESSAGE_LIMIT

ROOT = Path(__file__).resolve().parents[1]
COUNTS_FILE = ROOT / ".bench" / "fuzz-counts.json"

FIELDS = (
    "type",
    "userId",
    "anonymousId",
    "previousId",
    "groupId",
    "messageId",
    "event",
    "name",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "context",
    "integrations",
    "properties",
    "traits",
    "version",
    "writeKey",
    "batch",
)
"""Every field a message (or batch) may carry: each gets wrong types in turn."""


@dataclass(frozen=True)
class Raw:
    """A JSON fragment written verbatim (``1e400``, ``NaN``, 1,000 nested lists...)."""

    text: str


def nested(depth: int, kind: str = "list") -> Raw:
    if kind == "list":
        return Raw("[" * depth + "1" + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


def encode(value: Any) -> bytes:
    """JSON bytes of ``value``; ``Raw`` fragments spliced in; NaN/Infinity allowed."""
    fragments: list[str] = []

    def default(o: Any) -> Any:
        if isinstance(o, Raw):
            fragments.append(o.text)
            return f"\x00raw{len(fragments) - 1}\x00"
        raise TypeError(type(o).__name__)

    def walk(v: Any) -> Any:
        if isinstance(v, Raw):
            return default(v)
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    text = json.dumps(walk(value), allow_nan=True)
    for i, frag in enumerate(fragments):
        text = text.replace(json.dumps(f"\x00raw{i}\x00"), frag, 1)
    return text.encode("utf-8", "surrogatepass")


HUGE_NUMBERS = [
    Raw("1e400"),
    Raw("-1e400"),
    Raw("1E+999"),
    Raw(str(2**70)),
    Raw(str(-(2**70))),
    Raw(str(2**64)),
    Raw(str(-(2**63) - 1)),
    Raw("1" + "0" * 400),
    Raw("0." + "0" * 400 + "1"),
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw("-0"),
    Raw("1e-400"),
]

# The shape of every wrong type: one of each JSON kind, plus the edge values of each.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.text(st.characters(codec="utf-8"), max_size=8),
    st.sampled_from(["", " ", "\x00", "null", "0", "undefined", "\u2028", "\ufeff", "\U0001f600"]),
    st.sampled_from(HUGE_NUMBERS),
    # Lone surrogates: json.dumps writes them as \udXXX escapes, which are invalid JSON text.
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
deep = st.builds(
    nested,
    st.sampled_from([100, 250, 252, 253, 254, 255, 256, 500, 1000, 1023, 1025]),
    st.sampled_from(["list", "dict"]),
)
big_strings = st.sampled_from(
    [1000, 30_000, MESSAGE_LIMIT - 300, MESSAGE_LIMIT, MESSAGE_LIMIT + 10]
).map(lambda n: "x" * n)
hostile_values = st.one_of(values, values, deep, big_strings)

GOOD_IDS = ["u1", "user-42", "a1", "anon-7"]
base_messages = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["identify", "track", "page", "screen", "group", "alias", "delete"]
        ),
        "userId": st.sampled_from(GOOD_IDS),
        "event": st.just("Order Completed"),
        "groupId": st.just("g1"),
        "previousId": st.just("a1"),
    },
    optional={
        "anonymousId": st.sampled_from(GOOD_IDS),
        "messageId": st.text(min_size=1, max_size=12),
        "timestamp": st.just("2024-01-02T03:04:05Z"),
        "context": st.just({"traits": {"email": "fuzz@example.invalid"}}),
        "properties": st.just({"revenue": 10}),
    },
)


@st.composite
def hostile_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A plausible message with one to four fields replaced by hostile values."""
    msg = draw(base_messages)
    overlay = draw(st.dictionaries(st.sampled_from(FIELDS), hostile_values, min_size=1, max_size=4))
    msg.update(overlay)
    return msg


@st.composite
def duplicate_keys(draw: st.DrawFn) -> bytes:
    """A message whose text repeats keys (JSON parsers keep the last: a classic smuggle)."""
    msg = draw(base_messages)
    body = encode(msg)
    dups = draw(st.lists(st.tuples(st.sampled_from(FIELDS), values), min_size=1, max_size=3))
    extra = ",".join(
        f"{json.dumps(k)}:{encode(v).decode('utf-8', 'surrogatepass')}" for k, v in dups
    )
    where = draw(st.sampled_from(["front", "back"]))
    text = body.decode("utf-8", "surrogatepass")
    text = "{" + extra + "," + text[1:] if where == "front" else text[:-1] + "," + extra + "}"
    return text.encode("utf-8", "surrogatepass")


BAD_BYTES = [
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",  # invalid continuation
    b"\xc0\xaf",  # overlong '/'
    b"\xed\xa0\x80",  # UTF-8-encoded surrogate
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xe2\x82",  # truncated sequence
    b"\x00",
    b"\x00\x00\x00\x00",
    b"\xef\xbb\xbf",  # BOM
    b"\\",
    b'"',
]


@st.composite
def mangled(draw: st.DrawFn, source: st.SearchStrategy[bytes]) -> bytes:
    """Valid-looking bytes with invalid UTF-8 / NUL bytes spliced in, or cut short."""
    body = draw(source)
    op = draw(st.sampled_from(["insert", "insert", "truncate", "prefix", "replace"]))
    if op == "truncate":
        return body[: draw(st.integers(0, max(0, len(body) - 1)))]
    bad = draw(st.sampled_from(BAD_BYTES))
    if op == "prefix":
        return bad + body
    at = draw(st.integers(0, len(body)))
    if op == "replace" and at < len(body):
        return body[:at] + bad + body[at + 1 :]
    return body[:at] + bad + body[at:]


def message_bytes() -> st.SearchStrategy[bytes]:
    return st.one_of(
        hostile_messages().map(encode),
        duplicate_keys(),
        mangled(base_messages.map(encode)),
        mangled(hostile_messages().map(encode)),
        st.sampled_from(
            [
                b"",
                b" ",
                b"null",
                b"[]",
                b"[{}]",
                b"1",
                b"1e400",
                b'"text"',
                b"true",
                b"{}",
                b"{",
                b'{"type":',
                b'{"type": "track"',
                b'{"type": "track", "userId": "u1", "event": "E"}}',
                b"\x00",
                b'{"type": "track", "userId": "u1", "event": "E\x00"}',
                b'{"type": "track", "userId": "u1\\u0000", "event": "E"}',
                b'{"type": "track", "userId": "\\ud800", "event": "E"}',
                b'{"type": "track", "userId": "u1", "event": "E", "__proto__": {"x": 1}}',
                nested(1000).text.encode(),
                nested(1000, "dict").text.encode(),
                nested(100_000).text.encode(),
            ]
        ),
        st.binary(max_size=200),
    )


def sized_message(size: int, user: str = "u1") -> dict[str, Any]:
    """A valid track message whose compact JSON is exactly ``size`` bytes."""
    msg: dict[str, Any] = {
        "type": "track",
        "userId": user,
        "event": "Big",
        "messageId": f"big-{user}-{size}",
        "properties": {"blob": ""},
    }
    pad = size - len(json.dumps(msg, separators=(",", ":")))
    assert pad >= 0
    msg["properties"]["blob"] = "x" * pad
    return msg


SIZE_CASES = [
    # (name, path, body bytes, expected status)
    ("message at 32 KB", "/v1/track", MESSAGE_LIMIT, 200),
    ("message 1 byte under 32 KB", "/v1/track", MESSAGE_LIMIT - 1, 200),
    ("message 1 byte over 32 KB", "/v1/track", MESSAGE_LIMIT + 1, 413),
    ("message 10 KB over 32 KB", "/segment", MESSAGE_LIMIT + 10_000, 413),
]


def single_body(size: int, user: str = "u1") -> bytes:
    body = json.dumps(sized_message(size, user), separators=(",", ":")).encode()
    assert len(body) == size
    return body


def batch_body(total: int, count: int, user: str = "u1") -> bytes:
    """A batch body of exactly ``total`` bytes holding ``count`` valid messages (padding
    spread over the messages, so each stays far under 32 KB)."""
    msgs: list[dict[str, Any]] = [
        {
            "type": "track",
            "userId": f"{user}-{i % 50}",
            "event": "B",
            "messageId": f"{user}-b{i}",
            "properties": {"pad": ""},
        }
        for i in range(count)
    ]
    pad = total - len(json.dumps({"batch": msgs}, separators=(",", ":")))
    assert pad >= 0, (total, count)
    for i, m in enumerate(msgs):
        m["properties"]["pad"] = "x" * (pad // count + (1 if i < pad % count else 0))
    raw = json.dumps({"batch": msgs}, separators=(",", ":")).encode()
    assert len(raw) == total
    return raw


BATCH_SIZE_CASES = [
    # (name, body size, messages, expected status)
    ("batch at 500 KB", BATCH_LIMIT, 100, 200),
    ("batch 1 byte over 500 KB", BATCH_LIMIT + 1, 100, 413),
    ("batch of 2,500 messages", 400_000, BATCH_MAX_MESSAGES, 200),
    ("batch of 2,501 messages", 400_000, BATCH_MAX_MESSAGES + 1, 413),
    ("batch over 500 KB and 2,500 messages", BATCH_LIMIT + 100_000, BATCH_MAX_MESSAGES + 1, 413),
]


def record_counts(section: str, counts: dict[str, Any]) -> None:
    """Merge ``counts`` under ``section`` into ``.bench/fuzz-counts.json`` and print them."""
    COUNTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(COUNTS_FILE.read_text())
    except (OSError, ValueError):
        data = {}
    data[section] = {**counts, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    parts = [v for k, v in data.items() if k != "total" and isinstance(v, dict)]
    cases = sum(v.get("cases", 0) for v in parts)
    crashes = sum(v.get("crashes", 0) for v in parts)
    data["total"] = {"cases": cases, "crashes": crashes}
    tmp = COUNTS_FILE.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(COUNTS_FILE)
    print(f"\nfuzz [{section}]: {json.dumps(counts, sort_keys=True)}")
