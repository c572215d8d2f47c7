"""A person's delivery log (``app.delivery_log``): appended to as bytes, read as entries."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.delivery_log import LogAppends, append, entries
from app.envelope import dumps
from app.stages.state import DictTable

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def entry(i, text="ok"):
    return {"op": "upsert", "ok": True, "contact": f"c{i}@example.com", "text": text, "n": i}


def test_an_empty_log_gets_its_entries_as_json():
    raw = append(None, [entry(1), entry(2)], 50)
    assert orjson.loads(raw)["e"] == [entry(1), entry(2)]
    assert entries(raw) == [entry(1), entry(2)]


def test_a_full_log_keeps_the_newest():
    raw = None
    for i in range(60):
        raw = append(raw, [entry(i)], 50)
    assert [e["n"] for e in entries(raw)] == list(range(10, 60))


def test_an_append_does_not_parse_the_entries_it_keeps():
    """Kept entries are cut and copied as bytes: text that is not even JSON survives."""
    odd = b"<not json>"
    raw = (
        b'{"e":['
        + odd
        + b","
        + dumps(entry(1))
        + b'],"~n":[10,'
        + str(len(dumps(entry(1)))).encode()
        + b"]}"
    )
    out = append(raw, [entry(2)], 50)
    assert out.startswith(b'{"e":[<not json>,')
    assert entries(append(out, [entry(3)], 2)) == [entry(2), entry(3)]


def test_entries_that_look_like_the_separator_are_kept_whole():
    tricky = entry(1, text='],"~n":[1,2]}')
    raw = append(append(None, [tricky], 50), [entry(2)], 50)
    assert entries(raw) == [tricky, entry(2)]


def test_a_log_written_as_a_plain_list_is_read_and_continued():
    old = dumps([entry(i) for i in range(50)])  # before this layout
    assert entries(old) == [entry(i) for i in range(50)]
    raw = append(old, [entry(50)], 50)
    assert [e["n"] for e in entries(raw)] == list(range(1, 51))
    assert orjson.loads(raw)["~n"] == [len(dumps(entry(i))) for i in range(1, 51)]


def test_a_log_whose_lengths_do_not_add_up_is_parsed_whole():
    raw = append(None, [entry(1), entry(2)], 50)
    whole = orjson.loads(raw)
    whole["e"].append(entry(3))  # rewritten by code that did not keep the lengths
    out = append(dumps(whole), [entry(4)], 50)
    assert [e["n"] for e in entries(out)] == [1, 2, 3, 4]


@SETTINGS
@given(
    st.lists(
        st.lists(
            st.builds(entry, st.integers(0, 10**6), st.text(max_size=12)), min_size=0, max_size=5
        ),
        max_size=12,
    ),
    st.integers(1, 6),
)
def test_any_appends_give_the_last_entries_in_order(batches, limit):
    raw, model = None, []
    for batch in batches:
        raw = append(raw, batch, limit)
        model = (model + batch)[-limit:]
        assert entries(raw) == model


def test_a_batch_writes_each_log_once_and_a_delete_forgets_it():
    table = DictTable()
    table.set(b"p1", append(None, [entry(0)], 50))
    table.set(b"p2", append(None, [entry(0)], 50))
    logs = LogAppends(table, 50)
    logs.add(b"p1", entry(1))
    logs.add(b"p1", entry(2))
    logs.add(b"p2", entry(1))
    logs.delete(b"p2")  # the person was deleted after its delivery
    logs.delete(b"p3")
    logs.add(b"p3", entry(3))  # deleted, then a new delivery: a new log
    logs.flush()
    assert entries(table.get(b"p1")) == [entry(0), entry(1), entry(2)]
    assert table.get(b"p2") is None
    assert entries(table.get(b"p3")) == [entry(3)]
    logs.flush()  # nothing left to write
    assert entries(table.get(b"p1")) == [entry(0), entry(1), entry(2)]
