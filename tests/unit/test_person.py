"""A person's record: learning the contact key, change detection, deliveries, merges."""

from __future__ import annotations

from typing import Any

import pytest

from app.account import Account
from app.config import load_config_text
from app.person import (
    LAST_SEEN_RESOLUTION,
    MAX_ANONYMOUS_IDS,
    Outcome,
    apply_clock,
    apply_delivery,
    apply_event,
    apply_merge,
    delete_effect,
    export_for_merge,
    new_record,
)

CONFIG = """
accounts:
  acme:
    api_keys: [k]
    primary_key: context.traits.email
    emarsys: {api_url: "http://127.0.0.1:9797/api/v3", client_id: c, client_secret: s,
              key_field: 3}
    data_maps:
      - {name: email, path: context.traits.email, type: string, field: 3}
      - {name: first_name, path: traits.firstName, type: string, field: 1}
      - {name: revenue, path: properties.revenue, type: numeric, field: 100}
      - {name: opt_in, path: traits.optIn, type: choice, field: 31, choices: {true: 1, false: 2}}
      - {name: plan, path: traits.plan}
      - {name: ecom_event, path: event}
      - {name: coupon, path: properties.coupon}
    rules:
      - name: coupon
        conditions:
          - {sequence: 0, type: start, on: track, match: 'ecom_event = "Coupon Entered"'}
          - {sequence: 0, type: exclude, on: track, match: 'ecom_event = "Order Completed"'}
          - {sequence: 1, type: exit, wait: 1h, trigger: 1234, variables: [coupon]}
"""

T = 1_700_000_000.0  # 2023-11-14T22:13:20Z
EMAIL = "ann@example.com"


@pytest.fixture(scope="module")
def account() -> Account:
    config = load_config_text(CONFIG, env={})
    return Account("acme", config.accounts["acme"])


_counter = iter(range(1_000_000))


def event(
    account: Account,
    record: dict[str, Any] | None,
    message: dict[str, Any],
    at: float = T,
    person: str = "u:u1",
    now: float | None = None,
) -> Outcome:
    return apply_event(
        account,
        person,
        record,
        message,
        message_id=f"m{next(_counter)}",
        event_time=at,
        now=now,
    )


def identify(email: str | None = EMAIL, user: str | None = "u1", **traits: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"type": "identify", "traits": traits}
    if user is not None:
        m["userId"] = user
    if email is not None:
        m["context"] = {"traits": {"email": email}}
    return m


def track(name: str, user: str | None = "u1", anon: str | None = None, **props: Any):
    m: dict[str, Any] = {"type": "track", "event": name, "properties": props}
    if user is not None:
        m["userId"] = user
    if anon is not None:
        m["anonymousId"] = anon
    return m


def upserts(out: Outcome) -> list[dict[str, Any]]:
    return [e for e in out.effects if e["op"] == "upsert"]


def only_upsert(out: Outcome) -> dict[str, Any]:
    (u,) = upserts(out)
    return u


def known(account: Account, **traits: Any) -> dict[str, Any]:
    """A record whose key is learned and whose first upsert was sent."""
    out = event(account, None, identify(**traits))
    assert out.record is not None
    return out.record


# --------------------------------------------------------------------------- learning the key


def test_identify_learns_the_key_and_upserts_mapped_fields(account: Account) -> None:
    out = event(account, None, identify(firstName="Ann", optIn=True))
    assert out.changed
    assert out.record is not None and out.record["pk"] == EMAIL and out.record["uid"] == "u1"
    u = only_upsert(out)
    assert u["contact"] == EMAIL
    assert u["fields"] == {"3": EMAIL, "1": "Ann", "31": 1}
    assert u["account"] == "acme" and u["person"] == "u:u1"
    assert u["at"] == "2023-11-14T22:13:20Z"


def test_identical_second_event_sends_nothing(account: Account) -> None:
    rec = known(account, firstName="Ann")
    out = event(account, rec, identify(firstName="Ann"), at=T + 5)
    assert out.effects == []
    assert not out.changed


def test_page_views_with_same_values_change_nothing(account: Account) -> None:
    rec = known(account, firstName="Ann")
    for i in range(5):
        page = {"type": "page", "userId": "u1", "name": "Home", "traits": {"firstName": "Ann"}}
        out = event(account, rec, page, at=T + 1 + i)
        assert not out.changed, i
        assert out.effects == []


def test_changed_field_sends_only_that_field_and_the_key(account: Account) -> None:
    rec = known(account, firstName="Ann", optIn=True)
    out = event(account, rec, identify(firstName="Anna", optIn=True), at=T + 1)
    assert only_upsert(out)["fields"] == {"3": EMAIL, "1": "Anna"}
    assert out.changed


def test_track_property_maps_to_a_field(account: Account) -> None:
    rec = known(account)
    out = event(account, rec, track("Order Completed", revenue="12.50"), at=T + 1)
    assert only_upsert(out)["fields"] == {"3": EMAIL, "100": 12.5}


def test_key_is_remembered_once_learned(account: Account) -> None:
    rec = known(account)
    out = event(account, rec, {"type": "identify", "userId": "u1", "traits": {"firstName": "Bo"}})
    u = only_upsert(out)
    assert u["contact"] == EMAIL
    assert u["fields"] == {"3": EMAIL, "1": "Bo"}


def test_no_key_no_upsert_until_learned_then_all_fields(account: Account) -> None:
    out = event(account, None, identify(email=None, firstName="Ann", optIn=False))
    rec = out.record
    assert rec is not None and rec["pk"] is None
    assert out.effects == []
    assert out.changed  # the record itself is new and holds the values
    out = event(account, rec, track("Viewed", revenue=3), at=T + 1)
    assert upserts(out) == []
    out = event(account, rec, {"type": "identify", "userId": "u1", **identify()}, at=T + 2)
    assert only_upsert(out)["fields"] == {"3": EMAIL, "1": "Ann", "31": 2, "100": 3}


def test_a_new_key_is_a_new_contact_with_every_field(account: Account) -> None:
    rec = known(account, firstName="Ann")
    out = event(account, rec, identify(email="new@example.com"), at=T + 1)
    u = only_upsert(out)
    assert u["contact"] == "new@example.com"
    assert u["fields"] == {"3": "new@example.com", "1": "Ann"}
    assert out.pk_before == EMAIL


@pytest.mark.parametrize("placeholder", ["", "  ", "null", "undefined", "0"])
def test_a_placeholder_key_is_no_key(account: Account, placeholder: str) -> None:
    out = event(account, None, identify(email=placeholder, firstName="Ann"))
    assert out.record is not None and out.record["pk"] is None
    assert upserts(out) == []


def test_numeric_key_becomes_text(account: Account) -> None:
    out = event(account, None, identify(email=12345))  # type: ignore[arg-type]
    assert only_upsert(out)["contact"] == "12345"


# --------------------------------------------------------------------------- values


def test_null_or_missing_value_is_never_sent(account: Account) -> None:
    rec = known(account, firstName="Ann")
    out = event(account, rec, identify(firstName=None), at=T + 1)
    assert out.effects == []
    out = event(account, rec, identify(firstName=""), at=T + 2)
    assert out.effects == []
    assert rec["vals"]["first_name"] == "Ann"  # a null does not wipe the known value


def test_first_upsert_never_carries_a_null(account: Account) -> None:
    out = event(account, None, identify(firstName=None, optIn=None))
    assert only_upsert(out)["fields"] == {"3": EMAIL}
    assert None not in only_upsert(out)["fields"].values()


def test_unconvertible_values_are_counted_and_left_out(account: Account) -> None:
    rec = known(account)
    out = event(
        account, rec, identify(firstName="x" * 61, optIn="maybe"), at=T + 1
    )  # field 1 is 60 characters
    assert sorted(out.failures) == ["first_name", "opt_in"]
    assert out.effects == []
    out = event(account, rec, track("Order", revenue="twelve"), at=T + 2)
    assert out.failures == ["revenue"]
    assert upserts(out) == []


def test_unconvertible_value_keeps_the_previous_one(account: Account) -> None:
    rec = known(account, firstName="Ann")
    event(account, rec, identify(firstName={"nested": 1}), at=T + 1)
    assert rec["vals"]["first_name"] == "Ann"
    assert rec["sent"]["1"] == "Ann"


def test_values_without_a_field_are_recorded_but_not_sent(account: Account) -> None:
    rec = known(account)
    out = event(account, rec, identify(plan="pro"), at=T + 1)
    assert rec["vals"]["plan"] == "pro"
    assert out.changed
    assert out.effects == []


# --------------------------------------------------------------------------- deliveries


def test_delivery_ok_acknowledges_the_fields(account: Account) -> None:
    out = event(account, None, identify(firstName="Ann"))
    rec = out.record
    assert rec is not None
    u = only_upsert(out)
    assert apply_delivery(rec, {**u, "ok": True})
    assert rec["acked"] == {"3": EMAIL, "1": "Ann"}
    assert event(account, rec, identify(firstName="Ann"), at=T + 1).effects == []


def test_a_delivery_that_acknowledges_nothing_new_leaves_the_record_unwritten(
    account: Account,
) -> None:
    out = event(account, None, identify(firstName="Ann"))
    rec = out.record
    assert rec is not None
    u = only_upsert(out)
    assert apply_delivery(rec, {**u, "ok": True})
    assert not apply_delivery(rec, {**u, "ok": True})  # the same answer again: no change
    assert apply_delivery(rec, {**u, "ok": True, "fields": {"1": "Anna"}})  # a new value
    assert rec["acked"] == {"3": EMAIL, "1": "Anna"}


def test_delivery_failure_sends_the_field_again(account: Account) -> None:
    rec = known(account, firstName="Ann")
    out = event(account, rec, identify(firstName="Anna"), at=T + 1)
    u = only_upsert(out)
    assert apply_delivery(rec, {**u, "ok": False})
    assert rec["acked"] == {}
    # The next event, even one that carries nothing new, sends the failed value again.
    out = event(account, rec, {"type": "page", "userId": "u1"}, at=T + 2)
    assert only_upsert(out)["fields"] == {"3": EMAIL, "1": "Anna"}


def test_failed_old_value_does_not_undo_a_newer_send(account: Account) -> None:
    rec = known(account, firstName="Ann")
    first = only_upsert(event(account, rec, identify(firstName="Anna"), at=T + 1))
    event(account, rec, identify(firstName="Hanna"), at=T + 2)
    apply_delivery(rec, {**first, "ok": False})
    assert rec["sent"]["1"] == "Hanna"
    # Only the key goes again (the failed call may have been the one creating the contact);
    # the stale first name is not resent over the newer one.
    again = event(account, rec, {"type": "page", "userId": "u1"}, at=T + 3)
    assert only_upsert(again)["fields"] == {"3": EMAIL}


def test_delivery_for_another_contact_is_ignored(account: Account) -> None:
    rec = known(account, firstName="Ann")
    old = {"op": "upsert", "contact": "old@example.com", "fields": {"1": "Ann"}}
    assert not apply_delivery(rec, {**old, "ok": False})
    assert rec["sent"]["1"] == "Ann"
    assert not apply_delivery(rec, {**old, "ok": True})
    assert rec["acked"] == {}


# --------------------------------------------------------------------------- times and ids


def test_last_seen_moves_only_by_a_minute(account: Account) -> None:
    rec = known(account)
    assert rec["first"] == rec["last"] == T
    out = event(account, rec, {"type": "page", "userId": "u1"}, at=T + LAST_SEEN_RESOLUTION - 1)
    assert not out.changed
    assert rec["last"] == T
    out = event(account, rec, {"type": "page", "userId": "u1"}, at=T + LAST_SEEN_RESOLUTION)
    assert out.changed
    assert rec["last"] == T + LAST_SEEN_RESOLUTION


def test_an_older_event_moves_first_seen_back(account: Account) -> None:
    rec = known(account)
    out = event(account, rec, {"type": "page", "userId": "u1"}, at=T - 3600)
    assert out.changed
    assert rec["first"] == T - 3600
    assert rec["last"] == T


def test_now_clamps_future_event_times(account: Account) -> None:
    out = event(account, None, track("Coupon Entered", coupon="C"), at=T + 86400, now=T)
    rec = out.record
    assert rec is not None
    assert rec["first"] == rec["last"] == T
    (started,) = out.transitions
    assert started.kind == "started" and started.at == T
    assert rec["due"] == T + 3600  # the wait counts from now, not from the future


def test_replay_keeps_the_event_time(account: Account) -> None:
    out = event(account, None, track("Coupon Entered", coupon="C"), at=T + 86400)
    assert out.record is not None and out.record["first"] == T + 86400


def test_anonymous_ids_are_capped_most_recent_kept(account: Account) -> None:
    rec = known(account)
    for i in range(MAX_ANONYMOUS_IDS + 10):
        event(account, rec, track("Viewed", anon=f"a{i}"), at=T + i)
    assert len(rec["anon"]) == MAX_ANONYMOUS_IDS
    assert rec["anon"][-1] == f"a{MAX_ANONYMOUS_IDS + 9}"
    assert rec["anon"][0] == "a10"
    # Seeing an old id again makes it the most recent one, without duplicating it.
    event(account, rec, track("Viewed", anon="a20"), at=T + 100)
    assert rec["anon"][-1] == "a20"
    assert rec["anon"].count("a20") == 1


def test_junk_anonymous_ids_are_not_recorded(account: Account) -> None:
    rec = known(account)
    event(account, rec, track("Viewed", anon="null"), at=T + 1)
    event(account, rec, track("Viewed", anon="00000000-0000-0000-0000-000000000000"), at=T + 2)
    assert rec["anon"] == []


# --------------------------------------------------------------------------- rules


def test_trigger_goes_to_the_contact_with_variables(account: Account) -> None:
    rec = known(account)
    event(account, rec, track("Coupon Entered", coupon="SAVE10"), at=T + 10)
    assert apply_clock(account, "u:u1", rec, T + 10 + 3599).effects == []
    out = apply_clock(account, "u:u1", rec, T + 10 + 3600)
    (trigger,) = out.effects
    assert trigger["op"] == "trigger"
    assert trigger["contact"] == EMAIL
    assert trigger["event"] == 1234
    assert trigger["user_id"] == "u1"
    assert trigger["data"] == {"global": {"coupon": "SAVE10"}}
    assert trigger["event_time"] == "2023-11-14T23:13:30Z"
    assert out.changed


def test_trigger_without_a_key_is_undeliverable(account: Account) -> None:
    out = event(account, None, track("Coupon Entered", user=None, anon="a1", coupon="C"))
    rec = out.record
    assert rec is not None and rec["pk"] is None
    out = apply_clock(account, "a:a1", rec, T + 3600)
    (effect,) = out.effects
    assert effect["op"] == "undeliverable"
    assert "no primary key" in effect["reason"]
    assert "context.traits.email" in effect["reason"]


def test_exclude_cancels_the_trigger(account: Account) -> None:
    rec = known(account)
    event(account, rec, track("Coupon Entered", coupon="C"), at=T + 10)
    event(account, rec, track("Order Completed"), at=T + 600)
    assert apply_clock(account, "u:u1", rec, T + 7200).effects == []
    assert rec["due"] is None


def test_clock_with_nothing_due_changes_nothing(account: Account) -> None:
    rec = known(account)
    out = apply_clock(account, "u:u1", rec, T + 10)
    assert not out.changed and out.effects == []


# --------------------------------------------------------------------------- merges


def anonymous_visitor(account: Account) -> dict[str, Any]:
    out = event(
        account,
        None,
        track("Coupon Entered", user=None, anon="a1", coupon="ANON", revenue=7),
        at=T,
        person="a:a1",
    )
    assert out.record is not None
    return out.record


def test_merge_brings_values_ids_and_rule_instances(account: Account) -> None:
    other = anonymous_visitor(account)
    state, tombstone = export_for_merge(other, "u:u1")
    assert tombstone == {"fwd": "u:u1"}
    rec = event(account, None, identify(firstName="Ann"), at=T + 60).record
    assert rec is not None
    out = apply_merge(account, "u:u1", rec, state, at=T + 60)
    assert out.changed
    assert rec["anon"] == ["a1"]
    assert rec["vals"]["coupon"] == "ANON"
    assert rec["vals"]["first_name"] == "Ann"
    assert rec["first"] == T
    assert only_upsert(out)["fields"] == {"3": EMAIL, "100": 7}
    # The instance begun while anonymous continues and fires to the user's contact.
    (trigger,) = apply_clock(account, "u:u1", rec, T + 3600).effects
    assert trigger["op"] == "trigger"
    assert trigger["contact"] == EMAIL
    assert trigger["data"] == {"global": {"coupon": "ANON"}}


def test_merge_brings_the_primary_key(account: Account) -> None:
    old = known(account, firstName="Ann")
    old_sent = dict(old["sent"])
    rec = event(account, None, {"type": "page", "userId": "u2"}, at=T + 5, person="u:u2").record
    assert rec is not None and rec["pk"] is None
    out = apply_merge(account, "u:u2", rec, dict(old), at=T + 5)
    assert rec["pk"] == EMAIL
    assert rec["sent"] == old_sent  # the contact already holds these: nothing to resend
    assert upserts(out) == []


def test_merge_into_a_new_record(account: Account) -> None:
    other = anonymous_visitor(account)
    out = apply_merge(account, "u:u1", None, dict(other), at=T + 1)
    assert out.record is not None
    assert out.record["anon"] == ["a1"]
    assert out.record["vals"]["coupon"] == "ANON"


def test_merge_keeps_the_users_own_key(account: Account) -> None:
    rec = known(account)
    other = known(account, email="other@example.com")
    apply_merge(account, "u:u1", rec, dict(other), at=T + 1)
    assert rec["pk"] == EMAIL


def test_merge_twice_does_not_duplicate(account: Account) -> None:
    other = anonymous_visitor(account)
    rec = known(account)
    apply_merge(account, "u:u1", rec, dict(other), at=T + 1)
    apply_merge(account, "u:u1", rec, dict(other), at=T + 2)
    assert rec["anon"] == ["a1"]
    (trigger,) = apply_clock(account, "u:u1", rec, T + 3600).effects
    assert trigger["op"] == "trigger"


def test_merge_older_values_do_not_overwrite_newer(account: Account) -> None:
    other = anonymous_visitor(account)  # coupon ANON at T
    rec = event(account, None, track("Viewed", coupon="MINE"), at=T + 600).record
    assert rec is not None
    apply_merge(account, "u:u1", rec, dict(other), at=T + 600)
    assert rec["vals"]["coupon"] == "MINE"
    assert rec["vals"]["revenue"] == 7  # a value the user did not have is brought in


def test_anonymous_ids_stay_capped_after_a_merge(account: Account) -> None:
    rec = known(account)
    rec["anon"] = [f"u{i}" for i in range(MAX_ANONYMOUS_IDS)]
    other = new_record()
    other["anon"] = ["x1", "x2"]
    apply_merge(account, "u:u1", rec, other, at=T)
    assert len(rec["anon"]) == MAX_ANONYMOUS_IDS
    assert rec["anon"][-2:] == ["x1", "x2"]


# --------------------------------------------------------------------------- delete


def test_delete_effect_names_the_contact(account: Account) -> None:
    rec = known(account)
    assert delete_effect(account, "u:u1", rec) == {
        "op": "delete",
        "account": "acme",
        "person": "u:u1",
        "contact": EMAIL,
    }
    assert delete_effect(account, "u:u1", None) is None
    assert delete_effect(account, "u:u1", new_record()) is None


# --------------------------------------------------------------------------- list actions

LIST_CONFIG = (
    CONFIG
    + """\
      - name: vip
        conditions:
          - {sequence: 0, type: start, on: track, match: 'ecom_event = "Big Order"'}
          - {sequence: 1, type: exit, trigger: 1302, add_to_list: 750504659,
             remove_from_list: Cart abandoners, variables: [coupon]}
      - name: newsletter
        conditions:
          - {sequence: 0, type: start, on: track, match: 'ecom_event = "Subscribed"'}
          - {sequence: 1, type: exit, add_to_list: Newsletter subscribers}
"""
)


@pytest.fixture(scope="module")
def list_account() -> Account:
    config = load_config_text(LIST_CONFIG, env={})
    return Account("acme", config.accounts["acme"])


def test_an_exit_sends_its_trigger_then_its_list_actions(list_account: Account) -> None:
    rec = known(list_account)
    out = event(list_account, rec, track("Big Order", coupon="V"), at=T + 10)
    trigger, add, remove = out.effects
    # The trigger is exactly what it was before list actions existed.
    assert trigger == {
        "op": "trigger",
        "account": "acme",
        "person": "u:u1",
        "contact": EMAIL,
        "user_id": "u1",
        "rule": "vip",
        "event": 1302,
        "trigger_id": trigger["trigger_id"],
        "instance": trigger["instance"],
        "event_time": "2023-11-14T22:13:30Z",
        "data": {"global": {"coupon": "V"}},
    }
    common = {
        "account": "acme",
        "person": "u:u1",
        "contact": EMAIL,
        "user_id": "u1",
        "rule": "vip",
        "trigger_id": trigger["trigger_id"],
        "instance": trigger["instance"],
        "event_time": "2023-11-14T22:13:30Z",
    }
    assert add == {"op": "list_add", "list": 750504659, **common}
    assert remove == {"op": "list_remove", "list": "Cart abandoners", **common}
    assert [t.kind for t in out.transitions] == ["started", "triggered"]  # one exit


def test_a_list_only_exit_sends_only_the_list_action(list_account: Account) -> None:
    rec = known(list_account)
    out = event(list_account, rec, track("Subscribed"), at=T + 10)
    (effect,) = out.effects
    assert (effect["op"], effect["list"], effect["contact"]) == (
        "list_add",
        "Newsletter subscribers",
        EMAIL,
    )
    assert out.funnel_counts() == {
        ("newsletter", "started", int((T + 10) // 3600 * 3600)): 1,
        ("newsletter", "triggered", int((T + 10) // 3600 * 3600)): 1,
    }


def test_list_actions_without_a_key_are_undeliverable(list_account: Account) -> None:
    out = event(list_account, None, track("Big Order", user=None, anon="a1"), person="a:a1")
    trigger, add, remove = out.effects
    assert [e["op"] for e in out.effects] == ["undeliverable"] * 3
    assert "action" not in trigger  # the trigger's undeliverable shape is unchanged
    assert (add["action"], add["list"], remove["action"], remove["list"]) == (
        "list_add",
        750504659,
        "list_remove",
        "Cart abandoners",
    )
    for e in (add, remove):
        assert e["contact"] is None and "context.traits.email" in e["reason"]
        assert e["trigger_id"] == trigger["trigger_id"]
