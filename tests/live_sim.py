"""The live pipeline without Faust: the real stages over per-partition FIFO topics.

``LiveSim`` runs ``app.stages.link.LinkStage`` and ``app.stages.person.PersonStage`` as
the workers do (tables in dicts, one ``Output`` list per batch), while a scheduler that
the test controls picks which partition's queue is processed next, how many of its
records form the batch, and when the wall clock moves and the clock runs. Kafka keeps
order only within a partition; everything else here may interleave any way the
scheduler likes, which is what a property test over interleavings needs.

The Emarsys side is a dict: upserts merged per contact, triggers by trigger_id, list
memberships, and a delivery report per person per batch back to the person stage, as the
sink sends.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import orjson

from app import keys
from app.account import Accounts
from app.batching.partition import Partitioner
from app.config.model import Config
from app.envelope import dumps
from app.identity import partition_id
from app.metrics import Metrics
from app.recent import RecentEvents
from app.stages.bundle import bundle
from app.stages.flow import PartitionFlow
from app.stages.link import LinkStage
from app.stages.person import PersonStage
from app.stages.state import DEAD, EFFECTS, INPUT, PERSON, DictTable, DictTables, Output, Record

_PARTITIONERS: dict[int, Partitioner] = {}


def partition_of(key: bytes, partitions: int) -> int:
    """The app's partitioner (``app.keys.partition_bytes``), as the workers route."""
    partitioner = _PARTITIONERS.get(partitions)
    if partitioner is None:
        partitioner = _PARTITIONERS[partitions] = Partitioner(partitions)
    return partitioner(key)


class LiveSim:
    def __init__(
        self, config: Config, partitions: int = 4, seed: int = 0, *, started: bool = True
    ) -> None:
        """``started``: a deployment that has run a while, each partition used once (so
        none waits for another's relocation notice: ``app.stages.relocation``); else the
        first start of one."""
        self.config = config
        self.accounts = Accounts(config)
        self.partitions = partitions
        self.rng = random.Random(seed)
        self.metrics = Metrics()
        self.tables = DictTables()
        #: where a key belongs: the app's partitioner (``upgrade`` changes it)
        self.partition_of = Partitioner(partitions)
        self.moves_from: Partitioner | None = Partitioner(partitions, as_before=True)
        self._build_stages()
        self.queues: dict[tuple[str, int], deque[Record]] = {
            (topic, p): deque() for topic in (INPUT, PERSON) for p in range(partitions)
        }
        self.offsets: dict[tuple[str, int], int] = {}
        self.now = 0.0
        self.contacts: dict[str, dict[str, Any]] = {}
        self.triggers: dict[str, dict[str, Any]] = {}
        self.trigger_sends: list[str] = []
        self.lists: dict[Any, set[str]] = {}  # list id or name -> contacts
        self.list_sends: list[tuple[str, Any, str, str]] = []  # op, list, contact, trigger_id
        self.undeliverable: dict[str, dict[str, Any]] = {}
        self.undeliverable_lists: list[dict[str, Any]] = []
        self.dead: list[dict[str, Any]] = []
        if started:
            self.tick()
            self.drain()

    def _build_stages(self) -> None:
        part = self.partition_of
        self.link = LinkStage(
            lambda: self.accounts, self.metrics, lambda: self.config.dedupe_window, part
        )
        self.person = PersonStage(
            lambda: self.accounts, self.metrics, RecentEvents(), self.link, part, self.moves_from
        )
        self.flow = PartitionFlow(self.link, self.person, part)

    def upgrade(self, partitioner: Partitioner, moves_from: Partitioner | None) -> None:
        """Every worker restarts with another version (its partitioner, and where the
        state it moves was put): what is queued and stored stays where it is; what lived
        in memory starts empty."""
        self.partition_of, self.moves_from = partitioner, moves_from
        self._build_stages()

    # ------------------------------------------------------------------ input

    def ingest(self, message: dict[str, Any], account: str) -> None:
        """What the HTTP ingest does: key by routing id, write to the input topic."""
        rid = partition_id(message)
        assert rid is not None, message
        self._append(INPUT, keys.key(account, rid), dumps(message))

    def _append(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        p = partition if partition is not None else self.partition_of(key)
        offset = self.offsets.get((topic, p), 0)
        self.offsets[(topic, p)] = offset + 1
        self.queues[(topic, p)].append(Record(key, value, p, offset))

    # ------------------------------------------------------------------ running

    def pending(self) -> list[tuple[str, int]]:
        return [tp for tp, q in self.queues.items() if q]

    def step(self, tp: tuple[str, int], n: int, crash: str | None = None) -> None:
        """Process the first ``n`` records of one partition's queue as one batch.

        ``crash`` models a ``kill -9`` in the middle of the transaction
        (``app.batching.transaction``): ``"sent"``, the records it sent are acknowledged
        but its state is never written; ``"written"``, the state is written but the
        offsets are not committed. Either way the batch is read again, and what lived in
        memory (the wake index, recent events) starts empty, as after a restart."""
        topic, p = tp
        queue = self.queues[tp]
        batch = [queue.popleft() for _ in range(min(n, len(queue)))]
        run = self.flow.input if topic == INPUT else self.flow.person_events
        saved = self._snapshot() if crash == "sent" else None
        self._send(run(p, batch, self.tables, self.now))
        if crash is None:
            return
        if saved is not None:
            self.tables.tables = saved
        queue.extendleft(reversed(batch))
        self.person.partitions_changed()
        self.person.recent.by_person.clear()

    def _snapshot(self) -> dict[tuple[str, int], DictTable]:
        return {k: DictTable(dict(t.data)) for k, t in self.tables.tables.items()}

    def tick(self) -> None:
        for p in range(self.partitions):
            self.tick_partition(p)

    def tick_partition(self, p: int) -> None:
        self._send(self.flow.clock(p, self.tables, self.now))

    def run_random(
        self,
        max_batch: int = 3,
        tick_chance: float = 0.3,
        clock_step: float = 1.0,
        crash_chance: float = 0.0,
        max_crashes: int = 3,
    ):
        """Until every queue is empty: random partition, random batch, random ticks, and
        up to ``max_crashes`` random crashes (``step``)."""
        crashes = 0
        while True:
            pending = self.pending()
            if not pending:
                return
            crash = None
            if crashes < max_crashes and self.rng.random() < crash_chance:
                crash = self.rng.choice(["sent", "written"])
                crashes += 1
            self.step(self.rng.choice(pending), self.rng.randint(1, max_batch), crash)
            if self.rng.random() < tick_chance:
                self.now += self.rng.uniform(0, clock_step)
                self.tick()

    def drain(self) -> None:
        """Everything queued, in a fixed order (no randomness)."""
        while self.pending():
            for tp in self.pending():
                self.step(tp, len(self.queues[tp]))

    def settle(self, until: float) -> None:
        """The wall clock jumps to ``until``; the clock runs until nothing is left to do."""
        self.now = max(self.now, until)
        for _ in range(50):
            self.tick()
            self.drain()
            if not self.pending():
                self.tick()
                if not self.pending():
                    return
        raise AssertionError("the pipeline never settled")

    # ------------------------------------------------------------------ outputs

    def _send(self, outputs: list[Output]) -> None:
        reports: dict[bytes, list[dict[str, Any]]] = {}
        for o in outputs:
            if o.topic == INPUT:
                self._append(INPUT, o.key, o.value, o.partition)
            elif o.topic == PERSON:
                self._append(PERSON, o.key, o.value, o.partition)
            elif o.topic == DEAD:
                self.dead.append(orjson.loads(o.value))
                payload = self.dead[-1].get("payload") or {}
                if payload.get("op") == "undeliverable" and "action" in payload:
                    self.undeliverable_lists.append(payload)
                elif payload.get("op") == "undeliverable":
                    self.undeliverable[payload["trigger_id"]] = payload
            elif o.topic == EFFECTS:
                effect = orjson.loads(o.value)
                entry = self._emarsys(effect)
                if effect.get("person") and entry is not None:
                    pkey = keys.key(effect["account"], effect["person"])
                    reports.setdefault(pkey, []).append(entry)
        dlv = []
        for pkey, items in reports.items():  # one delivery report per person, as the sink
            account, person = keys.split(pkey)
            body = {"k": "dlv", "a": account, "p": person, "items": items}
            dlv.append(Output(PERSON, pkey, dumps(body)))
        for o in bundle(dlv, self.partition_of):  # as the sink
            self._append(PERSON, o.key, o.value, o.partition)

    def _emarsys(self, effect: dict[str, Any]) -> dict[str, Any] | None:
        op = effect["op"]
        if op == "upsert":
            self.contacts.setdefault(effect["contact"], {}).update(effect["fields"])
            return {"op": "upsert", "ok": True, "contact": effect["contact"],
                    "fields": effect["fields"]}  # fmt: skip
        if op == "trigger":
            self.trigger_sends.append(effect["trigger_id"])
            self.triggers.setdefault(effect["trigger_id"], effect)
            return {"op": "trigger", "ok": True, "contact": effect["contact"],
                    "trigger_id": effect["trigger_id"]}  # fmt: skip
        if op in ("list_add", "list_remove"):
            contact, ref = effect["contact"], effect["list"]
            self.list_sends.append((op, ref, contact, effect["trigger_id"]))
            members = self.lists.setdefault(ref, set())
            (members.add if op == "list_add" else members.discard)(contact)
            return {"op": op, "ok": True, "contact": contact, "list": ref,
                    "trigger_id": effect["trigger_id"]}  # fmt: skip
        if op == "delete":
            self.contacts.pop(effect["contact"], None)
        return None

    def trigger_rows(self) -> list[tuple[Any, ...]]:
        """Every trigger as replay writes it: (trigger_id, contact, event_time, data)."""
        rows = [
            (e["trigger_id"], e["contact"], e["event_time"], orjson.dumps(e["data"]).decode())
            for e in self.triggers.values()
        ]
        rows += [
            (e["trigger_id"], None, e["event_time"], orjson.dumps(e["data"]).decode())
            for e in self.undeliverable.values()
        ]
        return sorted(rows)

    def transitions(self) -> dict[str, int]:
        """Funnel transitions by kind, summed over every bucket (replay's summary)."""
        out: dict[str, int] = {}
        for (name, _p), table in self.tables.tables.items():
            if name != "funnel":
                continue
            for raw in table.data.values():
                for kind, n in orjson.loads(raw).items():
                    out[kind] = out.get(kind, 0) + n
        return out


def replay_rows(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (x["trigger_id"], x["contact"], x["event_time"], orjson.dumps(x["data"]).decode())
        for x in lines
        if x["kind"] == "trigger"
    )


def replay_list_rows(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Deliverable list actions as ``LiveSim.list_sends`` rows: (op, list, contact, id)."""
    return sorted(
        (x["kind"], x["list"], x["contact"], x["trigger_id"])
        for x in lines
        if x["kind"] in ("list_add", "list_remove") and not x.get("undeliverable")
    )


def replay_contacts(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    contacts: dict[str, dict[str, Any]] = {}
    for x in lines:
        if x["kind"] == "contact_update":
            contacts.setdefault(x["contact"], {}).update(x["fields"])
        elif x["kind"] == "contact_delete":
            contacts.pop(x["contact"], None)
    return contacts
