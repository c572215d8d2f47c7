"""Issue 11 item 1: an exit's contact-list actions on a real worker against the Emarsys
simulator process: after the contact's upsert, before the exit's trigger, once under
redelivery, counted in the funnel; a missing list or contact shows Emarsys's replyCode in
the person's deliveries and the dead letters (and a dead letter can be retried)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.stack import ROOT, Stack, account_config, admin, http, wait_for

pytestmark = pytest.mark.integration

VIP, NEWSLETTER, CART = 750504659, 750504658, 750504660

RULES = [
    {  # the rule: list actions only, one by id, one by name
        "name": "VIP",
        "conditions": [
            {"sequence": 0, "type": "start", "on": "track", "match": 'event = "Big Order"'},
            {"sequence": 1, "type": "exit", "add_to_list": VIP,
             "remove_from_list": "Cart abandoners"},
        ],
    },
    {  # a trigger and a list action at one exit
        "name": "Welcome",
        "conditions": [
            {"sequence": 0, "type": "start", "on": "track", "match": 'event = "Subscribed"'},
            {"sequence": 1, "type": "exit", "trigger": "Welcome series",
             "add_to_list": "Newsletter subscribers"},
        ],
    },
    {  # a list the account does not have
        "name": "Missing list",
        "conditions": [
            {"sequence": 0, "type": "start", "on": "track", "match": 'event = "Odd Order"'},
            {"sequence": 1, "type": "exit", "add_to_list": 999},
        ],
    },
]  # fmt: skip


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def track(user: str, event: str, email: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "type": "track",
        "userId": user,
        "event": event,
        "timestamp": iso(time.time()),
        "messageId": uid("m"),
    }
    if email:
        msg["context"] = {"traits": {"email": email}}
    return msg


@pytest.fixture(scope="module")
def stack(broker, simulator, tmp_path_factory):
    s = Stack(
        broker.url,
        tmp_path_factory.mktemp("lists"),
        {"acme": account_config(simulator, rules=RULES)},
    )
    s.start_worker()
    s.wait_assigned()
    yield s
    s.stop()


def send(stack: Stack, *messages: dict[str, Any]) -> None:
    r = stack.post("/v1/batch", {"batch": list(messages)})
    assert r.status == 200, r.body


def lists_of(simulator, email: str) -> list[int] | None:
    found = simulator.get(f"/_sim/contacts?key={urllib.parse.quote(email)}")["contacts"]
    return found[0]["lists"] if found else None


def changes(simulator, email: str) -> list[dict[str, Any]]:
    return simulator.get(f"/_sim/list-changes?external_id={urllib.parse.quote(email)}")["changes"]


def deliveries(stack: Stack, user: str) -> list[dict[str, Any]]:
    return stack.user("acme", userId=user).json().get("deliveries") or []


def delivered(stack: Stack, user: str, op: str, n: int = 1) -> list[dict[str, Any]]:
    def found():
        got = [d for d in deliveries(stack, user) if d["op"] == op]
        return got if len(got) >= n else None

    return wait_for(found, timeout=20, what=f"{op} in {user}'s deliveries")


def dead_letters(stack: Stack, user: str) -> list[dict[str, Any]]:
    r = http("GET", f"{stack.url()}/api/accounts/acme/dead-letters", headers=admin())
    return [
        d for d in r.json()["dead_letters"] if (d.get("payload") or {}).get("person") == f"u:{user}"
    ]


def test_list_actions_follow_the_upsert_and_happen_once_under_redelivery(
    stack, simulator, tmp_path
):
    user, email = uid("vip"), f"{uid('vip')}@example.com"
    order = track(user, "Big Order", email)
    send(stack, order)
    # The add succeeded, so the contact existed: the simulator answers 2008 otherwise.
    wait_for(lambda: VIP in (lists_of(simulator, email) or []), timeout=20, what="VIP member")
    added, removed = delivered(stack, user, "list_add")[0], delivered(stack, user, "list_remove")[0]
    assert (added["ok"], added["list"], added["rule"], added["contact"]) == (
        True,
        VIP,
        "VIP",
        email,
    )
    assert (removed["ok"], removed["list"]) == (True, "Cart abandoners")
    assert added["trigger_id"] == removed["trigger_id"]
    upserted = next(d for d in deliveries(stack, user) if d["op"] == "upsert")
    assert upserted["ok"] and upserted["fields"]["3"] == email

    # The same event again (Segment retries a request): one change, no new action. The
    # person's next event is the barrier: its effects come after any the repeats caused
    # (one partition per person, one per contact).
    send(stack, order)
    send(stack, order)
    send(stack, track(user, "Subscribed"))
    delivered(stack, user, "trigger")
    assert [(c["list_id"], c["op"], c["changed"]) for c in changes(simulator, email)] == [
        (VIP, "add", True),
        (CART, "delete", False),  # was not a member: nothing to remove, no error
        (NEWSLETTER, "add", True),  # the barrier's own
    ]
    vip_adds = [d for d in deliveries(stack, user) if d["op"] == "list_add" and d["rule"] == "VIP"]
    assert len(vip_adds) == 1

    # The same actions sent again (replay --apply of the recorded event): harmless.
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(order) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "replay", "--config", str(stack.config_path),
         "--file", str(events), "--format", "jsonl", "--apply"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    kinds = [json.loads(line)["kind"] for line in done.stdout.splitlines()]
    assert kinds == ["contact_update", "list_add", "list_remove", "summary"]
    assert "3 accepted by Emarsys, 0 failed" in done.stderr
    assert lists_of(simulator, email) == [NEWSLETTER, VIP]
    assert [c["changed"] for c in changes(simulator, email)] == [True, False, True, False, False]

    # The funnel counts the list-only exit as the exit's transition.
    rules = http("GET", f"{stack.url()}/api/accounts/acme/rules", headers=admin()).json()
    vip = next(r for r in rules["rules"] if r["name"] == "VIP")
    assert vip["period"]["triggered"] >= 1 and vip["period"]["started"] >= 1


def test_an_exits_list_action_goes_before_its_trigger(stack, simulator):
    user, email = uid("wel"), f"{uid('wel')}@example.com"
    send(stack, track(user, "Subscribed", email))
    fired = wait_for(
        lambda: simulator.get(f"/_sim/triggers?external_id={email}")["fired"],
        timeout=20,
        what="the Welcome series trigger",
    )
    assert [f["event_id"] for f in fired] == [1302]
    [change] = changes(simulator, email)
    assert (change["list_id"], change["changed"]) == (NEWSLETTER, True)
    assert change["time"] <= fired[0]["fired_at"]
    trig = delivered(stack, user, "trigger")[0]
    assert delivered(stack, user, "list_add")[0]["trigger_id"] == trig["trigger_id"]


def test_a_missing_list_shows_reply_code_3004(stack, simulator):
    user, email = uid("odd"), f"{uid('odd')}@example.com"
    send(stack, track(user, "Odd Order", email))
    [failed] = delivered(stack, user, "list_add")
    assert (failed["ok"], failed["code"], failed["list"]) == (False, 3004, 999)
    assert "Invalid contact list id: 999" in failed["text"]
    dead = wait_for(lambda: dead_letters(stack, user), timeout=20, what="the dead letter")
    assert [d["reason"] for d in dead] == [
        "Emarsys list_add failed (replyCode 3004): Invalid contact list id: 999"
    ]
    assert dead[0]["payload"]["op"] == "list_add" and dead[0]["payload"]["list"] == 999


def test_a_missing_contact_shows_reply_code_2008_and_its_dead_letter_can_be_retried(
    stack, simulator
):
    user, email = uid("gone"), f"{uid('gone')}@example.com"
    send(stack, track(user, "Signed In", email))
    wait_for(lambda: lists_of(simulator, email) is not None, timeout=20, what="the contact")
    # Someone deletes the contact in Emarsys; we still know the key, so no upsert goes.
    token = http(
        "POST",
        f"{simulator.url}/oauth2/token",
        raw=b"grant_type=client_credentials",
        headers={
            "Authorization": "Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ=",  # demo-client
            "Content-Type": "application/x-www-form-urlencoded",
        },
    ).json()["access_token"]
    gone = http(
        "POST",
        f"{simulator.url}/api/v3/contact/delete",
        {"key_id": 3, "3": email},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert gone.status == 200 and gone.json()["data"]["deleted_contacts"] == 1
    send(stack, track(user, "Big Order"))
    added, removed = delivered(stack, user, "list_add")[0], delivered(stack, user, "list_remove")[0]
    for d in (added, removed):
        assert (d["ok"], d["code"]) == (False, 2008)
        assert "No contact found" in d["text"]
    dead = wait_for(
        lambda: (lambda x: x if len(x) == 2 else None)(dead_letters(stack, user)),
        timeout=20,
        what="two dead letters",
    )
    assert sorted(d["reason"].split(":")[0] for d in dead) == [
        "Emarsys list_add failed (replyCode 2008)",
        "Emarsys list_remove failed (replyCode 2008)",
    ]

    # The contact comes back (a new identify with a changed field upserts it); the failed
    # add, retried from the dead letters, now succeeds.
    send(stack, {**track(user, "Profile"), "type": "identify", "traits": {"firstName": "Zoe"},
                 "context": {"traits": {"email": email}}})  # fmt: skip
    wait_for(lambda: lists_of(simulator, email) is not None, timeout=20, what="the new contact")
    add_dead = next(d for d in dead if d["payload"]["op"] == "list_add")
    r = http(
        "POST",
        f"{stack.url()}/api/accounts/acme/dead-letters/retry",
        {"ids": [add_dead["id"]]},
        headers=admin(),
    )
    assert r.json() == {"retried": 1, "skipped": []}
    wait_for(lambda: lists_of(simulator, email) == [VIP], timeout=20, what="VIP after retry")
    assert delivered(stack, user, "list_add", n=2)[-1]["ok"]
