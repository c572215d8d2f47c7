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


TRIGGER_NOTE = f"{tid('cond-trigger-picker')} {tid('catalog-note')}"


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
    expect(exit_row.locator(TRIGGER_NOTE)).to_have_text("segment.com test event")
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


def test_pick_contact_lists_by_name_for_an_exit(page, worker, simulator):
    """The exit's contact lists picked by name (the ids are stored), the trigger cleared:
    a list-only exit is valid; a list id the account does not have is a warning."""
    from playwright.sync_api import expect

    page.add_init_script(f"localStorage.setItem('emd.adminToken', {json.dumps(ADMIN_TOKEN)})")
    options = page.locator(f"{tid('catalog-options')}:visible {tid('catalog-option')}")
    page.goto(worker.url + f"/#/acme/rule/{RULE}")
    start_row, exit_row = page.locator(tid("cond-row")).nth(0), page.locator(tid("cond-row")).nth(1)
    expect(start_row.locator(tid("cond-add_to_list"))).to_be_disabled()  # only an exit has one

    add = exit_row.locator(tid("cond-add_to_list"))
    add.fill("vip")
    expect(options).to_have_count(1)
    expect(options.first).to_contain_text("VIP customers")
    options.first.click()
    expect(add).to_have_value("750504659")
    picker = exit_row.locator(tid("cond-add-list-picker"))
    expect(picker.locator(tid("catalog-note"))).to_have_text("VIP customers")

    remove = exit_row.locator(tid("cond-remove_from_list"))
    remove.fill("999")
    note = exit_row.locator(f"{tid('cond-remove-list-picker')} {tid('catalog-note')}")
    expect(note).to_have_text("⚠ This Emarsys account has no contact list 999")
    remove.fill("abandon")
    expect(options).to_have_count(1)
    options.first.click()
    expect(remove).to_have_value("750504660")
    expect(note).to_have_text("Cart abandoners")

    # Without a trigger the lists alone are the exit's actions; without both it has none.
    trigger = exit_row.locator(tid("cond-trigger"))
    trigger.fill("")
    expect(page.locator(tid("validation-status"))).to_contain_text("Valid")
    add.fill("")
    remove.fill("")
    error = page.locator(f"{tid('field-error')}[data-location='conditions[1].trigger']")
    expect(error).to_contain_text("an exit needs an action")
    add.fill("VIP")
    options.first.click()
    remove.fill("Cart")
    options.first.click()
    expect(error).to_be_empty()
    page.click(tid("save-rule"))
    expect(page.locator(tid("save-result"))).to_contain_text("Saved as version")

    config = http("GET", f"{worker.url}/api/accounts/acme/config", headers=admin()).json()
    exit_ = config["config"]["rules"][0]["conditions"][1]
    assert exit_ == {
        "sequence": 1,
        "type": "exit",
        "on": "any",
        "wait": "1h",
        "add_to_list": 750504659,
        "remove_from_list": 750504660,
        "variables": [],
    }
