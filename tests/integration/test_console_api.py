"""Issue 5's API: live configuration on two workers, funnels, tenant isolation, dead
letters and their retry, the backtest, and replay from the topic equal to the file."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from app.replay.topic import topic_items
from tests.integration.stack import (
    ROOT,
    Simulator,
    Stack,
    account_config,
    admin,
    http,
    wait_for,
)

pytestmark = pytest.mark.integration

COUPON_RULE = {
    "name": "Coupon entered but did not complete order",
    "lifetime": "1h",
    "conditions": [
        {"sequence": 0, "type": "start", "on": "track", "match": 'ecom_event = "Coupon Entered"'},
        {
            "sequence": 0,
            "type": "exclude",
            "on": "track",
            "match": 'ecom_event = "Order Completed"',
        },
        {"sequence": 1, "type": "exit", "wait": "3s", "trigger": 1234, "variables": ["coupon"]},
    ],
}
SIGNUP_RULE = {
    "name": "Welcome",
    "conditions": [
        {"sequence": 0, "type": "start", "on": "track", "match": 'ecom_event = "Signed Up"'},
        {"sequence": 1, "type": "exit", "trigger": 1234},
    ],
}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def uid(p: str) -> str:
    return f"{p}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def two(broker, simulator, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    acme = account_config(simulator, rules=[COUPON_RULE])
    other = account_config(simulator, api_keys=["other-key"], rules=[])
    s = Stack(broker.url, tmp, {"acme": acme, "other": other}, partitions=4)
    s.start_worker()
    s.start_worker()
    s.wait_assigned()
    yield s
    s.stop()


def api(stack, method, path, body=None, i=0, token=True):
    return http(method, f"{stack.url(i)}{path}", body, headers=admin() if token else {})


def test_config_get_validate_and_put_reaches_every_worker(two, simulator):
    r = api(two, "GET", "/api/accounts/acme/config")
    assert r.status == 200
    cfg = r.json()["config"]
    assert [x["name"] for x in cfg["rules"]] == [COUPON_RULE["name"]]
    assert cfg["rules"][0]["lifetime"] == "1h"
    bad = {
        "rules": [
            *cfg["rules"],
            {
                **SIGNUP_RULE,
                "conditions": [
                    {"sequence": 0, "type": "start", "match": "cart = 1"},
                    {"sequence": 2, "type": "exit", "trigger": 1234},
                ],
            },
        ]
    }
    r = api(two, "POST", "/api/accounts/acme/config/validate", bad)
    problems = {p["location"]: p["message"] for p in r.json()["problems"]}
    assert r.json()["valid"] is False
    assert "unknown data map 'cart'" in problems["rules[1].conditions[0].match"]
    assert "column 1" in problems["rules[1].conditions[0].match"]
    assert "rules[1].conditions" in problems
    r = api(two, "PUT", "/api/accounts/acme/config", bad)
    assert r.status == 400 and r.json()["problems"]
    good = {"rules": [*cfg["rules"], SIGNUP_RULE]}
    r = api(two, "PUT", "/api/accounts/acme/config", good)
    assert r.status == 200
    version = r.json()["version"]
    stale = api(two, "PUT", "/api/accounts/acme/config", {**good, "version": version - 1})
    assert stale.status == 409 and stale.json()["version"] == version
    wait_for(
        lambda: api(two, "GET", "/api/accounts/acme/config", i=1).json()["version"] == version,
        what="the edit on the other worker",
    )
    # And it acts: people on both workers' partitions get the new rule's trigger.
    people = [(uid("w"), f"{uid('w')}@example.com") for _ in range(8)]
    for n, (user, email) in enumerate(people):
        two.post(
            "/v1/track",
            {"userId": user, "event": "Signed Up", "context": {"traits": {"email": email}}},
            i=n % 2,
        )
    for _, email in people:
        wait_for(
            lambda e=email: simulator.get(f"/_sim/triggers?external_id={e}")["fired"],
            what="the new rule firing",
        )
    # The other account was not touched.
    assert api(two, "GET", "/api/accounts/other/config").json()["config"]["rules"] == []
    # YAML, the file's format.
    y = http("GET", f"{two.url()}/api/accounts/acme/config?format=yaml", headers=admin())
    assert b"name: Welcome" in y.body


def test_funnel_counts(two, simulator):
    t0 = time.time()
    users = [uid("f") for _ in range(6)]
    for n, user in enumerate(users):
        two.post(
            "/v1/track",
            {
                "userId": user,
                "event": "Coupon Entered",
                "timestamp": iso(t0),
                "properties": {"coupon": "F"},
                "context": {"traits": {"email": f"{user}@example.com"}},
            },
            i=n % 2,
        )
    for user in users[:2]:
        two.post(
            "/v1/track", {"userId": user, "event": "Order Completed", "timestamp": iso(t0 + 1)}
        )

    def rule():
        body = api(two, "GET", "/api/accounts/acme/rules", i=1).json()
        return next(r for r in body["rules"] if r["name"] == COUPON_RULE["name"])

    # Once all six started and two were excluded, the other four wait at sequence 0 or
    # have fired already.
    now = wait_for(
        lambda: (
            lambda r: r if r["period"]["started"] == 6 and r["period"]["excluded"] == 2 else None
        )(rule()),
        what="the starts and exclusions counted",
    )
    assert now["active"].get("0", 0) + now["period"]["triggered"] == 4
    done = wait_for(
        lambda: (lambda r: r if r["period"]["triggered"] == 4 else None)(rule()),
        timeout=30,
        what="the triggers counted",
    )
    assert done["period"]["started"] == 6 and done["period"]["expired"] == 0
    assert done["active"].get("0", 0) == 0
    assert sum(b["triggered"] for b in done["series"]) == done["period"]["triggered"]


def test_tenant_isolation_and_auth(two):
    user = uid("iso")
    two.post("/v1/identify", {"userId": user, "context": {"traits": {"email": f"{user}@x.com"}}})
    wait_for(lambda: two.user("acme", userId=user).status == 200, what="the person")
    assert two.user("other", userId=user).status == 404
    for path in (
        "/api/accounts",
        "/api/accounts/acme/config",
        "/api/accounts/acme/rules",
        "/api/accounts/acme/deliveries",
        "/api/accounts/acme/dead-letters",
        f"/api/accounts/acme/users?userId={user}",
    ):
        assert api(two, "GET", path, token=False).status == 401, path
    assert api(two, "GET", "/api/accounts/nope/config").status == 404
    # Another account's API key posts into its own account only.
    two.post("/v1/identify", {"userId": user + "-b", "traits": {}}, key="other-key")
    wait_for(lambda: two.user("other", userId=user + "-b").status == 200, what="other's person")
    assert two.user("acme", userId=user + "-b").status == 404


def test_account_deliveries(two):
    body = wait_for(
        lambda: api(two, "GET", "/api/accounts/acme/deliveries").json()["deliveries"],
        what="deliveries",
    )
    assert {"op", "ok", "at"} <= set(body[0])
    assert all(d.get("contact") is None or "@" in d["contact"] for d in body)


def test_backtest_an_unsaved_rule(two):
    t0 = time.time() - 600
    user = uid("bt")
    two.post(
        "/v1/batch",
        {
            "batch": [
                {
                    "type": "track",
                    "userId": user,
                    "event": "Browsed",
                    "timestamp": iso(t0),
                    "context": {"traits": {"email": f"{user}@example.com"}},
                },
            ]
        },
    )
    rule = {
        "name": "Browsed, no purchase",
        "conditions": [
            {"sequence": 0, "type": "start", "on": "track", "match": 'ecom_event = "Browsed"'},
            {"sequence": 1, "type": "exit", "wait": "5m", "trigger": "segment.com test event"},
        ],
    }
    cfg = api(two, "GET", "/api/accounts/acme/config").json()["config"]
    body = {"rules": [*cfg["rules"], rule], "from": iso(t0 - 60)}

    def run():
        r = api(two, "POST", "/api/accounts/acme/replay", body)
        assert r.status == 200, r.body
        got = [
            x
            for x in r.json()["lines"]
            if x["kind"] == "trigger"
            and x["rule"] == rule["name"]
            and x["contact"] == f"{user}@example.com"
        ]
        return (r.json(), got) if got else None

    result, got = wait_for(run, what="the backtest finding the person")
    assert got[0]["event_time"] == iso(t0 + 300)[:19] + "Z"
    assert result["summary"]["transitions"]["triggered"] >= 1
    # Nothing was saved.
    cfg_after = api(two, "GET", "/api/accounts/acme/config").json()["config"]
    assert rule["name"] not in [x["name"] for x in cfg_after["rules"]]
    bad = api(two, "POST", "/api/accounts/acme/replay", {"rules": [{"name": "x"}]})
    assert bad.status == 400 and bad.json()["problems"]


def test_openapi_describes_the_api(two):
    doc = http("GET", f"{two.url()}/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in (
        "/v1/batch",
        "/api/accounts/{account}/config",
        "/api/accounts/{account}/replay",
        "/api/accounts/{account}/rules",
        "/api/accounts/{account}/dead-letters/retry",
    ):
        assert path in doc["paths"]


def test_console_is_served(two):
    r = http("GET", f"{two.url()}/")
    assert r.status == 200 and b"<html" in r.body.lower()


def test_dead_letters_listed_and_retried_after_an_outage(broker, tmp_path):
    sim = Simulator(tmp_path)
    cfg = account_config(sim, emarsys={"retry_for": "2s", "max_backoff": "0.5s"})
    s = Stack(broker.url, tmp_path, {"acme": cfg}, partitions=2)
    try:
        s.start_worker()
        s.wait_assigned()
        sim.post("/_sim/faults", {"outage_seconds": 30})
        email = f"{uid('dl')}@example.com"
        s.post("/v1/identify", {"userId": uid("u"), "context": {"traits": {"email": email}}})
        s.post("/v1/batch", {"batch": [{"type": "track", "userId": "x"}]})  # no event name

        def letters():
            d = api(s, "GET", "/api/accounts/acme/dead-letters").json()["dead_letters"]
            sink = [x for x in d if x["source"] == "sink"]
            return (d, sink) if sink and any(x["source"] == "ingest" for x in d) else None

        dead, sink = wait_for(letters, timeout=40, what="the dead letters")
        assert "gave up" in sink[0]["reason"]
        ingest = next(x for x in dead if x["source"] == "ingest")
        assert "event" in ingest["reason"]
        sim.post("/_sim/faults", {"outage_seconds": 0})
        r = api(
            s,
            "POST",
            "/api/accounts/acme/dead-letters/retry",
            {"ids": [sink[0]["id"], ingest["id"], "0:999999"]},
        )
        assert r.json()["retried"] == 2
        assert {x["id"] for x in r.json()["skipped"]} == {"0:999999"}
        wait_for(lambda: sim.contact(email), what="the retried update delivered")
    finally:
        s.stop()
        sim.stop()


def test_replay_from_the_topic_equals_replay_from_a_file(broker, simulator, tmp_path, monkeypatch):
    s = Stack(
        broker.url, tmp_path, {"acme": account_config(simulator, rules=[COUPON_RULE])}, partitions=4
    )
    try:
        s.start_worker()
        s.wait_assigned()
        t0 = time.time() - 3600
        events = []
        for i in range(20):
            user = f"rt-{i}"
            events.append(
                {
                    "type": "track",
                    "userId": user,
                    "event": "Coupon Entered",
                    "messageId": f"rt-c{i}",
                    "timestamp": iso(t0 + i),
                    "properties": {"coupon": f"C{i}"},
                    "context": {"traits": {"email": f"rt{i}@example.com"}},
                }
            )
            if i % 4 == 0:
                events.append(
                    {
                        "type": "track",
                        "userId": user,
                        "event": "Order Completed",
                        "messageId": f"rt-o{i}",
                        "timestamp": iso(t0 + i + 1),
                    }
                )
        events.append(
            {
                "type": "page",
                "userId": "rt-clock",
                "messageId": "rt-clock",
                "timestamp": iso(t0 + 60),
            }
        )
        events.sort(key=lambda e: e["timestamp"])
        assert s.post("/v1/batch", {"batch": events}).status == 200
        path = tmp_path / "events.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in events))

        def replay(*args):
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "app.cli",
                    "replay",
                    "--config",
                    str(s.config_path),
                    "--format",
                    "jsonl",
                    *args,
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            return [json.loads(line) for line in out.stdout.splitlines()]

        from_file = replay("--file", str(path))
        from_topic = replay("--topic", s.input_topic, "--broker", s.broker_url)
        triggers = [x for x in from_file if x["kind"] == "trigger"]
        assert len(triggers) == 15
        strip = lambda lines: [{k: v for k, v in x.items() if k != "line"} for x in lines]  # noqa: E731
        # receivedAt is stamped at ingest; it is not the event time here (timestamp is).
        assert strip(from_topic) == strip(from_file)
        # Read within a budget of a few records, the topic spills sorted runs to disk and
        # merges them back: the same records in the same order, and no file left behind.
        spill_dir = tmp_path / "spill"
        spill_dir.mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(spill_dir))
        with topic_items(s.broker_url, s.input_topic) as whole:
            everything = list(whole)
            assert whole.runs == 0
        with topic_items(s.broker_url, s.input_topic, budget=2_000) as spilled:
            assert spilled.runs > 3
            assert list(spilled) == everything
        read = [orjson.loads(v) for v, _ in everything]
        assert sorted(m["messageId"] for m in read) == sorted(e["messageId"] for e in events)
        assert [m["timestamp"] for m in read] == sorted(e["timestamp"] for e in events)
        assert list(spill_dir.iterdir()) == []
        # --from/--to select by event time.
        part = replay(
            "--topic",
            s.input_topic,
            "--broker",
            s.broker_url,
            "--from",
            iso(t0 + 10),
            "--to",
            iso(t0 + 100),
        )
        assert {x["contact"] for x in part if x["kind"] == "trigger"} == {
            f"rt{i}@example.com" for i in range(10, 20) if i % 4 != 0
        }
    finally:
        s.stop()
