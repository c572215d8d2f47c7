"""The catalog pickers against the fake API: fields by name in the data-map editor,
external events by name in the rule editor, warnings for ids the account does not have,
and an unreachable catalog that leaves the editors working."""

from __future__ import annotations

import json

import pytest

from tests.browser.fake_api import TOKEN, FakeServer

pytestmark = pytest.mark.browser

COUPON = "Coupon entered but did not complete order"


@pytest.fixture(scope="module")
def fake():
    server = FakeServer().start()
    yield server
    server.stop()


@pytest.fixture
def console(page, fake):
    fake.state.reset()
    page.add_init_script(f"localStorage.setItem('emd.adminToken', {json.dumps(TOKEN)})")
    return page


def tid(name: str) -> str:
    return f"[data-testid={name}]"


TRIGGER_NOTE = f"{tid('cond-trigger-picker')} {tid('catalog-note')}"


def test_data_map_field_by_name_and_unknown_ids_warn(console, fake):
    from playwright.sync_api import expect

    page = console
    page.goto(fake.url + "/#/demo/datamaps")
    rows = page.locator(tid("dm-row"))
    expect(rows).to_have_count(7)
    # Existing ids are named from the account's catalog.
    expect(rows.nth(0).locator(tid("catalog-note"))).to_have_text("E-Mail · longtext")
    expect(rows.nth(6).locator(tid("catalog-note"))).to_contain_text("Opt-In")

    page.click(tid("dm-add"))
    new = rows.nth(7)
    new.locator(tid("dm-name")).fill("tier")
    new.locator(tid("dm-path")).fill("traits.tier")
    field = new.locator(tid("dm-field"))
    field.fill("loyal")
    options = page.locator(f"{tid('catalog-options')}:visible {tid('catalog-option')}")
    expect(options).to_have_count(1)
    expect(options.first).to_contain_text("Loyalty tier")
    expect(options.first).to_contain_text("4711")
    options.first.click()
    expect(field).to_have_value("4711")
    expect(field).to_be_focused()
    expect(page.locator(f"{tid('catalog-options')}:visible")).to_have_count(0)  # closed
    expect(new.locator(tid("catalog-note"))).to_have_text("Loyalty tier · shorttext")
    expect(page.locator(tid("validation-status"))).to_contain_text("Valid")
    page.click(tid("save-datamaps"))
    expect(page.locator(tid("save-result"))).to_contain_text("Saved as version 4")
    assert fake.state.configs["demo"]["data_maps"][7]["field"] == 4711

    # An id the account does not have: a warning next to the field, not an error.
    field.fill("999")
    note = new.locator(tid("catalog-note"))
    expect(note).to_have_text("⚠ This Emarsys account has no field 999")
    expect(note).to_have_class("picker-note warn")
    expect(page.locator(tid("validation-status"))).to_contain_text("Valid")
    expect(new.locator(f"{tid('field-error')}:not(:empty)")).to_have_count(0)

    # The keyboard: arrows and Enter pick, Escape closes.
    field.fill("")
    field.press("ArrowDown")
    field.press("ArrowDown")
    field.press("Enter")
    expect(field).to_have_value("2")
    expect(note).to_have_text("Last Name · shorttext")
    field.press("Escape")
    expect(page.locator(f"{tid('catalog-options')}:visible")).to_have_count(0)


def test_rule_editor_external_event_by_name(console, fake):
    from playwright.sync_api import expect

    page = console
    page.goto(fake.url + "/#/demo/rules")
    page.click(f"{tid('rule-link')}:has-text('{COUPON}')")
    conds = page.locator(tid("cond-row"))
    expect(conds).to_have_count(3)
    exit_row = conds.nth(2)
    trigger = exit_row.locator(tid("cond-trigger"))
    expect(trigger).to_have_value("1234")
    expect(exit_row.locator(TRIGGER_NOTE)).to_have_text("segment.com test event")
    # Not an exit: no picker opens on a disabled trigger, and no note.
    start = conds.nth(0)
    expect(start.locator(tid("cond-trigger"))).to_be_disabled()
    expect(start.locator(TRIGGER_NOTE)).to_be_empty()

    trigger.fill("cart")
    options = page.locator(f"{tid('catalog-options')}:visible {tid('catalog-option')}")
    expect(options).to_have_count(1)
    options.first.click()
    expect(trigger).to_have_value("1301")
    expect(exit_row.locator(TRIGGER_NOTE)).to_have_text("Cart abandoned")

    # A name works too (the sink resolves it); an unknown one is a warning.
    trigger.fill("welcome series")
    expect(exit_row.locator(TRIGGER_NOTE)).to_have_text("Welcome series · id 1302")
    trigger.fill("Nope event")
    expect(exit_row.locator(TRIGGER_NOTE)).to_have_text(
        "⚠ This Emarsys account has no external event “Nope event”"
    )
    trigger.fill("1302")
    page.click(tid("save-rule"))
    expect(page.locator(tid("save-result"))).to_contain_text("Saved as version 4")
    assert fake.state.configs["demo"]["rules"][0]["conditions"][2]["trigger"] == 1302


def test_an_unreachable_catalog_leaves_the_editors_working(console, fake):
    from playwright.sync_api import expect

    page = console
    fake.state.catalog_down = True
    page.goto(fake.url + "/#/demo/datamaps")
    row = page.locator(tid("dm-row")).nth(0)
    note = row.locator(tid("catalog-note"))
    expect(note).to_contain_text("Not checked")
    expect(note).to_contain_text("cannot reach Emarsys")
    field = row.locator(tid("dm-field"))
    field.click()
    expect(page.locator(f"{tid('catalog-options')}:visible")).to_contain_text("unavailable")
    field.fill("1")
    page.keyboard.press("Escape")
    page.click(tid("save-datamaps"))
    expect(page.locator(tid("save-result"))).to_contain_text("Saved as version 4")
    assert fake.state.configs["demo"]["data_maps"][0]["field"] == 1


def test_a_long_name_keeps_the_list_open_and_a_page_scroll_closes_it(console, fake):
    """An input scrolls its own text sideways once it is full: that is no page scroll."""
    from playwright.sync_api import expect

    page = console
    page.set_viewport_size({"width": 1400, "height": 500})  # the page can scroll
    page.goto(fake.url + "/#/demo/rules")
    page.click(f"{tid('rule-link')}:has-text('{COUPON}')")
    exit_row = page.locator(tid("cond-row")).nth(2)
    trigger = exit_row.locator(tid("cond-trigger"))
    trigger.fill("")
    trigger.press_sequentially("segment.com test event")  # wider than the input
    assert trigger.evaluate("el => el.scrollWidth > el.clientWidth")
    options = page.locator(f"{tid('catalog-options')}:visible {tid('catalog-option')}")
    expect(options).to_have_count(1)
    page.mouse.wheel(0, 300)
    expect(page.locator(f"{tid('catalog-options')}:visible")).to_have_count(0)
