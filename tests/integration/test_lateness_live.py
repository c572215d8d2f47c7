"""Late events, live (issue 13): real workers, the embedded broker, the simulator.

An offline phone's queued events arrive seconds apart, hours after they happened; a
backfill is sent one event at a time. The triggers must be the ones event time says
(replay's), not what the chunking in transit says; on-time deadlines fire within the
lateness window and long waits are not delayed by it.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.stack import Stack, account_config, replayed_triggers, wait_for

LATENESS = 20.0
RULES = [
    {
        "name": "viewed-then-signed-up",
        "lifetime": "1h",
        "conditions": [
            {"sequence": 0, "type": "start", "on": "track",
             "match": 'ecom_event = "Viewed Pricing"'},
            {"sequence": 1, "type": "step", "on": "track", "match": 'ecom_event = "Signed Up"'},
            {"sequence": 2, "type": "exit", "trigger": 1302},
        ],
    },
    {
        "name": "trial-journey",
        "lifetime": "1h",
        "conditions": [
            {"sequence": 0, "type": "start", "on": "track",
             "match": 'ecom_event = "Trial Started"'},
            {"sequence": 1, "type": "step", "on": "track", "match": 'ecom_event = "Trial Used"'},
            {"sequence": 2, "type": "exit", "on": "track", "trigger": 1303,
             "match": 'ecom_event = "Trial Converted"'},
        ],
    },
    {
        "name": "quick",
        "lifetime": "1d",
        "conditions": [
            {"sequence": 0, "type": "start", "on": "track", "match": 'ecom_event = "Quick"'},
            {"sequence": 1, "type": "exit", "wait": "3s", "trigger": 1301},
        ],
    },
    {
        "name": "slow",
        "lifetime": "1d",
        "conditions": [
            {"sequence": 0, "type": "start", "on": "track", "match": 'ecom_event = "Slow"'},
            {"sequence": 1, "type": "exit", "wait": "40s", "trigger": 1234},
        ],
    },
]  # fmt: skip


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def track(user: str, event: str, t: float, n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": user,
        "event": event,
        "timestamp": iso(t),
        "messageId": f"{user}-{n}",
        "context": {"traits": {"email": f"{user}@example.com"}},
    }


@pytest.fixture(scope="module")
def stack(broker, simulator, tmp_path_factory):
    s = Stack(
        broker.url,
        tmp_path_factory.mktemp("late"),
        {"acme": account_config(simulator, rules=RULES)},
        extra={"allowed_lateness": f"{LATENESS:g}s"},
    )
    s.start_worker()
    s.wait_assigned()
    yield s
    s.stop()


def fired(simulator, prefix: str, event_id: int) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for f in simulator.get(f"/_sim/triggers?event_id={event_id}")["fired"]:
        if str(f["external_id"]).startswith(prefix):
            out.setdefault(f["external_id"], []).append(f)
    return out


def rows(found: dict[str, list[dict[str, Any]]]) -> set[tuple[Any, ...]]:
    return {
        (f["trigger_id"], f["external_id"], f["event_time"], json.dumps(f["data"], sort_keys=True))
        for fs in found.values()
        for f in fs
    }


def test_an_offline_phone_and_the_same_events_in_one_batch_trigger_alike(stack, simulator):
    """L1: Viewed Pricing three hours ago, Signed Up a minute later, delivered 3 s apart.
    L2: the same two events in one batch. Both trigger once, as replay says."""
    tag = f"l{uuid.uuid4().hex[:6]}"
    old = time.time() - 3 * 3600
    l1 = [
        track(f"{tag}-l1", "Viewed Pricing", old, 1),
        track(f"{tag}-l1", "Signed Up", old + 60, 2),
    ]
    l2 = [
        track(f"{tag}-l2", "Viewed Pricing", old, 1),
        track(f"{tag}-l2", "Signed Up", old + 60, 2),
    ]
    assert stack.post("/v1/batch", {"batch": [l1[0]]}).status == 200
    assert stack.post("/v1/batch", {"batch": l2}).status == 200
    # Between the two deliveries the person page says why nothing expired yet.
    person = wait_for(
        lambda: (r := stack.user("acme", userId=f"{tag}-l1")).status == 200 and r.json(),
        what="the phone's person",
    )
    assert person["lateness"] is not None
    (inst,) = person["instances"]
    assert inst["next"]["what"] == "lifetime expires"
    assert "unless a late event moves it" in inst["next"]["note"]
    time.sleep(3)
    assert stack.post("/v1/batch", {"batch": [l1[1]]}).status == 200
    got = wait_for(
        lambda: (f := fired(simulator, f"{tag}-", 1302)) and len(f) == 2 and f,
        timeout=60,
        what="both people triggered",
    )
    assert {e: len(fs) for e, fs in got.items()} == {
        f"{tag}-l1@example.com": 1,
        f"{tag}-l2@example.com": 1,
    }
    assert rows(got) == replayed_triggers(stack.config_path, l1 + l2, "viewed-then-signed-up")
    assert {fs[0]["event_time"] for fs in got.values()} == {iso(old + 60)[:19] + "Z"}


def test_2000_backfilled_journeys_sent_one_event_at_a_time(stack, simulator):
    """Three-event journeys hours old, each person's events a few seconds apart: every
    person gets replay's trigger."""
    tag, n = f"b{uuid.uuid4().hex[:6]}", 2000
    base = time.time() - 5 * 3600
    journeys = [
        [
            track(f"{tag}-{i}", "Trial Started", base + i, 1),
            track(f"{tag}-{i}", "Trial Used", base + i + 600, 2),
            track(f"{tag}-{i}", "Trial Converted", base + i + 1200, 3),
        ]
        for i in range(n)
    ]
    for step in range(3):
        batch = [j[step] for j in journeys]
        for k in range(0, n, 500):
            assert stack.post("/v1/batch", {"batch": batch[k : k + 500]}).status == 200
        if step < 2:
            time.sleep(3)
    got = wait_for(
        lambda: (f := fired(simulator, f"{tag}-", 1303)) and len(f) >= n and f,
        timeout=120,
        interval=1,
        what=f"{n} journeys triggered",
    )
    assert all(len(fs) == 1 for fs in got.values())
    assert rows(got) == replayed_triggers(
        stack.config_path, [m for j in journeys for m in j], "trial-journey"
    )


def test_on_time_short_wait_fires_within_the_window_and_a_long_wait_is_not_delayed(
    stack, simulator
):
    tag = f"t{uuid.uuid4().hex[:6]}"
    t0 = time.time()
    assert stack.post("/v1/batch", {"batch": [track(f"{tag}-q", "Quick", t0, 1)]}).status == 200
    assert stack.post("/v1/batch", {"batch": [track(f"{tag}-s", "Slow", t0, 1)]}).status == 200
    quick = wait_for(
        lambda: fired(simulator, f"{tag}-q", 1301), timeout=60, what="the 3 s wait fired"
    )
    (q,) = quick[f"{tag}-q@example.com"]
    assert q["event_time"] == iso(t0 + 3)[:19] + "Z"  # the trigger keeps its event time
    # Fired once the person was quiet for allowed_lateness: after the wait, and within
    # the wait plus the window (plus the clock's second and the pipeline).
    assert t0 + LATENESS - 2 <= q["fired_at"] <= t0 + 3 + LATENESS + 10
    slow = wait_for(
        lambda: fired(simulator, f"{tag}-s", 1234), timeout=90, what="the 40 s wait fired"
    )
    (s,) = slow[f"{tag}-s@example.com"]
    assert t0 + 40 <= s["fired_at"] <= t0 + 40 + 8  # a wait longer than the window: on time
