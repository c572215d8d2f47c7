"""``app.delivery.deliver`` with contact-list actions, against the Emarsys simulator
(in-process, the real client): batched per list at most 10,000 contacts a call, after the
upserts and before the triggers, in topic order per list, idempotent when delivered again,
and each failure with Emarsys's replyCode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from app.config.model import EmarsysConfig
from app.delivery import Clients, Outcome, deliver
from app.emarsys.simulator import SIMULATOR, Simulator, SimulatorOptions, create_app

VIP, CART = 750504659, 750504660


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    srv = TestServer(create_app(SimulatorOptions(rate_limit_per_minute=0)), host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


@pytest.fixture
def sim(server: TestServer) -> Simulator:
    return server.app[SIMULATOR]


@pytest.fixture
async def send(server: TestServer) -> AsyncIterator[Any]:
    url = str(server.make_url("")).rstrip("/")
    cfg = EmarsysConfig(
        api_url=f"{url}/api/v3",
        token_url=f"{url}/oauth2/token",
        client_id="demo-client",
        client_secret="demo-secret",
        retry_for=20,
        max_backoff=0.2,
    )
    clients = Clients()

    async def run(effects: list[dict[str, Any]]) -> list[Outcome]:
        return await deliver(effects, lambda a: cfg if a == "acme" else None, clients)

    yield run
    await clients.close()


def upsert(email: str) -> dict[str, Any]:
    return {"op": "upsert", "account": "acme", "person": f"u:{email}", "contact": email,
            "fields": {"3": email}}  # fmt: skip


def listed(op: str, email: str, ref: int | str, rule: str = "r") -> dict[str, Any]:
    return {"op": op, "account": "acme", "person": f"u:{email}", "contact": email, "rule": rule,
            "list": ref, "trigger_id": f"t-{rule}-{email}", "instance": "i",
            "event_time": "2026-01-02T03:04:05Z"}  # fmt: skip


def add(email: str, ref: int | str = VIP, **kw: Any) -> dict[str, Any]:
    return listed("list_add", email, ref, **kw)


def remove(email: str, ref: int | str = VIP, **kw: Any) -> dict[str, Any]:
    return listed("list_remove", email, ref, **kw)


def trigger(email: str) -> dict[str, Any]:
    return {"op": "trigger", "account": "acme", "person": f"u:{email}", "contact": email,
            "rule": "r", "event": 1234, "trigger_id": f"t-r-{email}",
            "event_time": "2026-01-02T03:04:05Z", "data": {"global": {}}}  # fmt: skip


def members(sim: Simulator, list_id: int) -> set[str]:
    return {sim.contacts[c].fields["3"] for c in sim.lists.get(list_id, set())}


def api_calls(sim: Simulator) -> list[tuple[str, str, int]]:
    return [
        (c["method"], c["path"].removeprefix("/api/v3"), c["contacts"])
        for c in sim.calls
        if c["path"].startswith("/api/")
    ]


def outcomes(result: list[Outcome]) -> list[tuple[str, Any, bool, int | None]]:
    return sorted(
        ((o.effect["op"], o.effect.get("contact"), o.ok, o.code) for o in result),
        key=repr,
    )


async def test_list_actions_go_after_upserts_before_triggers_one_call_per_list(send, sim):
    batch = [
        add("a@x.com"),  # by id
        trigger("a@x.com"),
        upsert("a@x.com"),
        add("b@x.com", "VIP customers"),  # the same list by name: the same call
        upsert("b@x.com"),
        remove("a@x.com", "Cart abandoners"),
    ]
    result = await send(batch)
    assert len(result) == len(batch) and all(o.ok for o in result), result
    assert api_calls(sim) == [
        ("PUT", "/contact/", 2),
        ("GET", "/contactlist", 0),  # names resolve once, cached
        ("POST", f"/contactlist/{VIP}/add", 2),
        ("POST", f"/contactlist/{CART}/delete", 1),
        ("POST", "/event/1234/trigger", 1),
    ]
    assert members(sim, VIP) == {"a@x.com", "b@x.com"}


async def test_more_than_ten_thousand_contacts_take_two_calls(send, sim):
    emails = [f"c{i}@x.com" for i in range(10_001)]
    result = await send([*map(upsert, emails), *map(add, emails)])
    assert all(o.ok for o in result) and len(result) == 2 * len(emails)
    adds = [n for method, path, n in api_calls(sim) if path.endswith("/add")]
    assert adds == [10_000, 1]
    assert len(members(sim, VIP)) == 10_001


async def test_one_lists_adds_and_removes_apply_in_topic_order(send, sim):
    await send([upsert("a@x.com"), upsert("b@x.com")])
    result = await send([add("a@x.com"), remove("a@x.com"), remove("b@x.com"), add("b@x.com")])
    assert all(o.ok for o in result)
    assert members(sim, VIP) == {"b@x.com"}
    assert [p for _, p, _ in api_calls(sim)[1:]] == [
        f"/contactlist/{VIP}/add",
        f"/contactlist/{VIP}/delete",
        f"/contactlist/{VIP}/add",
    ]


async def test_delivered_again_nothing_changes_and_nothing_fails(send, sim):
    """A redelivered effect (the sink re-reads a batch after a crash): harmless."""
    batch = [upsert("a@x.com"), add("a@x.com"), add("a@x.com"), remove("a@x.com", CART)]
    first = await send(batch)
    again = await send(batch)
    assert all(o.ok for o in first + again)
    assert members(sim, VIP) == {"a@x.com"} and members(sim, CART) == set()
    adds = [n for _, path, n in api_calls(sim) if path.endswith("/add")]
    assert adds == [1, 1]  # one contact once per call, though it came twice
    assert [(c["op"], c["changed"]) for c in sim.list_changes] == [
        ("add", True),
        ("delete", False),
        ("add", False),
        ("delete", False),
    ]


async def test_failures_carry_emarsys_reply_codes(send, sim):
    result = await send(
        [
            upsert("a@x.com"),
            add("a@x.com", 999),  # no such list
            add("ghost@x.com"),  # no such contact
            add("a@x.com"),  # fine, in the same call as the ghost
            remove("a@x.com", "No such list"),  # a name the account does not have
        ]
    )
    assert outcomes(result) == outcomes(
        [
            Outcome(upsert("a@x.com"), True),
            Outcome(add("a@x.com", 999), False, 3004),
            Outcome(add("ghost@x.com"), False, 2008),
            Outcome(add("a@x.com"), True),
            Outcome(remove("a@x.com", "No such list"), False, None),
        ]
    )
    by = {(o.effect["contact"], o.effect["list"]): o for o in result if o.effect["op"] != "upsert"}
    assert "Invalid contact list id: 999" in by[("a@x.com", 999)].text
    assert "No contact found" in by[("ghost@x.com", VIP)].text
    assert by[("a@x.com", "No such list")].text == "no contact list named 'No such list'"
    entry = by[("ghost@x.com", VIP)].record()
    assert entry == {
        "op": "list_add",
        "ok": False,
        "contact": "ghost@x.com",
        "rule": "r",
        "list": VIP,
        "trigger_id": "t-r-ghost@x.com",
        "event_time": "2026-01-02T03:04:05Z",
        "code": 2008,
        "text": entry["text"],
        "given_up": False,
    }
    assert members(sim, VIP) == {"a@x.com"}


async def test_a_list_call_is_retried_through_an_outage(send, sim):
    await send([upsert("a@x.com")])
    sim.options.outage = (sim.clock(), sim.clock() + 0.5)
    [outcome] = await send([add("a@x.com")])
    assert outcome.ok
    statuses = [c["status"] for c in sim.calls if c["path"].endswith("/add")]
    assert statuses[0] == 503 and statuses[-1] == 200
    assert members(sim, VIP) == {"a@x.com"}
