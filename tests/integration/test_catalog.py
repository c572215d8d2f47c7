"""The Emarsys catalog routes on a real worker, talking HTTP to the simulator process: the
three lists by name, the cache (Emarsys is not asked again until it expires or on
``?refresh=1``), and the error when the account's Emarsys cannot be reached."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from app.broker import free_port
from tests.integration.stack import account_config, admin, http

pytestmark = pytest.mark.integration


def sim_calls(simulator, since: int, path: str) -> tuple[int, int]:
    """(how many calls of ``path`` since index ``since``, the next index)."""
    body = simulator.get(f"/_sim/calls?since={since}")
    return sum(1 for c in body["calls"] if c["path"] == path), body["next"]


def create_event(simulator, name: str) -> int:
    """Make an external event in the simulated account, as someone would in Emarsys."""
    basic = base64.b64encode(b"demo-client:demo-secret").decode()
    r = http(
        "POST",
        f"{simulator.url}/oauth2/token",
        raw=urllib.parse.urlencode({"grant_type": "client_credentials"}).encode(),
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    token = r.json()["access_token"]
    r = http(
        "POST",
        f"{simulator.url}/api/v3/event",
        raw=json.dumps({"name": name}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert r.status == 200, r.body
    return int(r.json()["data"]["id"])


def test_catalog_routes_cache_and_unreachable_emarsys(make_stack, simulator) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    stack = make_stack(
        accounts={
            "acme": account_config(simulator),
            "down": account_config(
                simulator,
                api_keys=["down-key"],
                emarsys={"api_url": f"{closed}/api/v3", "token_url": f"{closed}/oauth2/token"},
            ),
        }
    )
    w = stack.start_worker()
    base = f"{w.url}/api/accounts"

    # -- the three lists, by id and name, behind the admin token
    assert http("GET", f"{base}/acme/emarsys/fields").status == 401
    assert http("GET", f"{base}/nope/emarsys/fields", headers=admin()).status == 404
    _, since = sim_calls(simulator, 0, "")
    r = http("GET", f"{base}/acme/emarsys/fields", headers=admin())
    assert r.status == 200, r.body
    fields = r.json()["fields"]
    assert {"id": 3, "name": "E-Mail", "type": "longtext"} in fields
    assert {"id": 4712, "name": "Lifetime value", "type": "numeric"} in fields
    events = http("GET", f"{base}/acme/emarsys/events", headers=admin()).json()["events"]
    assert {"id": 1234, "name": "segment.com test event"} in events
    lists = http("GET", f"{base}/acme/emarsys/lists", headers=admin()).json()["lists"]
    assert {"id": 750504658, "name": "Newsletter subscribers"} in lists
    n, since = sim_calls(simulator, since, "/api/v3/field/translate/en")
    assert n == 1

    # -- cached: a new event in Emarsys shows only on refresh, and Emarsys is not asked
    new_id = create_event(simulator, "Catalog test event")
    _, since = sim_calls(simulator, since, "")
    again = http("GET", f"{base}/acme/emarsys/events", headers=admin()).json()
    assert again["cached"] is True
    assert new_id not in {e["id"] for e in again["events"]}
    assert http("GET", f"{base}/acme/emarsys/fields", headers=admin()).json()["cached"] is True
    assert sim_calls(simulator, since, "/api/v3/event")[0] == 0
    assert sim_calls(simulator, since, "/api/v3/field/translate/en")[0] == 0
    fresh = http("GET", f"{base}/acme/emarsys/events?refresh=1", headers=admin()).json()
    assert fresh["cached"] is False
    assert {"id": new_id, "name": "Catalog test event"} in fresh["events"]
    assert sim_calls(simulator, since, "/api/v3/event")[0] == 1

    # -- an account whose Emarsys cannot be reached: a clear error, not a hang or a 500
    r = http("GET", f"{base}/down/emarsys/lists", headers=admin(), timeout=60)
    assert r.status == 502, r.body
    message = r.json()["message"]
    assert message.startswith("cannot reach Emarsys (GET /contactlist)"), message
    assert "demo-secret" not in r.body.decode()
    # ... and the reachable account is not held up by it
    assert http("GET", f"{base}/acme/emarsys/lists", headers=admin()).status == 200
