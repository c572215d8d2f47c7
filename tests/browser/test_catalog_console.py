"""The catalog pickers on a real worker whose account talks to the Emarsys simulator:
pick an Emarsys field by name in the data-map editor and an external event by name in
the rule editor, save, and find the ids in the live config. On the way, a Segment-style
field name (with a dash) in the matching criteria, checked by the worker's own parser."""

from __future__ import annotations

import json

import pytest

from tests.integration.stack import ADMIN_TOKEN, account_config, admin, http

pytestmark = [pytest.mark.browser, pytest.mark.integration]

RULE = "Welcome"
WELCOME_RULE = {
    "name": RULE,
    "conditions": [
        {"sequence": 0, "type": "start", "on": "identify"},
        {"sequence": 1, "type": "exit", "wait": "1h", "trigger": 1234},
    ],
}


def tid(name: str) -> str:
    return f"[data-testid={name}]"


@pytest.fixture
def worker(make_stack, simulator):
    stack = make_stack(accounts={"acme": account_config(simulator, rules=[WELCOME_RULE])})
    return stack.start_worker()


def test_pick_a_field_and_an_event_by_name(page, worker):
    from playwright.sync_api import expect

    page.add_init_script(f"localStorage.setItem('emd.adminToken', {json.dumps(ADMIN_TOKEN)})")
    options = page.locator(f"{tid('catalog-options')}:visible {tid('catalog-option')}")

    # -- the data-map editor: a new data map written to "Lifetime value", chosen by name
    page.goto(worker.url + "/#/acme/datamaps")
    rows = page.locator(tid("dm-row"))
    expect(rows.first.locator(tid("catalog-note"))).to_have_text("E-Mail · longtext")
    count = rows.count()
    page.click(tid("dm-add"))
    new = rows.nth(count)
    new.locator(tid("dm-name")).fill("ltv")
    new.locator(tid("dm-path")).fill("traits.ltv")
    new.locator(tid("dm-type")).select_option("numeric")
    new.locator(tid("dm-field")).fill("lifetime")
    expect(options).to_have_count(1)
    options.first.click()
    expect(new.locator(tid("dm-field"))).to_have_value("4712")
    expect(new.locator(tid("catalog-note"))).to_have_text("Lifetime value · numeric")
    page.click(tid("save-datamaps"))
    expect(page.locator(tid("save-result"))).to_contain_text("Saved as version")

    # -- the rule editor: the exit's external event, chosen by name
    page.goto(worker.url + f"/#/acme/rule/{RULE}")
    match = page.locator(tid("cond-row")).nth(0).locator(tid("cond-match"))
    match.fill('order-id = "o-1"')  # a bare name is a data map: there is none
    error = page.locator(f"{tid('field-error')}[data-location='conditions[0].match']")
    expect(error).to_contain_text("column 1: unknown data map 'order-id'")
    expect(error.locator(f"{tid('match-caret')} mark")).to_have_text("order-id")
    match.fill(r'traits.order-id != null and traits.first\ name = "Ann"')
    expect(error).to_be_empty()
    exit_row = page.locator(tid("cond-row")).nth(1)
    trigger = exit_row.locator(tid("cond-trigger"))
    expect(exit_row.locator(tid("catalog-note"))).to_have_text("segment.com test event")
    trigger.fill("welcome ser")
    expect(options).to_have_count(1)
    expect(options.first).to_contain_text("Welcome series")
    options.first.click()
    expect(trigger).to_have_value("1302")
    page.click(tid("save-rule"))
    expect(page.locator(tid("save-result"))).to_contain_text("Saved as version")

    config = http("GET", f"{worker.url}/api/accounts/acme/config", headers=admin()).json()
    ltv = next(d for d in config["config"]["data_maps"] if d["name"] == "ltv")
    assert ltv["field"] == 4712
    conditions = config["config"]["rules"][0]["conditions"]
    assert conditions[1]["trigger"] == 1302
    assert conditions[0]["match"] == r'traits.order-id != null and traits.first\ name = "Ann"'
