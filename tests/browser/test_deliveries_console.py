"""The deliveries page on a real worker while one account's Emarsys is down: the console
shows the account parked, its call being retried (attempt, last status, when it is given
up) and what waits; the healthy account's page shows none of it; once Emarsys is back
the retry is gone."""

from __future__ import annotations

import json

import pytest

from tests.integration.stack import ADMIN_TOKEN, Simulator, account_config, admin, http, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def tid(name: str) -> str:
    return f"[data-testid={name}]"


@pytest.fixture
def sim(tmp_path):
    s = Simulator(tmp_path, "--oauth-client", "alpha-client:a-secret")
    yield s
    s.stop()


@pytest.fixture
def stack(make_stack, sim):
    alpha = account_config(
        sim,
        api_keys=["alpha-key"],
        emarsys={"client_id": "alpha-client", "client_secret": "a-secret"},
    )
    beta = account_config(sim, api_keys=["beta-key"])
    s = make_stack(
        accounts={"alpha": alpha, "beta": beta},
        extra={"sink": {"flush_interval": "0.2s", "park_after": "2s"}},
    )
    s.start_worker()
    s.wait_assigned()
    return s


def identifies(stack, key: str, prefix: str, n: int) -> None:
    batch = [
        {
            "type": "identify",
            "userId": f"{prefix}{i}",
            "context": {"traits": {"email": f"{prefix}{i}@x.io"}},
        }
        for i in range(n)
    ]
    assert stack.post("/v1/batch", {"batch": batch}, key=key).status == 200


def test_the_deliveries_page_shows_a_retrying_parked_account(page, stack, sim):
    from playwright.sync_api import expect

    sim.post("/_sim/faults", {"credential": "alpha-client", "outage_seconds": 600})
    identifies(stack, "alpha-key", "al", 20)
    identifies(stack, "beta-key", "be", 5)
    wait_for(lambda: sim.contact("be4@x.io"), what="beta's contacts")

    def parked() -> bool:
        r = http("GET", f"{stack.url()}/api/accounts/alpha/deliveries", headers=admin()).json()
        return r["backlog"]["state"] == "parked" and any(c["attempt"] >= 2 for c in r["retrying"])

    wait_for(parked, timeout=30, what="alpha parked and retrying")
    page.add_init_script(f"localStorage.setItem('emd.adminToken', {json.dumps(ADMIN_TOKEN)})")
    page.goto(stack.url() + "/#/alpha/deliveries")
    expect(page.locator(tid("delivery-state"))).to_have_text("parked")
    expect(page.locator(tid("backlog-effects"))).not_to_have_text("0")
    row = page.locator(tid("retry-row")).first
    expect(row).to_contain_text("PUT /contact/")
    expect(row).to_contain_text("503")
    expect(row.locator(tid("retry-gives-up"))).to_contain_text("min")
    assert int(row.locator(tid("retry-attempt")).inner_text()) >= 2

    page.goto(stack.url() + "/#/beta/deliveries")
    expect(page.locator(tid("delivery-state"))).not_to_have_text("parked")
    expect(page.locator(tid("retrying-table"))).to_contain_text("No call is being retried.")
    expect(page.locator(tid("delivery-row")).first).to_contain_text("upsert")

    sim.post("/_sim/faults", {"credential": "alpha-client", "outage_seconds": 0})
    wait_for(lambda: sim.contact("al19@x.io"), timeout=60, what="alpha's contacts after the outage")
    wait_for(lambda: not parked(), timeout=60, what="alpha delivering again")
    page.goto(stack.url() + "/#/alpha/deliveries")
    page.reload()
    expect(page.locator(tid("delivery-state"))).not_to_have_text("parked")
    expect(page.locator(tid("retrying-table"))).to_contain_text("No call is being retried.")
