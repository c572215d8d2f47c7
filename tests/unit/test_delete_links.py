"""Segment's ``delete`` forgets the user's anonymousIds too, live and in replay.

Before, the anonymousId -> userId links stayed: a device that came back after the
deletion brought the deleted user back (its events went to ``u:<userId>`` again, whose
new record had no contact key), and a new user signing in on it was a "shared device"
whose anonymous history stayed behind. The live pipeline is the real stages
(``tests.live_sim``); each phase is drained before the next arrives (the next event
comes after the deletion has been processed, as a returning device does).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from app import keys
from app.replay.driver import Replay
from app.stages.link import LINKS
from app.stages.person import PERSONS
from tests.live_sim import LiveSim, partition_of, replay_contacts, replay_rows
from tests.unit.test_handoff import BASE, cfg, msg, replay_of


def identify(t: float, mid: str, anon: str, user: str) -> dict[str, Any]:
    return msg("identify", t, mid, anonymousId=anon, userId=user,
               context={"traits": {"email": f"{user}@example.com"}})  # fmt: skip


def coupon(t: float, mid: str, anon: str) -> dict[str, Any]:
    return msg("track", t, mid, anonymousId=anon, event="Coupon Entered",
               properties={"coupon": "BACK10"})  # fmt: skip


def live(phases: list[list[dict[str, Any]]]) -> LiveSim:
    sim = LiveSim(cfg(), partitions=4)
    for phase in phases:
        sim.now = max(event_time(e) for e in phase) + 1
        for e in phase:
            sim.ingest(e, "acme")
        sim.drain()
    sim.settle(sim.now + 86400)
    return sim


def event_time(e: dict[str, Any]) -> float:
    return datetime.fromisoformat(e["timestamp"]).timestamp()


def table(sim: LiveSim, name: str, key: bytes) -> bytes | None:
    return sim.tables(name, partition_of(key, sim.partitions)).get(key)


def test_a_device_back_after_the_delete_is_a_new_visitor_and_its_next_user_gets_its_history():
    phases = [
        [msg("track", BASE, "1", anonymousId="a1", event="Viewed Pricing")],
        [identify(BASE + 60, "2", "a1", "u1")],
        [msg("delete", BASE + 120, "3", userId="u1")],
        [coupon(BASE + 180, "4", "a1")],  # the device, anonymous again
        [identify(BASE + 240, "5", "a1", "u2")],  # someone else signs in on it
    ]
    sim = live(phases)
    events = [e for phase in phases for e in phase]
    lines = replay_of(events)

    # The coupon came from the visitor, which became u2: u2's contact gets the trigger.
    fired = [(e["rule"], e["contact"]) for e in sim.triggers.values()]
    assert fired == [("coupon-no-order", "u2@example.com")]
    assert sim.undeliverable == {}
    assert sim.trigger_rows() == replay_rows(lines)
    assert sim.contacts == replay_contacts(lines)
    assert "u1@example.com" not in sim.contacts
    # u1 is gone and stays gone; the device's link names u2.
    assert table(sim, PERSONS, keys.key("acme", "u:u1")) is None
    assert table(sim, LINKS, keys.key("acme", "a1")) == b"u2"
    u2 = orjson.loads(table(sim, PERSONS, keys.key("acme", "u:u2")) or b"{}")
    assert u2["anon"] == ["a1"] and u2["pk"] == "u2@example.com"


def test_an_id_another_user_took_since_keeps_its_new_link():
    phases = [
        [identify(BASE, "1", "a1", "u1")],
        [identify(BASE + 60, "2", "a1", "u2")],  # a shared device: a1 moves to u2
        [msg("delete", BASE + 120, "3", userId="u1")],  # u1's record still lists a1
        [coupon(BASE + 180, "4", "a1")],
    ]
    sim = live(phases)
    lines = replay_of([e for phase in phases for e in phase])
    assert table(sim, LINKS, keys.key("acme", "a1")) == b"u2"
    assert [(e["rule"], e["contact"]) for e in sim.triggers.values()] == [
        ("coupon-no-order", "u2@example.com")
    ]
    assert sim.trigger_rows() == replay_rows(lines)


def test_replay_forgets_the_links_of_a_deleted_user():
    r = Replay(cfg())
    for e in [
        identify(BASE, "1", "a1", "u1"),
        msg("delete", BASE + 60, "2", userId="u1"),
        msg("page", BASE + 120, "3", anonymousId="a1"),
    ]:
        r.feed(orjson.dumps(e))
    assert ("acme", "a1") not in r.links
    assert ("acme", "u:u1") not in r.persons  # not brought back by the device
    assert "fwd" not in r.persons[("acme", "a:a1")]  # a new visitor of its own
