"""Merging updates of one contact and chunking rows into Emarsys-sized requests."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from app.emarsys.batching import (
    CONTACT_MAX_BYTES,
    TRIGGER_MAX_BYTES,
    chunk,
    merge_contacts,
    row_size,
)


def body_size(rows: list[dict[str, Any]]) -> int:
    return len(orjson.dumps({"key_id": 3, "contacts": rows, "contact_list_id": 123456789}))


def test_merge_later_fields_win_first_order_kept() -> None:
    rows: list[dict[str, Any]] = [
        {"3": "a@x.com", "1": "Ann", "2": "Old"},
        {"3": "b@x.com", "1": "Bob"},
        {"3": "a@x.com", "2": "New", "31": 1},
        {"3": "c@x.com"},
        {"3": "b@x.com", "1": "Bobby"},
    ]
    merged = merge_contacts(rows, 3)
    assert merged == [
        {"3": "a@x.com", "1": "Ann", "2": "New", "31": 1},
        {"3": "b@x.com", "1": "Bobby"},
        {"3": "c@x.com"},
    ]


def test_merge_never_two_rows_with_one_key() -> None:
    rows = [{"3": f"u{i % 7}@x.com", "1": str(i)} for i in range(100)]
    merged = merge_contacts(rows, 3)
    keys = [r["3"] for r in merged]
    assert len(keys) == len(set(keys)) == 7
    assert merged[0]["1"] == "98"  # the last update of u0 wins


def test_merge_normalises_field_ids_and_key_values() -> None:
    rows: list[dict[Any, Any]] = [{3: 42, 1: "A"}, {"3": "42", "2": "B"}]
    assert merge_contacts(rows, 3) == [{"3": "42", "1": "A", "2": "B"}]


def test_merge_other_key_field() -> None:
    rows = [{"7": "x", "3": "a@x.com"}, {"7": "x", "3": "b@x.com"}]
    assert merge_contacts(rows, 7) == [{"7": "x", "3": "b@x.com"}]


def test_merge_rows_without_key_pass_through() -> None:
    rows: list[dict[str, Any]] = [{"1": "no key"}, {"3": None, "1": "null key"}, {"3": "a"}]
    assert merge_contacts(rows, 3) == [{"1": "no key"}, {"3": None, "1": "null key"}, rows[2]]


def test_merge_does_not_mutate_input() -> None:
    first = {"3": "a", "1": "x"}
    merge_contacts([first, {"3": "a", "1": "y"}], 3)
    assert first == {"3": "a", "1": "x"}


def test_chunk_count_limit() -> None:
    rows = [{"3": f"u{i}@x.com"} for i in range(2500)]
    batches, too_big = chunk(rows)
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert [r for b in batches for r in b] == rows
    assert too_big == []


def test_chunk_empty() -> None:
    assert chunk([]) == ([], [])


def test_chunk_contact_byte_limit_8mb() -> None:
    rows = [{"3": f"u{i}@x.com", "10": "x" * 100_000} for i in range(200)]
    batches, too_big = chunk(rows, max_bytes=CONTACT_MAX_BYTES)
    assert not too_big
    assert len(batches) >= 3
    for b in batches:
        assert len(b) <= 1000
        assert body_size(b) <= CONTACT_MAX_BYTES
    assert [r for b in batches for r in b] == rows
    # greedy: a batch is only closed when the next row would not fit
    for b, nxt in itertools.pairwise(batches):
        assert body_size([*b, nxt[0]]) > CONTACT_MAX_BYTES - 256


def test_chunk_trigger_byte_limit_1mb() -> None:
    rows = [
        {"external_id": f"u{i}@x.com", "trigger_id": f"t{i}", "data": {"global": {"p": "y" * 3000}}}
        for i in range(1000)
    ]
    batches, too_big = chunk(rows, max_bytes=TRIGGER_MAX_BYTES)
    assert not too_big
    assert len(batches) == 4
    for b in batches:
        assert len(orjson.dumps({"key_id": 3, "contacts": b})) <= TRIGGER_MAX_BYTES


def test_chunk_both_limits_at_once() -> None:
    small = [{"3": f"s{i}"} for i in range(1500)]
    big = [{"3": f"b{i}", "1": "z" * 400_000} for i in range(30)]
    batches, _ = chunk(small + big)
    for b in batches:
        assert len(b) <= 1000 and body_size(b) <= CONTACT_MAX_BYTES


def test_chunk_single_row_over_limit_is_flagged_alone() -> None:
    rows = [{"3": "a"}, {"3": "huge", "1": "x" * 2_000_000}, {"3": "b"}]
    batches, too_big = chunk(rows, max_bytes=TRIGGER_MAX_BYTES)
    assert batches == [[rows[0], rows[2]]]
    assert len(too_big) == 1
    row, reason = too_big[0]
    assert row is rows[1]
    assert "1000000" in reason and "bytes" in reason


def test_chunk_custom_size_and_count() -> None:
    rows = [{"n": i} for i in range(10)]
    batches, too_big = chunk(rows, max_count=3, max_bytes=1000, size=lambda r: 1, envelope=0)
    assert [[r["n"] for r in b] for b in batches] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert not too_big


def test_chunk_rejects_bad_count() -> None:
    with pytest.raises(ValueError):
        chunk([{"3": "a"}], max_count=0)


def test_row_size_matches_orjson() -> None:
    row = {"3": "a@x.com", "1": "Ännchen"}
    assert row_size(row) == len(orjson.dumps(row))
