"""A person's lateness window: recent inputs kept so that late ones apply in event-time order.

Pure, like ``app.person``: the live person agent calls it with the wall clock; replay
never needs it (it reads history in event-time order, so nothing arrives late).

Why: live, a person's inputs do not arrive in event-time order. An offline phone delivers
its queued events hours late and seconds apart; the anonymous visitor's state reaches the
user only after a round trip through the visitor's own partition, usually after the
user's next event (``rules.md``, "Identity"). Applied in arrival order, the first lets a
lifetime end on the wall clock between two events that were a minute apart, the second
lets a step pass before the instance it should move has arrived.

The rule (README, "Late events"), with ``L`` the account's ``allowed_lateness``:

- While a person's inputs keep arriving, the record keeps a window (key ``w``): the
  record as it was before the window's first input (``b``), the inputs since (``i``:
  events as ``app.projection`` copies, and merges carrying the other person's state),
  the trigger ids sent meanwhile (``f``), the funnel transitions counted meanwhile (``c``)
  and ``u``, the wall-clock time ``L`` after the latest arrival.
- An input whose event time is at or after the window's latest applies at once, as
  without a window. An earlier one (a late event; a merge whose linking event the user's
  later events overtook) is put in its place and the window applied again from ``b`` in
  event-time order (ties: events before merges, then arrival order) by the same
  ``apply_event``/``apply_merge`` replay runs. A trigger already sent is never sent again
  (Emarsys would dedupe it anyway; a trigger cannot be taken back), one contact update
  carries what the re-applied window changed, and the funnel gets the difference of what
  the two orders counted.
- Rule deadlines wait for the window: one fires when the wall clock has passed it **and**
  ``u`` (the person has been quiet for ``L``), or as soon as an event with a later event
  time is applied (``on_event`` runs the rule clock to the event first, as replay does).
  When ``u`` passes, the tick closes the window: what is due fires, and ``w`` is dropped,
  so an idle person's record is its plain self.

So a person whose consecutive inputs arrive less than ``L`` apart gets exactly replay's
transitions, triggers, trigger_ids, data and contact fields, however old their events
are. A deadline is delayed only while the person is active: at most until their next
event with a later time, or ``L`` after their latest; a person quiet for ``L`` before a
deadline gets it on time. Inputs arriving after their window closed apply in arrival
order (an event older than an instance's last transition does not move it). A window
holds at most ``MAX_INPUTS`` inputs; a longer burst starts a new window from the
current record (the inputs before it can no longer be reordered).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from app.account import Account
from app.person import (
    Outcome,
    apply_clock,
    apply_event,
    apply_merge,
    contact_update,
    iso_z,
)

MAX_INPUTS = 16
MAX_FIRED = 64
WINDOW = "w"
#: hand-offs this person waits for: ``{id: {"until": wall time, "asked": requests sent,
#: "answers": answers received, "srcs": persons promised to hand over, "got": arrived}}``
HANDOFFS = "hand"
#: how long a window stays open for a hand-off that does not settle (a safety net: every
#: hand-off is answered, at least once)
HANDOFF_MAX = 600.0
#: record fields that messages set, not inputs: a re-applied window keeps them as they are
NOT_FROM_INPUTS = (HANDOFFS, "lost")

Item = dict[str, Any]


def event_input(
    account: Account, message: dict[str, Any], message_id: str, event_time: float, now: float
) -> Item:
    """A window input for an event; its time capped at ``now`` (a client clock ahead of
    ours must not push deadlines into the future)."""
    return {"t": min(event_time, now), "id": message_id, "m": account.projection(message)}


def merge_input(state: dict[str, Any], source: str, at: float) -> Item:
    """A window input for another person's state joining this one at ``at`` (the linking
    event's time)."""
    return {"t": at, "merge": source, "st": state}


def wake_time(record: dict[str, Any] | None) -> float | None:
    """When the tick has something to do for this record: its window closing, else its
    next rule deadline."""
    if not record or "fwd" in record:
        return None
    window = record.get(WINDOW)
    if window is not None:
        waits = [h["until"] for h in (record.get(HANDOFFS) or {}).values()]
        return max(float(window["u"]), min(waits)) if waits else float(window["u"])
    due = record.get("due")
    return float(due) if due is not None else None


def holding(record: dict[str, Any], now: float) -> bool:
    """Whether the record's deadlines are waiting: its lateness window, or a hand-off."""
    window = record.get(WINDOW)
    return window is not None and (now < window["u"] or _awaiting(record, now))


def _awaiting(record: dict[str, Any] | None, now: float) -> bool:
    if not record:
        return False
    return any(h["until"] > now for h in (record.get(HANDOFFS) or {}).values())


# --------------------------------------------------------------------------- hand-offs
#
# A user's partition that asks another partition for a link (``app.stages``) may receive
# the other person's state any time later. Until it has, its window stays open, whatever
# ``allowed_lateness`` says, so the state is put in its place among the events that
# overtook it: the link partition answers with the persons it asked to hand over
# (``settle``), each of them answers with its state or with nothing (``arrived``).


def expect_handoff(record: dict[str, Any], ident: str, now: float) -> None:
    """A link request for ``ident`` was sent. Requests are counted (a record read again
    after a crash asks again): the hand-off waits for as many answers."""
    hands = record.setdefault(HANDOFFS, {})
    hand = hands.get(ident)
    if hand is None:
        hands[ident] = {"until": now + HANDOFF_MAX, "asked": 1, "answers": 0, "srcs": [],
                        "got": []}  # fmt: skip
    else:
        hand["asked"] = hand.get("asked", 1) + 1
        hand["until"] = now + HANDOFF_MAX


def settle(record: dict[str, Any], ident: str, sources: list[str]) -> bool:
    """An answer of the link partition; True when the hand-off is complete. Promises add
    up: a repeated request answered "linked already, nothing to merge" does not take back
    the first answer's state on its way."""
    hand = (record.get(HANDOFFS) or {}).get(ident)
    if hand is None:
        return False
    hand["answers"] = hand.get("answers", 0) + 1
    hand["srcs"] = sorted(set(hand.get("srcs") or []) | set(sources))
    return _drop_if_done(record, ident)


def arrived(record: dict[str, Any], source: str) -> bool:
    """A person's state (or its nothing) reached this one; True when that completed a
    hand-off."""
    ident = source[2:] if source[:2] in ("a:", "u:") else source
    hand = (record.get(HANDOFFS) or {}).get(ident)
    if hand is None:
        return False
    if source not in hand["got"]:
        hand["got"].append(source)
    return _drop_if_done(record, ident)


def _drop_if_done(record: dict[str, Any], ident: str) -> bool:
    hands = record[HANDOFFS]
    hand = hands[ident]
    if hand.get("answers", 0) < hand.get("asked", 1) or not set(hand["srcs"]) <= set(hand["got"]):
        return False
    del hands[ident]
    if not hands:
        del record[HANDOFFS]
    return True


def apply_input(
    account: Account,
    person: str,
    record: dict[str, Any] | None,
    item: Item,
    now: float,
    *,
    expect: str | None = None,
) -> Outcome:
    """One input (``event_input``/``merge_input``) for ``person`` at wall-clock ``now``;
    ``expect``: this input asked another partition for a link of that id (the window
    stays open until the hand-off settles)."""
    lateness = account.allowed_lateness
    if lateness <= 0 and expect is None and not _awaiting(record, now):
        if record is not None:
            record.pop(WINDOW, None)  # the window was switched off meanwhile
        return _apply(account, person, record, item)
    closing: Outcome | None = None
    if (
        record is not None
        and WINDOW in record
        and now >= record[WINDOW]["u"]
        and not _awaiting(record, now)
    ):
        closing = close(account, person, record, now)  # the tick has not come yet
    window = record.pop(WINDOW, None) if record is not None else None
    if window is None or len(window["i"]) >= MAX_INPUTS:
        window = {"b": _clone(record), "i": [], "f": [], "c": {}, "n": 0}
    item = {**item, "s": window["n"]}
    window["n"] += 1
    late = _overtaken(window["i"], item)
    window["i"].append(item)
    if not late:
        out = _apply(account, person, record, item)
        if out.transitions:
            _count(window["c"], out.transitions, +1)
    else:
        out = _reapply(account, person, record, window)
    fired = window["f"]
    for effect in out.effects:
        tid = effect.get("trigger_id")
        if tid is not None:
            fired.append(tid)
    if len(fired) > MAX_FIRED:
        window["f"] = fired[-MAX_FIRED:]
    window["u"] = now + lateness
    assert out.record is not None
    out.record[WINDOW] = window
    if expect is not None:
        expect_handoff(out.record, expect, now)
    out.changed = True
    if closing is not None:
        out.effects[:0] = closing.effects
        out.transitions[:0] = closing.transitions
        out.pk_before = closing.pk_before
    return out


def apply_tick(account: Account, person: str, record: dict[str, Any], now: float) -> Outcome:
    """The wall clock at ``now``: nothing while the window holds, else what is due fires
    (and the window closes)."""
    if WINDOW in record:
        if _awaiting(record, now) or (now < record[WINDOW]["u"] and account.allowed_lateness > 0):
            return Outcome(record, pk_before=record.get("pk"))
        return close(account, person, record, now)
    return apply_clock(account, person, record, now)


def close(account: Account, person: str, record: dict[str, Any], now: float) -> Outcome:
    """End the window: fire what is due at ``now`` and drop ``w`` (and hand-offs that
    never settled: after ``HANDOFF_MAX`` they are given up)."""
    record.pop(WINDOW, None)
    record.pop(HANDOFFS, None)
    out = apply_clock(account, person, record, now)
    out.changed = True
    return out


def describe_hold(record: dict[str, Any], now: float) -> dict[str, Any] | None:
    """For the person page: deadlines waiting out the window, and until when."""
    window = record.get(WINDOW)
    if window is None or now >= window["u"]:
        return None
    return {"until": iso_z(window["u"]), "inputs": len(window["i"])}


# --------------------------------------------------------------------------- internals


def _order(item: Item) -> tuple[float, int, int]:
    return (float(item["t"]), 1 if "merge" in item else 0, int(item["s"]))


def _overtaken(items: list[Item], item: Item) -> bool:
    """Whether some input in ``items`` comes after ``item`` in ``_order`` (``item`` is
    late): the same as ``_order(item) < max(map(_order, items))``, without building an
    order tuple per input on every event."""
    t = float(item["t"])
    for other in items:
        ot = float(other["t"])
        if ot < t:
            continue
        if ot > t:
            return True
        if _order(other) > _order(item):  # the same time: merges after events, then arrival
            return True
    return False


def _clone(record: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if record is None else orjson.loads(orjson.dumps(record))


def _apply(
    account: Account,
    person: str,
    record: dict[str, Any] | None,
    item: Item,
    *,
    emit_contact: bool = True,
) -> Outcome:
    if "merge" in item:
        return apply_merge(
            account,
            person,
            record,
            _clone(item["st"]) or {},
            float(item["t"]),
            source=item["merge"],
            emit_contact=emit_contact,
        )
    return apply_event(
        account,
        person,
        record,
        item["m"],
        message_id=item["id"],
        event_time=float(item["t"]),
        now=None,
        emit_contact=emit_contact,
    )


def _reapply(
    account: Account, person: str, current: dict[str, Any] | None, window: dict[str, Any]
) -> Outcome:
    """The window applied again from its base, in event-time order."""
    pk_before = current.get("pk") if current is not None else None
    record = _clone(window["b"])
    effects: list[dict[str, Any]] = []
    transitions = []
    failures: list[str] = []
    for item in sorted(window["i"], key=_order):
        step = _apply(account, person, record, item, emit_contact=False)
        record = step.record
        effects += step.effects
        transitions += step.transitions
        failures += step.failures
    assert record is not None
    # What Emarsys holds is a fact of the world, not of the order: keep it, so that the
    # one update below carries only what differs from what was sent.
    if current is not None and record.get("pk") == current.get("pk"):
        record["sent"] = current.get("sent") or {}
        record["acked"] = current.get("acked") or {}
    else:
        record["sent"], record["acked"] = {}, {}
    # So are what messages, not inputs, put in the record: hand-offs awaited, anonymousIds
    # lost to another user.
    for name in NOT_FROM_INPUTS:
        if current is not None and name in current:
            record[name] = current[name]
        else:
            record.pop(name, None)
    already = set(window["f"])
    effects = [e for e in effects if e.get("trigger_id") not in already]
    last_t = max(float(i["t"]) for i in window["i"])
    update = contact_update(account, person, record, last_t)
    if update is not None:
        effects.insert(0, update)
    counted = Counter(window["c"])
    window["c"] = {}
    _count(window["c"], transitions, +1)
    delta = Counter(window["c"])
    delta.subtract(counted)
    out = Outcome(record, changed=True, effects=effects, failures=failures, pk_before=pk_before)
    out.funnel = {_parse_key(k): n for k, n in delta.items() if n}
    return out


def _key(kind: str, rule: str, at: float) -> str:
    return f"{kind}\x1f{rule}\x1f{int(at // 3600 * 3600)}"


def _parse_key(key: str) -> tuple[str, str, int]:
    kind, rule, hour = key.split("\x1f")
    return rule, kind, int(hour)


def _count(counts: dict[str, int], transitions: list[Any], sign: int) -> None:
    for t in transitions:
        k = _key(t.kind, t.rule, t.at)
        counts[k] = counts.get(k, 0) + sign
