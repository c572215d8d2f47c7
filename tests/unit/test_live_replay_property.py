"""Live and replay decide alike: the only thing live adds is clock ticks at wall-clock
times between events (each worker fires due deadlines once a second). For random in-order
streams, ticks at any times between the events (never beyond the next event: the wall
clock is at or past an event's time when it arrives in order) give exactly the triggers
of a replay without them, with the same trigger_ids."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.replay.driver import Replay
from tests.unit.test_replay import config

BASE = 1_767_312_000.0  # 2026-01-02T00:00:00Z
EVENTS = ["Coupon Entered", "Order Completed", "Product Viewed", "Product Added", "Other"]
PEOPLE = ["p1", "p2", "p3"]


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@st.composite
def streams(draw: Any) -> tuple[list[dict[str, Any]], list[list[float]]]:
    n = draw(st.integers(min_value=1, max_value=25))
    gaps = draw(st.lists(st.integers(min_value=0, max_value=7200), min_size=n, max_size=n))
    t, events, ticks = BASE, [], []
    for i, gap in enumerate(gaps):
        before = t
        t += gap
        person = draw(st.sampled_from(PEOPLE))
        anonymous = draw(st.booleans()) and i < n - 1
        msg: dict[str, Any] = {
            "type": "track",
            "event": draw(st.sampled_from(EVENTS)),
            "messageId": f"m{i}",
            "timestamp": _iso(t),
            "properties": {"cart_id": draw(st.sampled_from(["A", "B"])), "coupon": f"C{i}"},
        }
        if anonymous:
            msg["anonymousId"] = f"anon-{person}"
        else:
            msg["userId"] = person
            msg["anonymousId"] = f"anon-{person}"
            msg["context"] = {"traits": {"email": f"{person}@example.com"}}
        events.append(msg)
        # Live ticks that may have happened between the previous event and this one.
        ticks.append(sorted(draw(st.lists(st.floats(min_value=before, max_value=t), max_size=3))))
    events.append(  # a final event moves both clocks past every deadline
        {"type": "page", "userId": "clock", "messageId": "clock", "timestamp": _iso(t + 86400 * 3)}
    )
    ticks.append([])
    return events, ticks


def triggers(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (x["trigger_id"], x["contact"], x["event_time"], json.dumps(x["data"], sort_keys=True))
        for x in lines
        if x["kind"] == "trigger"
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_ticks_between_events_change_nothing(case: tuple[list[dict[str, Any]], list[list[float]]]):
    events, ticks = case
    cfg = config()
    replay, live = Replay(cfg), Replay(cfg)
    replayed: list[dict[str, Any]] = []
    lived: list[dict[str, Any]] = []
    for msg, before in zip(events, ticks, strict=True):
        for t in before:
            lived += live.advance(t)
        replayed += replay.feed(msg)
        lived += live.feed(msg)
    replayed += replay.finish()
    lived += live.finish()
    assert triggers(lived) == triggers(replayed)
    assert replayed[-1]["transitions"] == lived[-1]["transitions"]
