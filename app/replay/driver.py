"""The replay driver: recorded Segment events through the live decision code, in memory.

Pure (no Faust, Kafka or HTTP): ``Replay`` keeps in dicts what the live app keeps in its
tables (identity links, the messageId dedupe, person records, a heap of rule deadlines)
and decides with the very functions the live agents call: ``parse_message``,
``routing_id``/``resolve`` (agents/link.py) and ``apply_event``/``apply_clock``/
``apply_merge``/``apply_delivery``/``delete_effect`` (agents/person.py). Only the clock
differs (rules.md, "Time"): live it is the wall clock; here it is the latest event time
seen so far, so the same input always gives the same output.

Per input, in the live agents' order:

1. The account: the ``account`` argument (the live ``emd-account`` header), else the
   driver's ``account`` (``--account``), else the config's ``fallback_account()``; an
   unknown or absent account rejects the input. Then JSON, ``parse_message`` and
   ``routing_id``: each failure is a ``rejected`` line with the live dead-letter reason.
2. Dedupe by (account, messageId) within the config's ``dedupe_window``, measured on the
   replay clock: a repeat is skipped and counted, without a line.
3. ``resolve`` against the links (an alias that links nothing is rejected, as live).
4. The clock rises to ``max(clock, event time)`` and every person's deadline up to it
   fires (``apply_clock(now=clock)``), in deadline order: what the live ticks do.
5. The link is stored; the event is applied to its person (``apply_event(now=None)``:
   replay never clamps event times), following ``{"fwd": X}`` records like the live
   ``forward`` (at most ``MAX_FORWARDS`` hops). Then each ``merge_from`` person with a
   record is merged into the resolved person (``apply_merge`` at the linking event's
   time, the merged person's own deadlines up to it first) and replaced by
   ``{"fwd": person}``. Event first, merged state second; live, the state usually
   reaches the user later still, and ``app.timeline`` puts it back in this place.
   ``type: delete`` forgets the person and the links of the anonymousIds its record
   lists (as live: ``app.person.forgotten_links``).
6. Deadlines that the event itself left at or before the clock (a late event) fire.

Lines (JSON-ready dicts, keys in this order):

- ``{"kind": "contact_update", "at", "account", "contact", "fields"}``: the upsert live
  would send; treated as acknowledged at once (``apply_delivery`` ok), since a dry run
  assumes Emarsys accepts.
- ``{"kind": "trigger", "at", "account", "rule", "external_event", "contact", "user_id",
  "event_time", "data", "trigger_id"}``; when the person has no primary key value yet,
  ``"contact": null`` and ``"undeliverable": REASON`` (live: a dead letter).
- ``{"kind": "list_add" | "list_remove", "at", "account", "rule", "list", "contact",
  "user_id", "event_time", "trigger_id"}``: an exit's contact-list action (``list`` the
  id or name as configured; ``trigger_id`` the exit's, shared with its trigger line);
  without a primary key value, ``"contact": null`` and ``"undeliverable": REASON``.
- ``{"kind": "contact_delete", "at", "account", "contact"}``: a ``delete`` event for a
  person whose contact key was known (live: the Emarsys contact is deleted).
- ``{"kind": "rejected", "account", "message_id", "reason", "line"}``: ``line`` is the
  1-based position of the input (blank inputs count, so it is the file's line number).
- ``finish()``: what is due at the final clock, then ``{"kind": "summary", ...}``.
  Deadlines after the last event time never fire: the clock stays there.

``at`` is when the line would be sent (UTC, ``YYYY-MM-DDTHH:MM:SSZ``): the event time of
an update or delete, the exit time of a trigger. Lines come out in that order, except
after an event older than the clock (it is applied at its own time, as live).

Events without any timestamp (``timestamp``, ``originalTimestamp``, ``sentAt``,
``receivedAt``) take the replay clock as their time, as live takes the receive time; the
very first applied event cannot (there is no clock yet) and is rejected. Only applied
events move the clock (rejected and duplicate inputs do not).
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any

import orjson

from app.account import Account, Accounts
from app.config.model import Config
from app.identity import resolve, routing_id
from app.keys import anon_person
from app.person import (
    MAX_FORWARDS,
    Outcome,
    apply_clock,
    apply_delivery,
    apply_event,
    apply_merge,
    delete_effect,
    export_for_merge,
    forgotten_links,
    iso_z,
)
from app.segment.model import TIMESTAMP_FIELDS, InvalidMessage, parse_message
from app.segment.plain import parse_usual

__all__ = ["TRANSITION_KINDS", "Replay", "effect_of"]

TRANSITION_KINDS = ("started", "excluded", "expired", "triggered", "advanced")
LIST_KINDS = ("list_add", "list_remove")

NO_IDENTIFIER = "no usable identifier: userId/anonymousId (previousId for alias) is missing or junk"
ALIAS_LINKS_NOTHING = "alias needs a usable previousId and a different userId"
FORWARDING_LOOP = "identity forwarding loop"
NO_CLOCK = (
    "no timestamp (timestamp, originalTimestamp, sentAt or receivedAt) and no earlier "
    "event time to take: replay needs event times"
)

PersonKey = tuple[str, str]  # (account, person)


class _Forwarding(Exception):
    """A chain of ``{"fwd": ...}`` records longer than ``MAX_FORWARDS`` (a loop)."""


class Replay:
    """Fresh, isolated state; ``feed`` each input in order, then ``finish`` once."""

    def __init__(self, config: Config | Accounts, account: str | None = None) -> None:
        self.accounts = config if isinstance(config, Accounts) else Accounts(config)
        self.config = self.accounts.config
        self.account = account
        self.clock: float | None = None
        self.links: dict[PersonKey, str] = {}  # (account, routing id) -> userId
        self.seen: dict[PersonKey, float] = {}  # (account, messageId) -> clock when seen
        self._seen_order: deque[tuple[float, PersonKey]] = deque()
        self.persons: dict[PersonKey, dict[str, Any]] = {}
        self.deadlines: list[tuple[float, str, str]] = []  # heap of (due, account, person)
        self.position = 0
        self.counts: dict[str, int] = {
            "events": 0,
            "rejected": 0,
            "deduped": 0,
            "contact_updates": 0,
            "triggers": 0,
            "list_adds": 0,
            "list_removes": 0,
            "undeliverable": 0,
            "contact_deletes": 0,
        }
        self._last_undeliverable: str | None = None  # the exit the last one belonged to
        self.transitions: dict[str, int] = dict.fromkeys(TRANSITION_KINDS, 0)

    # ------------------------------------------------------------------ input

    def feed(self, raw: bytes | str | dict[str, Any], account: str | None = None) -> list[dict]:
        """One input (a JSONL line, or a decoded message); the lines it produces."""
        self.position += 1
        if not isinstance(raw, dict) and not raw.strip():
            return []  # a blank line: no event (it still counts for line numbers)
        self.counts["events"] += 1
        name = account or self.account or self.config.fallback_account()
        acct = self.accounts.get(name) if name else None
        if acct is None:
            why = (
                f"unknown account {name!r}"
                if name
                else "no account given and the config has several accounts and no default_account"
            )
            return [self._reject(name, None, why)]
        if isinstance(raw, dict):
            obj: Any = raw
        else:
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                return [self._reject(acct.name, None, f"not valid JSON: {exc}")]
        try:
            msg = parse_usual(obj)
            if msg is None:
                msg = parse_message(obj)
        except InvalidMessage as exc:
            mid = obj.get("messageId") if isinstance(obj, dict) else None
            return [
                self._reject(acct.name, mid if isinstance(mid, str | int) else None, exc.reason)
            ]
        if routing_id(msg.data) is None:
            return [self._reject(acct.name, msg.message_id, NO_IDENTIFIER)]
        if any(obj.get(f) is not None for f in TIMESTAMP_FIELDS):
            t = msg.event_time.timestamp()
        elif self.clock is not None:
            t = self.clock
        else:
            return [self._reject(acct.name, msg.message_id, NO_CLOCK)]

        now = t if self.clock is None else max(self.clock, t)
        if self._duplicate((acct.name, msg.message_id), now):
            self.counts["deduped"] += 1
            return []

        def lookup(ident: str) -> str | None:
            return self.links.get((acct.name, ident))

        res = resolve(msg.data, lookup)
        if res is None:
            return [self._reject(acct.name, msg.message_id, ALIAS_LINKS_NOTHING)]

        self.clock = now
        lines = self._fire_due()
        if res.link is not None:
            self.links[(acct.name, res.link[0])] = res.link[1]
        try:
            person = self._follow(acct.name, res.person)
        except _Forwarding:
            lines.append(self._reject(acct.name, msg.message_id, FORWARDING_LOOP))
            person = None
        if person is not None:
            key = (acct.name, person)
            if msg.type == "delete":
                record = self.persons.pop(key, None)
                self._unlink(acct.name, person, record)
                effect = delete_effect(acct, person, record)
                if effect is not None:
                    self.counts["contact_deletes"] += 1
                    lines.append(
                        {
                            "kind": "contact_delete",
                            "at": iso_z(t),
                            "account": acct.name,
                            "contact": effect["contact"],
                        }
                    )
            else:
                out = apply_event(
                    acct,
                    person,
                    self.persons.get(key),
                    msg.data,
                    message_id=msg.message_id,
                    event_time=t,
                    now=None,
                )
                self._record(acct, key, out, lines)
        for source in res.merge_from:
            lines += self._merge(acct, source, res.person, msg.message_id, t)
        lines += self._fire_due()
        return lines

    def advance(self, until: float) -> list[dict]:
        """Move the clock forward to ``until`` (never back) and fire what is due: the
        console's backtest runs the clock to the end of the chosen period."""
        if self.clock is None or until > self.clock:
            self.clock = until
        return self._fire_due()

    def finish(self) -> list[dict]:
        """End of input: what is due at the final clock (it stays there), then the summary."""
        lines = self._fire_due()
        lines.append(self.summary())
        return lines

    def summary(self) -> dict[str, Any]:
        c = self.counts
        return {
            "kind": "summary",
            "events": c["events"],
            "rejected": c["rejected"],
            "deduped": c["deduped"],
            "persons": sum(1 for r in self.persons.values() if "fwd" not in r),
            "contact_updates": c["contact_updates"],
            "triggers": c["triggers"],
            "list_adds": c["list_adds"],
            "list_removes": c["list_removes"],
            "undeliverable": c["undeliverable"],
            "contact_deletes": c["contact_deletes"],
            "transitions": dict(self.transitions),
            "clock": iso_z(self.clock) if self.clock is not None else None,
        }

    # ------------------------------------------------------------------ internals

    def _reject(self, account: str | None, message_id: Any, reason: str) -> dict[str, Any]:
        self.counts["rejected"] += 1
        return {
            "kind": "rejected",
            "account": account,
            "message_id": message_id,
            "reason": reason,
            "line": self.position,
        }

    def _duplicate(self, key: PersonKey, now: float) -> bool:
        """Live dedupe (agents/link.py) with the replay clock as its time."""
        window = self.config.dedupe_window
        order = self._seen_order
        while order and order[0][0] < now - window:
            ts, old = order.popleft()
            if self.seen.get(old) == ts:
                del self.seen[old]
        seen = self.seen.get(key)
        if seen is not None and now - seen < window:
            return True
        self.seen[key] = now
        order.append((now, key))
        return False

    def _unlink(self, account: str, person: str, record: dict[str, Any] | None) -> None:
        """A deleted user's anonymousIds forget it, as live (``PersonStage._unlink``)."""
        for anon in forgotten_links(person, record):
            if self.links.get((account, anon)) == person[2:]:
                del self.links[(account, anon)]
            visitor = (account, anon_person(anon))
            if (self.persons.get(visitor) or {}).get("fwd") == person:
                del self.persons[visitor]

    def _follow(self, account: str, person: str) -> str:
        """The person a message for ``person`` ends up at, through merge forwards."""
        for _ in range(MAX_FORWARDS + 1):
            record = self.persons.get((account, person))
            if record is None or "fwd" not in record:
                return person
            person = record["fwd"]
        raise _Forwarding(person)

    def _merge(
        self, acct: Account, source: str, into: str, message_id: str, at: float
    ) -> list[dict]:
        """The live hand-off: ``source`` exports its state, ``into`` merges it at ``at``,
        the linking event's time (``app.timeline`` orders it there live)."""
        skey = (acct.name, source)
        state = self.persons.get(skey)
        if state is None and source.startswith("u:") and into != source:
            self.persons[skey] = {"fwd": into}  # an aliased userId with no state forwards
            return []
        if state is None or "fwd" in state or into == source:
            return []
        state, self.persons[skey] = export_for_merge(state, into)
        try:
            target = self._follow(acct.name, into)
        except _Forwarding:
            return [self._reject(acct.name, message_id, FORWARDING_LOOP)]
        tkey = (acct.name, target)
        out = apply_merge(acct, target, self.persons.get(tkey), state, at, source=source)
        lines: list[dict] = []
        self._record(acct, tkey, out, lines)
        return lines

    def _fire_due(self) -> list[dict]:
        """A live tick at the replay clock: every deadline up to it, in deadline order."""
        now = self.clock
        heap = self.deadlines
        if now is None or not heap or heap[0][0] > now:
            return []
        due: list[PersonKey] = []
        taken: set[PersonKey] = set()
        while heap and heap[0][0] <= now:
            _, account, person = heapq.heappop(heap)
            if (account, person) not in taken:
                taken.add((account, person))
                due.append((account, person))
        lines: list[dict] = []
        for key in due:
            record = self.persons.get(key)
            if record is None or "fwd" in record or record.get("due") is None:
                continue
            if record["due"] > now:
                heapq.heappush(heap, (record["due"], *key))
                continue
            acct = self.accounts.get(key[0])
            if acct is None:
                continue
            self._record(acct, key, apply_clock(acct, key[1], record, now), lines)
        # One person's run may fire several instances: keep the whole tick in time order.
        lines.sort(key=lambda line: line["at"])
        return lines

    def _record(self, acct: Account, key: PersonKey, out: Outcome, lines: list[dict]) -> None:
        """agents/person.py ``finish``: keep the record, index its deadline, emit effects."""
        record = out.record
        if record is None:
            return
        self.persons[key] = record
        if out.changed and record.get("due") is not None:
            heapq.heappush(self.deadlines, (record["due"], *key))
        for (_rule, kind, _hour), n in out.funnel_counts().items():
            if kind in self.transitions:
                self.transitions[kind] += n
        for effect in out.effects:
            op = effect["op"]
            if op == "upsert":
                self.counts["contact_updates"] += 1
                lines.append(
                    {
                        "kind": "contact_update",
                        "at": effect["at"],
                        "account": acct.name,
                        "contact": effect["contact"],
                        "fields": effect["fields"],
                    }
                )
                apply_delivery(
                    record,
                    {
                        "op": "upsert",
                        "ok": True,
                        "contact": effect["contact"],
                        "fields": effect["fields"],
                    },
                )
            elif op in LIST_KINDS or effect.get("action") in LIST_KINDS:
                lines.append(self._list_line(acct, effect))
            elif op in ("trigger", "undeliverable"):
                line = {
                    "kind": "trigger",
                    "at": effect["event_time"],
                    "account": acct.name,
                    "rule": effect["rule"],
                    "external_event": effect["event"],
                    "contact": effect["contact"],
                    "user_id": effect["user_id"],
                    "event_time": effect["event_time"],
                    "data": effect["data"],
                    "trigger_id": effect["trigger_id"],
                }
                if op == "undeliverable":
                    line["contact"] = None
                    line["undeliverable"] = effect["reason"]
                    self._count_undeliverable(effect)
                else:
                    self.counts["triggers"] += 1
                lines.append(line)

    def _list_line(self, acct: Account, effect: dict[str, Any]) -> dict[str, Any]:
        kind = effect.get("action") or effect["op"]
        line = {
            "kind": kind,
            "at": effect["event_time"],
            "account": acct.name,
            "rule": effect["rule"],
            "list": effect["list"],
            "contact": effect["contact"],
            "user_id": effect["user_id"],
            "event_time": effect["event_time"],
            "trigger_id": effect["trigger_id"],
        }
        if effect["op"] == "undeliverable":
            line["contact"] = None
            line["undeliverable"] = effect["reason"]
            self._count_undeliverable(effect)
        else:
            self.counts["list_adds" if kind == "list_add" else "list_removes"] += 1
        return line

    def _count_undeliverable(self, effect: dict[str, Any]) -> None:
        """``undeliverable`` counts exits (like ``triggered``), not their actions: an exit
        with a trigger and a list action and no contact key is one (an exit's effects come
        together, ``app.person.trigger_effects``)."""
        if effect["trigger_id"] != self._last_undeliverable:
            self._last_undeliverable = effect["trigger_id"]
            self.counts["undeliverable"] += 1


def effect_of(line: dict[str, Any]) -> dict[str, Any] | None:
    """The Emarsys effect (``app.delivery.deliver``'s input) a replay line stands for.

    Contact updates, deliverable triggers and list actions only: rejects, undeliverable
    actions and the summary send nothing, and replay never deletes contacts for real.
    """
    kind = line.get("kind")
    if kind == "contact_update":
        return {
            "op": "upsert",
            "account": line["account"],
            "contact": line["contact"],
            "fields": line["fields"],
        }
    if kind == "trigger" and line.get("contact") is not None and not line.get("undeliverable"):
        return {
            "op": "trigger",
            "account": line["account"],
            "contact": line["contact"],
            "user_id": line.get("user_id"),
            "rule": line["rule"],
            "event": line["external_event"],
            "trigger_id": line["trigger_id"],
            "event_time": line["event_time"],
            "data": line["data"],
        }
    if kind in LIST_KINDS and line.get("contact") is not None and not line.get("undeliverable"):
        return {
            "op": kind,
            "account": line["account"],
            "contact": line["contact"],
            "user_id": line.get("user_id"),
            "rule": line["rule"],
            "list": line["list"],
            "trigger_id": line["trigger_id"],
            "event_time": line["event_time"],
        }
    return None
