"""The person agent: the users table, data maps and rule state, keyed by person.

Consumes person-events (``account \\x1f person``). Writes a person's record only when it
changed, sends Emarsys effects keyed by contact, and fires rule deadlines when a clock
tick for its partition arrives (RocksDB tables can only be written inside stream
iteration, so the clock comes through the stream, one tick per partition per second).

A crash can keep a record's new state (written to RocksDB at once, and maybe to the
changelog) while the effects sent with it never left the producer; the event read again
then changes nothing and sends nothing. So what Emarsys has not acknowledged stays in the
record (fields ``sent`` but not ``acked``; triggers in ``pend`` until their delivery
report) and is sent again after every restart or rebalance, when the deadline heaps are
rebuilt (before the first record processed). Emarsys dedupes a trigger sent twice by its
trigger_id; an upsert is idempotent. After a clean stop nothing is pending; after a
rebalance, effects still in flight are sent twice.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from aiokafka.partitioner import murmur2

from agents.common import log, send_dead_letter
from app import keys
from app.envelope import dumps, loads, now_iso
from app.faust_app import CONFIG, RUNTIME, app, effects_topic, person_topic
from app.person import (
    MAX_FORWARDS,
    Outcome,
    apply_clock,
    apply_delivery,
    apply_event,
    apply_merge,
    delete_effect,
    export_for_merge,
)
from tables import deliveries, funnel, persons, pk_index

MAX_DELIVERIES = 50
#: record key (this agent's bookkeeping): trigger effects not yet reported back by the
#: sink, by trigger_id, oldest first
PENDING = "pend"
MAX_PENDING = 50
RECENT_EVENTS = 20
RECENT_PERSONS = 20_000


class RecentEvents:
    """The last events of recently active persons, in memory (since this worker owns
    them): a debugging aid for the person page, deliberately not a table, so a page view
    that changes nothing still writes nothing."""

    def __init__(self) -> None:
        self.by_person: OrderedDict[bytes, deque[dict[str, Any]]] = OrderedDict()

    def add(self, key: bytes, entry: dict[str, Any]) -> None:
        ring = self.by_person.pop(key, None) or deque(maxlen=RECENT_EVENTS)
        ring.appendleft(entry)
        self.by_person[key] = ring
        while len(self.by_person) > RECENT_PERSONS:
            self.by_person.popitem(last=False)

    def get(self, key: bytes) -> list[dict[str, Any]]:
        """Newest first, times as ISO UTC (formatted here, off the per-event path)."""
        return [
            {**e, "at": datetime.fromtimestamp(e["at"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
            for e in self.by_person.get(key, ())
        ]


RECENT = RecentEvents()


def partition_of(key: bytes) -> int:
    """The partition the producer's default partitioner gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % CONFIG.partitions


class Deadlines:
    """Per-partition min-heaps of (due, person key): what the next tick must look at.

    Entries are hints: the record's own ``due`` is checked before anything fires, so a
    stale entry costs one lookup. Rebuilt from the table after a rebalance or restart.
    """

    def __init__(self) -> None:
        self.heaps: dict[int, list[tuple[float, bytes]]] = defaultdict(list)
        self.ready = False

    def reset(self) -> None:
        self.heaps.clear()
        self.ready = False

    def push(self, key: bytes, due: float | None, partition: int) -> None:
        if due is not None:
            heapq.heappush(self.heaps[partition], (due, key))

    def rebuild(self) -> Iterator[tuple[bytes, dict[str, Any]]]:
        """Rebuild the heaps from the table, yielding each record on the way (the caller
        sends again what Emarsys has not acknowledged). Ready once fully consumed."""
        self.heaps.clear()
        for key, value in persons.items():
            try:
                record = loads(value)
            except Exception:
                continue
            due = record.get("due")
            if due is not None:
                self.heaps[partition_of(key)].append((due, key))
            yield key, record
        for heap in self.heaps.values():
            heapq.heapify(heap)
        self.ready = True

    def pop_due(self, partition: int, now: float) -> list[bytes]:
        heap = self.heaps.get(partition) or []
        out: list[bytes] = []
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            if key not in out:
                out.append(key)
        return out

    def due(self, partition: int, now: float) -> bool:
        """Whether a tick for ``partition`` has work (always, until rebuilt)."""
        if not self.ready:
            return True
        heap = self.heaps.get(partition) or []
        return bool(heap) and heap[0][0] <= now


DEADLINES = Deadlines()


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def _on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
    DEADLINES.reset()


@app.on_partitions_assigned.connect  # type: ignore[arg-type]
async def _on_assigned(sender: Any, *args: Any, **kwargs: Any) -> None:
    DEADLINES.reset()


def unacked_fields(record: dict[str, Any]) -> dict[str, Any]:
    """Fields sent to Emarsys whose delivery has not been reported (in flight, or lost)."""
    acked = record.get("acked") or {}
    return {f: v for f, v in (record.get("sent") or {}).items() if acked.get(f) != v}


async def resend_unacknowledged(key: bytes, record: dict[str, Any]) -> None:
    """Send again what this person's record says Emarsys has not acknowledged.

    Takes the record as read by ``Deadlines.rebuild``: a table read here would look in
    the current record's partition only (Faust's RocksDB store reads that partition)."""
    if "fwd" in record:
        return
    account_name, person = keys.split(key)
    account = RUNTIME.accounts.get(account_name)
    if account is None:
        return
    effects: list[dict[str, Any]] = []
    fields = unacked_fields(record)
    if fields and record.get("pk"):
        fields[str(account.key_field)] = record["pk"]
        effects.append(
            {
                "op": "upsert",
                "account": account_name,
                "person": person,
                "contact": record["pk"],
                "fields": fields,
                "at": now_iso(),
            }
        )
    effects += list((record.get(PENDING) or {}).values())
    for effect in effects:
        RUNTIME.metrics.inc("emd_effects_resent_total", account=account_name, op=effect["op"])
        await effects_topic.send(key=keys.key(account_name, effect["contact"]), value=dumps(effect))


def load_record(key: bytes) -> dict[str, Any] | None:
    raw = persons.get(key)
    return loads(raw) if raw is not None else None


@app.agent(person_topic, name="person")
async def person_agent(stream):
    async for event in stream.events():
        try:
            await handle(event)
        except Exception as exc:
            log.exception("person agent failed on a message")
            await send_dead_letter(
                "person",
                f"internal error: {type(exc).__name__}",
                raw=event.value if isinstance(event.value, bytes) else None,
            )


async def handle(event: Any) -> None:
    if not DEADLINES.ready:
        # First record since the partitions were (re)assigned: before it makes anything
        # new, send again what the table says Emarsys has not acknowledged.
        try:
            await rebuild()
        except Exception:  # not this record's fault: go on, try again with the next one
            log.exception("rebuilding rule deadlines failed")
    msg = loads(event.value)
    kind = msg.get("k")
    partition = event.message.partition
    RUNTIME.metrics.inc("emd_person_events_total", kind=str(kind))
    if kind == "tick":
        await on_tick(partition, float(msg["t"]))
        return
    account_name = msg.get("a")
    account = RUNTIME.accounts.get(account_name)
    if account is None:
        await send_dead_letter(
            "person", f"unknown account {account_name!r}", account=account_name, payload=msg
        )
        return
    person = msg.get("p")
    key = keys.key(account_name, person)
    if kind == "ev":
        await on_event(account, person, key, msg, partition)
    elif kind == "merge":
        await on_merge_out(account_name, person, key, msg["into"])
    elif kind == "state":
        record = load_record(key)
        if record is not None and "fwd" in record:
            await forward(key, record, msg)
            return
        out = apply_merge(account, person, record, msg["state"], time.time())
        await finish(account, person, key, out, partition)
    elif kind == "dlv":
        await on_delivery(key, msg)
    elif kind == "pk":
        if msg.get("person"):
            pk_index[key] = msg["person"].encode()
        else:
            pk_index.pop(key, None)


async def forward(key: bytes, record: dict[str, Any], msg: dict[str, Any]) -> None:
    """This person merged into another: pass the message on (bounded, against loops)."""
    hops = int(msg.get("hops", 0))
    if hops >= MAX_FORWARDS:
        await send_dead_letter(
            "person", "identity forwarding loop", account=msg.get("a"), payload=msg
        )
        return
    target = record["fwd"]
    await person_topic.send(
        key=keys.key(msg["a"], target), value=dumps({**msg, "p": target, "hops": hops + 1})
    )


async def on_event(account, person: str, key: bytes, msg: dict[str, Any], partition: int) -> None:
    record = load_record(key)
    if record is not None and "fwd" in record:
        await forward(key, record, msg)
        return
    message = msg["m"]
    RECENT.add(
        key,
        {
            "at": float(msg["t"]),
            "type": message.get("type"),
            "event": message.get("event") or message.get("name"),
            "messageId": msg.get("id"),
        },
    )
    if message.get("type") == "delete":
        await on_delete(account, person, key, record)
        return
    out = apply_event(
        account,
        person,
        record,
        message,
        message_id=msg["id"],
        event_time=float(msg["t"]),
        now=time.time(),
    )
    for name in out.failures:
        RUNTIME.metrics.inc("emd_datamap_failures_total", account=account.name, data_map=name)
    await finish(account, person, key, out, partition)


async def finish(account, person: str, key: bytes, out: Outcome, partition: int) -> None:
    """Write what changed, send effects, index the next deadline and the primary key."""
    record = out.record
    if record is None:
        return
    triggers = [e for e in out.effects if e["op"] == "trigger"]
    if triggers:  # kept until the sink reports them (see the module docstring)
        pending = record.setdefault(PENDING, {})
        for effect in triggers:
            pending[effect["trigger_id"]] = effect
        for oldest in list(pending)[: max(0, len(pending) - MAX_PENDING)]:
            del pending[oldest]
        out.changed = True
    if out.changed:
        persons[key] = dumps(record)
        DEADLINES.push(key, record.get("due"), partition)
    for t in out.transitions:
        RUNTIME.metrics.inc(
            "emd_rule_transitions_total", account=account.name, rule=t.rule, kind=t.kind
        )
    if out.transitions:
        count_funnel(account.name, out.transitions, partition)
    for effect in out.effects:
        if effect["op"] == "undeliverable":
            await record_delivery(
                key,
                {
                    "op": "trigger",
                    "ok": False,
                    "rule": effect["rule"],
                    "trigger_id": effect["trigger_id"],
                    "event": effect["event"],
                    "text": effect["reason"],
                    "at": now_iso(),
                },
            )
            await send_dead_letter("rules", effect["reason"], account=account.name, payload=effect)
            continue
        await effects_topic.send(key=keys.key(account.name, effect["contact"]), value=dumps(effect))
    pk = record.get("pk")
    if pk != out.pk_before:
        if out.pk_before:
            await index_pk(account.name, out.pk_before, None)
        if pk:
            await index_pk(account.name, pk, person)


def funnel_key(account: str, rule: str, hour: int, partition: int) -> bytes:
    return keys.key(account, f"{rule}\x1e{hour}\x1e{partition}")


def count_funnel(account: str, transitions: list[Any], partition: int) -> None:
    """Add transitions to the per-hour funnel counters of this partition."""
    buckets: dict[bytes, dict[str, int]] = {}
    for t in transitions:
        hour = int(t.at // 3600 * 3600)
        key = funnel_key(account, t.rule, hour, partition)
        if key not in buckets:
            raw = funnel.get(key)
            buckets[key] = loads(raw) if raw is not None else {}
        counts = buckets[key]
        counts[t.kind] = counts.get(t.kind, 0) + 1
    for key, counts in buckets.items():
        funnel[key] = dumps(counts)


async def index_pk(account: str, pk: str, person: str | None) -> None:
    await person_topic.send(
        key=keys.key(account, keys.pk_index_id(pk)),
        value=dumps({"k": "pk", "a": account, "p": keys.pk_index_id(pk), "person": person}),
    )


async def on_merge_out(account: str, person: str, key: bytes, into: str) -> None:
    record = load_record(key)
    if record is None or "fwd" in record or into == person:
        return  # nothing to hand over, or handed over already (a redelivery)
    state, tombstone = export_for_merge(record, into)
    await person_topic.send(
        key=keys.key(account, into),
        value=dumps({"k": "state", "a": account, "p": into, "from": person, "state": state}),
    )
    persons[key] = dumps(tombstone)
    if record.get("pk"):
        await index_pk(account, record["pk"], into)


async def on_delete(account, person: str, key: bytes, record: dict[str, Any] | None) -> None:
    """Segment's user deletion: forget the person and delete the Emarsys contact."""
    effect = delete_effect(account, person, record)
    if effect is not None:
        await effects_topic.send(key=keys.key(account.name, effect["contact"]), value=dumps(effect))
        await index_pk(account.name, effect["contact"], None)
    persons.pop(key, None)
    deliveries.pop(key, None)


async def record_delivery(key: bytes, entry: dict[str, Any]) -> None:
    raw = deliveries.get(key)
    log_entries = loads(raw) if raw is not None else []
    log_entries.append(entry)
    deliveries[key] = dumps(log_entries[-MAX_DELIVERIES:])


async def on_delivery(key: bytes, msg: dict[str, Any]) -> None:
    entry = {k: v for k, v in msg.items() if k not in ("k", "a", "p")}
    await record_delivery(key, entry)
    record = load_record(key)
    if record is None or "fwd" in record:
        return
    changed = apply_delivery(record, msg)
    pending = record.get(PENDING)
    if msg.get("op") == "trigger" and pending and msg.get("trigger_id") in pending:
        del pending[msg["trigger_id"]]  # delivered, or dead-lettered by the sink
        if not pending:
            del record[PENDING]
        changed = True
    if changed:
        persons[key] = dumps(record)


async def rebuild() -> None:
    """The deadline heaps from the table, and every effect it shows unacknowledged sent
    again (after a crash some may never have left the producer)."""
    resent = 0
    for key, record in DEADLINES.rebuild():
        if "fwd" not in record and (record.get(PENDING) or unacked_fields(record)):
            await resend_unacknowledged(key, record)
            resent += 1
    log.info("rule deadlines rebuilt; effects of %d person(s) sent again", resent)


async def on_tick(partition: int, now: float) -> None:
    for key in DEADLINES.pop_due(partition, now):
        record = load_record(key)
        if record is None or "fwd" in record or record.get("due") is None:
            continue
        if record["due"] > now:
            DEADLINES.push(key, record["due"], partition)
            continue
        account_name, person = keys.split(key)
        account = RUNTIME.accounts.get(account_name)
        if account is None:
            continue
        out = apply_clock(account, person, record, now)
        await finish(account, person, key, out, partition)


@app.timer(1.0)
async def send_ticks() -> None:
    """A clock tick, each second, into each owned person-events partition with a deadline
    due (the heaps live in this process), so idle partitions get no traffic."""
    now = time.time()
    assigned = app.assignor.assigned_actives()
    for tp in assigned:
        if tp.topic == person_topic.get_topic_name() and DEADLINES.due(tp.partition, now):
            await person_topic.send(
                key=b"", value=dumps({"k": "tick", "t": now}), partition=tp.partition
            )
