"""A person's record in the users table, and what each input does to it.

Pure: the person agent (live) and the replay driver call these same functions, so live
and replay decide identically. A record is a JSON-ready dict:

``uid`` userId · ``anon`` anonymousIds seen (most recent last, capped) · ``pk`` primary key
value (the Emarsys contact key, remembered once learned) · ``first``/``last`` seen (event
time, ``last`` to the minute so a burst of events does not rewrite the record) · ``vals``
latest value of every data map, in event time · ``vt`` when each was last seen · ``sent`` Emarsys fields we asked Emarsys to hold (pending
or acknowledged) · ``acked`` fields Emarsys acknowledged · ``rules`` rule-instance state ·
``due`` next rule deadline · ``fwd`` set when this person merged into another.

Functions return an ``Outcome``: whether the record changed (the caller writes the table
only then), the effects to send to Emarsys, and the rule transitions for the funnel.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.account import Account
from app.identity import is_placeholder, usable_id
from app.rules.machine import Effect, EventInput, merge_states, new_state

MAX_ANONYMOUS_IDS = 50
LAST_SEEN_RESOLUTION = 60.0
MAX_FORWARDS = 8


def new_record() -> dict[str, Any]:
    return {
        "uid": None,
        "anon": [],
        "pk": None,
        "first": None,
        "last": None,
        "vals": {},
        "sent": {},
        "acked": {},
        "rules": new_state(),
        "due": None,
    }


class Outcome:
    """What applying an input to a person did. A plain class, not a dataclass: compiled,
    its ``__init__`` is native, where a dataclass's is generated Python (a frame per
    event)."""

    __slots__ = ("changed", "effects", "failures", "funnel", "pk_before", "record", "transitions")

    def __init__(
        self,
        record: dict[str, Any] | None,
        changed: bool = False,
        effects: list[dict[str, Any]] | None = None,
        transitions: list[Effect] | None = None,
        failures: list[str] | None = None,
        pk_before: str | None = None,
        funnel: dict[tuple[str, str, int], int] | None = None,
    ) -> None:
        self.record = record
        self.changed = changed
        self.effects: list[dict[str, Any]] = [] if effects is None else effects
        self.transitions: list[Effect] = [] if transitions is None else transitions
        self.failures: list[str] = [] if failures is None else failures
        self.pk_before = pk_before
        #: signed funnel counts ``(rule, kind, hour) -> n`` when they are not simply the
        #: transitions (a re-applied lateness window takes back what the old order counted)
        self.funnel = funnel

    def __repr__(self) -> str:
        return f"Outcome(changed={self.changed}, effects={len(self.effects)})"

    def funnel_counts(self) -> dict[tuple[str, str, int], int]:
        """``(rule, kind, hour start) -> n`` to add to the funnel (n may be negative)."""
        if self.funnel is not None:
            return self.funnel
        counts: dict[tuple[str, str, int], int] = {}
        for t in self.transitions:
            key = (t.rule, t.kind, int(t.at // 3600 * 3600))
            counts[key] = counts.get(key, 0) + 1
        return counts


def iso_z(ts: float) -> str:
    """Emarsys's event_time format: UTC, whole seconds, ``Z``."""
    dt = datetime.fromtimestamp(ts, UTC)
    if dt.year >= 1000:  # isoformat's first 19 characters are strftime's, at half the cost
        return dt.isoformat()[:19] + "Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")  # (strftime does not pad years below 1000)


def primary_key_value(account: Account, message: dict[str, Any]) -> str | None:
    value = account.primary_key_of(message)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    # A placeholder ("null", "undefined", "0") is no contact key: every person sending it
    # would become one Emarsys contact.
    return None if is_placeholder(text) else text


def contact_update(account: Account, person: str, record: dict[str, Any], at: float):
    """The upsert carrying the fields whose value differs from what Emarsys holds.

    The fields come from ``DataMaps.fields`` (the first data map with a value wins a
    field; the key field always carries the primary key), compared with ``sent`` in the
    same pass, in that order."""
    pk = record["pk"]
    if pk is None:
        return None
    key_field = str(account.key_field)
    vals = record["vals"]
    sent = record["sent"]
    data_maps = account.data_maps
    changed: dict[str, Any] = {}
    key_placed = False  # a data map with a value writes the key field: pk goes there
    taken: set[str] | None = None if data_maps.unique_fields else set()
    for f, name in data_maps.field_sources:
        value = vals.get(name)
        if value is None:
            continue
        if taken is not None:
            if f in taken:
                continue
            taken.add(f)
        if f == key_field:
            key_placed = True
            value = pk
        if sent.get(f) != value:
            changed[f] = value
    if not key_placed and sent.get(key_field) != pk:
        changed[key_field] = pk
    if not changed:
        return None
    changed[key_field] = pk
    sent.update(changed)
    return {
        "op": "upsert",
        "account": account.name,
        "person": person,
        "contact": pk,
        "fields": changed,
        "at": iso_z(at),
    }


def trigger_effects(
    account: Account, person: str, record: dict[str, Any], transitions: list[Effect]
) -> list[dict[str, Any]]:
    """The Emarsys effects of the exits among ``transitions``: the trigger (when the exit
    has one), then its contact-list actions (``list_effects``)."""
    out = []
    for t in transitions:
        if t.kind != "triggered":
            continue
        lists = list_effects(account, person, record, t)
        if t.trigger is None:
            out += lists
            continue
        effect = {
            "op": "trigger",
            "account": account.name,
            "person": person,
            "contact": record["pk"],
            "user_id": record["uid"],
            "rule": t.rule,
            "event": t.trigger,
            "trigger_id": t.trigger_id,
            "instance": t.instance_id,
            "event_time": iso_z(t.at),
            "data": {"global": dict(t.variables or {})},
        }
        if record["pk"] is None:
            effect["op"] = "undeliverable"
            effect["reason"] = (
                "no primary key value is known for this person "
                f"({account.config.primary_key} never seen)"
            )
        out.append(effect)
        out += lists
    return out


LIST_OPS = (("add_to_list", "list_add"), ("remove_from_list", "list_remove"))


def list_effects(
    account: Account, person: str, record: dict[str, Any], t: Effect
) -> list[dict[str, Any]]:
    """An exit's contact-list actions: ``list_add``/``list_remove`` with ``list`` the id or
    name as configured. Each carries the exit's ``trigger_id``, the stable id of the exit
    firing that the delivery log and the lateness window key on (an exit already sent is
    not sent again). Without a contact key each is ``undeliverable``, with ``action`` the
    op it would have been."""
    out = []
    for attr, op in LIST_OPS:
        ref = getattr(t, attr)
        if ref is None:
            continue
        effect: dict[str, Any] = {
            "op": op,
            "account": account.name,
            "person": person,
            "contact": record["pk"],
            "user_id": record["uid"],
            "rule": t.rule,
            "list": ref,
            "trigger_id": t.trigger_id,
            "instance": t.instance_id,
            "event_time": iso_z(t.at),
        }
        if record["pk"] is None:
            effect["op"] = "undeliverable"
            effect["action"] = op
            effect["reason"] = (
                "no primary key value is known for this person "
                f"({account.config.primary_key} never seen)"
            )
        out.append(effect)
    return out


def _touch_identity(record: dict[str, Any], message: dict[str, Any]) -> bool:
    changed = False
    uid = usable_id(message.get("userId"))
    if uid is not None and record["uid"] != uid:
        record["uid"] = uid
        changed = True
    anon = usable_id(message.get("anonymousId"))
    if anon is not None and (not record["anon"] or record["anon"][-1] != anon):
        ids = [a for a in record["anon"] if a != anon]
        ids.append(anon)
        record["anon"] = ids[-MAX_ANONYMOUS_IDS:]
        changed = True
    return changed


def _take_values(record: dict[str, Any], values: dict[str, Any], t: float) -> bool:
    """This event's data map values, unless a later event (in event time) set them: a late
    event does not overwrite a newer value. Each value keeps when it was last seen, which
    decides between two persons' values at a merge (``value_time``)."""
    vals = record["vals"]
    seen = record.setdefault("vt", {})
    minute = _minute(record, t)
    changed = False
    for name, value in values.items():
        before = seen.get(name, 0) if name in vals else None
        if before is not None and minute < before:
            continue
        if vals.get(name) != value:
            vals[name] = value
            changed = True
        elif before is not None and minute <= before:
            continue
        if minute > 0:
            seen[name] = minute
            changed = True
        elif name in seen:
            del seen[name]
            changed = True
    return changed


def value_time(record: dict[str, Any], name: str) -> float:
    """When the person last saw ``name``'s value, to the minute. ``vt`` holds whole minutes
    after the person's first event (a few bytes a value; absent: that first minute). A
    record from before value times has none: its values count as seen at its last event."""
    seen = record.get("vt")
    if seen is None:
        return float(record.get("last") or 0)
    return float(record.get("first") or 0) + 60.0 * seen.get(name, 0)


def _minute(record: dict[str, Any], t: float) -> int:
    return max(0, int((t - (record.get("first") or t)) // 60))


def _move_first(record: dict[str, Any], t: float) -> None:
    """An earlier first event: value times are minutes after it, so they move up."""
    old = record.get("first")
    record["first"] = t
    seen = record.get("vt")
    if old is None or seen is None:
        return
    shift = int((old - t) // 60)
    if shift > 0:
        record["vt"] = {name: seen.get(name, 0) + shift for name in record.get("vals", {})}


def _touch_times(record: dict[str, Any], t: float) -> bool:
    changed = False
    if record["first"] is None or t < record["first"]:
        _move_first(record, t)
        changed = True
    if record["last"] is None or t - record["last"] >= LAST_SEEN_RESOLUTION:
        record["last"] = t
        changed = True
    return changed


def refresh_due(account: Account, record: dict[str, Any]) -> bool:
    due = account.rules.next_deadline(record["rules"])
    if due != record.get("due"):
        record["due"] = due
        return True
    return False


def apply_event(
    account: Account,
    person: str,
    record: dict[str, Any] | None,
    message: dict[str, Any],
    *,
    message_id: str,
    event_time: float,
    now: float | None = None,
    emit_contact: bool = True,
) -> Outcome:
    """An identify/track/page/screen/group/alias event for ``person``.

    ``now`` (live: wall-clock time) caps the event time: a client clock running ahead must
    not push rule deadlines into the future. Replay passes ``None``. ``emit_contact``
    False leaves the contact update out (``app.timeline`` re-applying a window computes
    one update at its end, so a re-applied old value is never sent on the way).
    """
    if now is not None and event_time > now:
        event_time = now
    rec = new_record() if record is None else record
    pk_before = rec["pk"]
    changed = record is None
    if _touch_identity(rec, message):
        changed = True
    if _touch_times(rec, event_time):
        changed = True
    pk = primary_key_value(account, message)
    if pk is not None and pk != pk_before:
        rec["pk"] = pk
        rec["sent"] = {}  # a new contact key: the new contact holds nothing yet
        rec["acked"] = {}
        changed = True
    values, failures = account.data_maps.evaluate(message)
    if _take_values(rec, values, event_time):
        changed = True
    vals = rec["vals"]
    effects: list[dict[str, Any]] = []
    if emit_contact:
        update = contact_update(account, person, rec, event_time)
        if update is not None:
            effects.append(update)
            changed = True
    transitions: list[Effect] = []
    kind = message.get("type")
    if kind != "delete":
        rules_state = rec["rules"]
        version = rules_state.get("v")
        ev = EventInput(message, str(kind), message_id, event_time, values, vals)
        moved = account.rules.on_event(rules_state, ev)
        if rules_state.get("v") != version:
            changed = True
        if moved:
            transitions = moved
            effects += trigger_effects(account, person, rec, moved)
    if refresh_due(account, rec):
        changed = True
    return Outcome(rec, changed, effects, transitions, failures, pk_before)


def apply_clock(account: Account, person: str, record: dict[str, Any], now: float) -> Outcome:
    """Rule deadlines up to ``now`` (wall clock live, event-time clock in replay)."""
    out = Outcome(record, pk_before=record["pk"])
    version = record["rules"].get("v")
    transitions = account.rules.on_clock(record["rules"], now, record["vals"])
    out.changed = record["rules"].get("v") != version
    if transitions:
        out.transitions = transitions
        out.effects += trigger_effects(account, person, record, transitions)
    out.changed |= refresh_due(account, record)
    return out


def forgotten_links(person: str, record: dict[str, Any] | None) -> list[str]:
    """The anonymousIds whose links go when ``person`` is deleted: those a user's record
    lists (the last ``MAX_ANONYMOUS_IDS``; none for a visitor, a forward or no record).
    Each still linked to the user is unlinked, and its visitor's forward to the user
    removed; an id that moved to another user since keeps its new link. Aliased old
    userIds stay linked (the record does not list them)."""
    if record is None or "fwd" in record or not person.startswith("u:"):
        return []
    return [a for a in record.get("anon") or () if isinstance(a, str)]


def export_for_merge(record: dict[str, Any], into: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Hand this person's state to ``into``: returns (state to send, forwarding tombstone).

    The lateness window (``w``) stays behind: it orders this person's own inputs, and the
    receiver orders the merge among its own (``app.timeline``)."""
    return {k: v for k, v in record.items() if k != "w"}, {"fwd": into}


def apply_merge(
    account: Account,
    person: str,
    record: dict[str, Any] | None,
    other: dict[str, Any],
    at: float,
    *,
    source: str | None = None,
    emit_contact: bool = True,
) -> Outcome:
    """Another person's state (an anonymous visitor, an aliased old userId) joins ``person``.

    ``at`` is the event time of the event that linked them. The other person's own
    deadlines up to ``at`` fire first, as ``source`` (replay fires them there before the
    linking event; live they may still be waiting out the other's lateness window): a
    wait that ended while the visitor was anonymous is that visitor's, undeliverable
    without a contact key, exactly as replay says. ``other`` is consumed (mutated).
    """
    rec = new_record() if record is None else record
    out = Outcome(rec, changed=True, pk_before=rec["pk"])
    if source is not None and other.get("rules"):
        before = account.rules.on_clock(other["rules"], at, other.get("vals") or {})
        if before:
            out.transitions += before
            out.effects += trigger_effects(account, source, _identity_view(other), before)
    for anon in other.get("anon", []):
        if anon not in rec["anon"]:
            rec["anon"].append(anon)
    rec["anon"] = rec["anon"][-MAX_ANONYMOUS_IDS:]
    if other.get("first") is not None and (rec["first"] is None or other["first"] < rec["first"]):
        _move_first(rec, other["first"])
    if other.get("last") is not None and (other["last"] > (rec.get("last") or 0)):
        rec["last"] = other["last"]
    # Per data map, the value seen last in event time wins, whoever saw it: the visitor's
    # fresh plan beats the returning user's of last month, the user's own later value
    # beats the visitor's (and a merge gives what one person seeing both would have).
    for name, value in (other.get("vals") or {}).items():
        theirs = value_time(other, name)
        if name not in rec["vals"] or theirs > value_time(rec, name):
            rec["vals"][name] = value
            minute = _minute(rec, theirs)
            seen = rec.setdefault("vt", {})
            if minute > 0:
                seen[name] = minute
            else:
                seen.pop(name, None)
    if rec["pk"] is None and other.get("pk"):
        rec["pk"] = other["pk"]
        rec["sent"], rec["acked"] = dict(other.get("sent") or {}), dict(other.get("acked") or {})
    merge_states(rec["rules"], other.get("rules") or new_state())
    if emit_contact:
        update = contact_update(account, person, rec, at)
        if update is not None:
            out.effects.append(update)
    # A merge can leave two instances where one is allowed: the clock run resolves it.
    transitions = account.rules.on_clock(rec["rules"], at, rec["vals"])
    if transitions:
        out.transitions += transitions
        out.effects += trigger_effects(account, person, rec, transitions)
    refresh_due(account, rec)
    return out


def _identity_view(record: dict[str, Any]) -> dict[str, Any]:
    """The fields ``trigger_effects`` reads, from a record that may be partial."""
    return {"pk": record.get("pk"), "uid": record.get("uid")}


def apply_delivery(record: dict[str, Any], delivery: dict[str, Any]) -> bool:
    """Emarsys's answer to an upsert: acknowledged fields, or fields to send again."""
    if delivery.get("op") != "upsert" or record.get("pk") != delivery.get("contact"):
        return False
    fields = delivery.get("fields") or {}
    if delivery.get("ok"):
        acked = record["acked"]
        changed = False
        for f, v in fields.items():  # a record rewritten only when it learns something
            if f not in acked or type(acked[f]) is not type(v) or acked[f] != v:
                acked[f] = v
                changed = True
        return changed
    changed = False
    for f, v in fields.items():
        if record["sent"].get(f) == v:
            del record["sent"][f]
            changed = True
    return changed


def delete_effect(account: Account, person: str, record: dict[str, Any] | None):
    if record is None or not record.get("pk"):
        return None
    return {"op": "delete", "account": account.name, "person": person, "contact": record["pk"]}
