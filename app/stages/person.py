"""The person stage: the users table, data maps and rule state, keyed by person.

Reads person-events (``account \\x1f person``): ``ev`` (an event), ``merge`` (hand your
state to ``into``), ``state`` (a merged person's state arriving), ``dlv`` (Emarsys
outcomes from the sink, one record per person and sink batch), ``pk`` (a primary-key
index entry), ``unlink`` (a deleted user's anonymousId: forget its link). Writes a
record only when it changed, sends Emarsys effects keyed by contact, and fires what is due on the wall clock when the agent layer calls
``fire_due`` (no tick records: the batch path writes tables outside stream iteration).

Every input goes through the person's lateness window (``app.timeline``), so a merge
that lands after the user's next step, or an event delivered late, is applied in
event-time order: live gives replay's triggers.

Crash safety comes from the agent layer's order (``app.batching.transaction``): what a
batch sends is acknowledged by the broker before the state it leaves is written, so a
record read again after a crash either finds its state unwritten (and sends again:
effects are idempotent, trigger_ids dedupe) or finds it written, and then everything it
sent had already been acknowledged. Hand-offs (merges, primary-key index entries,
deletes) are records it sends, covered the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from app import keys
from app.account import Account, Accounts
from app.batching.partition import Partitioner
from app.delivery_log import LogAppends
from app.envelope import dead_letter, dumps, loads, now_iso
from app.identity import usable_id
from app.metrics import Metrics
from app.person import (
    MAX_FORWARDS,
    Outcome,
    apply_delivery,
    delete_effect,
    export_for_merge,
    forgotten_links,
)
from app.recent import RecentEvents
from app.stages.bundle import unbundle
from app.stages.link import LINKS, LinkStage
from app.stages.relocation import (
    PARK,
    PARK_MAX,
    Found,
    complete,
    done,
    is_meta,
    moves,
    park,
    unpark,
    waits,
)
from app.stages.state import (
    DEAD,
    EFFECTS,
    PERSON,
    JsonView,
    LocalRecord,
    Output,
    RecordLike,
    Tables,
    log_failure,
)
from app.timeline import (
    apply_input,
    apply_tick,
    arrived,
    event_input,
    merge_input,
    settle,
    wake_time,
)
from app.wake_index import WakeIndex

log = logging.getLogger("emd.person")

PERSONS = "persons"
DELIVERIES = "deliveries"
PK_INDEX = "pkindex"
FUNNEL = "funnel"
MAX_DELIVERIES = 50
MAX_LOST = 50


def funnel_key(account: str, rule: str, hour: int, partition: int) -> bytes:
    """Keyed per partition so each partition's writer owns its own counter (a key written
    from two partitions would be restored into one of them only)."""
    return keys.key(account, f"{rule}\x1e{hour}\x1e{partition}")


class _Batch:
    """One call's decoded views and what it sends."""

    __slots__ = (
        "deliveries",
        "funnel",
        "kinds",
        "out",
        "partition",
        "persons",
        "pk_index",
        "tables",
    )

    def __init__(self, tables: Tables, partition: int) -> None:
        self.tables = tables
        self.partition = partition
        self.persons = JsonView(tables(PERSONS, partition))
        self.deliveries = LogAppends(tables(DELIVERIES, partition), MAX_DELIVERIES)
        self.pk_index = tables(PK_INDEX, partition)
        self.funnel: dict[bytes, dict[str, int]] = {}
        #: records read per kind, counted once per batch
        self.kinds: dict[str, int] = {}
        self.out: list[Output] = []

    def record(self, key: bytes) -> dict[str, Any] | None:
        value = self.persons.get(key)
        return value if isinstance(value, dict) else None


class PersonStage:
    def __init__(
        self,
        accounts: Callable[[], Accounts],
        metrics: Metrics,
        recent: RecentEvents,
        links: LinkStage,
        partitioner: Partitioner,
        moves_from: Partitioner | None,
    ) -> None:
        self.accounts = accounts
        self.metrics = metrics
        self.recent = recent
        self.links = links  # ``link`` records are the identity stage's (its table is here)
        #: the app's partitioner (``app.batching.partition``): where each key belongs
        self.partition_of = partitioner
        self.partitions = partitioner.partitions
        #: where the versions before put a key, for the state this one moves
        #: (``app.stages.relocation``); None: nothing to move (a version that never moved)
        self.moves_from = moves_from
        #: partitions whose table says every other partition has moved what it held for
        #: it: nothing waits there any more (read again after a rebalance)
        self.settled: set[int] = set()
        self.wake = WakeIndex()

    # ------------------------------------------------------------------ entry points

    def handle_fetched(
        self, partition: int, records: Sequence[RecordLike], tables: Tables, now: float
    ) -> list[Output]:
        """Records read from person-events: a bundle as its items (``app.stages.bundle``).
        A record for a key of another partition (sent before the partitioning changed:
        ``app.keys``) is sent on to where its key lives, unread."""
        items, unreadable = unbundle(records, partition)
        here: list[RecordLike] = []
        sent: list[Output] = []
        for r in items:
            if r.key and self.partition_of(r.key) != partition:
                sent.append(Output(PERSON, r.key, r.value))
            else:
                here.append(r)
        return sent + self.handle(partition, here, tables, now, unreadable)

    def handle(
        self,
        partition: int,
        records: Sequence[RecordLike],
        tables: Tables,
        now: float,
        unreadable: Sequence[tuple[str, Any, bytes | None]] = (),
    ) -> list[Output]:
        moving = self._ensure_index(partition, tables)
        batch = _Batch(tables, partition)
        if moving is not None:
            self._relocate(batch, moving, now)
        for reason, payload, raw in unreadable:
            self._dead(batch, "person", reason, payload=payload, raw=raw)
        batch.persons.table.prefetch({r.key for r in records if r.key})
        for record in records:
            try:
                self._one(batch, record, now)
            except Exception as exc:
                log_failure(log, "the person stage failed on a record (dead-lettered)", exc)
                self._dead(
                    batch,
                    "person",
                    f"internal error: {type(exc).__name__}",
                    raw=record.value,
                )
        for kind, n in batch.kinds.items():
            self.metrics.inc("emd_person_events_total", n, kind=kind)
        self._end(batch, tables)
        return batch.out

    def fire_due(self, partition: int, tables: Tables, now: float) -> list[Output]:
        """What the wall clock has made due in ``partition``: deadlines, closing windows."""
        moving = self._ensure_index(partition, tables)
        due = self.wake.pop_due(partition, now)
        if not due and moving is None:
            return []
        batch = _Batch(tables, partition)
        if moving is not None:
            self._relocate(batch, moving, now)
        batch.persons.table.prefetch(due)
        for key in due:
            try:
                self._tick(batch, key, now)
            except Exception as exc:
                log_failure(log, "the person stage failed on the clock (dead-lettered)", exc)
                self._dead(batch, "person", f"internal error on the clock: {type(exc).__name__}")
        self._end(batch, tables)
        return batch.out

    def next_wake(self, partition: int) -> float | None:
        return self.wake.next_at(partition)

    def partitions_changed(self) -> None:
        """After a rebalance: rebuild each partition's wake index before using it."""
        self.wake.reset()
        self.settled.clear()

    # ------------------------------------------------------------------ per record

    def _one(self, batch: _Batch, record: RecordLike, now: float) -> None:
        # made in this partition with ``Output.of``: its body as is
        msg = record.body if type(record) is LocalRecord else None
        if msg is None:
            if record.value is None:
                return
            msg = loads(record.value)
        kind = msg.get("k")
        counted = str(kind)
        batch.kinds[counted] = batch.kinds.get(counted, 0) + 1
        if kind == "tick":  # from a version that sent clock ticks: the clock is ours now
            return
        if kind == "reloc":
            self._relocated(batch, int(msg["from"]), now)
            return
        self._dispatch(batch, msg, kind, now)

    def _dispatch(
        self, batch: _Batch, msg: Any, kind: Any, now: float, released: bool = False
    ) -> None:
        """One message (``released``: it was parked and now applies, whatever waits)."""
        account_name = msg.get("a")
        account = self.accounts().get(account_name) if isinstance(account_name, str) else None
        if account is None:
            self._dead(batch, "person", f"unknown account {account_name!r}", payload=msg)
            return
        if kind == "link":
            batch.out += self.links.handle_link(batch.partition, msg, batch.tables)
            return
        if kind == "lmove":
            self._link_moved(batch, account, msg)
            return
        if kind == "unlink":
            self._unlink(batch, account, msg)
            return
        person = msg.get("p")
        key = keys.key(account.name, person)
        anonymous = isinstance(person, str) and person.startswith("a:")
        if anonymous and not released and kind != "move" and self._parks(batch, key, msg, now):
            return
        if kind == "ev":
            self._event(batch, account, person, key, msg, now)
        elif kind == "merge":
            self._merge_out(batch, account, person, key, msg, now)
        elif kind == "state":
            self._state(batch, account, person, key, msg, now)
        elif kind == "dlv":
            self._delivery(batch, key, msg)
        elif kind == "lost":
            self._lost(batch, key, msg)
        elif kind == "settle":
            self._settle(batch, account, person, key, msg, now)
        elif kind == "move":
            self._moved(batch, account, person, key, msg, now)
        elif kind == "pk":
            if msg.get("person"):
                batch.pk_index.set(key, msg["person"].encode())
            else:
                batch.pk_index.delete(key)

    def _event(self, batch: _Batch, account: Account, person: str, key: bytes, msg, now):
        record = batch.record(key)
        if record is not None and "fwd" in record:
            self._forward(batch, record, msg)
            return
        message = msg["m"]
        t = float(msg["t"])
        self.recent.add(
            key,
            {
                "at": t,
                "type": message.get("type"),
                "event": message.get("event") or message.get("name"),
                "messageId": msg.get("id"),
            },
        )
        if message.get("type") == "delete":
            self._delete(batch, account, person, key, record)
            return
        asked = self._ask_for_link(batch, account, person, record, message, t)
        item = event_input(account, message, msg["id"], t, now)
        out = apply_input(account, person, record, item, now, expect=asked)
        for name in out.failures:
            self.metrics.inc("emd_datamap_failures_total", account=account.name, data_map=name)
        self._finish(batch, account, person, key, out)

    def _ask_for_link(
        self, batch: _Batch, account: Account, person: str, record, message, t
    ) -> str | None:
        """An event of this user (keyed by the person) with an anonymousId the user has not
        seen, or lost to another user since, or an alias: the other id's partition
        decides the link. Returns the id asked about (the hand-off to wait for)."""
        user = usable_id(message.get("userId"))
        if user is None or person != keys.user_person(user):
            return None  # forwarded from an aliased id: its own link was settled there
        if message.get("type") == "alias":
            previous = usable_id(message.get("previousId"))
            if previous is None or previous == user:
                return None
            self._link_request(batch, account, previous, user, t, alias=True)
            return previous
        anon = usable_id(message.get("anonymousId"))
        if anon is None:
            return None
        if record is not None:
            lost = record.get("lost") or []
            if anon in record.get("anon", ()) and anon not in lost:
                return None
            if anon in lost:
                lost.remove(anon)
                if not lost:
                    del record["lost"]
                batch.persons.put(keys.key(account.name, person), record)
        self._link_request(batch, account, anon, user, t)
        return anon

    def _live(self, batch: _Batch, key: bytes, msg: dict[str, Any]) -> dict[str, Any] | None:
        """The record a message is for, or None: absent, or merged into another (the
        message is then passed on)."""
        record = batch.record(key)
        if record is not None and "fwd" in record:
            self._forward(batch, record, msg)
            return None
        return record

    def _settle(self, batch: _Batch, account: Account, person: str, key: bytes, msg, now):
        """The link partition's answer to a link request: who will hand over state."""
        record = self._live(batch, key, msg)
        if record is None:
            return
        if settle(record, msg["ident"], msg.get("srcs") or []):
            self._settled(batch, account, person, key, record, now)
        else:
            batch.persons.put(key, record)

    def _settled(self, batch: _Batch, account: Account, person: str, key: bytes, record, now):
        """A hand-off completed: the window may close now, if its time has come."""
        self._finish(batch, account, person, key, apply_tick(account, person, record, now))
        batch.persons.put(key, record)

    def _link_request(
        self, batch: _Batch, account: Account, ident: str, user: str, t: float, alias=False
    ) -> None:
        body: dict[str, Any] = {"k": "link", "a": account.name, "p": ident, "user": user, "t": t}
        if alias:
            body["alias"] = True
        batch.out.append(Output.of(PERSON, keys.key(account.name, ident), body))

    def _lost(self, batch: _Batch, key: bytes, msg: dict[str, Any]) -> None:
        """Another user took one of this user's anonymousIds (a shared device)."""
        record = self._live(batch, key, msg)
        if record is None:
            return
        lost = record.setdefault("lost", [])
        if msg["anon"] not in lost:
            lost.append(msg["anon"])
            del lost[:-MAX_LOST]
            batch.persons.put(key, record)

    def _merge_out(self, batch: _Batch, account: Account, person: str, key: bytes, msg, now):
        into = msg["into"]
        if into == person:
            return
        record = batch.record(key)
        if record is None and person.startswith("u:"):
            # An aliased userId with no state: later events keyed by it forward.
            batch.persons.put(key, {"fwd": into})
        if record is None or "fwd" in record:
            # Nothing to hand over (or handed over already: a redelivery): say so, the
            # receiver is waiting for this answer (app.timeline, hand-offs).
            batch.out.append(self._state_message(account, person, into, None, msg, now, key))
            return
        state, tombstone = export_for_merge(record, into)
        batch.out.append(self._state_message(account, person, into, state, msg, now, key))
        batch.persons.put(key, tombstone)
        if record.get("pk"):
            self._index_pk(batch, account.name, record["pk"], into)

    def _state_message(self, account: Account, person: str, into: str, state, msg, now, key):
        body = {
            "k": "state",
            "a": account.name,
            "p": into,
            "from": person,
            "state": state,
            "t": float(msg.get("t", now)),
        }
        if state is not None:
            body["recent"] = self.recent.raw(key)
        return Output(PERSON, keys.key(account.name, into), dumps(body))

    def _state(self, batch: _Batch, account: Account, person: str, key: bytes, msg, now):
        record = batch.record(key)
        if record is not None and "fwd" in record:
            self._forward(batch, record, msg)
            return
        source = msg.get("from") or ""
        if msg.get("state") is None:  # the other person had nothing to hand over
            if record is not None and arrived(record, source):
                self._settled(batch, account, person, key, record, now)
            elif record is not None:
                batch.persons.put(key, record)
            return
        self.recent.merge(key, msg.get("recent") or ())
        item = merge_input(msg["state"], source, float(msg.get("t", now)))
        out = apply_input(account, person, record, item, now)
        if out.record is not None:
            arrived(out.record, source)
        self._finish(batch, account, person, key, out)

    def _forward(self, batch: _Batch, record: dict[str, Any], msg: dict[str, Any]) -> None:
        """This person merged into another: pass the message on (bounded, against loops)."""
        hops = int(msg.get("hops", 0))
        if hops >= MAX_FORWARDS:
            self._dead(batch, "person", "identity forwarding loop", payload=msg)
            return
        target = record["fwd"]
        batch.out.append(
            Output(
                PERSON,
                keys.key(msg["a"], target),
                dumps({**msg, "p": target, "hops": hops + 1}),
            )
        )

    def _delete(self, batch: _Batch, account: Account, person: str, key: bytes, record):
        """Segment's user deletion: forget the person and delete the Emarsys contact."""
        effect = delete_effect(account, person, record)
        if effect is not None:
            batch.out.append(
                Output(EFFECTS, keys.key(account.name, effect["contact"]), dumps(effect))
            )
            self._index_pk(batch, account.name, effect["contact"], None)
        batch.persons.delete(key)
        batch.deliveries.delete(key)
        self.recent.forget(key)
        for anon in forgotten_links(person, record):
            body = {"k": "unlink", "a": account.name, "p": anon, "user": person[2:]}
            batch.out.append(Output.of(PERSON, keys.key(account.name, anon), body))

    def _unlink(self, batch: _Batch, account: Account, msg: dict[str, Any]) -> None:
        """A deleted user's anonymousId (this partition holds its link and the visitor's
        forward): both go, unless the id has moved to another user since, so a later
        event of the id alone starts a new visitor instead of bringing the user back."""
        anon, user = msg["p"], msg["user"]
        links = batch.tables(LINKS, batch.partition)
        link_key = keys.key(account.name, anon)
        if links.get(link_key) == user.encode():
            links.delete(link_key)
        visitor = keys.key(account.name, keys.anon_person(anon))
        record = batch.record(visitor)
        if record is not None and record.get("fwd") == keys.user_person(user):
            batch.persons.delete(visitor)
            self.recent.forget(visitor)

    def _delivery(self, batch: _Batch, key: bytes, msg: dict[str, Any]) -> None:
        items = msg.get("items")
        entries = items if isinstance(items, list) else [msg]
        self.metrics.inc("emd_deliveries_reported_total", len(entries))
        for raw_entry in entries:
            entry = {k: v for k, v in raw_entry.items() if k not in ("k", "a", "p")}
            self._log_delivery(batch, key, entry)
            record = batch.record(key)
            if record is not None and "fwd" not in record and apply_delivery(record, entry):
                batch.persons.put(key, record)

    def _tick(self, batch: _Batch, key: bytes, now: float) -> None:
        record = batch.record(key)
        if record is not None and PARK in record:
            if float(record["until"]) <= now:  # its old partition never said it was done
                self._release(batch, key, now)
            return
        wake = wake_time(record)
        if record is None or wake is None:
            return
        if wake > now:
            self.wake.push(batch.partition, key, wake)
            return
        account_name, person = keys.split(key)
        account = self.accounts().get(account_name)
        if account is None:
            return
        out = apply_tick(account, person, record, now)
        self._finish(batch, account, person, key, out)

    # ------------------------------------------------------------------ effects of an outcome

    def _finish(self, batch: _Batch, account: Account, person: str, key: bytes, out: Outcome):
        """Write what changed, send effects, index the next wake and the primary key."""
        record = out.record
        if record is None:
            return
        if out.changed:
            batch.persons.put(key, record)
            self.wake.push(batch.partition, key, wake_time(record))
        counts = out.funnel_counts()
        for (rule, kind, hour), n in counts.items():
            if n > 0:
                self.metrics.inc(
                    "emd_rule_transitions_total", n, account=account.name, rule=rule, kind=kind
                )
            fkey = funnel_key(account.name, rule, hour, batch.partition)
            bucket = batch.funnel.setdefault(fkey, {})
            bucket[kind] = bucket.get(kind, 0) + n
        for effect in out.effects:
            if effect["op"] == "undeliverable":
                self._log_delivery(
                    batch,
                    key,
                    {
                        "op": effect.get("action", "trigger"),  # list_add, list_remove
                        "ok": False,
                        "rule": effect["rule"],
                        "trigger_id": effect["trigger_id"],
                        "event": effect.get("event"),
                        **({"list": effect["list"]} if "list" in effect else {}),
                        "text": effect["reason"],
                        "at": now_iso(),
                    },
                )
                self._dead(batch, "rules", effect["reason"], account=account.name, payload=effect)
                continue
            batch.out.append(
                Output(EFFECTS, keys.key(account.name, effect["contact"]), dumps(effect))
            )
        pk = record.get("pk")
        if pk != out.pk_before:
            if out.pk_before:
                self._index_pk(batch, account.name, out.pk_before, None)
            if pk:
                self._index_pk(batch, account.name, pk, person)

    def _index_pk(self, batch: _Batch, account: str, pk: str, person: str | None) -> None:
        ident = keys.pk_index_id(pk)
        batch.out.append(
            Output.of(
                PERSON,
                keys.key(account, ident),
                {"k": "pk", "a": account, "p": ident, "person": person},
            )
        )

    def _log_delivery(self, batch: _Batch, key: bytes, entry: dict[str, Any]) -> None:
        batch.deliveries.add(key, entry)

    def _dead(
        self,
        batch: _Batch,
        source: str,
        reason: str,
        *,
        account: str | None = None,
        payload: Any = None,
        raw: bytes | None = None,
    ) -> None:
        self.metrics.inc("emd_dead_letters_total", source=source)
        batch.out.append(
            Output(
                DEAD,
                (account or "").encode(),
                dead_letter(source, reason, account=account, payload=payload, raw=raw),
            )
        )

    def _end(self, batch: _Batch, tables: Tables) -> None:
        batch.persons.flush()
        batch.deliveries.flush()
        if batch.funnel:
            table = tables(FUNNEL, batch.partition)
            for fkey, delta in batch.funnel.items():
                raw = table.get(fkey)
                counts: dict[str, int] = loads(raw) if raw is not None else {}
                for kind, n in delta.items():
                    counts[kind] = counts.get(kind, 0) + n
                table.set(fkey, dumps(counts))

    def _ensure_index(self, partition: int, tables: Tables) -> Found | None:
        """Build the partition's wake index, the first time after an assignment. Returns
        what the scan found here that belongs to another partition, to be moved
        (``app.stages.relocation``; None when this version moves nothing)."""
        if self.wake.built(partition):
            return None
        entries: list[tuple[float, bytes]] = []
        found = Found()
        partition_of = self.partition_of
        for key, raw in tables(PERSONS, partition).items():
            if is_meta(key):
                continue
            try:
                record = loads(raw)
                if PARK not in record and partition_of(key) != partition:
                    found.persons.append(key)  # (a park is this version's own)
                    continue
                at = float(record["until"]) if PARK in record else wake_time(record)
            except Exception:  # not a record: left as it is, as before
                continue
            if at is not None:
                entries.append((at, key))
        self.wake.rebuild(partition, entries)
        if self.moves_from is None:
            return None
        # Of the links only ids beginning with "a:" changed partition: a prefix scan.
        links = tables(LINKS, partition)
        for name in self.accounts().names():
            for key, value in links.items(keys.key(name, "a:")):
                if partition_of(key) != partition:
                    found.links.append((key, value))
        return found

    # ------------------------------------------------------------------ relocation

    def _relocate(self, batch: _Batch, found: Found, now: float) -> None:
        """Send what belongs elsewhere there, then say this partition is done."""
        links = batch.tables(LINKS, batch.partition)
        batch.out += moves(
            found,
            batch.persons,
            batch.deliveries,
            links,
            self.partition_of,
            batch.partition,
            self.partitions,
            now,
        )
        if found:
            self.metrics.inc("emd_relocated_total", len(found.persons), table=PERSONS)
            self.metrics.inc("emd_relocated_total", len(found.links), table=LINKS)

    def _parks(self, batch: _Batch, key: bytes, msg: dict[str, Any], now: float) -> bool:
        """Whether a message for an anonymous visitor waits for the visitor's state."""
        if self.moves_from is None or batch.partition in self.settled or msg.get("new"):
            return False  # (a visitor the identity stage has never seen has no old state)
        if complete(batch.persons, batch.partition, self.partitions):
            self.settled.add(batch.partition)  # every other partition has said so
            return False
        record = batch.persons.get(key)
        if record is not None and not (isinstance(record, dict) and PARK in record):
            return False
        old = self.moves_from(key)
        if record is None and not waits(batch.persons, old, batch.partition):
            return False
        if not park(batch.persons, key, record, msg, old, now):
            return False
        if record is None:  # the clock lets it go after PARK_MAX at the latest
            self.wake.push(batch.partition, key, now + PARK_MAX)
        self.metrics.inc("emd_relocation_parked_total")
        return True

    def _relocated(self, batch: _Batch, source: int, now: float) -> None:
        """``source`` moved everything it held for others: what waited on it goes on."""
        for key in done(batch.persons, source):
            self._release(batch, key, now)

    def _release(self, batch: _Batch, key: bytes, now: float) -> None:
        for msg in unpark(batch.persons, key):
            try:
                self._dispatch(batch, msg, msg.get("k"), now, released=True)
            except Exception as exc:
                log_failure(log, "the person stage failed on a parked record", exc)
                self._dead(batch, "person", f"internal error: {type(exc).__name__}", payload=msg)

    def _moved(self, batch: _Batch, account: Account, person: str, key: bytes, msg, now):
        """A person's state arriving from the partition it lived in before: taken as it
        is when this partition has nothing for the person yet (then what was parked for
        the person applies to it); else (the person's events came first, or this is a
        second copy) merged in as a hand-off is."""
        moved = msg.get("rec")
        if not isinstance(moved, dict):
            self._dead(batch, "person", "a moved person without its record", payload=msg)
            return
        record = batch.persons.get(key)
        if record is None or (isinstance(record, dict) and PARK in record):
            parked = unpark(batch.persons, key)
            batch.persons.put(key, moved)
            self.wake.push(batch.partition, key, wake_time(moved))
            for entry in msg.get("log") or ():
                batch.deliveries.add(key, entry)
            for m in parked:
                self._dispatch(batch, m, m.get("k"), now, released=True)
            return
        state, _ = export_for_merge(moved, person)
        handoff: dict[str, Any] = {"k": "state", "a": account.name, "p": person, "from": person}
        handoff["state"] = state
        handoff["t"] = float(msg.get("t", now))
        self._state(batch, account, person, key, handoff, now)

    def _link_moved(self, batch: _Batch, account: Account, msg: dict[str, Any]) -> None:
        """A link arriving from the partition it lived in before; a link this partition
        has written since is newer and stays."""
        links = batch.tables(LINKS, batch.partition)
        key = keys.key(account.name, msg["p"])
        if links.get(key) is None:
            links.set(key, str(msg.get("v", "")).encode())
