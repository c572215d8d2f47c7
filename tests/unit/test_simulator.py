"""The Emarsys simulator: auth, contacts, triggers, limits, faults and the /_sim endpoints."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from app.emarsys.simulator import (
    SIMULATOR,
    ManualClock,
    SimulatorOptions,
    add_arguments,
    create_app,
    options_from_args,
    serve,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
V3 = "/api/v3"
V2 = "/api/v2"

MakeClient = Callable[..., Awaitable[TestClient]]


# -- helpers -----------------------------------------------------------------------------


def wsse(user: str, secret: str, created: str, nonce: str | None = None) -> str:
    """A tiny independent WSSE header builder (the reference's recipe)."""
    nonce = nonce or secrets.token_hex(16)
    digest = base64.b64encode(
        hashlib.sha1((nonce + created + secret).encode()).hexdigest().encode()
    ).decode()
    return (
        f'UsernameToken Username="{user}", PasswordDigest="{digest}", '
        f'Nonce="{nonce}", Created="{created}"'
    )


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture
async def make() -> AsyncIterator[MakeClient]:
    clients: list[TestClient] = []

    async def _make(**kw: Any) -> TestClient:
        kw.setdefault("clock", ManualClock(T0))
        client = TestClient(TestServer(create_app(SimulatorOptions(**kw))))
        await client.start_server()
        clients.append(client)
        return client

    yield _make
    for c in clients:
        await c.close()


def clock_of(client: TestClient) -> ManualClock:
    clock = client.app[SIMULATOR].clock  # type: ignore[index]
    assert isinstance(clock, ManualClock)
    return clock


async def token(client: TestClient, cid: str = "demo-client", secret: str = "demo-secret") -> str:
    resp = await client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=aiohttp.BasicAuth(cid, secret),
    )
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["access_token"])


class Api:
    """Bearer calls against /api/v3 returning (status, body)."""

    def __init__(self, client: TestClient, tok: str) -> None:
        self.client, self.tok = client, tok

    async def call(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None, **kw: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tok}", "Content-Type": "application/json"}
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        resp = await self.client.request(method, V3 + path, data=data, headers=headers, **kw)
        return resp.status, await resp.json()

    async def upsert(self, contacts: list[dict[str, Any]], create: bool = True, **extra: Any):
        path = "/contact/?create_if_not_exists=1" if create else "/contact/"
        return await self.call("PUT", path, {"key_id": 3, "contacts": contacts, **extra})


@pytest.fixture
async def api(make: MakeClient) -> Api:
    client = await make(
        custom_fields=[{"id": 7001, "name": "Score", "application_type": "numeric"}]
    )
    return Api(client, await token(client))


async def sim(client: TestClient, path: str) -> Any:
    resp = await client.get("/_sim/" + path)
    assert resp.status == 200
    return await resp.json()


# -- OAuth -------------------------------------------------------------------------------


async def test_oauth_token_and_bearer_call(make: MakeClient) -> None:
    client = await make(token_ttl=120)
    resp = await client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=aiohttp.BasicAuth("demo-client", "demo-secret"),
    )
    body = await resp.json()
    assert resp.status == 200
    assert body["token_type"] == "bearer" and body["expires_in"] == 120
    resp = await client.get(
        V3 + "/event", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert resp.status == 200
    listed = await resp.json()
    assert (listed["replyCode"], listed["replyText"]) == (0, "OK")
    assert listed["data"][0] == {"id": "1234", "name": "segment.com test event"}


async def test_oauth_bad_credentials_and_grant(make: MakeClient) -> None:
    client = await make()
    resp = await client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=aiohttp.BasicAuth("demo-client", "wrong"),
    )
    assert resp.status == 401 and await resp.json() == {"error": "invalid_client"}
    resp = await client.post("/oauth2/token", data={"grant_type": "client_credentials"})
    assert resp.status == 401
    resp = await client.post(
        "/oauth2/token",
        data={"grant_type": "password"},
        auth=aiohttp.BasicAuth("demo-client", "demo-secret"),
    )
    assert resp.status == 400 and (await resp.json())["error"] == "unsupported_grant_type"


async def test_token_expiry_and_unknown_token(make: MakeClient) -> None:
    client = await make(token_ttl=60)
    tok = await token(client)
    headers = {"Authorization": f"Bearer {tok}"}
    assert (await client.get(V3 + "/event", headers=headers)).status == 200
    clock_of(client).advance(59)
    assert (await client.get(V3 + "/event", headers=headers)).status == 200
    clock_of(client).advance(1)
    resp = await client.get(V3 + "/event", headers=headers)
    assert resp.status == 401 and (await resp.json())["replyCode"] == 1
    fresh = await token(client)
    resp = await client.get(V3 + "/event", headers={"Authorization": f"Bearer {fresh}"})
    assert resp.status == 200
    resp = await client.get(V3 + "/event", headers={"Authorization": "Bearer nope"})
    assert resp.status == 401
    assert (await client.get(V3 + "/event")).status == 401
    # v3 does not take WSSE, v2 does not take bearer
    resp = await client.get(V2 + "/event", headers={"Authorization": f"Bearer {fresh}"})
    assert resp.status == 401


# -- WSSE --------------------------------------------------------------------------------


def test_wsse_builder_matches_reference_vectors() -> None:
    d_test = base64.b64encode(hashlib.sha1(b"test").hexdigest().encode()).decode()
    assert d_test == "YTk0YThmZTVjY2IxOWJhNjFjNGMwODczZDM5MWU5ODc5ODJmYmJkMw=="
    header = wsse("u", "dummy", "2019-10-14T00:00:00.000Z", "5398e214ae99c2e50afb709a3bc423f9")
    assert 'PasswordDigest="NDc5MjNlODIyMGE4ODhiMTQyNTA0OGMzZTFjZTM1MmMzMmU0NmNiNw=="' in header


async def test_wsse_accepts_the_reference_vector(make: MakeClient) -> None:
    when = datetime(2019, 10, 14, tzinfo=UTC).timestamp()
    client = await make(wsse_users={"u": "dummy"}, clock=ManualClock(when + 30))
    header = wsse("u", "dummy", "2019-10-14T00:00:00.000Z", "5398e214ae99c2e50afb709a3bc423f9")
    resp = await client.get(V2 + "/event", headers={"X-WSSE": header})
    assert resp.status == 200 and (await resp.json())["replyCode"] == 0
    # the same nonce again: refused
    resp = await client.get(V2 + "/event", headers={"X-WSSE": header})
    assert resp.status == 401 and (await resp.json())["replyCode"] == 1
    calls = (await sim(client, "calls"))["calls"]
    assert [c["auth"] for c in calls] == ["wsse", None]


async def test_wsse_bad_digest_unknown_user_malformed(make: MakeClient) -> None:
    client = await make()
    created = iso(T0)
    for header in (
        wsse("demo-user", "wrong-secret", created),
        wsse("nobody", "demo-secret", created),
        wsse("demo-user", "demo-secret", created).replace(", ", " "),
        wsse("demo-user", "demo-secret", created, nonce="abc"),
        "Basic xyz",
    ):
        resp = await client.get(V2 + "/event", headers={"X-WSSE": header})
        body = await resp.json()
        assert resp.status == 401 and body["replyCode"] == 1, header
    assert (await client.get(V2 + "/event")).status == 401
    ok = await client.get(
        V2 + "/event", headers={"X-WSSE": wsse("demo-user", "demo-secret", created)}
    )
    assert ok.status == 200


async def test_wsse_stale_created(make: MakeClient) -> None:
    client = await make()
    for offset in (-301, 301):
        header = wsse("demo-user", "demo-secret", iso(T0 + offset))
        resp = await client.get(V2 + "/event", headers={"X-WSSE": header})
        body = await resp.json()
        assert resp.status == 401
        assert body["replyCode"] == 1 and body["replyText"] == "Time frame is invalid"
    header = wsse("demo-user", "demo-secret", iso(T0 - 290))
    assert (await client.get(V2 + "/event", headers={"X-WSSE": header})).status == 200
    # a header built now goes stale when the clock moves on 6 minutes
    late = wsse("demo-user", "demo-secret", iso(T0))
    clock_of(client).advance(360)
    assert (await client.get(V2 + "/event", headers={"X-WSSE": late})).status == 401


# -- contacts ----------------------------------------------------------------------------


async def test_upsert_create_update_and_partial_fields(api: Api) -> None:
    status, body = await api.upsert([{"3": "a@x.com", "1": "Ann", "2": "Lee"}, {"3": "b@x.com"}])
    assert status == 200 and body["replyCode"] == 0 and "errors" not in body["data"]
    new_ids = body["data"]["ids"]
    assert all(isinstance(i, int) for i in new_ids) and len(set(new_ids)) == 2
    status, body = await api.upsert([{"3": "a@x.com", "1": "Anne"}])
    assert body["data"]["ids"] == [str(new_ids[0])]
    contacts = (await sim(api.client, "contacts?key=a@x.com"))["contacts"]
    assert len(contacts) == 1
    assert contacts[0]["fields"] == {"3": "a@x.com", "1": "Anne", "2": "Lee"}
    # email keys compare case-insensitively
    status, body = await api.upsert([{"3": "A@X.com", "46": "Dr"}])
    assert body["data"]["ids"] == [str(new_ids[0])]
    assert (await sim(api.client, "contacts"))["count"] == 2


async def test_upsert_without_create_gives_2008(api: Api) -> None:
    await api.upsert([{"3": "a@x.com"}])
    status, body = await api.upsert([{"3": "a@x.com", "1": "A"}, {"3": "new@x.com"}], create=False)
    assert status == 200 and body["replyCode"] == 0
    assert len(body["data"]["ids"]) == 1 and isinstance(body["data"]["ids"][0], str)
    assert "2008" in body["data"]["errors"]["new@x.com"]
    assert (await sim(api.client, "contacts"))["count"] == 1


async def test_post_contact_creates_only_2009(api: Api) -> None:
    status, body = await api.call("POST", "/contact", {"key_id": 3, "contacts": [{"3": "a@x.com"}]})
    assert status == 200 and isinstance(body["data"]["ids"][0], int)
    status, body = await api.call(
        "POST", "/contact", {"key_id": 3, "contacts": [{"3": "a@x.com", "1": "X"}, {"3": "c@x"}]}
    )
    assert "2009" in body["data"]["errors"]["a@x.com"] and len(body["data"]["ids"]) == 1
    contact = (await sim(api.client, "contacts?key=a@x.com"))["contacts"][0]
    assert "1" not in contact["fields"]


async def test_empty_key_2005_and_duplicate_key_2010(api: Api) -> None:
    status, body = await api.upsert(
        [{"3": ""}, {"3": "d@x.com", "1": "One"}, {"3": "D@x.com", "1": "Two"}, {"3": "ok@x.com"}]
    )
    errors = body["data"]["errors"]
    assert status == 200
    assert "2005" in errors[""]
    assert "2010" in errors["d@x.com"] and "2010" in errors["D@x.com"]
    assert len(body["data"]["ids"]) == 1
    keys = [c["fields"]["3"] for c in (await sim(api.client, "contacts"))["contacts"]]
    assert keys == ["ok@x.com"]


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"999": "x"}, "Invalid field id: 999"),
        ({"5": 7}, "invalid choice"),
        ({"14": "DE"}, "invalid choice"),
        ({"31": 3}, "invalid choice"),
        ({"4": "02/01/1990"}, "YYYY-MM-DD"),
        ({"4": "1990-02-30"}, "not a valid date"),
        ({"1": "x" * 61}, "60"),
        ({"10": "x" * 256}, "255"),
        ({"7001": "1" * 25}, "24 digits"),
        ({"1": {"a": 1}}, "text"),
    ],
)
async def test_field_validation_2007(api: Api, fields: dict[str, Any], fragment: str) -> None:
    await api.upsert([{"3": "v@x.com", "1": "Before"}])
    good = {"3": "g@x.com", "4": "1990-02-01", "5": 2, "14": "65", "31": 1, "7001": "1" * 24}
    status, body = await api.upsert([{"3": "v@x.com", **fields}, good])
    assert status == 200 and body["replyCode"] == 0
    assert fragment in body["data"]["errors"]["v@x.com"]["2007"]
    assert len(body["data"]["ids"]) == 1
    bad = (await sim(api.client, "contacts?key=v@x.com"))["contacts"][0]["fields"]
    assert bad == {"3": "v@x.com", "1": "Before"}
    applied = (await sim(api.client, "contacts?key=g@x.com"))["contacts"][0]["fields"]
    assert applied == good


async def test_batch_limits_key_id_and_bad_json(api: Api) -> None:
    status, body = await api.upsert([{"3": f"u{i}@x.com"} for i in range(1001)])
    assert status == 400 and body["replyCode"] == 1000
    status, body = await api.call(
        "PUT", "/contact/?create_if_not_exists=1", {"key_id": 100, "contacts": [{"3": "a@x"}]}
    )
    assert status == 200
    assert body["data"]["errors"] == {"<NO_KEY_ID>": {"2004": "Invalid key field id: 100"}}
    status, body = await api.call("PUT", "/contact/", raw=b'{"key_id": 3, "contacts": [')
    assert status == 400 and body["replyCode"] == 1010
    big = json.dumps({"key_id": 3, "contacts": [{"3": "a@x.com", "10": "x" * (8 * 1024 * 1024)}]})
    status, body = await api.call("PUT", "/contact/", raw=big.encode())
    assert status == 413 and body["replyCode"] == 1000
    assert (await sim(api.client, "contacts"))["count"] == 0


async def test_null_wipes_are_recorded(api: Api) -> None:
    await api.upsert([{"3": "w@x.com", "1": "Ann", "2": "Lee"}])
    status, body = await api.upsert([{"3": "w@x.com", "1": None, "18": None}])
    assert status == 200 and "errors" not in body["data"]
    fields = (await sim(api.client, "contacts?key=w@x.com"))["contacts"][0]["fields"]
    assert fields["1"] is None and fields["2"] == "Lee"
    wipes = (await sim(api.client, "wipes"))["wipes"]
    assert [(w["field_id"], w["had_value"], w["key_value"]) for w in wipes] == [
        (1, True, "w@x.com"),
        (18, False, "w@x.com"),
    ]


async def test_getdata_found_and_not_found(api: Api) -> None:
    await api.upsert([{"3": "a@x.com", "1": "Ann", "31": 1}])
    status, body = await api.call(
        "POST",
        "/contact/getdata",
        {"keyId": "3", "keyValues": ["a@x.com", "no@x.com"], "fields": ["1", "3", "31"]},
    )
    assert status == 200 and body["replyCode"] == 0
    [row] = body["data"]["result"]
    assert row["1"] == "Ann" and row["3"] == "a@x.com" and row["31"] == "1"
    assert body["data"]["errors"] == [
        {"key": "no@x.com", "errorCode": "2008", "errorMsg": "No contact found"}
    ]
    status, body = await api.call("POST", "/contact/getdata", {"keyId": 3, "keyValues": ["z@x"]})
    assert status == 200 and body["data"]["result"] is False


async def test_delete_and_translate_and_contact_list(api: Api) -> None:
    await api.upsert([{"3": "a@x.com"}, {"3": "b@x.com"}])
    status, body = await api.call(
        "POST",
        "/contactlist/750504659/add",
        {"key_id": 3, "external_ids": ["a@x.com", "zz@x.com"]},
    )
    assert status == 200 and body["data"]["inserted_contacts"] == 1
    assert "2008" in body["data"]["errors"]["zz@x.com"]
    assert (await sim(api.client, "contacts?key=a@x.com"))["contacts"][0]["lists"] == [750504659]
    status, body = await api.call(
        "POST", "/contact/delete", {"key_id": 3, "contacts": [{"3": "a@x.com"}, {"3": "q@x"}]}
    )
    assert status == 200 and body["data"]["deleted_contacts"] == 1
    assert "2008" in body["data"]["errors"]["q@x"]
    assert (await sim(api.client, "contacts"))["count"] == 1
    status, body = await api.call("GET", "/field/translate/en")
    by_id = {f["id"]: f for f in body["data"]}
    assert by_id[3]["string_id"] == "email" and by_id[31]["application_type"] == "singlechoice"
    assert by_id[7001] == {
        "id": 7001,
        "name": "Score",
        "string_id": "score",
        "application_type": "numeric",
    }


# -- contact lists -----------------------------------------------------------------------

VIP = 750504659


async def members(api: Api, list_id: int) -> list[int]:
    return (await sim(api.client, "lists"))["lists"].get(str(list_id), [])


async def test_list_add_and_delete_are_idempotent_and_say_how_many_changed(api: Api) -> None:
    status, body = await api.upsert([{"3": "a@x.com"}, {"3": "b@x.com"}])
    a, b = (int(i) for i in body["data"]["ids"])
    ids = {"key_id": 3, "external_ids": ["A@x.com", "b@x.com"]}  # the e-mail key ignores case
    status, body = await api.call("POST", f"/contactlist/{VIP}/add", ids)
    assert (status, body["replyCode"], body["data"]) == (
        200,
        0,
        {"inserted_contacts": 2, "errors": {}},
    )
    status, body = await api.call("POST", f"/contactlist/{VIP}/add", ids)
    assert body["data"] == {"inserted_contacts": 0, "errors": {}}  # members already
    assert await members(api, VIP) == [a, b]
    one = {"key_id": 3, "external_ids": ["a@x.com"]}
    status, body = await api.call("POST", f"/contactlist/{VIP}/delete", one)
    assert (status, body["data"]) == (200, {"deleted_contacts": 1, "errors": {}})
    status, body = await api.call("POST", f"/contactlist/{VIP}/delete", one)
    assert body["data"] == {"deleted_contacts": 0, "errors": {}}  # not a member: no error
    assert await members(api, VIP) == [b]
    assert (await sim(api.client, "contacts?key=a@x.com"))["count"] == 1  # still a contact
    changes = (await sim(api.client, "list-changes?external_id=a@x.com"))["changes"]
    assert [(c["op"], c["changed"]) for c in changes] == [
        ("add", True),
        ("add", False),
        ("delete", True),
        ("delete", False),
    ]


async def test_an_unknown_list_is_http_400_reply_code_3004(api: Api) -> None:
    await api.upsert([{"3": "a@x.com"}])
    for path in ("/contactlist/55/add", "/contactlist/55/delete", "/contactlist/x/add"):
        status, body = await api.call("POST", path, {"key_id": 3, "external_ids": ["a@x.com"]})
        assert (status, body["replyCode"]) == (400, 3004), path
        assert "contact list" in body["replyText"]
    assert (await sim(api.client, "lists"))["lists"] == {}


async def test_missing_contacts_are_per_contact_errors_inside_http_200(api: Api) -> None:
    await api.upsert([{"3": "a@x.com", "1": "Ann"}, {"3": "b@x.com", "1": "Ann"}])
    ids = ["a@x.com", "nobody@x.com", ""]
    status, body = await api.call(
        "POST", f"/contactlist/{VIP}/delete", {"key_id": 3, "external_ids": ids}
    )
    assert (status, body["replyCode"], body["data"]["deleted_contacts"]) == (200, 0, 0)
    errors = body["data"]["errors"]
    assert errors["nobody@x.com"] == {
        "2008": "No contact found with the external id: 3 - nobody@x.com"
    }
    assert "2005" in errors[""]
    # Two contacts share a first name: a non-unique key matches no single contact.
    status, body = await api.call(
        "POST", f"/contactlist/{VIP}/add", {"key_id": 1, "external_ids": ["Ann"]}
    )
    assert "2010" in body["data"]["errors"]["Ann"] and body["data"]["inserted_contacts"] == 0


async def test_list_calls_check_key_id_body_limit_and_auth(api: Api) -> None:
    path = f"/contactlist/{VIP}/add"
    status, body = await api.call("POST", path, {"key_id": 99, "external_ids": []})
    assert (status, body["replyCode"]) == (400, 2004)
    status, body = await api.call("POST", path, {"key_id": 3, "external_ids": "a@x.com"})
    assert (status, body["replyCode"]) == (400, 1001)
    many = [f"c{i}@x.com" for i in range(10_001)]
    status, body = await api.call("POST", path, {"key_id": 3, "external_ids": many})
    assert (status, body["replyCode"]) == (400, 1000)
    status, body = await api.call("POST", path, {"key_id": 3, "external_ids": many[:10_000]})
    assert status == 200 and len(body["data"]["errors"]) == 10_000  # none of them exist
    resp = await api.client.post(V3 + path, json={"key_id": 3, "external_ids": []})
    assert resp.status == 401 and (await resp.json())["replyCode"] == 1


# -- triggers ----------------------------------------------------------------------------


async def test_event_create_and_single_trigger(api: Api) -> None:
    await api.upsert([{"3": "a@x.com"}])
    status, body = await api.call("POST", "/event", {"name": "order placed"})
    event_id = body["data"]["id"]
    _, listed = await api.call("GET", "/event")
    assert {"id": str(event_id), "name": "order placed"} in listed["data"]
    payload = {
        "key_id": 3,
        "external_id": "a@x.com",
        "trigger_id": "t-1",
        "data": {"global": {"name": "Ann"}},
        "event_time": "2026-01-02T03:04:05Z",
    }
    status, body = await api.call("POST", f"/event/{event_id}/trigger", payload)
    assert status == 200 and body["replyCode"] == 0
    [fired] = (await sim(api.client, "triggers"))["fired"]
    assert fired["event_id"] == event_id and fired["external_id"] == "a@x.com"
    assert fired["trigger_id"] == "t-1" and fired["data"] == {"global": {"name": "Ann"}}
    assert fired["event_time"] == "2026-01-02T03:04:05Z" and fired["fired_at"] == T0


async def test_trigger_dedupe_by_trigger_id(api: Api) -> None:
    await api.upsert([{"3": "a@x.com"}])
    one = {"external_id": "a@x.com", "trigger_id": "same", "event_time": "2026-01-02T03:04:05.123Z"}
    for _ in range(3):
        status, body = await api.call("POST", "/event/1234/trigger", {"key_id": 3, **one})
        assert status == 200 and body["replyCode"] == 0
    status, body = await api.call(
        "POST",
        "/event/1234/trigger",
        {
            "key_id": 3,
            "contacts": [one, {**one, "trigger_id": "other"}, {**one, "trigger_id": "other"}],
        },
    )
    assert status == 200
    triggers = await sim(api.client, "triggers")
    assert [f["trigger_id"] for f in triggers["fired"]] == ["same", "other"]
    assert triggers["duplicates"] == {"same": 3, "other": 1}
    assert triggers["fired"][0]["duplicates"] == 3


async def test_trigger_batch_per_contact_2008_and_single_2008(api: Api) -> None:
    await api.upsert([{"3": "a@x.com"}])
    status, body = await api.call(
        "POST",
        "/event/1234/trigger",
        {"key_id": 3, "contacts": [{"external_id": "a@x.com"}, {"external_id": "ghost@x.com"}]},
    )
    assert status == 200 and body["replyCode"] == 0
    assert "2008" in body["data"]["errors"]["ghost@x.com"]
    assert (await sim(api.client, "triggers"))["count"] == 1
    status, body = await api.call(
        "POST", "/event/1234/trigger", {"key_id": 3, "external_id": "ghost@x.com"}
    )
    assert status == 400 and body["replyCode"] == 2008
    assert (await sim(api.client, "triggers"))["count"] == 1


@pytest.mark.parametrize(
    "event_time",
    [
        "2026-01-02T03:04:05+00:00",
        "2026-01-02 03:04:05Z",
        "2026-01-02T03:04:05.1Z",
        "2026-13-02T03:04:05Z",
        5,
    ],
)
async def test_trigger_bad_event_time_5010_fires_nothing(api: Api, event_time: Any) -> None:
    await api.upsert([{"3": "a@x.com"}])
    contacts = [
        {"external_id": "a@x.com", "event_time": "2026-01-02T03:04:05Z"},
        {"external_id": "a@x.com", "event_time": event_time},
    ]
    status, body = await api.call(
        "POST", "/event/1234/trigger", {"key_id": 3, "contacts": contacts}
    )
    assert status == 400 and body["replyCode"] == 5010
    assert (await sim(api.client, "triggers"))["count"] == 0


async def test_trigger_unknown_event_5001_and_batch_limit(api: Api) -> None:
    await api.upsert([{"3": "a@x.com"}])
    status, body = await api.call("POST", "/event/999/trigger", {"external_id": "a@x.com"})
    assert status == 400 and body["replyCode"] == 5001
    many = [{"external_id": "a@x.com"}] * 1001
    status, body = await api.call("POST", "/event/1234/trigger", {"key_id": 3, "contacts": many})
    assert status == 400 and body["replyCode"] == 1000
    big = {"key_id": 3, "external_id": "a@x.com", "data": {"global": {"x": "y" * 1024 * 1024}}}
    status, body = await api.call("POST", "/event/1234/trigger", big)
    assert status == 413 and body["replyCode"] == 5008
    assert (await sim(api.client, "triggers"))["count"] == 0


# -- limits and faults -------------------------------------------------------------------


async def test_rate_limit_429_headers_and_window(make: MakeClient) -> None:
    client = await make(rate_limit_per_minute=3)
    headers = {"Authorization": f"Bearer {await token(client)}"}
    for remaining in ("2", "1", "0"):
        resp = await client.get(V3 + "/event", headers=headers)
        assert resp.status == 200
        assert resp.headers["X-Ratelimit-Remaining"] == remaining
        clock_of(client).advance(1)
    resp = await client.get(V3 + "/event", headers=headers)
    assert resp.status == 429 and (await resp.json())["replyCode"] == 7003
    raw_names = {k for k, _ in resp.raw_headers}
    assert {b"X-RateLimit-Limit", b"X-Ratelimit-Remaining", b"X-RateLimit-Reset"} <= raw_names
    assert resp.headers["X-RateLimit-Limit"] == "3"
    assert resp.headers["X-Ratelimit-Remaining"] == "0"
    assert int(resp.headers["X-RateLimit-Reset"]) == int(T0 + 60)
    assert "Retry-After" not in resp.headers
    # the limit is per credential: a WSSE user has its own window
    w = {"X-WSSE": wsse("demo-user", "demo-secret", iso(T0 + 3))}
    assert (await client.get(V2 + "/event", headers=w)).status == 200
    clock_of(client).set(T0 + 60)
    assert (await client.get(V3 + "/event", headers=headers)).status == 200


async def test_error_rate_one_gives_500_and_changes_nothing(make: MakeClient) -> None:
    client = await make(error_rate=1.0, seed=7)
    api = Api(client, await token(client))
    status, body = await api.upsert([{"3": "a@x.com"}])
    assert status == 500 and body["replyCode"] == 6001
    assert body["replyText"] == "request interpretation error"
    assert (await sim(client, "contacts"))["count"] == 0


async def test_error_rate_is_reproducible_with_a_seed(make: MakeClient) -> None:
    async def statuses() -> list[int]:
        client = await make(error_rate=0.5, seed=42)
        api = Api(client, await token(client))
        return [(await api.call("GET", "/event"))[0] for _ in range(20)]

    first, second = await statuses(), await statuses()
    assert first == second and {200, 500} == set(first)


async def test_outage_503_then_recovers(make: MakeClient) -> None:
    client = await make()
    api = Api(client, await token(client))
    resp = await client.post("/_sim/faults", json={"outage_seconds": 30})
    assert (await resp.json())["outage_seconds"] == 30
    status, body = await api.call("GET", "/event")
    assert status == 503 and "replyCode" in body
    clock_of(client).advance(29)
    assert (await api.call("GET", "/event"))[0] == 503
    clock_of(client).advance(1)
    assert (await api.call("GET", "/event"))[0] == 200


async def test_faults_partial_update(make: MakeClient) -> None:
    client = await make()
    resp = await client.post("/_sim/faults", json={"rate_limit_per_minute": 1, "token_ttl": 5})
    faults = await resp.json()
    assert faults["rate_limit_per_minute"] == 1 and faults["token_ttl"] == 5
    assert faults["error_rate"] == 0.0 and faults["latency"] == 0.0
    tok = await token(client)
    api = Api(client, tok)
    assert (await api.call("GET", "/event"))[0] == 200
    assert (await api.call("GET", "/event"))[0] == 429
    clock_of(client).advance(5)
    assert (await api.call("GET", "/event"))[0] == 401
    assert (await client.post("/_sim/faults", json={"nope": 1})).status == 400
    assert (await client.post("/_sim/faults", json={"error_rate": 2})).status == 400


# -- /_sim -------------------------------------------------------------------------------


async def test_sim_calls_stats_and_reset(api: Api) -> None:
    client = api.client
    await api.upsert([{"3": "a@x.com"}, {"3": "b@x.com"}])
    clock_of(client).advance(1)
    await api.upsert([{"3": "c@x.com"}, {"3": "d@x.com"}, {"3": "e@x.com"}, {"3": "f@x.com"}])
    await api.call("POST", "/event/1/trigger", {"external_id": "a@x.com"})
    calls = await sim(client, "calls")
    assert calls["next"] == 4
    token_call, first, second, bad = calls["calls"]
    assert token_call["path"] == "/oauth2/token" and token_call["auth"] == "basic"
    assert first == {
        "index": 1,
        "time": T0,
        "ended": T0,
        "method": "PUT",
        "path": "/api/v3/contact/",
        "query": "create_if_not_exists=1",
        "status": 200,
        "reply_code": 0,
        "contacts": 2,
        "auth": "bearer",
        "credential": "oauth:demo-client",
    }
    assert second["contacts"] == 4 and bad["status"] == 400 and bad["reply_code"] == 5001
    assert [c["index"] for c in (await sim(client, "calls?since=2"))["calls"]] == [2, 3]
    stats = await sim(client, "stats")
    assert stats["calls"] == 4 and stats["contacts_per_call"] == 3.0
    assert stats["status"] == {"200": 3, "400": 1} and stats["calls_per_second"] == 4.0
    assert stats["per_second"] == [{"second": 0, "calls": 2}, {"second": 1, "calls": 2}]
    assert (await client.post("/_sim/reset")).status == 200
    assert (await sim(client, "contacts"))["count"] == 0
    assert (await sim(client, "calls"))["calls"] == []
    # options and tokens survive a reset
    assert (await api.call("GET", "/event"))[0] == 200


async def test_options_from_args_and_real_server() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = "--port 0 --client-id c --client-secret s --rate-limit 5 --error-rate 0.25"
    argv += " --latency 0.5 --token-ttl 90 --seed 3"
    ns = parser.parse_args(argv.split(" "))
    options = options_from_args(ns)
    assert ns.port == 0 and options.oauth_clients == {"c": "s"}
    assert options.wsse_users == {"demo-user": "demo-secret"}
    assert (options.rate_limit_per_minute, options.error_rate, options.latency) == (5, 0.25, 0.5)
    assert (options.token_ttl, options.seed) == (90, 3)
    defaults = options_from_args(parser.parse_args([]))
    assert defaults.oauth_clients == {"demo-client": "demo-secret"} and ns.host == "127.0.0.1"

    runner = await serve(port=0, options=SimulatorOptions(oauth_clients={"c": "s"}))
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session:
            resp = await session.post(
                f"http://127.0.0.1:{port}/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=aiohttp.BasicAuth("c", "s"),
            )
            assert resp.status == 200 and (await resp.json())["expires_in"] == 3600
    finally:
        await runner.cleanup()


# -- per API user faults and the accepted log -----------------------------------------------


async def test_one_api_users_outage_leaves_the_other_answering(make: MakeClient) -> None:
    client = await make(oauth_clients={"alpha": "a-secret", "beta": "b-secret"})
    alpha = Api(client, await token(client, "alpha", "a-secret"))
    beta = Api(client, await token(client, "beta", "b-secret"))
    resp = await client.post("/_sim/faults", json={"credential": "alpha", "outage_seconds": 30})
    faults = await resp.json()
    assert faults["credentials"]["alpha"]["outage_seconds"] == 30
    assert faults["outage_seconds"] == 0  # nobody else is affected
    status, body = await alpha.upsert([{"3": "a@x.com"}])
    assert (status, body["replyCode"]) == (503, 503)
    assert (await beta.upsert([{"3": "b@x.com"}]))[0] == 200
    # Its token requests fail too (the client's refresh cannot work around the outage).
    resp = await client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=aiohttp.BasicAuth("alpha", "a-secret"),
    )
    assert resp.status == 503
    clock_of(client).advance(31)
    assert (await alpha.upsert([{"3": "a@x.com"}]))[0] == 200
    calls = (await sim(client, "calls"))["calls"]
    assert [(c["credential"], c["status"]) for c in calls if c["path"].endswith("/contact/")] == [
        (None, 503),  # refused before it was authenticated
        ("oauth:beta", 200),
        ("oauth:alpha", 200),
    ]
    # Ended by hand, and bad input is refused.
    await client.post("/_sim/faults", json={"credential": "alpha", "outage_seconds": 60})
    await client.post("/_sim/faults", json={"credential": "alpha", "outage_seconds": 0})
    assert (await alpha.upsert([{"3": "a@x.com"}]))[0] == 200
    for bad in ({"credential": ""}, {"credential": "alpha", "rate_limit_per_minute": 1}):
        assert (await client.post("/_sim/faults", json=bad)).status == 400
    bad_rate = {"credential": "alpha", "error_rate": 3}
    assert (await client.post("/_sim/faults", json=bad_rate)).status == 400


async def test_one_api_users_latency_and_wsse_user_faults(make: MakeClient) -> None:
    client = await make(wsse_users={"w1": "s1", "w2": "s2"})
    await client.post("/_sim/faults", json={"credential": "w1", "outage_seconds": 10})
    now = iso(T0)
    r1 = await client.get(V2 + "/event", headers={"X-WSSE": wsse("w1", "s1", now)})
    r2 = await client.get(V2 + "/event", headers={"X-WSSE": wsse("w2", "s2", now)})
    assert (r1.status, r2.status) == (503, 200)
    await client.post("/_sim/faults", json={"credential": "w2", "latency": 0.3})
    started = asyncio.get_running_loop().time()
    r2 = await client.get(V2 + "/event", headers={"X-WSSE": wsse("w2", "s2", now)})
    assert r2.status == 200 and asyncio.get_running_loop().time() - started >= 0.3


async def test_accepted_log_has_each_contact_row_and_first_trigger(make: MakeClient) -> None:
    client = await make(oauth_clients={"alpha": "a", "beta": "b"})
    alpha = Api(client, await token(client, "alpha", "a"))
    beta = Api(client, await token(client, "beta", "b"))
    await alpha.upsert([{"3": "a@x.com", "1": "Ann"}, {"3": "c@x.com"}])
    clock_of(client).advance(2)
    await beta.upsert([{"3": "b@x.com"}, {"3": ""}])  # the empty key is an error, not accepted
    trigger = {"key_id": 3, "contacts": [{"external_id": "a@x.com", "trigger_id": "t1"}]}
    await alpha.call("POST", "/event/1234/trigger", trigger)
    await alpha.call("POST", "/event/1234/trigger", trigger)  # deduplicated: not again
    log = await sim(client, "accepted")
    assert log["next"] == 4
    assert [(r["i"], r["credential"], r["op"], r["key"]) for r in log["accepted"]] == [
        (0, "oauth:alpha", "upsert", "a@x.com"),
        (1, "oauth:alpha", "upsert", "c@x.com"),
        (2, "oauth:beta", "upsert", "b@x.com"),
        (3, "oauth:alpha", "trigger", "a@x.com"),
    ]
    assert log["accepted"][0]["fields"] == {"3": "a@x.com", "1": "Ann"}
    assert log["accepted"][2]["t"] == log["accepted"][0]["t"] + 2
    assert log["accepted"][3]["trigger_id"] == "t1" and log["accepted"][3]["event_id"] == 1234
    only_beta = await sim(client, "accepted?credential=beta")
    assert [r["key"] for r in only_beta["accepted"]] == ["b@x.com"]
    triggers = await sim(client, "accepted?op=trigger&since=1")
    assert [r["i"] for r in triggers["accepted"]] == [3]
    assert (await client.get("/_sim/accepted?since=x")).status == 400
    fired = (await sim(client, "triggers"))["fired"]
    assert fired[0]["credential"] == "oauth:alpha"


def test_more_api_users_on_the_command_line() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    ns = parser.parse_args(
        ["--oauth-client", "alpha:a1", "--oauth-client", "beta:b1", "--wsse-credential", "w:s"]
    )
    options = options_from_args(ns)
    assert options.oauth_clients == {"demo-client": "demo-secret", "alpha": "a1", "beta": "b1"}
    assert options.wsse_users == {"demo-user": "demo-secret", "w": "s"}
    with pytest.raises(SystemExit):
        options_from_args(parser.parse_args(["--oauth-client", "no-secret"]))
