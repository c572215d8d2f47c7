"""Late events (issue 13): triggers follow event time, not how events were chunked.

The live pipeline (``tests.live_sim``: the real stages) receives each event at a given
wall-clock time and runs its clock every second, as the workers do. For people whose
consecutive events arrive less than ``allowed_lateness`` apart, however old their
timestamps, the outcome is replay's (event-time order); on-time deadlines are delayed by
at most ``allowed_lateness``, and not at all for a person quiet that long before them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import load_config_text
from app.replay.driver import Replay
from tests.live_sim import LiveSim, replay_contacts, replay_rows

NOW = 1_767_340_800.0  # 2026-01-02T08:00:00Z: the wall clock when the phone reconnects
LATENESS = 60.0

CONFIG = """\
allowed_lateness: 60s
accounts:
  acme:
    api_keys: ["acme-key"]
    primary_key: context.traits.email
    emarsys: {api_url: "http://127.0.0.1:9/api/v3", client_id: c, client_secret: s}
    data_maps:
      - {name: email, path: context.traits.email, type: string, field: 3}
      - {name: ecom_event, path: event, type: string}
      - {name: coupon, path: properties.coupon, type: string}
    rules:
      - name: viewed-then-signed-up
        lifetime: 1h
        conditions:
          - {sequence: 0, type: start, on: track, match: 'ecom_event = "Viewed Pricing"'}
          - {sequence: 1, type: step, on: track, match: 'ecom_event = "Signed Up"'}
          - {sequence: 2, type: exit, trigger: 5001}
      - name: coupon-no-order
        lifetime: 4h
        conditions:
          - {sequence: 0, type: start, on: track, match: 'ecom_event = "Coupon Entered"'}
          - {sequence: 0, type: exclude, on: track, match: 'ecom_event = "Order Completed"'}
          - {sequence: 1, type: exit, wait: 30m, trigger: 5002, variables: [coupon]}
      - name: quick
        lifetime: 1d
        conditions:
          - {sequence: 0, type: start, on: track, match: 'ecom_event = "Quick"'}
          - {sequence: 1, type: exit, wait: 30s, trigger: 5003}
      - name: slow
        lifetime: 1d
        conditions:
          - {sequence: 0, type: start, on: track, match: 'ecom_event = "Slow"'}
          - {sequence: 1, type: exit, wait: 1h, trigger: 5004}
"""


def cfg(text: str = CONFIG):
    return load_config_text(text)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def track(user: str, event: str, t: float, n: int, **props: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": event,
        "messageId": f"{user}-{n}",
        "timestamp": iso(t),
        "properties": props,
        "context": {"traits": {"email": f"{user}@example.com"}},
    }


def live(arrivals: list[tuple[float, dict[str, Any]]], until: float, text: str = CONFIG):
    """Each event ingested and processed at its wall-clock arrival time; the clock runs
    every second in between (as each worker's does) and on until ``until``."""
    sim = LiveSim(cfg(text), partitions=4)
    emitted: dict[str, float] = {}  # trigger_id -> wall clock when it was sent
    arrivals = sorted(arrivals, key=lambda a: a[0])
    sim.now = arrivals[0][0]
    i = 0
    while i < len(arrivals) or sim.now < until:
        while i < len(arrivals) and arrivals[i][0] <= sim.now:
            sim.ingest(arrivals[i][1], "acme")
            i += 1
        sim.drain()
        sim.tick()
        sim.drain()
        for tid in sim.trigger_sends:
            emitted.setdefault(tid, sim.now)
        sim.now += 1.0
    return sim, emitted


def replay_sorted(events: list[dict[str, Any]], until: float) -> list[dict[str, Any]]:
    r = Replay(cfg())
    lines: list[dict[str, Any]] = []
    for e in sorted(events, key=lambda e: e["timestamp"]):
        lines += r.feed(orjson.dumps(e))
    lines += r.advance(until)
    return lines + r.finish()


def test_offline_phone_events_seconds_apart_trigger_as_in_replay():
    """L1: Viewed Pricing three hours ago, Signed Up a minute later, delivered 3 s apart."""
    old = NOW - 3 * 3600
    vp, su = track("l1", "Viewed Pricing", old, 1), track("l1", "Signed Up", old + 60, 2)
    sim, _ = live([(NOW, vp), (NOW + 3, su)], until=NOW + 120)
    assert [(e["rule"], e["event_time"]) for e in sim.triggers.values()] == [
        ("viewed-then-signed-up", iso(old + 60)[:19] + "Z")
    ]
    assert sim.trigger_rows() == replay_rows(replay_sorted([vp, su], NOW + 120))


def test_the_same_events_in_one_batch_give_the_same_trigger():
    """L2: the same two events in one HTTP batch: the same trigger, the same trigger_id."""
    old = NOW - 3 * 3600
    vp, su = track("l2", "Viewed Pricing", old, 1), track("l2", "Signed Up", old + 60, 2)
    one_batch, _ = live([(NOW, vp), (NOW, su)], until=NOW + 120)
    apart, _ = live([(NOW, vp), (NOW + 3, su)], until=NOW + 120)
    assert one_batch.trigger_rows() == apart.trigger_rows() != []


def test_without_a_lateness_window_the_offline_phone_loses_its_trigger():
    """Why the window exists: with allowed_lateness 0 the clock expires the instance
    between the two deliveries (arrival order decides, as before)."""
    old = NOW - 3 * 3600
    vp, su = track("l0", "Viewed Pricing", old, 1), track("l0", "Signed Up", old + 60, 2)
    text = CONFIG.replace("allowed_lateness: 60s", "allowed_lateness: 0s")
    sim, _ = live([(NOW, vp), (NOW + 3, su)], until=NOW + 120, text=text)
    assert sim.triggers == {}


def test_an_on_time_short_wait_fires_within_the_wait_plus_the_window():
    t0 = NOW
    sim, emitted = live([(t0, track("q", "Quick", t0, 1))], until=t0 + 200)
    (tid,) = sim.triggers
    assert sim.triggers[tid]["event_time"] == iso(t0 + 30)[:19] + "Z"  # event time unchanged
    assert t0 + 30 <= emitted[tid] <= t0 + 30 + LATENESS + 1


def test_an_on_time_long_wait_is_not_delayed():
    t0 = NOW
    sim, emitted = live([(t0, track("s", "Slow", t0, 1))], until=t0 + 3700)
    (tid,) = sim.triggers
    assert emitted[tid] <= t0 + 3600 + 1  # the next clock run after the deadline


def test_a_late_order_inside_the_window_still_excludes():
    """Out of order within the window: the order (earlier event time) arrives after the
    event that followed it; applied in event-time order it excludes the coupon."""
    old = NOW - 7200
    coupon = track("x", "Coupon Entered", old, 1, coupon="C")
    page = track("x", "Browse", old + 20 * 60, 2)
    order = track("x", "Order Completed", old + 10 * 60, 3)
    sim, _ = live([(NOW, coupon), (NOW + 5, page), (NOW + 10, order)], until=NOW + 200)
    assert sim.triggers == {}
    assert replay_rows(replay_sorted([coupon, page, order], NOW + 200)) == []


@st.composite
def schedules(draw: Any) -> list[tuple[float, dict[str, Any]]]:
    """A few people; each sends a journey with timestamps hours old (minutes apart, in
    order), delivered one at a time with gaps under the lateness window."""
    arrivals: list[tuple[float, dict[str, Any]]] = []
    events = ["Viewed Pricing", "Signed Up", "Coupon Entered", "Order Completed", "Browse"]
    for p in range(draw(st.integers(1, 3))):
        user = f"p{p}"
        t = NOW - draw(st.integers(0, 6 * 3600))
        w = NOW + draw(st.integers(0, 30))
        for n in range(draw(st.integers(1, 5))):
            t += draw(st.integers(1, 45 * 60))
            w += draw(st.integers(0, int(LATENESS) - 1))
            e = track(user, draw(st.sampled_from(events)), min(t, w - 1), n, coupon=f"C{n}")
            arrivals.append((w, e))
    return arrivals


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_arrival_gaps_within_the_window_give_replays_output(arrivals):
    until = max(w for w, _ in arrivals) + LATENESS + 5
    sim, _ = live(arrivals, until=until)
    lines = replay_sorted([e for _, e in arrivals], until)
    assert sim.trigger_rows() == replay_rows(lines)
    assert sim.contacts == replay_contacts(lines)
    replayed = {k: v for k, v in lines[-1]["transitions"].items() if v}
    assert {k: v for k, v in sim.transitions().items() if v} == replayed
