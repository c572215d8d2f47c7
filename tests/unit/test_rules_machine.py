"""The rule state machine: rules.md's worked cases, each semantic choice, and determinism."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.config.model import DataMapConfig, RuleConfig
from app.jsonpath import MISSING, get
from app.rules.machine import Effect, EventInput, RuleSet, merge_states, new_state

MIN = 60.0
HOUR = 3600.0

DATA_MAPS = [
    DataMapConfig(name="email", path="context.traits.email"),
    DataMapConfig(name="ecom_event", path="event"),
    DataMapConfig(name="ecom_revenue", path="properties.revenue", type="numeric"),
    DataMapConfig(name="cart_id", path="properties.cart_id"),
    DataMapConfig(name="coupon", path="properties.coupon"),
    DataMapConfig(name="plan", path="traits.plan"),
]


def t(hhmm: str) -> float:
    """Unix seconds of HH:MM on 2026-01-02 UTC."""
    h, m = hhmm.split(":")
    return datetime(2026, 1, 2, int(h), int(m), tzinfo=UTC).timestamp()


def rule(name: str = "Coupon", **kw: Any) -> RuleConfig:
    return RuleConfig.model_validate({"name": name, **kw})


def coupon_rule(**kw: Any) -> RuleConfig:
    """The rule builder's example rule (contract.md), without a transaction unless given."""
    kw.setdefault("lifetime", "48h")
    return rule(
        conditions=[
            {"sequence": 0, "type": "start", "on": "track",
             "match": 'ecom_event = "Coupon Entered"'},
            {"sequence": 0, "type": "exclude", "on": "track",
             "match": 'ecom_event = "Order Completed"'},
            {"sequence": 1, "type": "exit", "wait": "1h", "trigger": 1234,
             "variables": ["coupon", "ecom_revenue"]},
        ],
        **kw,
    )  # fmt: skip


def seq_rule(name: str = "Funnel", **kw: Any) -> RuleConfig:
    """Product Viewed -> Product Added (step) -> exit at once."""
    step = {"sequence": 1, "type": "step", "on": "track", "match": 'event = "Product Added"'}
    step.update(kw.pop("step", {}))
    return rule(
        name,
        conditions=[
            {"sequence": 0, "type": "start", "on": "track", "match": 'event = "Product Viewed"'},
            step,
            {"sequence": 2, "type": "exit", "trigger": "funnel done", "variables": ["coupon"]},
        ],
        **kw,
    )


_ids = iter(range(1, 10**9))


def ev(
    event: str | None,
    at: float,
    *,
    type: str = "track",
    mid: str | None = None,
    user: Mapping[str, Any] | None = None,
    **props: Any,
) -> EventInput:
    message: dict[str, Any] = {"type": type, "messageId": mid or f"m{next(_ids)}"}
    if event is not None:
        message["event"] = event
    message["properties"] = props
    values = {}
    for dm in DATA_MAPS:
        v = get(message, dm.path)
        if v is not MISSING and v is not None:
            values[dm.name] = v
    return EventInput(message, type, message["messageId"], at, values, dict(user or values))


@dataclass
class Person:
    """Drives a RuleSet like replay does: on_clock(t) before each event, users table kept."""

    rs: RuleSet
    roundtrip: bool = False
    state: dict[str, Any] = field(default_factory=new_state)
    user: dict[str, Any] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)

    def _rt(self) -> None:
        if self.roundtrip:
            self.state = orjson.loads(orjson.dumps(self.state))

    def clock(self, now: float) -> list[Effect]:
        self._rt()
        out = self.rs.on_clock(self.state, now, self.user)
        self.effects += out
        return out

    def send(self, e: EventInput, *, clock_first: bool = True) -> list[Effect]:
        before = self.clock(e.event_time) if clock_first else []
        self.user.update(e.values)
        e = EventInput(e.message, e.type, e.message_id, e.event_time, e.values, dict(self.user))
        self._rt()
        out = self.rs.on_event(self.state, e)
        self.effects += out
        return before + out

    def run(self, events: Iterable[EventInput], end: float) -> list[Effect]:
        for e in events:
            self.send(e)
        self.clock(end)
        return self.effects


def kinds(effects: Iterable[Effect]) -> list[tuple[str, float]]:
    return [(e.kind, e.at) for e in effects]


def triggers(effects: Iterable[Effect]) -> list[Effect]:
    return [e for e in effects if e.kind == "triggered"]


def coupon_set(**kw: Any) -> RuleSet:
    return RuleSet([coupon_rule(**kw)], DATA_MAPS)


def test_a_started_effect_is_a_whole_effect() -> None:
    """Built without NamedTuple's __new__: every field is there, as for any other kind."""
    [started] = coupon_set().on_event(new_state(), ev("Coupon Entered", t("10:00"), mid="m-s"))
    assert started == Effect("started", "Coupon", started.instance_id, t("10:00"), position=0)
    assert (started.add_to_list, started.remove_from_list) == (None, None)


# --------------------------------------------------------------------- rules.md worked cases


def test_case_1_coupon_alone_triggers_after_the_wait_with_coupon() -> None:
    p = Person(coupon_set())
    p.send(ev("Coupon Entered", t("10:00"), coupon="SAVE10"))
    assert p.clock(t("10:59") + 59) == []
    effects = p.run([], t("12:00"))
    assert kinds(effects) == [("started", t("10:00")), ("triggered", t("11:00"))]
    trig = effects[-1]
    assert trig.trigger == 1234
    assert trig.variables == {"coupon": "SAVE10"}
    assert trig.trigger_id and len(trig.trigger_id) <= 64
    assert p.state["r"]["Coupon"]["i"] == []


def test_case_2_order_within_the_wait_excludes() -> None:
    p = Person(coupon_set())
    effects = p.run(
        [ev("Coupon Entered", t("10:00")), ev("Order Completed", t("10:30"))], t("12:00")
    )
    assert kinds(effects) == [("started", t("10:00")), ("excluded", t("10:30"))]


@pytest.mark.parametrize("clock_first", [True, False])
def test_case_3_late_order_does_not_exclude(clock_first: bool) -> None:
    # Without the caller's on_clock, on_event fires the overdue exit itself first.
    p = Person(coupon_set())
    p.send(ev("Coupon Entered", t("10:00")))
    p.send(ev("Order Completed", t("11:30")), clock_first=clock_first)
    effects = p.run([], t("12:00"))
    assert kinds(effects) == [("started", t("10:00")), ("triggered", t("11:00"))]


def test_exclude_at_exactly_the_exit_time_is_too_late() -> None:
    p = Person(coupon_set())
    effects = p.run(
        [ev("Coupon Entered", t("10:00")), ev("Order Completed", t("11:00"))], t("12:00")
    )
    assert kinds(effects) == [("started", t("10:00")), ("triggered", t("11:00"))]


def test_case_4_second_coupon_opens_no_second_instance() -> None:
    p = Person(coupon_set())
    effects = p.run(
        [ev("Coupon Entered", t("10:00")), ev("Coupon Entered", t("10:10"))], t("12:00")
    )
    assert kinds(effects) == [("started", t("10:00")), ("triggered", t("11:00"))]


def test_case_5_anonymous_instance_continues_after_identify() -> None:
    rs = coupon_set()
    start = ev("Coupon Entered", t("10:00"), coupon="C5")
    anon = Person(rs)
    anon.send(start)
    known = Person(rs, user={"email": "ann@example.com"})
    known.send(ev(None, t("10:20"), type="identify", user={"email": "ann@example.com"}))
    v = known.state["v"]
    merge_states(known.state, anon.state)
    assert known.state["v"] > v
    anon.state = new_state()  # the caller clears the anonymous state
    assert anon.clock(t("12:00")) == []
    effects = known.run([], t("12:00"))
    assert kinds(effects) == [("triggered", t("11:00"))]
    assert effects[0].variables == {"coupon": "C5"}
    # same trigger_id as if the person had never been anonymous
    alone = Person(rs).run([start], t("12:00"))
    assert effects[0].trigger_id == triggers(alone)[0].trigger_id


@pytest.mark.parametrize("added", ["10:40", "10:30"])
def test_case_6_step_after_within_does_not_count_and_instance_expires(added: str) -> None:
    rs = RuleSet([seq_rule(step={"within": "30m"})], DATA_MAPS)
    p = Person(rs)
    effects = p.run([ev("Product Viewed", t("10:00")), ev("Product Added", t(added))], t("12:00"))
    assert kinds(effects) == [("started", t("10:00")), ("expired", t("10:30"))]
    assert effects[-1].reason == "within"


def test_step_within_window_advances_and_exit_fires_at_once() -> None:
    rs = RuleSet([seq_rule(step={"within": "30m"})], DATA_MAPS)
    effects = Person(rs).run(
        [ev("Product Viewed", t("10:00")), ev("Product Added", t("10:29"))], t("12:00")
    )
    assert kinds(effects) == [
        ("started", t("10:00")),
        ("advanced", t("10:29")),
        ("triggered", t("10:29")),
    ]
    assert [e.position for e in effects] == [0, 1, 2]
    assert effects[-1].trigger == "funnel done"


# --------------------------------------------------------------------- transactions


def test_transaction_event_applies_only_to_its_instance() -> None:
    rs = coupon_set(transaction="cart_id")
    effects = Person(rs).run(
        [
            ev("Coupon Entered", t("10:00"), cart_id="A"),
            ev("Coupon Entered", t("10:05"), cart_id="B"),
            ev("Coupon Entered", t("10:06"), cart_id="A"),  # A active: nothing
            ev("Order Completed", t("10:30"), cart_id="A"),
        ],
        t("12:00"),
    )
    assert [(e.kind, e.transaction, e.at) for e in effects] == [
        ("started", "A", t("10:00")),
        ("started", "B", t("10:05")),
        ("excluded", "A", t("10:30")),
        ("triggered", "B", t("11:05")),
    ]


def test_event_without_transaction_applies_to_all_and_start_without_opens_nothing() -> None:
    rs = coupon_set(transaction="cart_id")
    p = Person(rs)
    effects = p.run(
        [
            ev("Coupon Entered", t("10:00"), cart_id="A"),
            ev("Coupon Entered", t("10:01"), cart_id=7.0),
            ev("Coupon Entered", t("10:02")),  # no cart: opens nothing
            ev("Order Completed", t("10:30")),  # no cart: applies to both
        ],
        t("12:00"),
    )
    assert [(e.kind, e.transaction) for e in effects] == [
        ("started", "A"),
        ("started", "7"),
        ("excluded", "A"),
        ("excluded", "7"),
    ]


# --------------------------------------------------------------------- timing


def test_lifetime_expires_the_instance() -> None:
    r = seq_rule(lifetime="2h")
    effects = Person(RuleSet([r], DATA_MAPS)).run(
        [ev("Product Viewed", t("10:00")), ev("Product Added", t("12:30"))], t("13:00")
    )
    assert [(e.kind, e.at, e.reason) for e in effects] == [
        ("started", t("10:00"), None),
        ("expired", t("12:00"), "lifetime"),
    ]


def test_exit_wins_a_tie_with_lifetime_and_lifetime_beats_a_later_exit() -> None:
    tie = Person(coupon_set(lifetime="1h")).run([ev("Coupon Entered", t("10:00"))], t("12:00"))
    assert kinds(tie) == [("started", t("10:00")), ("triggered", t("11:00"))]
    short = Person(coupon_set(lifetime="30m")).run([ev("Coupon Entered", t("10:00"))], t("12:00"))
    assert [(e.kind, e.reason) for e in short] == [("started", None), ("expired", "lifetime")]


def test_wait_on_a_step_ignores_early_events() -> None:
    rs = RuleSet([seq_rule(step={"wait": "10m"})], DATA_MAPS)
    effects = Person(rs).run(
        [
            ev("Product Viewed", t("10:00")),
            ev("Product Added", t("10:05")),
            ev("Product Added", t("10:10")),  # exactly the wait: counts
        ],
        t("12:00"),
    )
    assert kinds(effects) == [
        ("started", t("10:00")),
        ("advanced", t("10:10")),
        ("triggered", t("10:10")),
    ]


def test_next_deadline_is_the_earliest_pending_transition() -> None:
    rs = RuleSet([coupon_rule(), seq_rule(step={"within": "30m"})], DATA_MAPS)
    p = Person(rs)
    assert rs.next_deadline(p.state) is None
    p.send(ev("Coupon Entered", t("10:00")))
    assert rs.next_deadline(p.state) == t("11:00")
    p.send(ev("Product Viewed", t("10:05")))
    assert rs.next_deadline(p.state) == t("10:35")
    assert rs.funnel_positions(p.state) == {"Coupon": [0], "Funnel": [0]}


# --------------------------------------------------------------------- conditions


def test_several_steps_at_one_sequence_and_an_exclude_guarding_it() -> None:
    r = rule(
        "Multi",
        conditions=[
            {"sequence": 0, "type": "start", "match": 'event = "Viewed"'},
            {"sequence": 1, "type": "step", "match": 'event = "Added"'},
            {"sequence": 1, "type": "step", "match": 'event = "Wished"'},
            {"sequence": 1, "type": "exclude", "match": 'event = "Refund"'},
            {"sequence": 2, "type": "exit", "wait": "1h", "trigger": 9},
        ],
    )
    rs = RuleSet([r], DATA_MAPS)
    a = Person(rs).run([ev("Viewed", t("10:00")), ev("Wished", t("10:10"))], t("12:00"))
    assert kinds(a) == [
        ("started", t("10:00")),
        ("advanced", t("10:10")),
        ("triggered", t("11:10")),
    ]
    b = Person(rs).run(
        [
            ev("Viewed", t("10:00")),
            ev("Refund", t("10:05")),  # position 0: not guarded by the seq-1 exclude
            ev("Added", t("10:10")),
            ev("Refund", t("10:20")),
        ],
        t("12:00"),
    )
    assert kinds(b) == [
        ("started", t("10:00")),
        ("advanced", t("10:10")),
        ("excluded", t("10:20")),
    ]
    assert b[-1].position == 1


def test_each_step_keeps_its_own_window_when_a_sequence_has_several() -> None:
    r = rule("Windows", conditions=[
        {"sequence": 0, "type": "start", "match": 'event = "Viewed"'},
        {"sequence": 1, "type": "step", "match": 'event = "A"', "within": "10m"},
        {"sequence": 1, "type": "step", "match": 'event = "B"', "within": "30m"},
        {"sequence": 2, "type": "exit", "wait": "1h", "trigger": 1},
    ])  # fmt: skip
    rs = RuleSet([r], DATA_MAPS)
    late = Person(rs).run(
        [ev("Viewed", t("10:00")), ev("A", t("10:10")), ev("A", t("10:20"))], t("12:00")
    )
    assert [(e.kind, e.at, e.reason) for e in late] == [
        ("started", t("10:00"), None),
        ("expired", t("10:30"), "within"),  # the latest window closes the sequence
    ]
    ok = Person(rs).run([ev("Viewed", t("10:00")), ev("B", t("10:29"))], t("12:00"))
    assert kinds(ok)[1:] == [("advanced", t("10:29")), ("triggered", t("11:29"))]


def test_one_event_matching_two_starts_opens_one_instance() -> None:
    r = rule("Twin", multiple_active=True, conditions=[
        {"sequence": 0, "type": "start", "match": 'event = "Viewed"'},
        {"sequence": 0, "type": "start", "match": "coupon != null"},
        {"sequence": 1, "type": "exit", "wait": "1h", "trigger": 1},
    ])  # fmt: skip
    effects = Person(RuleSet([r], DATA_MAPS)).run(
        [ev("Viewed", t("10:00"), coupon="c")], t("12:00")
    )
    assert kinds(effects) == [("started", t("10:00")), ("triggered", t("11:00"))]


def test_exclude_wins_over_a_step_matched_by_the_same_event() -> None:
    r = rule(
        "Both",
        conditions=[
            {"sequence": 0, "type": "start", "match": 'event = "A"'},
            {"sequence": 0, "type": "exclude", "match": "coupon = null"},
            {"sequence": 1, "type": "step", "match": 'event = "B"'},
            {"sequence": 2, "type": "exit", "trigger": 1},
        ],
    )
    effects = Person(RuleSet([r], DATA_MAPS)).run(
        [ev("A", t("10:00"), coupon="x"), ev("B", t("10:01"))], t("11:00")
    )
    assert [e.kind for e in effects] == ["started", "excluded"]


def test_exit_with_match_fires_on_the_event_subject_to_wait_and_within() -> None:
    r = rule(
        "Bought",
        conditions=[
            {"sequence": 0, "type": "start", "match": 'event = "Viewed"'},
            {"sequence": 1, "type": "exit", "match": 'event = "Bought"', "wait": "5m",
             "within": "1h", "trigger": 5, "variables": ["ecom_revenue"]},
        ],
    )  # fmt: skip
    rs = RuleSet([r], DATA_MAPS)
    hit = Person(rs).run(
        [
            ev("Viewed", t("10:00")),
            ev("Bought", t("10:02"), revenue=1),  # before the wait
            ev("Bought", t("10:20"), revenue=42),
        ],
        t("12:00"),
    )
    assert kinds(hit) == [("started", t("10:00")), ("triggered", t("10:20"))]
    assert hit[-1].variables == {"ecom_revenue": 42}
    miss = Person(rs).run([ev("Viewed", t("10:00"))], t("12:00"))
    assert [(e.kind, e.at, e.reason) for e in miss][-1] == ("expired", t("11:00"), "within")


def test_on_restricts_the_message_type() -> None:
    r = rule(
        "Pages",
        conditions=[
            {"sequence": 0, "type": "start", "on": "page"},
            {"sequence": 1, "type": "step", "on": "identify"},
            {"sequence": 2, "type": "exit", "trigger": 3},
        ],
    )
    rs = RuleSet([r], DATA_MAPS)
    effects = Person(rs).run(
        [
            ev(None, t("10:00"), type="track"),
            ev(None, t("10:01"), type="page"),
            ev(None, t("10:02"), type="track"),
            ev(None, t("10:03"), type="identify"),
        ],
        t("11:00"),
    )
    assert kinds(effects) == [
        ("started", t("10:01")),
        ("advanced", t("10:03")),
        ("triggered", t("10:03")),
    ]


def test_on_any_is_the_default() -> None:
    r = rule("Any", conditions=[
        {"sequence": 0, "type": "start", "match": "plan != null"},
        {"sequence": 1, "type": "exit", "trigger": 3},
    ])  # fmt: skip
    rs = RuleSet([r], DATA_MAPS)
    e = ev(None, t("10:00"), type="identify")
    e = EventInput({**e.message, "traits": {"plan": "pro"}}, "identify", e.message_id,
                   e.event_time, {"plan": "pro"}, {"plan": "pro"})  # fmt: skip
    assert [x.kind for x in Person(rs).run([e], t("11:00"))] == ["started", "triggered"]


def test_multiple_active_opens_one_instance_per_start() -> None:
    rs = coupon_set(multiple_active=True)
    effects = Person(rs).run(
        [ev("Coupon Entered", t("10:00")), ev("Coupon Entered", t("10:10"))], t("12:00")
    )
    assert kinds(effects) == [
        ("started", t("10:00")),
        ("started", t("10:10")),
        ("triggered", t("11:00")),
        ("triggered", t("11:10")),
    ]
    assert len({e.instance_id for e in effects}) == 2
    assert len({e.trigger_id for e in triggers(effects)}) == 2


# --------------------------------------------------------------------- idempotence, order


def test_redelivered_start_opens_nothing_while_active_or_after_it_ended() -> None:
    rs = coupon_set(multiple_active=True)
    p = Person(rs)
    start = ev("Coupon Entered", t("10:00"))
    p.send(start)
    assert p.send(start) == []
    p.clock(t("11:00"))
    assert p.send(start, clock_first=False) == []
    assert kinds(p.run([], t("13:00"))) == [("started", t("10:00")), ("triggered", t("11:00"))]


def test_redelivered_step_advances_only_once() -> None:
    r = rule("Twice", conditions=[
        {"sequence": 0, "type": "start", "match": 'event = "Start"'},
        {"sequence": 1, "type": "step", "match": 'event = "View"'},
        {"sequence": 2, "type": "step", "match": 'event = "View"'},
        {"sequence": 3, "type": "exit", "trigger": 1},
    ])  # fmt: skip
    rs = RuleSet([r], DATA_MAPS)
    p = Person(rs)
    view = ev("View", t("10:10"))
    p.run([ev("Start", t("10:00")), view, view], t("10:30"))
    assert p.rs.funnel_positions(p.state) == {"Twice": [1]}
    p.send(ev("View", t("10:40")))
    assert [e.kind for e in p.effects] == ["started", "advanced", "advanced", "triggered"]


def _three_step(name: str = "Three", **kw: Any) -> RuleConfig:
    """Viewed -> Added (step; Refund excludes at 1) -> exit an hour later."""
    return rule(name, conditions=[
        {"sequence": 0, "type": "start", "match": 'event = "Viewed"'},
        {"sequence": 1, "type": "step", "match": 'event = "Added"'},
        {"sequence": 1, "type": "exclude", "match": 'event = "Refund"'},
        {"sequence": 2, "type": "exit", "wait": "1h", "trigger": 1},
    ], **kw)  # fmt: skip


def test_event_older_than_the_last_transition_is_ignored() -> None:
    p = Person(RuleSet([_three_step()], DATA_MAPS))
    p.send(ev("Viewed", t("10:00")))
    p.send(ev("Added", t("10:30")))
    assert p.send(ev("Refund", t("10:20")), clock_first=False) == []  # late delivery
    assert p.rs.funnel_positions(p.state) == {"Three": [1]}
    assert [e.kind for e in p.send(ev("Refund", t("10:30")))] == ["excluded"]


def test_variables_come_from_the_instance_then_from_the_user() -> None:
    rs = coupon_set()
    p = Person(rs)
    p.send(ev("Coupon Entered", t("10:00"), coupon="FIRST"))
    p.send(ev("Product Viewed", t("10:10"), coupon="OTHER", revenue=12.5))  # not this instance's
    effects = p.run([], t("12:00"))
    assert p.user["coupon"] == "OTHER"
    assert triggers(effects)[0].variables == {"coupon": "FIRST", "ecom_revenue": 12.5}


# --------------------------------------------------------------------- identity


def test_merge_states_is_idempotent_and_resolves_duplicates_by_age() -> None:
    rs = coupon_set()
    user, anon = Person(rs), Person(rs)
    anon.send(ev("Coupon Entered", t("10:00")))
    user.send(ev("Coupon Entered", t("10:05")))
    merge_states(user.state, anon.state)
    snapshot = orjson.dumps(user.state)
    merge_states(user.state, anon.state)
    assert orjson.dumps(user.state) == snapshot
    due = rs.next_deadline(user.state)
    assert due is not None and due <= t("10:05")
    effects = user.clock(t("10:20"))
    assert [(e.kind, e.reason, e.instance_id) for e in effects] == [
        ("expired", "merged", user.effects[0].instance_id)
    ]
    assert kinds(user.run([], t("12:00")))[-1] == ("triggered", t("11:00"))
    assert triggers(user.effects)[0].instance_id == anon.effects[0].instance_id


def test_merge_keeps_both_when_multiple_active() -> None:
    rs = coupon_set(multiple_active=True)
    user, anon = Person(rs), Person(rs)
    anon.send(ev("Coupon Entered", t("10:00")))
    user.send(ev("Coupon Entered", t("10:05")))
    merge_states(user.state, anon.state)
    assert kinds(triggers(user.run([], t("12:00")))) == [
        ("triggered", t("11:00")),
        ("triggered", t("11:05")),
    ]


def test_merge_with_nothing_changes_nothing() -> None:
    state = new_state()
    merge_states(state, new_state())
    assert state == new_state()


# --------------------------------------------------------------------- rule changes


def _started(rs: RuleSet, *events: EventInput) -> Person:
    p = Person(rs)
    for e in events:
        p.send(e)
    return p


def test_rule_removed_ends_instances() -> None:
    p = _started(coupon_set(), ev("Coupon Entered", t("10:00")))
    p.rs = RuleSet([], DATA_MAPS)
    assert p.rs.next_deadline(p.state) == t("10:00")
    effects = p.clock(t("10:10"))
    assert [(e.kind, e.reason, e.at) for e in effects] == [("expired", "rule removed", t("10:10"))]
    assert p.state["r"] == {}


def test_rule_disabled_ends_instances_and_opens_none() -> None:
    p = _started(coupon_set(), ev("Coupon Entered", t("10:00")))
    p.rs = coupon_set(enabled=False)
    effects = p.run([ev("Coupon Entered", t("10:30"))], t("12:00"))
    assert [(e.kind, e.reason) for e in effects[1:]] == [("expired", "rule disabled")]
    assert p.rs.funnel_positions(p.state) == {}


def test_rule_changed_continues_when_the_position_still_exists() -> None:
    p = _started(coupon_set(), ev("Coupon Entered", t("10:00"), coupon="K"))
    changed = coupon_rule()
    changed.conditions[2] = changed.conditions[2].model_copy(update={"wait": 2 * HOUR})
    p.rs = RuleSet([changed], DATA_MAPS)
    assert p.rs.next_deadline(p.state) == t("12:00")
    v = p.state["v"]
    assert p.clock(t("10:10")) == []
    assert p.state["v"] == v + 1  # re-fingerprinted: a change to write, once
    snapshot = orjson.dumps(p.state)
    assert p.clock(t("10:20")) == []
    assert orjson.dumps(p.state) == snapshot
    effects = p.run([], t("13:00"))
    assert [(e.kind, e.at) for e in effects[1:]] == [("triggered", t("12:00"))]
    assert effects[-1].variables == {"coupon": "K"}


def test_rule_changed_ends_instances_whose_position_is_gone() -> None:
    p = _started(RuleSet([_three_step()], DATA_MAPS), ev("Viewed", t("10:00")))
    p.send(ev("Added", t("10:01")))
    p.send(ev("Viewed", t("10:02"), mid="second"))  # blocked: one active instance
    short = rule("Three", conditions=[
        {"sequence": 0, "type": "start", "match": 'event = "Viewed"'},
        {"sequence": 1, "type": "exit", "wait": "1h", "trigger": 1},
    ])  # fmt: skip
    p.rs = RuleSet([short], DATA_MAPS)  # position 1 is now the exit: cannot continue
    assert p.rs.next_deadline(p.state) == t("10:01")
    effects = p.clock(t("10:05"))
    assert [(e.kind, e.reason, e.position, e.at) for e in effects] == [
        ("expired", "rule changed", 1, t("10:05"))
    ]
    assert p.send(ev("Viewed", t("10:06")))[0].kind == "started"


# --------------------------------------------------------------------- determinism, storage


def _history() -> list[EventInput]:
    return [
        ev("Coupon Entered", t("10:00"), mid="a", coupon="X", cart_id="A"),
        ev("Coupon Entered", t("10:05"), mid="b", cart_id="B"),
        ev("Product Viewed", t("10:06"), mid="c"),
        ev("Order Completed", t("10:30"), mid="d", cart_id="A"),
        ev("Product Added", t("10:40"), mid="e"),
    ]


def _rules() -> list[RuleConfig]:
    return [coupon_rule(transaction="cart_id"), seq_rule(step={"within": "1h"})]


def test_trigger_ids_are_deterministic_and_salted() -> None:
    one = triggers(Person(RuleSet(_rules(), DATA_MAPS, salt="s")).run(_history(), t("12:00")))
    two = triggers(Person(RuleSet(_rules(), DATA_MAPS, salt="s")).run(_history(), t("12:00")))
    other = triggers(Person(RuleSet(_rules(), DATA_MAPS, salt="z")).run(_history(), t("12:00")))
    assert len(one) == 2
    assert [e.trigger_id for e in one] == [e.trigger_id for e in two]
    assert not {e.trigger_id for e in one} & {e.trigger_id for e in other}


def test_json_round_trip_between_steps_gives_the_same_effects() -> None:
    plain = Person(RuleSet(_rules(), DATA_MAPS)).run(_history(), t("12:00"))
    stored = Person(RuleSet(_rules(), DATA_MAPS), roundtrip=True).run(_history(), t("12:00"))
    assert plain == stored
    assert [(e.rule, e.kind, e.transaction) for e in plain] == [
        ("Coupon", "started", "A"),
        ("Coupon", "started", "B"),
        ("Funnel", "started", None),
        ("Coupon", "excluded", "A"),
        ("Funnel", "advanced", None),
        ("Funnel", "triggered", None),
        ("Coupon", "triggered", "B"),
    ]


def test_state_unchanged_when_nothing_happens_and_v_bumped_on_change() -> None:
    rs = coupon_set()
    p = Person(rs)
    p.send(ev("Coupon Entered", t("10:00")))
    before = orjson.dumps(p.state)
    assert p.send(ev("Page Viewed", t("10:01"))) == []
    assert p.send(ev("Coupon Entered", t("10:02"))) == []
    assert rs.on_clock(p.state, t("10:30"), {}) == []
    assert orjson.dumps(p.state) == before
    v = p.state["v"]
    p.clock(t("11:00"))
    assert p.state["v"] == v + 1
    empty: dict[str, Any] = {}
    assert rs.on_event(empty, ev("Nothing", t("10:00"))) == []
    assert empty == {}


def test_an_event_only_evaluates_rules_that_can_match_its_name() -> None:
    rules = [
        rule(f"Y{i}", conditions=[
            {"sequence": 0, "type": "start", "match": f'ecom_event = "Y" and ecom_revenue > {i}'},
            {"sequence": 1, "type": "exit", "wait": "1h", "trigger": 1},
        ])
        for i in range(50)
    ]  # fmt: skip
    rules.append(
        rule("X", conditions=[
            {"sequence": 0, "type": "start", "match": 'event in ["X", "Z"] and coupon != null'},
            {"sequence": 1, "type": "exit", "wait": "1h", "trigger": 1},
        ])
    )  # fmt: skip
    rules.append(
        rule("AnyName", conditions=[
            {"sequence": 0, "type": "start", "match": 'coupon = "never"'},
            {"sequence": 1, "type": "exit", "trigger": 1},
        ])
    )  # fmt: skip
    rs = RuleSet(rules, DATA_MAPS)
    p = Person(rs)
    p.send(ev("X", t("10:00"), coupon="c"))
    assert rs.evaluations == 2  # X and the rule that names no event
    p.send(ev("Q", t("10:01"), coupon="c"))
    assert rs.evaluations == 3
    p.send(ev("Y", t("10:02"), revenue=10))
    assert rs.evaluations == 54
    # the index itself: an X event visits only X's start and the name-free one
    assert [c.rule.name for c in rs._candidates("track", "X")] == ["X", "AnyName"]
    assert [c.rule.name for c in rs._candidates("page", "Q")] == ["AnyName"]
    assert sorted(rs.funnel_positions(p.state)) == ["X", *(f"Y{i}" for i in range(10))]


# --------------------------------------------------------------------- exit actions


def _list_rule(**actions: Any) -> RuleConfig:
    """The coupon rule with its exit's actions replaced by ``actions``."""
    cfg = coupon_rule()
    exit_ = cfg.conditions[2].model_copy(update={"trigger": None, **actions})
    return cfg.model_copy(update={"conditions": [*cfg.conditions[:2], exit_]})


def test_an_exit_with_only_list_actions_fires_like_a_trigger() -> None:
    """A list-only exit ends the instance as ``triggered`` (the funnel's exit count), at the
    same time and with the same trigger_id as the rule with a trigger would."""
    listed = Person(RuleSet([_list_rule(add_to_list=750504659, remove_from_list="Cart")],
                            DATA_MAPS))  # fmt: skip
    plain = Person(coupon_set())
    for p in (listed, plain):
        p.run([ev("Coupon Entered", t("10:00"), mid="c1", coupon="K")], t("12:00"))
    [fired] = triggers(listed.effects)
    [reference] = triggers(plain.effects)
    assert (fired.at, fired.position, fired.trigger) == (t("11:00"), 1, None)
    assert (fired.add_to_list, fired.remove_from_list) == (750504659, "Cart")
    assert fired.trigger_id == reference.trigger_id
    assert fired.instance_id == reference.instance_id
    assert (reference.add_to_list, reference.remove_from_list) == (None, None)
    assert listed.state["r"]["Coupon"]["i"] == []


def test_an_exit_with_a_trigger_and_a_list_carries_both() -> None:
    p = Person(RuleSet([_list_rule(trigger=1234, add_to_list="VIP customers")], DATA_MAPS))
    p.run([ev("Coupon Entered", t("10:00"), coupon="K")], t("12:00"))
    [fired] = triggers(p.effects)
    assert (fired.trigger, fired.add_to_list, fired.remove_from_list) == (
        1234,
        "VIP customers",
        None,
    )
    assert fired.variables == {"coupon": "K"}


def _older_release_state(cart: str = "A") -> dict[str, Any]:
    """The Coupon rule's state as the releases before the per-event instance id wrote it:
    an instance of ``msg-1`` (cart ``cart``) started at 10:00, its id the older form."""
    return {
        "v": 1,
        "r": {
            "Coupon": {
                "i": [
                    {
                        "id": "57e6f813e274bf4d",
                        "f": "1734773b",
                        "p": 0,
                        "s": t("10:00"),
                        "a": t("10:00"),
                        "m": ["msg-1"],
                        "t": cart,
                    }
                ],
                "d": [],
            }
        },
    }


def test_ids_of_rules_without_list_actions_are_those_before_list_actions_existed() -> None:
    """Emarsys dedupes triggers on trigger_id: an upgrade must not change it, nor the
    instance ids and fingerprints that running instances carry (values pinned from the
    release before list actions; its instance id form is ``_legacy_instance_id`` now)."""
    from app.rules.machine import _fingerprint, _legacy_instance_id

    cfg = coupon_rule(transaction="cart_id")
    rs = RuleSet([cfg], DATA_MAPS, salt="acme")
    assert _fingerprint(cfg) == "1734773b"
    assert _legacy_instance_id("Coupon", "msg-1", "A") == "57e6f813e274bf4d"
    assert rs.trigger_id("Coupon", "57e6f813e274bf4d", 1) == (
        "7ce9160bae9a4195fdcfb840be4ee92ad9746b0c"
    )
    p = Person(rs)
    p.send(ev("Coupon Entered", t("10:00"), mid="msg-1", cart_id="A"))
    assert p.state["r"]["Coupon"]["i"][0]["f"] == "1734773b"
    [fired] = triggers(p.run([], t("12:00")))
    assert fired.trigger_id == "7ce9160bae9a4195fdcfb840be4ee92ad9746b0c"
    running = Person(rs, state=_older_release_state())  # started by that release
    [fired] = triggers(running.run([], t("12:00")))
    assert (fired.instance_id, fired.trigger_id) == (
        "57e6f813e274bf4d",
        "7ce9160bae9a4195fdcfb840be4ee92ad9746b0c",
    )


def test_an_instance_id_is_the_start_event_s_and_the_same_for_every_rule() -> None:
    """One hash per start event (and transaction value), pinned: every rule it starts
    gets the same id, and each trigger_id still differs, since it hashes the rule."""
    from app.rules.machine import _instance_id

    assert _instance_id("msg-1", "A") == "ab6bf348f4c4360e5d04"
    rs = RuleSet([coupon_rule(name="One"), coupon_rule(name="Two")], DATA_MAPS, salt="acme")
    started = rs.on_event(new_state(), ev("Coupon Entered", t("10:00"), mid="msg-1"))
    assert [e.kind for e in started] == ["started", "started"]
    assert {e.instance_id for e in started} == {_instance_id("msg-1", None)}
    p = Person(rs)
    p.send(ev("Coupon Entered", t("10:00"), mid="msg-1"))
    fired = triggers(p.run([], t("12:00")))
    assert [e.rule for e in fired] == ["One", "Two"]
    assert len({e.trigger_id for e in fired}) == 2


def test_the_trigger_id_is_the_older_release_s_after_many_steps() -> None:
    """An instance moved more often than its message ids are kept still triggers with the
    trigger_id the older releases gave that start (of the rule, start message and
    transaction): a replay --apply over history they sent is deduped by Emarsys."""
    from app.rules.machine import _legacy_instance_id

    steps = [
        {"sequence": n, "type": "step", "on": "track", "match": f'ecom_event = "Step {n}"'}
        for n in range(1, 7)
    ]
    cfg = rule(
        name="Long",
        lifetime="48h",
        conditions=[
            {"sequence": 0, "type": "start", "on": "track", "match": 'ecom_event = "Go"'},
            *steps,
            {"sequence": 7, "type": "exit", "wait": "1h", "trigger": 1},
        ],
    )
    rs = RuleSet([cfg], DATA_MAPS, salt="acme")
    p = Person(rs)
    p.send(ev("Go", t("10:00"), mid="go-1"))
    for n in range(1, 7):
        p.send(ev(f"Step {n}", t(f"10:0{n}"), mid=f"step-{n}"))
    [inst] = p.state["r"]["Long"]["i"]
    assert "go-1" not in inst["m"] and inst["p"] == 6
    [fired] = triggers(p.run([], t("12:00")))
    assert fired.trigger_id == rs.trigger_id("Long", _legacy_instance_id("Long", "go-1", None), 7)


@pytest.mark.parametrize("ended", [False, True])
def test_a_start_redelivered_across_the_upgrade_opens_nothing(ended: bool) -> None:
    """The older release opened an instance for msg-1 (still running, or ended since):
    msg-1 read again after the upgrade, whose id form differs, opens no second one, so
    the automation is not sent twice; another event still opens one. (With
    ``multiple_active`` the running instance does not block the start: the id does.)"""
    rs = RuleSet([coupon_rule(transaction="cart_id", multiple_active=True)], DATA_MAPS, salt="acme")
    state = _older_release_state()
    if ended:
        entry = state["r"]["Coupon"]
        entry["d"], entry["i"] = [entry["i"][0]["id"]], []
    p = Person(rs, state=state)
    again = p.send(ev("Coupon Entered", t("10:05"), mid="msg-1", cart_id="A"))
    assert again == []
    other_cart = p.send(ev("Coupon Entered", t("10:06"), mid="msg-1", cart_id="B"))
    assert [e.kind for e in other_cart] == ["started"]
    fired = triggers(p.run([], t("12:00")))
    assert [e.transaction for e in fired] == (["B"] if ended else ["A", "B"])


def test_adding_a_list_action_keeps_running_instances_and_their_trigger_id() -> None:
    before = Person(coupon_set())
    before.send(ev("Coupon Entered", t("10:00"), mid="c1"))
    after = Person(coupon_set())
    after.send(ev("Coupon Entered", t("10:00"), mid="c1"))
    after.rs = RuleSet([_list_rule(trigger=1234, add_to_list=750504659)], DATA_MAPS)
    [old] = triggers(before.run([], t("12:00")))
    [new] = triggers(after.run([], t("12:00")))
    assert (new.at, new.trigger_id, new.add_to_list) == (old.at, old.trigger_id, 750504659)


# --------------------------------------------------------------------- property


_KINDS = ["Coupon Entered", "Order Completed", "Product Viewed", "Product Added", None]

_stream = st.lists(
    st.tuples(
        st.sampled_from(_KINDS),
        st.integers(min_value=0, max_value=50 * 60),  # gap in seconds
        st.sampled_from([None, "A", "B"]),
        st.sampled_from([None, "C1", "C2"]),
        st.integers(min_value=0, max_value=3),  # redeliver one of the last messages
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(_stream, st.booleans())
def test_serialising_the_state_between_steps_changes_nothing(
    stream: list[tuple[str | None, int, str | None, str | None, int]], multiple: bool
) -> None:
    rules = [
        coupon_rule(transaction="cart_id", multiple_active=multiple, lifetime="2h"),
        coupon_rule().model_copy(update={"name": "Plain"}),
        seq_rule(step={"within": "30m", "wait": "1m"}, multiple_active=multiple),
    ]
    now = t("10:00")
    events: list[EventInput] = []
    for i, (name, gap, cart, coupon, back) in enumerate(stream):
        now += gap
        if back and len(events) >= back:
            old = events[-back]
            events.append(EventInput(old.message, old.type, old.message_id, now, old.values,
                                     old.user))  # fmt: skip
            continue
        props: dict[str, Any] = {
            k: v for k, v in (("cart_id", cart), ("coupon", coupon)) if v is not None
        }
        events.append(ev(name, now, mid=f"p{i}", type="track" if name else "page", **props))
    a = Person(RuleSet(rules, DATA_MAPS))
    b = Person(RuleSet(rules, DATA_MAPS), roundtrip=True)
    for e in events:
        v = a.state["v"]
        snapshot = orjson.dumps(a.state)
        out = a.send(e)
        assert b.send(e) == out
        if a.state["v"] == v:
            assert out == [] and orjson.dumps(a.state) == snapshot
    end = now + 3 * HOUR
    assert a.clock(end) == b.clock(end)
    assert a.effects == b.effects
    assert a.state == b.state
    assert a.rs.next_deadline(a.state) is None
