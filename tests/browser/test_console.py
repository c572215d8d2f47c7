"""The console on a real worker (embedded broker, Emarsys simulator) in headless Chromium.

Issue 5's scenario: open the console, give the admin token, open a rule, make it invalid
and see the message with its column, fix it, save; send Segment events through the
ingest API; run "Test against history" and see who would have been triggered; see the
funnel drawn; and look the triggered person up.
"""

from __future__ import annotations

import importlib.util
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.stack import ADMIN_TOKEN, account_config, admin, http, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration]

RULE = "Coupon entered but did not complete order"
COUPON_RULE = {
    "name": RULE,
    "lifetime": "2d",
    "multiple_active": False,
    "transaction": "cart_id",
    "conditions": [
        {"sequence": 0, "type": "start", "on": "track", "match": 'ecom_event = "Coupon Entered"'},
        {
            "sequence": 0,
            "type": "exclude",
            "on": "track",
            "match": 'ecom_event = "Order Completed"',
        },
        {
            "sequence": 1,
            "type": "exit",
            "wait": "1h",
            "trigger": 1234,
            "variables": ["coupon", "ecom_revenue"],
        },
    ],
}


def tid(name: str) -> str:
    return f"[data-testid={name}]"


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def track(user: str, email: str, event: str, at: datetime, **props) -> dict:
    return {
        "type": "track",
        "userId": user,
        "event": event,
        "properties": props,
        "context": {"traits": {"email": email}},
        "timestamp": iso(at),
        "messageId": uuid.uuid4().hex,
    }


@pytest.fixture
def worker(make_stack, simulator):
    if importlib.util.find_spec("app.web.console") is None:
        pytest.skip("the backend's console module (app/web/console.py) is not there yet")
    stack = make_stack(accounts={"acme": account_config(simulator, rules=[COUPON_RULE])})
    w = stack.start_worker()
    stack.wait_assigned()
    return stack, w


def test_console_edit_validate_save_backtest_funnel(page, worker, simulator):
    from playwright.sync_api import expect

    stack, w = worker
    t0 = time.monotonic()

    # -- open the console: it asks for the admin token
    page.goto(w.url + "/")
    expect(page.locator(tid("token-dialog"))).to_be_visible()
    page.fill(tid("token-input"), ADMIN_TOKEN)
    page.click(tid("token-submit"))
    expect(page.locator(tid("token-dialog"))).to_be_hidden()

    # -- the Rules tab and the rule's editor
    page.click(tid("tab-rules"))
    row = page.locator(f"{tid('rule-row')}[data-rule='{RULE}']")
    expect(row).to_be_visible()
    expect(row).to_contain_text("cart_id")
    row.locator(tid("rule-link")).click()
    expect(page.locator(tid("rule-title"))).to_have_text(RULE)

    # -- make it invalid: the message comes back inline, with its column
    match = page.locator(tid("cond-row")).nth(0).locator(tid("cond-match"))
    match.fill("cart = 1")
    error = page.locator(f"{tid('field-error')}[data-location='conditions[0].match']")
    expect(error).to_contain_text("column 1")
    expect(error).to_contain_text("unknown data map 'cart'")
    expect(error.locator(f"{tid('match-caret')} mark")).to_have_text("cart")

    # -- fix it, change the lifetime too, save
    match.fill('ecom_event = "Coupon Entered" and coupon != null')
    expect(error).to_be_empty()
    expect(page.locator(tid("validation-status"))).to_contain_text("Valid")
    page.fill(tid("rule-lifetime"), "3d")
    page.click(tid("save-rule"))
    expect(page.locator(tid("save-result"))).to_contain_text("Saved as version")
    saved = http("GET", f"{w.url}/api/accounts/acme/config", headers=admin()).json()
    rule = saved["config"]["rules"][0]
    assert rule["conditions"][0]["match"] == 'ecom_event = "Coupon Entered" and coupon != null'
    assert rule["lifetime"] == "3d"

    # -- a few Segment events through the ingest API
    now = datetime.now(UTC)
    tag = uuid.uuid4().hex[:6]
    ann, bob, cid = (f"{n}-{tag}" for n in ("ann", "bob", "cid"))
    emails = {u: f"{u}@example.com" for u in (ann, bob, cid)}
    batch = [
        # Ann: coupon 3 h ago, no order: the exit (wait 1h) fired 2 h ago.
        track(ann, emails[ann], "Coupon Entered", now - timedelta(hours=3), coupon="ANN10",
              cart_id="a1", revenue=40),
        # Bob: coupon, then the order 10 minutes later: excluded.
        track(bob, emails[bob], "Coupon Entered", now - timedelta(hours=3), coupon="BOB10",
              cart_id="b1"),
        track(bob, emails[bob], "Order Completed", now - timedelta(hours=2, minutes=50),
              cart_id="b1"),
        # Cid: coupon 5 minutes ago: still waiting.
        track(cid, emails[cid], "Coupon Entered", now - timedelta(minutes=5), coupon="CID10",
              cart_id="c1"),
    ]  # fmt: skip
    r = stack.post("/v1/batch", {"batch": batch})
    assert r.status == 200, r.body
    wait_for(
        lambda: simulator.get(f"/_sim/triggers?external_id={emails[ann]}")["fired"],
        timeout=60,
        what="Ann's live trigger",
    )

    # -- "Test against history" on the saved rule, over the last 24 hours
    page.click(tid("backtest-period-24h"))
    page.click(tid("backtest-run"))
    results = page.locator(tid("backtest-results"))
    rows = results.locator(tid("backtest-row"))
    expect(rows).to_have_count(1, timeout=60_000)
    expect(rows.first.locator(tid("backtest-contact"))).to_have_text(emails[ann])
    expect(rows.first).to_contain_text("coupon=ANN10")
    expect(rows.first).to_contain_text("1234")
    expect(results.locator(f"{tid('count-started')} .n")).to_have_text("3")
    expect(results.locator(f"{tid('count-excluded')} .n")).to_have_text("1")
    expect(results.locator(f"{tid('count-triggered')} .n")).to_have_text("1")
    expect(results).to_contain_text("nothing was sent to Emarsys")
    expect(results.locator(f"{tid('backtest-chart')} rect.bar")).to_have_count(1)

    # -- the funnel: Cid waits at position 0; the period counts the three starts
    page.click(tid("tab-rules"))
    funnel = page.locator(f"{tid('funnel')}[data-rule='{RULE}']")
    bar = funnel.locator(f"svg{tid('funnel-chart')} rect.bar").first

    def funnel_counts() -> bool:
        page.click(tid("rules-refresh"))
        expect(funnel.locator(f"svg{tid('funnel-chart')}")).to_be_visible()
        started = funnel.locator(tid("total-started")).inner_text()
        return bar.get_attribute("data-value") == "1" and started == "3"

    wait_for(funnel_counts, timeout=30, interval=1, what="the funnel counts")
    assert float(bar.get_attribute("width")) > 0
    expect(funnel.locator(f"svg{tid('period-chart')} rect.bar").first).to_be_visible()
    expect(funnel.locator(tid("total-excluded"))).to_have_text("1")
    expect(funnel.locator(tid("total-triggered"))).to_have_text("1")

    # -- the person page explains Ann's trigger
    page.click(tid("tab-person"))
    page.fill(tid("person-id"), ann)
    page.click(tid("person-lookup"))
    expect(page.locator(tid("person-pk"))).to_have_text(emails[ann])
    deliveries = page.locator(tid("person-deliveries-table"))
    expect(deliveries.locator(f"{tid('delivery-row')}:has-text('trigger')")).to_have_count(1)
    expect(page.locator(tid("person-verdict"))).to_contain_text("Triggered")
    expect(page).to_have_url(re.compile(rf"#/acme/person\?userId={re.escape(ann)}$"))
    print(f"\nconsole scenario took {time.monotonic() - t0:.1f} s after the worker was ready")
