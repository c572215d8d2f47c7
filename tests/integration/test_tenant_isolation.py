"""Issue 12: one account's failing or slow Emarsys delays only that account.

Two accounts, ``alpha`` and ``beta``, on one worker, each with its own Emarsys API user
on one simulator process; the simulator's faults are set per API user, so alpha's
Emarsys answers 503 (or takes 10 s a call) while beta's answers. Behaviour checked, with
generous timeouts (never speeds): beta's contacts all arrive while alpha retries; the
deliveries view and ``/metrics`` show alpha's calls being retried and its backlog; when
alpha's Emarsys is back its backlog drains with every contact holding its last value and
every automation fired once (a re-sent trigger_id is deduplicated by Emarsys).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest

from tests.integration.stack import (
    Simulator,
    Stack,
    account_config,
    admin,
    http,
    read_topic,
    wait_for,
)

pytestmark = pytest.mark.integration

TRIGGER = 1234
PARK_AFTER = "2s"
API_USERS = ("--oauth-client", "alpha-client:alpha-secret", "--oauth-client", "beta-client:b-sec")


def coupon_rule() -> dict[str, Any]:
    return {
        "name": "Coupon then wait",
        "lifetime": "1h",
        "conditions": [
            {"sequence": 0, "type": "start", "on": "track", "match": 'ecom_event = "Coupon"'},
            {"sequence": 1, "type": "exit", "wait": "2s", "trigger": TRIGGER},
        ],
    }


def accounts(sim: Simulator) -> dict[str, Any]:
    return {
        "alpha": account_config(
            sim,
            api_keys=["alpha-key"],
            emarsys={"client_id": "alpha-client", "client_secret": "alpha-secret"},
            rules=[coupon_rule()],
        ),
        "beta": account_config(
            sim,
            api_keys=["beta-key"],
            emarsys={"client_id": "beta-client", "client_secret": "b-sec"},
            rules=[coupon_rule()],
        ),
    }


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = Simulator(tmp_path_factory.mktemp("sim-isolation"), *API_USERS)
    s.post("/_sim/faults", {"rate_limit_per_minute": 0})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def stack(broker, sim, tmp_path_factory):
    s = Stack(
        broker.url,
        tmp_path_factory.mktemp("isolation"),
        accounts(sim),
        partitions=4,
        extra={"sink": {"flush_interval": "0.2s", "park_after": PARK_AFTER}},
    )
    s.start_worker()
    s.wait_assigned()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def healthy_again(sim):
    yield
    sim.post("/_sim/faults", {"credential": "alpha-client", "outage_seconds": 0, "latency": 0})


class Crowd:
    """People of one account: person i's events each update the contact (a new first
    name) and the last one starts the coupon rule, whose automation fires 2 s later."""

    def __init__(self, account: str, n: int) -> None:
        self.account = account
        self.key = f"{account}-key"
        self.tag = f"{account}-{uuid.uuid4().hex[:6]}"
        self.n = n

    def email(self, i: int) -> str:
        return f"{self.tag}-{i}@example.com"

    def message(self, i: int, j: int, coupon: bool = False) -> dict[str, Any]:
        return {
            "type": "track",
            "userId": f"{self.tag}-u{i}",
            "event": "Coupon" if coupon else f"E{j}",
            "messageId": f"{self.tag}-m{i}-{j}",
            "traits": {"firstName": f"N{i}-{j}"},
            "context": {"traits": {"email": self.email(i)}},
        }

    def send(self, stack: Stack, j: int, coupon: bool = False) -> None:
        batch = [self.message(i, j, coupon) for i in range(self.n)]
        for start in range(0, len(batch), 100):
            r = stack.post("/v1/batch", {"batch": batch[start : start + 100]}, key=self.key)
            assert r.status == 200, r.body

    def arrived(self, sim: Simulator, j: int) -> int:
        """How many contacts hold round ``j``'s first name."""
        contacts = {
            c["fields"].get("3"): c["fields"] for c in sim.get("/_sim/contacts")["contacts"]
        }
        return sum(
            1 for i in range(self.n) if (contacts.get(self.email(i)) or {}).get("1") == f"N{i}-{j}"
        )

    def fired(self, sim: Simulator) -> dict[str, int]:
        """Automations fired per contact (a deduplicated trigger_id is not a firing)."""
        counts: dict[str, int] = {}
        for f in sim.get(f"/_sim/triggers?event_id={TRIGGER}")["fired"]:
            if str(f["external_id"]).startswith(self.tag):
                counts[f["external_id"]] = counts.get(f["external_id"], 0) + 1
        return counts


def deliveries(stack: Stack, account: str) -> dict[str, Any]:
    r = http("GET", f"{stack.url()}/api/accounts/{account}/deliveries", headers=admin())
    assert r.status == 200, r.body
    body: dict[str, Any] = r.json()
    return body


def sink_dead_letters(stack: Stack) -> list[Any]:
    dead = [
        orjson.loads(r.value) for r in read_topic(stack.broker_url, stack.topic("dead-letters"))
    ]
    return [d for d in dead if d["source"] == "sink"]


def arrive_all(sim: Simulator, crowd: Crowd, j: int, timeout: float, what: str) -> float:
    """Seconds until every contact of ``crowd`` holds round ``j`` (fails after timeout)."""
    t0 = time.monotonic()
    wait_for(lambda: crowd.arrived(sim, j) == crowd.n, timeout=timeout, interval=0.25, what=what)
    return time.monotonic() - t0


def drained(stack: Stack, sim: Simulator, alpha: Crowd, j: int) -> None:
    """alpha's backlog delivered: last values, one automation each, gauges back to 0."""
    arrive_all(sim, alpha, j, 120, "alpha's backlog delivered after its Emarsys is back")
    wait_for(lambda: len(alpha.fired(sim)) == alpha.n, timeout=60, what="alpha's automations fired")
    wait_for(
        lambda: stack.metric("emd_account_backlog", account="alpha") == 0,
        timeout=60,
        what="alpha's backlog gauge back to 0",
    )
    wait_for(
        lambda: deliveries(stack, "alpha")["backlog"]["state"] != "parked",
        timeout=30,
        what="alpha delivering directly again",
    )
    time.sleep(3)  # anything sent twice or late would arrive now
    assert set(alpha.fired(sim).values()) == {1}, "an automation fired twice"
    assert alpha.arrived(sim, j) == alpha.n  # no older value came after the last one
    assert deliveries(stack, "alpha")["workers"][0]["directPartitions"] == [0, 1, 2, 3]


def test_an_accounts_outage_delays_only_that_account(stack, sim):
    alpha, beta = Crowd("alpha", 300), Crowd("beta", 50)
    sim.post("/_sim/faults", {"credential": "alpha-client", "outage_seconds": 600})
    alpha.send(stack, 0)
    alpha.send(stack, 1, coupon=True)
    beta.send(stack, 0)
    took = arrive_all(sim, beta, 0, 30, "beta's contacts while alpha's Emarsys is down")
    print(f"beta's 50 contacts arrived {took:.1f}s after alpha's 600 events")

    # alpha retries, and it shows: the call, its attempts and status, when it gives up.
    def retrying() -> dict[str, Any] | None:
        body = deliveries(stack, "alpha")
        calls = [r for r in body["retrying"] if r["lastStatus"] == 503 and r["attempt"] >= 2]
        blocked = [w for w in body["workers"] if w["blockedSince"]]
        return body if calls and blocked and body["backlog"]["state"] == "parked" else None

    body = wait_for(retrying, timeout=30, what="alpha's retrying call in the deliveries view")
    call = body["retrying"][0]
    print("alpha retrying:", call)
    assert call["call"] in ("PUT /contact/", "POST /event/1234/trigger"), call
    assert call["nextAttemptAt"] and call["givesUpAt"] and "503" in call["reason"]
    assert 0 < call["secondsUntilGivenUp"] <= 600
    assert body["backlog"]["effects"] > 0 and body["backlog"]["oldestAgeSeconds"] > 0
    assert deliveries(stack, "beta")["retrying"] == []
    assert stack.metric("emd_account_retrying_calls", account="alpha") >= 1
    assert stack.metric("emd_account_retrying_calls", account="beta") == 0
    assert stack.metric("emd_account_backlog", account="alpha") > 0
    assert stack.metric("emd_account_oldest_effect_age_seconds", account="alpha") > 0
    assert stack.metric("emd_account_parked", account="alpha") == 1

    # Parked, alpha holds nobody up: beta's later events (automations too) keep flowing.
    beta.send(stack, 1, coupon=True)
    arrive_all(sim, beta, 1, 30, "beta's second round while alpha is parked")
    wait_for(lambda: len(beta.fired(sim)) == beta.n, timeout=30, what="beta's automations")
    assert alpha.arrived(sim, 0) == 0 and alpha.fired(sim) == {}

    sim.post("/_sim/faults", {"credential": "alpha-client", "outage_seconds": 0})
    drained(stack, sim, alpha, 1)
    assert set(beta.fired(sim).values()) == {1}
    assert deliveries(stack, "alpha")["retrying"] == []
    assert stack.metric("emd_account_retrying_calls", account="alpha") == 0
    assert sink_dead_letters(stack) == []


def test_a_slow_accounts_emarsys_delays_only_that_account(stack, sim):
    alpha, beta = Crowd("alpha", 200), Crowd("beta", 50)
    sim.post("/_sim/faults", {"credential": "alpha-client", "latency": 10})
    alpha.send(stack, 0, coupon=True)
    time.sleep(1)
    beta.send(stack, 0)
    took = arrive_all(sim, beta, 0, 30, "beta's contacts while alpha's Emarsys is slow")
    print(f"beta's 50 contacts arrived {took:.1f}s while alpha's calls take 10 s")
    beta.send(stack, 1, coupon=True)
    arrive_all(sim, beta, 1, 30, "beta's second round while alpha is slow")
    wait_for(lambda: len(beta.fired(sim)) == beta.n, timeout=30, what="beta's automations")
    wait_for(
        lambda: deliveries(stack, "alpha")["backlog"]["state"] == "parked",
        timeout=30,
        what="alpha parked while its calls take 10 s",
    )
    sim.post("/_sim/faults", {"credential": "alpha-client", "latency": 0})
    drained(stack, sim, alpha, 0)
    assert set(beta.fired(sim).values()) == {1}
    assert sink_dead_letters(stack) == []


def overlapping(calls: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Pairs of calls (their indexes) that were in flight at the same time."""
    return [
        (a["index"], b["index"])
        for n, a in enumerate(calls)
        for b in calls[n + 1 :]
        if max(a["time"], b["time"]) < min(a["ended"], b["ended"])
    ]


def test_a_slow_emarsys_gets_two_calls_at_once_each_contact_in_order(stack, sim):
    """``sink.calls_in_flight`` (2 by default): while alpha's Emarsys takes 0.4 s a call,
    its worker has two contact updates in flight at once (each with other contacts), so
    a slow Emarsys is not one call after the other; every contact still ends with its
    last value, and every automation fires once."""
    crowds = [Crowd("alpha", 100) for _ in range(4)]
    sim.post("/_sim/faults", {"credential": "alpha-client", "latency": 0.4})
    since = sim.get("/_sim/calls")["next"]
    for crowd in crowds:  # new people while the call for the ones before is in flight
        for j in range(3):
            crowd.send(stack, j, coupon=j == 2)
        time.sleep(0.2)
    for crowd in crowds:
        arrive_all(sim, crowd, 2, 120, "alpha's last round while its Emarsys is slow")
        wait_for(lambda c=crowd: len(c.fired(sim)) == c.n, timeout=60, what="automations")
    upserts = [
        c
        for c in sim.get(f"/_sim/calls?since={since}")["calls"]
        if c["credential"] == "oauth:alpha-client" and c["method"] == "PUT" and c["contacts"]
    ]
    assert overlapping(upserts), f"one call at a time: {[(c['time'], c['ended']) for c in upserts]}"
    time.sleep(2)  # anything sent twice or late would arrive now
    for crowd in crowds:
        assert crowd.arrived(sim, 2) == crowd.n  # no older value came after the last one
        assert set(crowd.fired(sim).values()) == {1}
    assert sink_dead_letters(stack) == []
