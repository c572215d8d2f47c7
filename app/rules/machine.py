"""The rule state machine, pure core: a person's rule instances, advanced by events and a clock.

No I/O and no wall clock: the same inputs in the same order give the same effects, so the
live app (Faust table, wall-clock ticks) and ``replay`` (event-time clock) agree. Times are
float unix seconds (UTC). Semantics are those of ``rules.md``; the choices it leaves open:

State (JSON-serialisable, stored per person)::

    {"v": 7,                               # bumped on every change
     "r": {RULE_NAME: {"i": [INSTANCE, ...],   # active instances, oldest first
                       "d": [ID, ...]}}}       # ids of the last 8 ended instances
    INSTANCE = {"id": "20 hex (16: older)", "f": "rule fingerprint", "p": position,
                "s": start time, "a": time the position was reached,
                "m": [last 4 message ids that moved it, the start's first],
                "o": the start's message id, once "m" no longer has it (absent before),
                "t": transaction value (absent without one),
                "x": {variable: value} (absent when empty)}

- **Change detection**: ``on_event``/``on_clock`` change ``state`` iff they change
  ``state["v"]`` (every effect changes it; so does silently re-fingerprinting instances
  after a compatible rule edit). Compare ``v`` before and after to decide whether to write.
- **Clock**: a deadline ``D`` fires when the clock reaches it (``now >= D``). ``on_event``
  first runs the clock to the event's time, applies the event, then runs the clock again
  (so an exit without wait fires at once). Hence deadlines at exactly an event's time fire
  before the event: an exclude at exactly the exit time is too late (as in worked case 3),
  and ``within`` is half-open: a step counts only if ``t - reached < within``; ``wait`` is
  inclusive: it counts if ``t - reached >= wait``. Deadlines fired inside ``on_event`` use
  the event's ``user`` for variables. Live callers should clamp future event times.
- **One deadline per instance**, chosen by time then kind: a timer exit (exit without
  ``match``, ``reached + wait``) before a ``within`` expiry before the ``lifetime`` expiry
  (``start + lifetime``). So at the same instant the trigger wins. The ``within`` expiry
  applies when every step/matched exit of the next sequence has ``within`` (the latest one
  counts) and the next sequence has no timer exit. Effects of one clock run come in
  deadline order, then state order.
- **Events**: one event makes at most one transition per instance. Excludes of the
  instance's position are checked first (an event matching an exclude and a step
  excludes); then steps/matched exits of the next sequence in config order, the first
  match wins. An event older than the instance's last transition, or whose message id
  already moved it, is ignored by that instance (no exclude either). A condition without
  ``match`` matches every event of its ``on`` type (except the exit, which is a timer).
- **Transactions**: the value is the transaction data map's value for the event (text;
  empty text counts as none). A start event without one opens no instance. An event with
  one applies only to instances of that value; without one, to all instances of the rule.
- **Starts**: one event opens at most one instance per rule. With ``multiple_active``
  false, an instance active (for that transaction) when the event arrives blocks the
  start, even if this same event ends that instance. The instance id is a hash of the
  start message id and the transaction value (20 hex characters), so a redelivered start
  (while the instance runs, or one of the last 8 ended) opens nothing, and one event
  matching several start conditions of a rule opens one instance. Ids are unique per rule
  (each rule has its own lists, and ``trigger_id`` hashes the rule too), so one hash
  serves every rule an event starts. Instances started before this form have 16 hex
  characters, a hash of the rule as well (``_legacy_instance_id``): while a rule's lists
  hold one, a start checks that form too, so a start redelivered across the upgrade still
  opens nothing; running instances keep their ids, and every instance its trigger_ids
  (below).
- **Variables**: the instance keeps the latest value of each exit variable from the events
  that opened or moved it (start, steps, the matching exit event); at the trigger, a
  variable takes that value, else the ``user`` value; a variable with neither is left out.
- **trigger_id**: sha1 hex of ``salt, rule, trigger key, exit sequence``, where the
  trigger key is the id form before the per-event one (``_legacy_instance_id`` of the
  rule, the start's message id and the transaction value): an instance of the older form
  is its own key. So the same start gives the same trigger_id in every release, and a
  ``replay --apply`` over history an older release sent is still deduped by Emarsys.
- **Exit actions**: ``triggered`` carries the exit's ``trigger`` and its contact-list
  actions (``add_to_list``, ``remove_from_list``); any of them may be None. The fingerprint
  leaves the list actions out while unset, so a rule without them keeps the fingerprint
  (and its instances their state) it had before they existed.
- **Rule changes**, applied when a RuleSet meets the state (first thing in ``on_event``
  and ``on_clock``; ``next_deadline`` reports such states as due at once): each instance
  stores a fingerprint of its rule's conditions and transaction data map. Rule removed ->
  its instances end ``expired`` "rule removed" (and its ended-id list is dropped); rule
  disabled -> no new instances, running ones end ``expired`` "rule disabled"; fingerprint
  differs -> instances continue from their position under the new conditions if that
  sequence still exists and is before the exit, else end ``expired`` "rule changed". A
  new lifetime / ``multiple_active`` applies to running instances as is. ``at`` of these
  effects is the clock time of the call.
- **Identity**: ``merge_states(into, other)`` moves ``other``'s instances into ``into``
  keeping their ids (so trigger_ids stay stable); idempotent (an id already present or
  ended in ``into`` is skipped). It needs no rule config: when a rule has
  ``multiple_active`` false and the merge left two active instances of one rule and
  transaction, the next ``on_clock``/``on_event`` keeps the older (earlier start, then
  smaller id) and ends the other ``expired`` "merged". Call ``on_clock`` after merging.
- **Effects** carry ``position`` for every kind (where the instance was, or moved to; the
  exit sequence for ``triggered``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from app.config.model import LIST_ACTIONS, ConditionConfig, DataMapConfig, RuleConfig
from app.rules.fql import Filter, Predicate, compile_filter, event_paths, literal_event_names

__all__ = ["Effect", "EventInput", "RuleSet", "merge_states", "new_state"]

EVENT_TYPES = ("identify", "track", "page", "screen", "group", "alias")
_OTHER_TYPE = "*"  # index key for message types no condition names (on: any only)
MAX_SEEN = 4  # message ids remembered per instance
MAX_DONE = 8  # ended instance ids remembered per rule

State = dict[str, Any]
Instance = dict[str, Any]


class EventInput(NamedTuple):
    """One Segment message as the rules see it (immutable; a tuple, because building a
    frozen dataclass costs four times as much and one is built per event)."""

    message: dict[str, Any]
    type: str
    message_id: str
    event_time: float
    values: dict[str, Any]
    user: dict[str, Any]


class Effect(NamedTuple):
    """A transition of one rule instance (immutable; a tuple for the same reason)."""

    kind: str  # "started" | "advanced" | "excluded" | "expired" | "triggered"
    rule: str
    instance_id: str
    at: float
    position: int | None = None
    reason: str | None = None
    trigger: int | str | None = None
    trigger_id: str | None = None
    variables: Mapping[str, Any] | None = None
    transaction: str | None = None
    add_to_list: int | str | None = None
    remove_from_list: int | str | None = None


def new_state() -> State:
    """An empty person's rule state."""
    return {"v": 0, "r": {}}


@dataclass(slots=True)
class _Cond:
    rule: _Rule
    index: int
    seq: int
    kind: str
    on: str
    wait: float | None
    within: float | None
    filter: Filter | None
    #: the filter's predicate ``(event, values, user) -> bool`` (None: matches any event)
    test: Predicate | None
    names: frozenset[str] | None
    trigger: int | str | None
    variables: tuple[str, ...]
    add_to_list: int | str | None = None
    remove_from_list: int | str | None = None


@dataclass(slots=True)
class _Rule:
    name: str
    index: int
    enabled: bool
    lifetime: float
    multiple_active: bool
    transaction: str | None
    fingerprint: str
    exit_seq: int
    seqs: frozenset[int]
    starts: list[_Cond]
    excludes: dict[int, list[_Cond]]  # position -> excludes guarding it
    advance: dict[int, list[_Cond]]  # position p -> steps / matched exits at p + 1
    timer: dict[int, _Cond]  # position p -> the earliest exit without match at p + 1
    window: dict[int, float]  # position p -> within-expiry offset
    var_names: tuple[str, ...]
    #: position p -> the earlier of the timer's wait and the within offset: an instance
    #: at p reached at ``a`` has nothing due before ``a + soonest[p]`` (nor before its
    #: lifetime ends), which ``_fire`` checks before building any deadline
    soonest: dict[int, float]
    #: the earliest deadline of an instance just started, after its start time
    start_due: float


def _fingerprint(rule: RuleConfig) -> str:
    data = [[_dump(c) for c in rule.conditions], rule.transaction]
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _dump(cond: ConditionConfig) -> dict[str, Any]:
    data = cond.model_dump(mode="json")
    for key in LIST_ACTIONS:
        if data.get(key) is None:
            data.pop(key, None)
    return data


def _txn_key(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


#: builds an Effect from all its fields (defaults are not applied: give every one)
#: without NamedTuple's Python-level ``__new__`` frame
_tuple_new = tuple.__new__


#: length of an instance id (``_instance_id``); ``LEGACY_ID_LENGTH``: the form before it
ID_LENGTH = 20
LEGACY_ID_LENGTH = 16


def _instance_id(message_id: str, txn: str | None) -> str:
    """The id of the instances one start event opens: the same for every rule it starts."""
    text = f"{message_id}\x1f{txn or ''}"
    return hashlib.sha1(text.encode()).hexdigest()[:ID_LENGTH]


def _legacy_instance_id(rule: str, message_id: str, txn: str | None) -> str:
    """The id form of instances started before ``_instance_id`` (it hashed the rule too)."""
    text = f"{rule}\x1f{message_id}\x1f{txn or ''}"
    return hashlib.sha1(text.encode()).hexdigest()[:LEGACY_ID_LENGTH]


def _trigger_key(rule: str, inst: Instance) -> str:
    """What an instance's trigger_ids hash: the older id form, whichever form it has."""
    iid: str = inst["id"]
    if len(iid) == LEGACY_ID_LENGTH:
        return iid
    start = inst.get("o") or inst["m"][0]
    return _legacy_instance_id(rule, start, inst.get("t"))


def _opened(entry: dict[str, Any], iid: str, rule: str, message_id: str, txn: str | None) -> bool:
    """Whether the start ``iid`` already opened an instance of this rule entry (active or
    one of the last ended): a redelivered start. Checks the legacy form while the entry
    holds one."""
    done: list[str] = entry["d"]
    insts: list[Instance] = entry["i"]
    if iid in done:
        return True
    legacy = False
    for inst in insts:
        other = inst["id"]
        if other == iid:
            return True
        if len(other) == LEGACY_ID_LENGTH:
            legacy = True
    if not legacy:
        for other in done:
            if len(other) == LEGACY_ID_LENGTH:
                legacy = True
                break
    if not legacy:
        return False
    old = _legacy_instance_id(rule, message_id, txn)
    return old in done or any(i["id"] == old for i in insts)


def _event_name(ev: EventInput) -> str | None:
    name = ev.message.get("event")
    return name if isinstance(name, str) else None


class RuleSet:
    """The compiled rules of one account; stateless apart from an evaluation counter."""

    def __init__(
        self,
        rules: Sequence[RuleConfig],
        data_maps: Sequence[DataMapConfig],
        *,
        salt: str = "",
    ) -> None:
        self.salt = salt
        #: how many filters were evaluated (tests and metrics read it)
        self.evaluations = 0
        names = [dm.name for dm in data_maps]
        paths = {dm.name: dm.path for dm in data_maps}
        self._rules: dict[str, _Rule] = {}
        for idx, cfg in enumerate(rules):
            self._rules[cfg.name] = self._compile(idx, cfg, names, paths)
        # type -> event name -> start conditions that can match an event of that name, in
        # rule order; type -> conditions that can match any name (used for other names)
        self._named: dict[str, dict[str, list[_Cond]]] = {}
        self._anyname: dict[str, list[_Cond]] = {}
        starts = [c for r in self._rules.values() if r.enabled for c in r.starts]
        for t in (*EVENT_TYPES, _OTHER_TYPE):
            conds = [c for c in starts if c.on in ("any", t)]
            required = {n for c in conds for n in (c.names or ())}
            self._anyname[t] = [c for c in conds if c.names is None]
            self._named[t] = {
                n: [c for c in conds if c.names is None or n in c.names] for n in sorted(required)
            }

    # ------------------------------------------------------------------ compiling

    @staticmethod
    def _compile(idx: int, cfg: RuleConfig, names: list[str], paths: dict[str, str]) -> _Rule:
        seqs = frozenset(c.sequence for c in cfg.conditions)
        exit_seqs = [c.sequence for c in cfg.conditions if c.type == "exit"]
        exit_seq = max(exit_seqs) if exit_seqs else max(seqs)
        rule = _Rule(
            name=cfg.name,
            index=idx,
            enabled=cfg.enabled,
            lifetime=cfg.lifetime,
            multiple_active=cfg.multiple_active,
            transaction=cfg.transaction,
            fingerprint=_fingerprint(cfg),
            exit_seq=exit_seq,
            seqs=seqs,
            starts=[],
            excludes={},
            advance={},
            timer={},
            window={},
            var_names=(),
            soonest={},
            start_due=math.inf,
        )
        var_names: dict[str, None] = {}
        for ci, c in enumerate(cfg.conditions):
            cond = RuleSet._compile_cond(rule, ci, c, names, paths)
            if c.type == "start":
                rule.starts.append(cond)
            elif c.type == "exclude":
                rule.excludes.setdefault(c.sequence, []).append(cond)
            elif c.type == "exit" and c.match is None:
                current = rule.timer.get(c.sequence - 1)
                if current is None or (c.wait or 0.0) < (current.wait or 0.0):
                    rule.timer[c.sequence - 1] = cond
            else:  # step, or exit with match
                rule.advance.setdefault(c.sequence - 1, []).append(cond)
            if c.type == "exit":
                var_names.update(dict.fromkeys(c.variables))
        rule.var_names = tuple(var_names)
        for p, conds in rule.advance.items():
            if p in rule.timer or any(c.within is None for c in conds):
                continue
            rule.window[p] = max(c.within or 0.0 for c in conds)
        for p in {*rule.timer, *rule.window}:
            offsets = [rule.window[p]] if p in rule.window else []
            if p in rule.timer:
                offsets.append(rule.timer[p].wait or 0.0)
            rule.soonest[p] = min(offsets)
        # t + min(a, b) is min(t + a, t + b) in floats too (rounding is monotonic)
        rule.start_due = min(rule.lifetime, rule.soonest.get(0, math.inf))
        return rule

    @staticmethod
    def _compile_cond(
        rule: _Rule, ci: int, c: ConditionConfig, names: list[str], paths: dict[str, str]
    ) -> _Cond:
        flt = compile_filter(c.match, names) if c.match is not None else None
        return _Cond(
            rule=rule,
            index=ci,
            seq=c.sequence,
            kind=c.type,
            on=c.on,
            wait=c.wait,
            within=c.within,
            filter=flt,
            test=flt.predicate() if flt is not None else None,
            names=literal_event_names(flt, paths),
            trigger=c.trigger,
            variables=tuple(c.variables),
            add_to_list=c.add_to_list,
            remove_from_list=c.remove_from_list,
        )

    # ------------------------------------------------------------------ public API

    def on_event(self, state: State, ev: EventInput) -> list[Effect]:
        """Apply one event (after firing deadlines up to its time); mutates ``state``."""
        effects: list[Effect] = []
        t = ev.event_time
        changed = False
        if state.get("r"):
            changed = self._reconcile(state, t, effects)
            self._fire(state, t, ev.user, effects)
        name = ev.message.get("event")
        if not isinstance(name, str):
            name = None
        rules_state: dict[str, Any] = state.get("r", {})
        blocked: set[tuple[str, str | None]] = set()
        values = ev.values
        # Only an instance this event starts or moves can be due at ``t`` after the run
        # above (it fired every other one up to ``t``): the second run is needed only then.
        fire_again = False
        if rules_state:
            before = len(effects)
            for rname, entry in rules_state.items():
                insts: list[Instance] = entry["i"]
                if not insts:
                    continue
                rule = self._rules[rname]
                if not rule.multiple_active:
                    blocked.update((rname, i.get("t")) for i in insts)
                ev_txn = _txn_key(values.get(rule.transaction)) if rule.transaction else None
                ended = [i for i in insts if self._apply(rule, i, ev, name, ev_txn, effects)]
                if ended:
                    self._remove(entry, ended)
            fire_again = any(e.kind == "advanced" for e in effects[before:])
        message_id = ev.message_id
        #: the event's time as the object it is: compiled, a ``float`` variable is a C
        #: double, boxed anew for each dict or tuple it goes into (three per start)
        at: object = ev.event_time
        #: the event's instance id per transaction value (one hash for every rule)
        ids: dict[str | None, str] = {}
        seen: list[str] | None = None
        message, user = ev.message, ev.user
        evaluations = 0
        # The index gives only conditions whose ``on`` and event names admit this event,
        # so ``_match``'s first two tests are known to pass here.
        for cond in self._candidates(ev.type, name):
            rule = cond.rule
            rname = rule.name
            txn: str | None = None
            if rule.transaction:
                txn = _txn_key(values.get(rule.transaction))
                if txn is None:
                    continue
            if blocked and (rname, txn) in blocked:
                continue
            iid = ids.get(txn)
            if iid is None:
                iid = ids[txn] = _instance_id(message_id, txn)
            entry = rules_state.get(rname)
            if entry is not None and _opened(entry, iid, rname, message_id, txn):
                continue
            test = cond.test
            if test is not None:
                evaluations += 1
                if not test(message, values, user):
                    continue
            if seen is None:
                seen = [message_id]  # shared by the instances this event starts: an
                # instance's "m" is replaced on every move, never changed in place
            inst: Instance = {
                "id": iid,
                "f": rule.fingerprint,
                "p": 0,
                "s": at,
                "a": at,
                "m": seen,
            }
            if txn is not None:
                inst["t"] = txn
            captured: dict[str, Any] | None = None
            for vname in rule.var_names:  # _capture, into a new instance
                value = values.get(vname)
                if value is not None:
                    if captured is None:
                        captured = inst["x"] = {}
                    captured[vname] = value
            if entry is None:
                state["r"] = rules_state  # absent from a state written as {}
                rules_state[rname] = {"i": [inst], "d": []}
            else:
                entry["i"].append(inst)
            effects.append(
                _tuple_new(
                    Effect, ("started", rname, iid, at, 0, None, None, None, None, txn, None, None)
                )
            )
            if t + rule.start_due <= t:  # due at once: no lifetime, wait or within
                fire_again = True
        if evaluations:
            self.evaluations += evaluations
        if fire_again:
            self._fire(state, t, user, effects)
        if changed or effects:
            state["v"] = state.get("v", 0) + 1
        return effects

    def on_clock(self, state: State, now: float, user: Mapping[str, Any]) -> list[Effect]:
        """Fire every deadline up to ``now`` (and apply rule changes); mutates ``state``."""
        effects: list[Effect] = []
        changed = self._reconcile(state, now, effects)
        self._fire(state, now, user, effects)
        if changed or effects:
            state["v"] = state.get("v", 0) + 1
        return effects

    def next_deadline(self, state: State) -> float | None:
        """The earliest time ``on_clock`` has something to do, or ``None``."""
        best: float | None = None
        for rname, entry in (state.get("r") or {}).items():
            rule = self._rules.get(rname)
            seen: set[str | None] = set()
            for inst in entry["i"]:
                if (
                    rule is None
                    or not rule.enabled
                    or not self._compatible(rule, inst)
                    or (not rule.multiple_active and inst.get("t") in seen)
                ):
                    due = inst["a"]  # _reconcile has work: due at once
                else:
                    due = self._deadline(rule, inst)[0]
                seen.add(inst.get("t"))
                if best is None or due < best:
                    best = due
        return best

    def event_paths(self) -> frozenset[tuple[str | int, ...]]:
        """Every JSON path into the event that a condition's filter reads."""
        paths: set[tuple[str | int, ...]] = set()
        for rule in self._rules.values():
            conds = [*rule.starts, *(c for cs in rule.excludes.values() for c in cs)]
            conds += [c for cs in rule.advance.values() for c in cs]
            for cond in conds:
                if cond.filter is not None:
                    paths |= event_paths(cond.filter)
        return frozenset(paths)

    def funnel_positions(self, state: State) -> dict[str, list[int]]:
        """Rule name -> positions of the person's active instances."""
        return {
            rname: [i["p"] for i in entry["i"]]
            for rname, entry in (state.get("r") or {}).items()
            if entry["i"]
        }

    def describe(self, state: State) -> list[dict[str, Any]]:
        """The person's active instances, for people: rule, position, times, next deadline."""
        out: list[dict[str, Any]] = []
        kinds = {0: "exit", 1: "within expires", 2: "lifetime expires"}
        for rname, entry in (state.get("r") or {}).items():
            rule = self._rules.get(rname)
            for inst in entry["i"]:
                item: dict[str, Any] = {
                    "rule": rname,
                    "instance": inst["id"],
                    "position": inst["p"],
                    "started": inst["s"],
                    "reached": inst["a"],
                    "transaction": inst.get("t"),
                    "variables": dict(inst.get("x") or {}),
                }
                if rule is not None and rule.enabled and self._compatible(rule, inst):
                    at, rank, _ = self._deadline(rule, inst)
                    item["next"] = {"at": at, "what": kinds[rank]}
                out.append(item)
        return out

    # ------------------------------------------------------------------ internals

    def _candidates(self, type_: str, name: str | None) -> list[_Cond]:
        if type_ not in self._anyname:
            type_ = _OTHER_TYPE
        if name is not None:
            named = self._named[type_].get(name)
            if named is not None:
                return named
        return self._anyname[type_]

    def _match(self, cond: _Cond, ev: EventInput, name: str | None) -> bool:
        if cond.on != "any" and cond.on != ev.type:
            return False
        test = cond.test
        if test is None:
            return True
        if cond.names is not None and name not in cond.names:
            return False
        self.evaluations += 1
        return test(ev.message, ev.values, ev.user)

    def _apply(
        self,
        rule: _Rule,
        inst: Instance,
        ev: EventInput,
        name: str | None,
        ev_txn: str | None,
        effects: list[Effect],
    ) -> bool:
        """Apply ``ev`` to one instance; True when it ended."""
        if ev_txn is not None and inst.get("t") != ev_txn:
            return False
        t = ev.event_time
        reached = inst["a"]
        if t < reached or ev.message_id in inst["m"]:
            return False
        p = inst["p"]
        for cond in rule.excludes.get(p, ()):
            if self._match(cond, ev, name):
                effects.append(self._effect("excluded", rule, inst, t))
                return True
        elapsed = t - reached
        for cond in rule.advance.get(p, ()):
            if cond.wait is not None and elapsed < cond.wait:
                continue
            if cond.within is not None and elapsed >= cond.within:
                continue
            if not self._match(cond, ev, name):
                continue
            self._capture(rule, inst, ev)
            if cond.kind == "exit":
                effects.append(self._trigger(rule, inst, cond, t, ev.user))
                return True
            inst["p"] = cond.seq
            inst["a"] = t
            moved: list[str] = inst["m"]
            if len(moved) >= MAX_SEEN and "o" not in inst and len(inst["id"]) == ID_LENGTH:
                inst["o"] = moved[0]  # the start's, kept for the trigger key (the older
                # form is its own key, and may have dropped its start's id already)
            inst["m"] = [*moved, ev.message_id][-MAX_SEEN:]
            effects.append(self._effect("advanced", rule, inst, t))
            return False
        return False

    @staticmethod
    def _capture(rule: _Rule, inst: Instance, ev: EventInput) -> None:
        for name in rule.var_names:
            value = ev.values.get(name)
            if value is not None:
                inst.setdefault("x", {})[name] = value

    def _deadline(self, rule: _Rule, inst: Instance) -> tuple[float, int, _Cond | None]:
        """(time, rank, timer exit or None); rank 0 trigger, 1 within, 2 lifetime."""
        best: tuple[float, int, _Cond | None] = (inst["s"] + rule.lifetime, 2, None)
        p = inst["p"]
        timer = rule.timer.get(p)
        if timer is not None:
            at = inst["a"] + (timer.wait or 0.0)
            if (at, 0) < best[:2]:
                best = (at, 0, timer)
        window = rule.window.get(p)
        if window is not None:
            at = inst["a"] + window
            if (at, 1) < best[:2]:
                best = (at, 1, None)
        return best

    def _fire(
        self, state: State, now: float, user: Mapping[str, Any], effects: list[Effect]
    ) -> None:
        rules_state = state.get("r")
        if not rules_state:
            return
        due: list[tuple[float, int, int, str, Instance, _Cond | None]] = []
        k = 0
        for rname, entry in rules_state.items():
            insts = entry["i"]
            if not insts:
                continue
            rule = self._rules[rname]
            lifetime = rule.lifetime
            soonest = rule.soonest
            for inst in insts:
                # Most instances have nothing due: rule that out before building deadlines.
                if inst["s"] + lifetime > now:
                    offset = soonest.get(inst["p"])
                    if offset is None or inst["a"] + offset > now:
                        k += 1
                        continue
                at, rank, timer = self._deadline(rule, inst)
                if at <= now:
                    due.append((at, rank, k, rname, inst, timer))
                k += 1
        if not due:
            return
        due.sort(key=lambda d: (d[0], d[1], d[2]))
        ended: dict[str, list[Instance]] = {}
        for at, rank, _, rname, inst, timer in due:
            rule = self._rules[rname]
            if timer is not None:
                effects.append(self._trigger(rule, inst, timer, at, user))
            else:
                reason = "within" if rank == 1 else "lifetime"
                effects.append(self._effect("expired", rule, inst, at, reason))
            ended.setdefault(rname, []).append(inst)
        for rname, insts in ended.items():
            self._remove(rules_state[rname], insts)

    def _compatible(self, rule: _Rule, inst: Instance) -> bool:
        if inst["f"] == rule.fingerprint:
            return True
        return inst["p"] in rule.seqs and inst["p"] < rule.exit_seq

    def _reconcile(self, state: State, now: float, effects: list[Effect]) -> bool:
        """Apply rule removals/disables/edits and merge duplicates; True if ``state`` changed."""
        rules_state = state.get("r")
        if not rules_state:
            return False
        if not self._needs_reconcile(rules_state):
            return False
        changed = False
        for rname in list(rules_state):
            entry = rules_state[rname]
            rule = self._rules.get(rname)
            if rule is None or not rule.enabled:
                reason = "rule removed" if rule is None else "rule disabled"
                for inst in entry["i"]:
                    effects.append(self._end_effect(rname, inst, now, reason))
                if rule is None:
                    del rules_state[rname]
                    changed = True
                elif entry["i"]:
                    self._remove(entry, list(entry["i"]))
                continue
            ended: list[Instance] = []
            keep: dict[str | None, Instance] = {}
            for inst in entry["i"]:
                if inst["f"] != rule.fingerprint:
                    if not self._compatible(rule, inst):
                        effects.append(self._end_effect(rname, inst, now, "rule changed"))
                        ended.append(inst)
                        continue
                    inst["f"] = rule.fingerprint
                    changed = True
                if rule.multiple_active:
                    continue
                other = keep.get(inst.get("t"))
                if other is None:
                    keep[inst.get("t")] = inst
                    continue
                older, younger = sorted((other, inst), key=lambda i: (i["s"], i["id"]))
                keep[inst.get("t")] = older
                effects.append(self._end_effect(rname, younger, now, "merged"))
                ended.append(younger)
            if ended:
                self._remove(entry, ended)
        return changed

    def _needs_reconcile(self, rules_state: dict[str, Any]) -> bool:
        """Whether ``_reconcile`` has anything to do: a rule gone or disabled, an instance
        of an edited rule, or two instances where one is allowed. Per event, nearly
        always not; this answers it without building anything."""
        rules = self._rules
        for rname, entry in rules_state.items():
            rule = rules.get(rname)
            if rule is None or not rule.enabled:
                return True
            insts = entry["i"]
            if not insts:
                continue
            fingerprint = rule.fingerprint
            if len(insts) == 1:
                if insts[0]["f"] != fingerprint:
                    return True
                continue
            for inst in insts:
                if inst["f"] != fingerprint:
                    return True
            if not rule.multiple_active and len({i.get("t") for i in insts}) < len(insts):
                return True
        return False

    @staticmethod
    def _remove(entry: dict[str, Any], insts: list[Instance]) -> None:
        gone = {id(i) for i in insts}
        entry["i"] = [i for i in entry["i"] if id(i) not in gone]
        entry["d"] = [*entry["d"], *(i["id"] for i in insts)][-MAX_DONE:]

    @staticmethod
    def _end_effect(rname: str, inst: Instance, at: float, reason: str) -> Effect:
        return Effect(
            "expired",
            rname,
            inst["id"],
            at,
            position=inst["p"],
            reason=reason,
            transaction=inst.get("t"),
        )

    @staticmethod
    def _effect(
        kind: str, rule: _Rule, inst: Instance, at: float, reason: str | None = None
    ) -> Effect:
        return Effect(
            kind,
            rule.name,
            inst["id"],
            at,
            position=inst["p"],
            reason=reason,
            transaction=inst.get("t"),
        )

    def _trigger(
        self, rule: _Rule, inst: Instance, cond: _Cond, at: float, user: Mapping[str, Any]
    ) -> Effect:
        captured: Mapping[str, Any] = inst.get("x") or {}
        variables: dict[str, Any] = {}
        for name in cond.variables:
            if name in captured:
                variables[name] = captured[name]
            elif user.get(name) is not None:
                variables[name] = user[name]
        return Effect(
            "triggered",
            rule.name,
            inst["id"],
            at,
            position=cond.seq,
            trigger=cond.trigger,
            trigger_id=self.trigger_id(rule.name, _trigger_key(rule.name, inst), cond.seq),
            variables=variables,
            transaction=inst.get("t"),
            add_to_list=cond.add_to_list,
            remove_from_list=cond.remove_from_list,
        )

    def trigger_id(self, rule: str, key: str, exit_seq: int) -> str:
        """The deterministic id Emarsys deduplicates a trigger on (40 hex chars), of an
        instance's trigger key (``_trigger_key``)."""
        text = f"{self.salt}\x1f{rule}\x1f{key}\x1f{exit_seq}"
        return hashlib.sha1(text.encode()).hexdigest()


def merge_states(into: State, other: State) -> State:
    """Move ``other``'s instances into ``into`` (identity stitching); returns ``into``.

    Instances keep their ids; an instance already active or recently ended in ``into`` is
    skipped, so merging twice is harmless. ``into["v"]`` changes iff something moved.
    Duplicates for rules with ``multiple_active`` false are resolved by the next
    ``RuleSet.on_clock``/``on_event`` (the older instance stays; the other ends "merged").
    """
    changed = False
    rules_state: dict[str, Any] = into.setdefault("r", {})
    for rname, oentry in (other.get("r") or {}).items():
        entry = rules_state.get(rname) or {"i": [], "d": []}
        known = {i["id"] for i in entry["i"]} | set(entry["d"])
        added = False
        for inst in oentry["i"]:
            if inst["id"] not in known:
                entry["i"].append(json.loads(json.dumps(inst)))
                known.add(inst["id"])
                added = True
        new_done = [d for d in oentry["d"] if d not in known]
        if new_done:
            entry["d"] = [*entry["d"], *new_done][-MAX_DONE:]
            added = True
        if added:
            rules_state[rname] = entry
            changed = True
    if changed:
        into["v"] = max(into.get("v", 0), other.get("v", 0)) + 1
    return into
