"""The Emarsys sink: effects in batches to Emarsys, each outcome reported.

The batch path hands every fetch of emarsys-effects (keyed by contact, so a contact's
upsert precedes its trigger) to the partition's lane. A lane gathers up to
``sink.batch_size`` effects or ``sink.flush_interval`` seconds, delivers them
(``app.delivery``: merged upserts first, then triggers), sends the outcomes back to the
person stage (one ``dlv`` record per person, for the delivery log and the acknowledged
fields) and to the dead letters, and only then acks the fetches' spans: offsets are
committed once every effect was accepted by Emarsys or dead-lettered (at least once).

Retries happen inside delivery (the client's backoff, up to ``retry_for``). While a lane
holds more than ``MAX_LANE_RECORDS`` records its partition is not fetched (Faust's own
buffer-full mechanism), so memory stays bounded while Emarsys is down. A rebalance does
not wait for a retrying lane: it lets go of its spans (``on_flow_stopped``), which are
read again afterwards (effects are idempotent; trigger_ids dedupe).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from app import keys
from app.batching.consumer import BatchConsumer, Held
from app.batching.sender import Outbox
from app.config.model import EmarsysConfig
from app.delivery import Clients, Outcome, close_quietly, deliver
from app.envelope import dead_letter, dumps, loads, now_iso
from app.recent import RecentDeliveries
from app.runtime import Runtime
from app.stages.state import DEAD, PERSON, Output

log = logging.getLogger("emd.sink")

MAX_LANE_RECORDS = 5000


class _Lane:
    __slots__ = ("consumer", "held", "paused", "queue", "records", "task", "tp", "wakeup")

    def __init__(self, tp: Any) -> None:
        self.tp = tp
        self.queue: deque[tuple[list[Any], Held]] = deque()
        self.held: list[Held] = []  # spans being delivered right now
        self.records = 0
        self.paused = False
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.consumer: BatchConsumer | None = None


class Sink:
    def __init__(
        self,
        runtime: Runtime,
        clients: Clients,
        recent: RecentDeliveries,
        outbox: Outbox,
        batch_size: Callable[[], int],
        flush_interval: Callable[[], float],
    ) -> None:
        self.runtime = runtime
        self.clients = clients
        self.recent = recent
        self.outbox = outbox
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.lanes: dict[Any, _Lane] = {}
        runtime.metrics.gauge("emd_sink_backlog", lambda: {(): float(self.backlog())})

    def backlog(self) -> int:
        return sum(lane.records for lane in self.lanes.values())

    def accept(self, tp: Any, records: list[Any], held: Held, consumer: BatchConsumer) -> None:
        lane = self.lanes.get(tp)
        if lane is None:
            lane = self.lanes[tp] = _Lane(tp)
        lane.consumer = consumer
        lane.queue.append((records, held))
        lane.records += len(records)
        if lane.task is None or lane.task.done():
            lane.task = asyncio.ensure_future(self._run(lane))
        if lane.records > MAX_LANE_RECORDS and not lane.paused:
            lane.paused = True
            consumer.on_buffer_full(tp)
        lane.wakeup.set()

    def on_flow_stopped(self) -> None:
        """A rebalance: drop every lane's work; its spans are read again after it."""
        for lane in self.lanes.values():
            if lane.task is not None:
                lane.task.cancel()
            spans = lane.held + [held for _, held in lane.queue]
            lane.queue.clear()
            lane.held = []
            if lane.consumer is not None:
                for held in spans:
                    lane.consumer.release(held)
            lane.records = 0
            lane.paused = False
        self.lanes.clear()

    async def stop(self) -> None:
        self.on_flow_stopped()
        await close_quietly(self.clients)

    # ------------------------------------------------------------------ a lane

    async def _run(self, lane: _Lane) -> None:
        while lane.queue:
            started = time.monotonic()
            limit = self.batch_size()
            while lane.records < limit:
                remaining = self.flush_interval() - (time.monotonic() - started)
                if remaining <= 0:
                    break
                lane.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.wakeup.wait(), remaining)
            taken: list[tuple[list[Any], Held]] = []
            count = 0
            while lane.queue and (not taken or count + len(lane.queue[0][0]) <= limit):
                records, held = lane.queue.popleft()
                taken.append((records, held))
                count += len(records)
            lane.held = [held for _, held in taken]
            try:
                await self._deliver([r for records, _ in taken for r in records])
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug, not Emarsys: the records are read again later
                log.exception("the sink failed on a batch; it will be delivered again")
                for _, held in taken:
                    if lane.consumer is not None:
                        lane.consumer.release(held)
                lane.records -= count
                lane.held = []
                return
            lane.records -= count
            lane.held = []
            if lane.consumer is not None:
                for _, held in taken:
                    lane.consumer.ack_span(held)
                if lane.paused and lane.records <= MAX_LANE_RECORDS // 2:
                    lane.paused = False
                    lane.consumer.on_buffer_drop(lane.tp)

    async def _deliver(self, records: list[Any]) -> None:
        outputs: list[Output] = []
        effects: list[dict[str, Any]] = []
        for r in records:
            try:
                effects.append(loads(r.value))
            except Exception:
                outputs.append(self._dead("effect is not valid JSON", raw=r.value))
        try:
            outcomes = await deliver(effects, self._config, self.clients)
        except Exception as exc:
            log.exception("delivering a batch failed")
            outcomes = [
                Outcome(e, False, None, f"internal error: {type(exc).__name__}") for e in effects
            ]
        reports: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for outcome in outcomes:
            outputs += self._report(outcome, reports)
        for (account, person), items in reports.items():
            outputs.append(
                Output(
                    PERSON,
                    keys.key(account, person),
                    dumps({"k": "dlv", "a": account, "p": person, "items": items}),
                )
            )
        await self.outbox.send(outputs)

    def _config(self, account: str) -> EmarsysConfig | None:
        acct = self.runtime.accounts.get(account)
        return acct.config.emarsys if acct is not None else None

    def _report(self, outcome: Outcome, reports: dict[tuple[str, str], list[dict[str, Any]]]):
        e = outcome.effect
        account = e.get("account", "")
        self.runtime.metrics.inc(
            "emd_emarsys_contacts_total",
            account=account,
            op=str(e.get("op")),
            outcome="ok" if outcome.ok else ("gave_up" if outcome.given_up else "failed"),
        )
        entry = outcome.record()
        entry["at"] = now_iso()
        self.recent.add(account, {**entry, "person": e.get("person")})
        if e.get("person"):
            reports.setdefault((account, e["person"]), []).append(entry)
        if outcome.ok:
            return []
        reason = f"Emarsys {e.get('op')} failed"
        if outcome.code is not None:
            reason += f" (replyCode {outcome.code})"
        reason += f": {outcome.text}"
        return [self._dead(reason, account=account, payload=e)]

    def _dead(self, reason: str, *, account: str | None = None, payload: Any = None, raw=None):
        self.runtime.metrics.inc("emd_dead_letters_total", source="sink")
        return Output(
            DEAD,
            (account or "").encode(),
            dead_letter("sink", reason, account=account, payload=payload, raw=raw),
        )
