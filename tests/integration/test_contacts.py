"""Issue 3: users table, data maps and the Emarsys sink, end to end through the simulator."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from tests.integration.stack import Simulator, Stack, account_config, read_topic, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(broker, simulator, tmp_path_factory):
    s = Stack(broker.url, tmp_path_factory.mktemp("contacts"), {"acme": account_config(simulator)})
    s.start_worker()
    s.wait_assigned()
    yield s
    s.stop()


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_identify_creates_the_contact_with_mapped_fields(stack, simulator):
    user, email = uid("u"), f"{uid('ann')}@example.com"
    r = stack.post(
        "/v1/identify",
        {"userId": user, "traits": {"firstName": "Ann"}, "context": {"traits": {"email": email}}},
    )
    assert r.status == 200
    fields = wait_for(lambda: simulator.contact(email), what="the contact in Emarsys")
    assert fields["3"] == email and fields["1"] == "Ann"
    body = wait_for(
        lambda: (
            lambda r: r.json() if r.status == 200 and r.json()["emarsys"]["acknowledged"] else None
        )(stack.user("acme", userId=user)),
        what="the acknowledged fields in the users table",
    )
    assert body["primaryKey"] == email
    assert body["values"]["first_name"] == "Ann"
    assert body["emarsys"]["acknowledged"] == {"3": email, "1": "Ann"}
    assert body["deliveries"][-1]["op"] == "upsert" and body["deliveries"][-1]["ok"] is True


def test_only_changed_fields_are_sent_and_the_key_is_remembered(stack, simulator):
    user, email = uid("u"), f"{uid('bob')}@example.com"
    stack.post(
        "/v1/identify",
        {"userId": user, "traits": {"firstName": "Bob"}, "context": {"traits": {"email": email}}},
    )
    wait_for(lambda: simulator.contact(email), what="contact")
    since = simulator.get("/_sim/calls")["next"]
    # Same values again: nothing to send. Then a new first name without the e-mail:
    # the remembered key lets it through.
    stack.post(
        "/v1/identify",
        {"userId": user, "traits": {"firstName": "Bob"}, "context": {"traits": {"email": email}}},
    )
    stack.post("/v1/identify", {"userId": user, "traits": {"firstName": "Robert"}})
    wait_for(lambda: (simulator.contact(email) or {}).get("1") == "Robert", what="update")
    calls = simulator.get(f"/_sim/calls?since={since}")["calls"]
    puts = [c for c in calls if c["method"] == "PUT"]
    assert len(puts) == 1, puts


def test_anonymous_page_then_identify_is_one_person(stack, simulator):
    anon, user, email = uid("anon"), uid("u"), f"{uid('cy')}@example.com"
    stack.post("/v1/page", {"anonymousId": anon, "name": "Home", "properties": {"coupon": "C1"}})
    stack.post(
        "/v1/identify",
        {"anonymousId": anon, "userId": user, "context": {"traits": {"email": email}}},
    )

    def merged():
        r = stack.user("acme", anonymousId=anon)
        return r.json() if r.status == 200 and r.json()["person"] == f"u:{user}" else None

    body = wait_for(merged, what="the anonymous visitor merged into the user")
    assert anon in body["anonymousIds"]
    wait_for(
        lambda: stack.user("acme", anonymousId=anon).json()["values"].get("coupon") == "C1",
        what="the anonymous value merged",
    )
    # The primary-key index lives on the key's own partition and is written shortly after.
    wait_for(
        lambda: stack.user("acme", primaryKey=email).json().get("person") == f"u:{user}",
        what="the primary key indexed to the user",
    )
    # A later anonymous-only event is attributed to the user.
    stack.post("/v1/track", {"anonymousId": anon, "event": "Later"})
    wait_for(
        lambda: stack.user("acme", userId=user).json()["values"].get("ecom_event") == "Later",
        what="the anonymous event attributed to the user",
    )


def test_alias_links_an_old_user_id(stack, simulator):
    old, new, email = uid("old"), uid("new"), f"{uid('al')}@example.com"
    stack.post("/v1/identify", {"userId": old, "context": {"traits": {"email": email}}})
    wait_for(lambda: stack.user("acme", userId=old).status == 200, what="old person")
    stack.post("/v1/alias", {"previousId": old, "userId": new})
    stack.post("/v1/track", {"userId": new, "event": "After Alias"})

    def aliased():
        # The old record's hand-off and the track are separate transactions when they
        # land in different fetches, in either order: wait until both are in.
        r = stack.user("acme", userId=new)
        if r.status != 200:
            return None
        body = r.json()
        done = body["primaryKey"] == email and "ecom_event" in body["values"]
        return body if done else None

    body = wait_for(aliased, what="the alias merging the old user's record")
    assert body["values"]["ecom_event"] == "After Alias"
    # The old id now answers with the new person; its later events go there too.
    assert stack.user("acme", userId=old).json()["person"] == f"u:{new}"


def test_delete_removes_the_person_and_the_contact(stack, simulator):
    user, email, anon = uid("u"), f"{uid('del')}@example.com", uid("a")
    stack.post(
        "/v1/identify",
        {"userId": user, "anonymousId": anon, "context": {"traits": {"email": email}}},
    )
    wait_for(lambda: simulator.contact(email), what="contact")
    assert stack.user("acme", anonymousId=anon).json()["person"] == f"u:{user}"
    assert stack.post("/segment", {"type": "delete", "userId": user}).status == 200
    wait_for(lambda: simulator.contact(email) is None, what="the contact deleted in Emarsys")
    wait_for(lambda: stack.user("acme", userId=user).status == 404, what="the record gone")
    # The user's device forgets it too: back anonymously, it is a new visitor, and the
    # deleted user is not brought back by its events.
    wait_for(lambda: stack.user("acme", anonymousId=anon).status == 404, what="the link gone")
    stack.post("/v1/page", {"anonymousId": anon, "name": "Home"})

    def visitor() -> dict | None:
        r = stack.user("acme", anonymousId=anon)
        return r.json() if r.status == 200 else None

    assert wait_for(visitor, what="the new visitor")["person"] == f"a:{anon}"
    assert stack.user("acme", userId=user).status == 404
    assert simulator.contact(email) is None


def test_unconvertible_values_are_left_out_and_counted(stack, simulator):
    user, email = uid("u"), f"{uid('nv')}@example.com"
    stack.post(
        "/v1/identify",
        {
            "userId": user,
            "traits": {"firstName": {"not": "text"}},
            "context": {"traits": {"email": email}},
        },
    )
    fields = wait_for(lambda: simulator.contact(email), what="contact")
    assert "1" not in fields
    assert stack.metric("emd_datamap_failures_total", data_map="first_name") >= 1


def test_inspection_requires_the_admin_token_and_stays_in_its_account(stack):
    from tests.integration.stack import http

    r = http("GET", f"{stack.url()}/api/accounts/acme/users?userId=x")
    assert r.status == 401
    r = http(
        "GET",
        f"{stack.url()}/api/accounts/other/users?userId=x",
        headers={"Authorization": "Bearer test-admin-token"},
    )
    assert r.status == 404


def test_wsse_account(broker, simulator, tmp_path):
    cfg = account_config(
        simulator,
        emarsys={
            "api_url": f"{simulator.url}/api/v2",
            "auth": "wsse",
            "username": "demo-user",
            "secret": "demo-secret",
            "client_id": None,
            "client_secret": None,
        },
    )
    s = Stack(broker.url, tmp_path, {"wsse": cfg}, partitions=2)
    try:
        s.start_worker()
        s.wait_assigned()
        email = f"{uid('w')}@example.com"
        s.post("/v1/identify", {"userId": uid("u"), "context": {"traits": {"email": email}}})
        wait_for(lambda: simulator.contact(email), what="contact via WSSE")
        calls = simulator.get("/_sim/calls")["calls"]
        assert any(
            c["path"].startswith("/api/v2/contact") and c.get("auth") == "wsse" for c in calls
        )
    finally:
        s.stop()


def test_bad_credentials_are_reported_and_the_worker_keeps_running(broker, simulator, tmp_path):
    cfg = account_config(simulator, emarsys={"client_secret": "wrong"})
    s = Stack(broker.url, tmp_path, {"acme": cfg}, partitions=2)
    try:
        s.start_worker()
        s.wait_assigned()
        user, email = uid("u"), f"{uid('bad')}@example.com"
        s.post("/v1/identify", {"userId": user, "context": {"traits": {"email": email}}})

        def failed_delivery():
            r = s.user("acme", userId=user)
            if r.status != 200:
                return None
            d = r.json()["deliveries"]
            return d[-1] if d and d[-1]["ok"] is False else None

        entry = wait_for(failed_delivery, what="a failed delivery in the log")
        assert "401" in str(entry.get("code")) or "invalid_client" in entry["text"]
        dead = [orjson.loads(r.value) for r in read_topic(s.broker_url, s.topic("dead-letters"))]
        assert any(d["source"] == "sink" and d["payload"]["contact"] == email for d in dead)
        assert simulator.contact(email) is None
        # Still alive and processing.
        s.post("/v1/track", {"userId": user, "event": "Still Here"})
        wait_for(
            lambda: s.user("acme", userId=user).json()["values"].get("ecom_event") == "Still Here",
            what="processing after the failure",
        )
        assert "secret" not in s.workers[0].log_text().lower().replace("client_secret", "")
    finally:
        s.stop()


def test_two_workers_answer_for_every_person(broker, simulator, tmp_path):
    s = Stack(broker.url, tmp_path, {"acme": account_config(simulator)}, partitions=4)
    try:
        s.start_worker()
        s.start_worker()
        s.wait_assigned()
        users = [uid("tw") for _ in range(12)]
        for i, u in enumerate(users):
            anon = f"anon-{u}"
            s.post("/v1/page", {"anonymousId": anon, "name": "P"}, i=i % 2)
            s.post(
                "/v1/identify",
                {
                    "anonymousId": anon,
                    "userId": u,
                    "context": {"traits": {"email": f"{u}@example.com"}},
                },
                i=(i + 1) % 2,
            )
        for u in users:
            for i in (0, 1):
                # The link is made where the anonymousId lives, one hop after the identify
                # reached the user: wait for the lookup to follow it.
                body = wait_for(
                    lambda u=u, i=i: (
                        lambda r: (
                            r.json()
                            if r.status == 200 and r.json().get("person") == f"u:{u}"
                            else None
                        )
                    )(s.user("acme", i=i, anonymousId=f"anon-{u}")),
                    what=f"user {u} from worker {i}",
                )
                assert body["person"] == f"u:{u}" and body["primaryKey"] == f"{u}@example.com"
    finally:
        s.stop()


def _storm_then_outage(broker, tmp_path, outage: int) -> None:
    sim = Simulator(tmp_path)
    s = Stack(broker.url, tmp_path, {"acme": account_config(sim)}, partitions=2)
    try:
        s.start_worker()
        s.wait_assigned()
        sim.post("/_sim/faults", {"rate_limit_per_minute": 3})
        emails: list[str] = []
        # One update at a time, in separate sink batches, until Emarsys answers 429s.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            e = f"{uid('rl')}@example.com"
            emails.append(e)
            s.post("/v1/identify", {"userId": f"rl-{e}", "context": {"traits": {"email": e}}})
            time.sleep(0.4)
            if len(emails) >= 10 and sim.get("/_sim/stats")["status"].get("429", 0) >= 3:
                break
        sim.post("/_sim/faults", {"rate_limit_per_minute": 1000, "outage_seconds": outage})
        for i in range(15):
            e = f"{uid('rl-o')}@example.com"
            emails.append(e)
            s.post("/v1/identify", {"userId": f"rl-o{i}-{e}", "context": {"traits": {"email": e}}})
        wait_for(
            lambda: all(sim.contact(e) for e in emails),
            timeout=outage + 120,
            interval=2,
            what="every contact after the 429 storm and the outage",
        )
        stats = sim.get("/_sim/stats")
        assert stats["status"].get("429", 0) > 0 and stats["status"].get("503", 0) > 0
        assert s.metric("emd_emarsys_calls_total", status="429") > 0
        dead = [orjson.loads(r.value) for r in read_topic(s.broker_url, s.topic("dead-letters"))]
        assert [d for d in dead if d["source"] == "sink"] == []
    finally:
        s.stop()
        sim.stop()


def test_a_429_storm_and_a_short_outage_lose_nothing(broker, tmp_path):
    _storm_then_outage(broker, tmp_path, outage=15)


@pytest.mark.slow
def test_a_429_storm_and_a_two_minute_outage_lose_nothing(broker, tmp_path):
    _storm_then_outage(broker, tmp_path, outage=120)
