"""Contact-list actions through the real person stage (``tests.live_sim``): sent once per
exit even when a late event re-applies the lateness window, the same as replay; an
undeliverable one is recorded in the person's deliveries and the dead letters as the list
action it is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from app import delivery_log, keys
from app.config import load_config_text
from app.replay.driver import Replay
from tests.live_sim import LiveSim, replay_list_rows

NOW = 1_767_340_800.0  # 2026-01-02T08:00:00Z

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
    rules:
      - name: subscribed
        conditions:
          - {sequence: 0, type: start, on: track, match: 'ecom_event = "Subscribed"'}
          - {sequence: 0, type: exclude, on: track, match: 'ecom_event = "Unsubscribed"'}
          - {sequence: 1, type: exit, add_to_list: Newsletter subscribers,
             remove_from_list: 750504660}
"""


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def track(user: str, event: str, t: float, n: int, email: bool = True) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "type": "track",
        "userId": user,
        "event": event,
        "messageId": f"{user}-{n}",
        "timestamp": iso(t),
    }
    if email:
        msg["context"] = {"traits": {"email": f"{user}@example.com"}}
    return msg


def run(arrivals: list[tuple[float, dict[str, Any]]], until: float) -> LiveSim:
    sim = LiveSim(load_config_text(CONFIG), partitions=4)
    sim.now = arrivals[0][0]
    for at, message in sorted(arrivals, key=lambda a: a[0]):
        sim.now = at
        sim.ingest(message, "acme")
        sim.drain()
        sim.tick()
        sim.drain()
    sim.settle(until)
    return sim


def replayed(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r = Replay(load_config_text(CONFIG))
    lines: list[dict[str, Any]] = []
    for m in sorted(messages, key=lambda m: m["timestamp"]):
        lines += r.feed(orjson.dumps(m))
    return lines + r.finish()


def test_a_late_event_reapplying_the_window_sends_the_exits_list_actions_once():
    """The exit fires on arrival; an older event arriving next re-applies the window (the
    exit fires again in event-time order, with the same trigger_id): not sent again."""
    sub = track("w", "Subscribed", NOW - 600, 1)
    browse = track("w", "Browse", NOW - 900, 2)  # older: arrives after, re-applies
    sim = run([(NOW, sub), (NOW + 5, browse)], until=NOW + 200)
    assert [(op, ref) for op, ref, _, _ in sim.list_sends] == [
        ("list_add", "Newsletter subscribers"),
        ("list_remove", 750504660),
    ]
    assert sim.lists == {"Newsletter subscribers": {"w@example.com"}, 750504660: set()}
    assert sorted(sim.list_sends) == replay_list_rows(replayed([sub, browse]))


def test_an_undeliverable_list_action_is_in_the_deliveries_and_the_dead_letters():
    sim = run([(NOW, track("n", "Subscribed", NOW - 10, 1, email=False))], until=NOW + 100)
    assert sim.list_sends == []
    assert [(d["action"], d["list"]) for d in sim.undeliverable_lists] == [
        ("list_add", "Newsletter subscribers"),
        ("list_remove", 750504660),
    ]
    reasons = [d["reason"] for d in sim.dead if d["source"] == "rules"]
    assert len(reasons) == 2 and all("no primary key" in r for r in reasons)
    key = keys.key("acme", keys.user_person("n"))
    table = next(
        t for (name, _), t in sim.tables.tables.items() if name == "deliveries" and key in t.data
    )
    log = delivery_log.entries(table.data[key])
    assert [(d["op"], d["ok"], d["list"], d["event"]) for d in log] == [
        ("list_add", False, "Newsletter subscribers", None),
        ("list_remove", False, 750504660, None),
    ]
    assert log[0]["trigger_id"] == log[1]["trigger_id"]
