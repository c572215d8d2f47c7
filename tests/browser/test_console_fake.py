"""Every console page in headless Chromium against the fake API (no broker, a few seconds).

``fake_api`` answers the console's JSON contract with canned data; these tests check what
the pages do with it: the token prompt, editing and validation messages next to their
fields, saving, funnels drawn as SVG, the backtest, the person view, deliveries and the
dead-letter retry.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import yaml

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
    """A page that already holds the admin token (the token prompt has its own test)."""
    fake.state.reset()
    page.add_init_script(f"localStorage.setItem('emd.adminToken', {json.dumps(TOKEN)})")
    return page


def tid(name: str) -> str:
    return f"[data-testid={name}]"


def requests(fake, method: str, path_part: str) -> list:
    return [r for r in fake.state.requests if r[0] == method and path_part in r[1]]


def test_token_prompt_retries_on_401_and_account_picker(page, fake):
    from playwright.sync_api import expect

    fake.state.reset()
    page.goto(fake.url + "/")
    dialog = page.locator(tid("token-dialog"))
    expect(dialog).to_be_visible()
    page.fill(tid("token-input"), "wrong-token")
    page.click(tid("token-submit"))
    # The API answers 401: the console asks again and says why.
    expect(page.locator(tid("token-error"))).to_contain_text("refused")
    expect(dialog).to_be_visible()
    page.fill(tid("token-input"), TOKEN)
    page.press(tid("token-input"), "Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator(tid("rules-table"))).to_be_visible()
    assert page.evaluate("localStorage.getItem('emd.adminToken')") == TOKEN
    assert re.search(r"#/demo/rules$", page.url)
    expect(page.locator(tid("health"))).to_have_text("healthy")

    # The account picker lists the accounts and switches the page's account.
    expect(page.locator(f"{tid('account-select')} option")).to_have_count(2)
    page.select_option(tid("account-select"), "shop")
    expect(page).to_have_url(re.compile(r"#/shop/rules$"))
    expect(page.locator(tid("rules-table"))).to_contain_text("No rules yet")


def test_data_maps_edit_validate_and_save(console, fake):
    from playwright.sync_api import expect

    page = console
    page.goto(fake.url + "/#/demo/datamaps")
    rows = page.locator(tid("dm-row"))
    expect(rows).to_have_count(7)
    expect(rows.nth(6).locator(tid("dm-choices"))).to_be_visible()  # opt_in is a choice

    page.click(tid("dm-add"))
    expect(rows).to_have_count(8)
    new = rows.nth(7)
    expect(new.locator(tid("dm-name"))).to_be_focused()
    new.locator(tid("dm-name")).fill("9cart")
    new.locator(tid("dm-path")).fill("properties.cart")
    expect(page.locator(tid("dirty"))).to_be_visible()
    # Inline validation (debounced) puts the message next to the field it names.
    error = new.locator(f"{tid('field-error')}[data-location='data_maps[7].name']")
    expect(error).to_contain_text("not a valid data map name")
    expect(new.locator(tid("dm-name"))).to_have_attribute("aria-invalid", "true")
    expect(page.locator(tid("validation-status"))).to_contain_text("1 problem")

    new.locator(tid("dm-name")).fill("cart")
    expect(error).to_be_empty()
    expect(page.locator(tid("validation-status"))).to_contain_text("Valid")

    # A choice data map gets a choices editor.
    new.locator(tid("dm-type")).select_option("choice")
    expect(new.locator(tid("dm-choices"))).to_be_visible()
    new.locator(tid("dm-choice-key")).fill("yes")
    new.locator(tid("dm-choice-id")).fill("1")
    new.locator(tid("dm-choice-add")).click()
    new.locator(tid("dm-choice-key")).nth(1).fill("no")
    new.locator(tid("dm-choice-id")).nth(1).fill("2")
    new.locator(tid("dm-field")).fill("5001")

    page.click(tid("save-datamaps"))
    expect(page.locator(tid("save-result"))).to_contain_text("Saved as version 4")
    expect(page.locator(tid("dirty"))).to_be_hidden()
    saved = fake.state.configs["demo"]["data_maps"][7]
    assert saved == {
        "name": "cart",
        "path": "properties.cart",
        "type": "choice",
        "field": 5001,
        "choices": {"yes": 1, "no": 2},
    }
    # The rules went along unchanged.
    put = requests(fake, "PUT", "/config")[-1][2]
    assert [r["name"] for r in put["rules"]] == [COUPON, "Browse abandonment"]

    # Removing a data map a rule uses is an error located in the rules: listed above.
    rows.nth(4).locator(tid("dm-remove")).click()  # cart_id: the coupon rule's transaction
    general = page.locator(tid("general-problems"))
    expect(general).to_contain_text("rules[0].transaction")
    expect(general).to_contain_text("unknown data map 'cart_id'")
    page.keyboard.press("Control+s")
    expect(page.locator(tid("save-result"))).to_contain_text("Not saved")
    assert fake.state.versions["demo"] == 4

    # "Export YAML" downloads the saved data maps and rules in the file's format.
    with page.expect_download() as download:
        page.click(tid("export-yaml"))
    exported = yaml.safe_load(Path(download.value.path()).read_text())
    assert exported["data_maps"][7]["name"] == "cart"
    assert exported["rules"][0]["name"] == COUPON


def test_rules_table_funnels_period_and_toggle(console, fake):
    from playwright.sync_api import expect

    page = console
    page.goto(fake.url + "/#/demo/rules")
    rows = page.locator(tid("rule-row"))
    expect(rows).to_have_count(2)
    first = rows.nth(0)
    expect(first).to_contain_text(COUPON)
    expect(first).to_contain_text("2d")
    expect(first).to_contain_text("cart_id")
    expect(first.locator("td").nth(3)).to_have_text("3")

    funnel = page.locator(f"{tid('funnel')}[data-rule='{COUPON}']")
    bars = funnel.locator(f"svg{tid('funnel-chart')} rect.bar")
    expect(bars).to_have_count(1)  # one waiting position before the exit
    assert bars.first.get_attribute("data-value") == "12"
    assert float(bars.first.get_attribute("width")) > 0
    browse = page.locator(f"{tid('funnel')}[data-rule='Browse abandonment']")
    expect(browse.locator(f"{tid('funnel-chart')} rect.bar")).to_have_count(2)
    expect(browse).to_contain_text("waiting for step 1 (within 30m)")

    period = funnel.locator(f"svg{tid('period-chart')}")
    expect(period.locator("g.bucket")).to_have_count(25)  # 24 h of hours, both ends
    expect(period.locator("rect.bar[data-series=triggered]").first).to_be_visible()
    stats = fake.state.rules_stats("demo", *_range(requests(fake, "GET", "/rules?")[-1][1]))[
        "rules"
    ][0]["period"]
    expect(funnel.locator(tid("total-started"))).to_have_text(str(stats["started"]))
    expect(funnel.locator(tid("total-triggered"))).to_have_text(str(stats["triggered"]))

    # Another period asks the API for it and redraws.
    page.click(tid("period-7d"))
    expect(page.locator(tid("period-7d"))).to_have_attribute("aria-pressed", "true")
    expect(funnel.locator(f"{tid('period-chart')} g.bucket")).to_have_count(169)
    frm, to = _range(requests(fake, "GET", "/rules?")[-1][1])
    assert 7 * 86400 - 5 <= (to - frm).total_seconds() <= 7 * 86400 + 5

    page.click(tid("period-custom"))
    page.fill(tid("period-from"), "2026-01-02T00:00")
    page.fill(tid("period-to"), "2026-01-02T06:00")
    page.click(tid("period-apply"))
    expect(funnel.locator(f"{tid('period-chart')} g.bucket")).to_have_count(6)  # [00:00, 06:00)

    # The status switch disables a rule (a PUT of the whole rule set).
    toggle = first.locator(tid("rule-toggle"))
    expect(toggle).to_have_attribute("aria-checked", "true")
    toggle.click()
    expect(page.locator(tid("rule-row")).nth(0).locator(tid("rule-toggle"))).to_have_attribute(
        "aria-checked", "false"
    )
    assert fake.state.configs["demo"]["rules"][0]["enabled"] is False
    assert fake.state.configs["demo"]["rules"][1]["enabled"] is False


def _range(path_qs: str):
    q = parse_qs(urlsplit(path_qs).query)
    return tuple(datetime.fromisoformat(q[k][0].replace("Z", "+00:00")) for k in ("from", "to"))


def test_rule_editor_validation_save_and_backtest(console, fake):
    from playwright.sync_api import expect

    page = console
    page.goto(fake.url + "/#/demo/rules")
    page.click(f"{tid('rule-link')}:has-text('{COUPON}')")
    expect(page.locator(tid("rule-title"))).to_have_text(COUPON)
    conds = page.locator(tid("cond-row"))
    expect(conds).to_have_count(3)
    # The trigger is for the exit only.
    expect(conds.nth(0).locator(tid("cond-trigger"))).to_be_disabled()
    expect(conds.nth(2).locator(tid("cond-trigger"))).to_have_value("1234")
    expect(conds.nth(2).locator(tid("cond-variables-summary"))).to_have_text("coupon, ecom_revenue")

    # An unknown data map in the matching criteria: the message names the column, and the
    # text is shown with that column marked.
    match = conds.nth(0).locator(tid("cond-match"))
    match.fill('ecom_event = "Coupon Entered" and cart = 1')
    error = page.locator(f"{tid('field-error')}[data-location='conditions[0].match']")
    expect(error).to_contain_text("column 35: unknown data map 'cart'")
    expect(error.locator(f"{tid('match-caret')} mark")).to_have_text("cart")
    expect(match).to_have_attribute("aria-invalid", "true")
    # Saving anyway is refused, with the same message in the same place.
    page.click(tid("save-rule"))
    expect(page.locator(tid("save-result"))).to_contain_text("Not saved")
    expect(error).to_contain_text("unknown data map 'cart'")
    assert fake.state.versions["demo"] == 3

    match.fill('ecom_event = "Coupon Entered" and cart_id != null')
    expect(error).to_be_empty()
    expect(page.locator(tid("validation-status"))).to_contain_text("Valid")

    # Edit the rest: lifetime, a new step, reorder, variables.
    page.fill(tid("rule-lifetime"), "3d")
    page.click(tid("add-condition"))
    expect(conds).to_have_count(4)
    conds.nth(3).locator(tid("cond-type")).select_option("exclude")
    conds.nth(3).locator(tid("cond-sequence")).fill("0")
    conds.nth(3).locator(tid("cond-match")).fill('ecom_event = "Cart Emptied"')
    conds.nth(3).locator(tid("cond-up")).click()  # now before the exit
    expect(conds.nth(2).locator(tid("cond-match"))).to_have_value('ecom_event = "Cart Emptied"')
    conds.nth(3).locator(tid("cond-variables-summary")).click()
    conds.nth(3).locator(f"{tid('cond-variables')} label:has-text('first_name') input").check()
    page.keyboard.press("Escape")
    expect(conds.nth(3).locator(tid("cond-variables-summary"))).to_have_text(
        "coupon, ecom_revenue, first_name"
    )
    expect(page.locator(tid("dirty"))).to_be_visible()

    # "Test against history" runs the edited, unsaved rule.
    page.click(tid("backtest-period-24h"))
    page.click(tid("backtest-run"))
    results = page.locator(tid("backtest-results"))
    expect(results.locator(tid("backtest-row"))).to_have_count(5)
    expect(results.locator(tid("backtest-summary"))).to_contain_text("would have triggered 5 times")
    expect(results.locator(f"{tid('count-excluded')} .n")).to_have_text("3")
    expect(results.locator(f"{tid('count-expired')} .n")).to_have_text("2")
    expect(results.locator(f"{tid('count-undeliverable')} .n")).to_have_text("1")
    expect(results).to_contain_text("nothing was sent to Emarsys")
    expect(results.locator(f"{tid('backtest-chart')} rect.bar")).to_have_count(5)
    expect(results.locator(f"{tid('backtest-row')}.failed")).to_contain_text("undeliverable")
    replay = requests(fake, "POST", "/replay")[-1][2]
    assert [r["name"] for r in replay["rules"]] == [COUPON]
    rule = replay["rules"][0]
    assert rule["lifetime"] == "3d" and rule["enabled"] is True
    assert [c["type"] for c in rule["conditions"]] == ["start", "exclude", "exclude", "exit"]
    assert rule["conditions"][3]["variables"] == ["coupon", "ecom_revenue", "first_name"]
    assert len(replay["data_maps"]) == 7 and replay["from"] < replay["to"]
    assert fake.state.versions["demo"] == 3, "a backtest must not save"
    results.locator(tid("backtest-filter")).fill("p2@")
    expect(results.locator(tid("backtest-row"))).to_have_count(1)

    # A custom period is read from the inputs when the test runs.
    page.click(tid("backtest-period-custom"))
    page.fill(tid("backtest-period-from"), "2026-03-01T08:00")
    page.fill(tid("backtest-period-to"), "2026-03-02T08:00")
    page.click(tid("backtest-run"))
    expect(page.locator(tid("backtest-status"))).to_contain_text("Done")
    replay = requests(fake, "POST", "/replay")[-1][2]
    frm, to = (datetime.fromisoformat(replay[k].replace("Z", "+00:00")) for k in ("from", "to"))
    assert (to - frm).total_seconds() == 86400
    assert frm.astimezone().strftime("%Y-%m-%dT%H:%M") == "2026-03-01T08:00"  # browser's TZ

    # Leaving with unsaved edits asks first; dismissing keeps the edits.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click(tid("tab-person"))
    expect(page.locator(tid("rule-title"))).to_have_text(COUPON)
    expect(page.locator(tid("rule-lifetime"))).to_have_value("3d")

    page.click(tid("save-rule"))
    expect(page.locator(tid("save-result"))).to_contain_text("Saved as version 4")
    saved = fake.state.configs["demo"]["rules"][0]
    assert saved["lifetime"] == "3d"
    assert saved["conditions"][0]["match"] == 'ecom_event = "Coupon Entered" and cart_id != null'
    # Renaming keeps the editor on the rule (the URL follows the new name).
    page.fill(tid("rule-name"), "Coupon, no order")
    page.click(tid("save-rule"))
    expect(page.locator(tid("save-result"))).to_contain_text("Saved as version 5")
    expect(page).to_have_url(
        re.compile("#/demo/rule/" + re.escape(quote("Coupon, no order", safe="")))
    )


def test_new_rule_and_problems_of_the_whole_rule(console, fake):
    from playwright.sync_api import expect

    page = console
    page.goto(fake.url + "/#/demo/rules")
    page.click(tid("new-rule"))
    expect(page.locator(tid("rule-name"))).to_be_focused()
    page.fill(tid("rule-name"), "Welcome")
    conds = page.locator(tid("cond-row"))
    conds.nth(0).locator(tid("cond-match")).fill('type = "identify"')
    conds.nth(0).locator(tid("cond-on")).select_option("identify")
    # The exit has no action yet.
    error = page.locator(f"{tid('field-error')}[data-location='conditions[1].trigger']")
    expect(error).to_contain_text("an exit needs an action")
    conds.nth(1).locator(tid("cond-trigger")).fill("welcome-email")
    expect(error).to_be_empty()
    # An exit that is not last is a problem of the conditions as a whole.
    conds.nth(1).locator(tid("cond-sequence")).fill("0")
    conds.nth(0).locator(tid("cond-sequence")).fill("1")
    whole = page.locator(f"{tid('field-error')}[data-location='conditions']")
    expect(whole).to_contain_text("the exit must be at the last sequence")
    conds.nth(1).locator(tid("cond-sequence")).fill("1")
    conds.nth(0).locator(tid("cond-sequence")).fill("0")
    expect(whole).to_be_empty()
    page.click(tid("save-rule"))
    expect(page.locator(tid("save-result"))).to_contain_text("Saved")
    rule = fake.state.configs["demo"]["rules"][2]
    assert rule["name"] == "Welcome"
    assert rule["conditions"][1] == {
        "sequence": 1,
        "type": "exit",
        "on": "any",
        "wait": "1h",
        "trigger": "welcome-email",
    }
    page.click(tid("tab-rules"))
    expect(page.locator(tid("rule-row"))).to_have_count(3)


def test_person_page_answers_why(console, fake):
    from playwright.sync_api import expect

    page = console
    page.goto(fake.url + "/#/demo/person")
    expect(page.locator(tid("person-id"))).to_be_focused()
    page.fill(tid("person-id"), "nobody")
    page.press(tid("person-id"), "Enter")
    expect(page.locator(tid("person-not-found"))).to_contain_text("No person with userId")

    page.select_option(tid("person-kind"), "primaryKey")
    page.fill(tid("person-id"), "ann@example.com")
    page.click(tid("person-lookup"))
    expect(page).to_have_url(re.compile(r"#/demo/person\?primaryKey=ann%40example\.com$"))
    expect(page.locator(tid("person-userid"))).to_have_text("u1")
    expect(page.locator(tid("person-pk"))).to_have_text("ann@example.com")
    verdict = page.locator(tid("person-verdict"))
    expect(verdict).to_contain_text("replyCode 2008")
    expect(verdict).to_contain_text("not acknowledged yet: 31")
    expect(verdict).to_contain_text(f"In progress: “{COUPON}”")
    # The next deadline, relative.
    expect(page.locator(tid("instance-next"))).to_contain_text("in 12 min")
    expect(page.locator(tid("person-next-deadline"))).to_contain_text("in 12 min")
    values = page.locator(tid("values-table"))
    expect(values.locator("tr[data-dm=opt_in]")).to_contain_text("pending")
    expect(values.locator("tr[data-dm=email]")).to_contain_text("in sync")
    failed = page.locator(f"{tid('person-deliveries-table')} tr.failed")
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("No contact found")
    expect(page.locator(tid("events-table"))).to_contain_text("Coupon Entered")


def test_person_page_says_when_a_deadline_waits_out_the_lateness_window(console, fake):
    from playwright.sync_api import expect

    page = console
    page.goto(fake.url + "/#/demo/person?userId=late1")
    expect(page.locator(tid("person-userid"))).to_have_text("late1")
    expect(page.locator(tid("person-lateness"))).to_contain_text("open until")
    expect(page.locator(tid("instance-held"))).to_contain_text("unless a late event moves it")
    verdict = page.locator(tid("person-verdict"))
    expect(verdict).to_contain_text("waiting out the lateness window")
    expect(verdict).to_contain_text("unless a late event moves it")


def test_deliveries_and_dead_letters(console, fake):
    from playwright.sync_api import expect

    page = console
    page.goto(fake.url + "/#/demo/deliveries")
    expect(page.locator(tid("delivery-state"))).to_have_text("parked")
    expect(page.locator(tid("backlog-effects"))).to_have_text("1,234")
    retry = page.locator(tid("retry-row"))
    expect(retry).to_have_count(1)
    expect(retry).to_contain_text("POST /event/1234/trigger")
    expect(retry.locator(tid("retry-gives-up"))).to_contain_text("59 min")
    rows = page.locator(tid("delivery-row"))
    expect(rows).to_have_count(30)
    page.check(tid("deliveries-failures"))
    expect(rows).to_have_count(4)
    expect(rows.first).to_contain_text("2008")
    expect(rows.first).to_have_class(re.compile("failed"))
    page.fill(tid("deliveries-filter"), "user10@")
    expect(rows).to_have_count(1)
    rows.first.locator("a").first.click()
    expect(page).to_have_url(re.compile(r"#/demo/person\?userId=u10$"))

    page.click(tid("tab-dead-letters"))
    letters = page.locator(tid("dl-row"))
    expect(letters).to_have_count(4)
    expect(page.locator(tid("dl-retry"))).to_be_disabled()
    page.check(tid("dl-select-all"))
    expect(page.locator(tid("dl-retry"))).to_have_text("Retry selected (4)")
    letters.nth(3).locator("td").nth(2).click()  # a click on the row toggles it
    expect(page.locator(tid("dl-retry"))).to_have_text("Retry selected (3)")
    assert page.eval_on_selector(tid("dl-select-all"), "el => el.indeterminate")
    page.click(tid("dl-retry"))
    result = page.locator(tid("dl-result"))
    expect(result).to_contain_text("Retried 2 of 3")
    expect(result).to_contain_text("3:1041")
    expect(result).to_contain_text("cannot be retried")
    assert requests(fake, "POST", "/dead-letters/retry")[-1][2] == {
        "ids": ["3:1040", "3:1041", "3:1042"]
    }
