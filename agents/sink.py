"""The Emarsys sink: effects to each account's Emarsys, each outcome reported.

The batch path hands every fetch of emarsys-effects and of the parking topics to
``accept``. Records are split by account (effects are keyed ``account \\x1f contact``)
into per-account lanes (``agents.lanes``): one account's failing or slow Emarsys delays
only that account's effects, which are parked in its parking topic when it cannot
deliver them, so the other accounts' offsets keep being committed. A batch a lane
delivers (``app.delivery``: merged upserts first, then triggers, then deletes) sends its
outcomes back to the person stage (one ``dlv`` item per person, for the delivery log
and the acknowledged fields, in one bundle per person partition: ``app.stages.bundle``)
and to the dead letters; then its records are settled. A
fetched span is acked once each of its records is delivered, dead-lettered or parked:
offsets are committed only then (at least once).

Memory is bounded: a partition with more than ``MAX_PARTITION_RECORDS`` records waiting
in the lanes is not fetched until half of them are done (Faust's own buffer-full
mechanism), a parking partition with more than ``PARKED_READ_AHEAD`` likewise, and a
lane that cannot deliver parks what it holds after ``sink.park_after``. A rebalance does
not wait for a retrying lane: it lets go of its spans (``on_flow_stopped``), which are
read again afterwards (effects are idempotent; trigger_ids dedupe); only forwards to a
parking topic that are being written are waited for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from faust.types import TP

from agents.lanes import DIRECT, AccountLane, Item, Span
from agents.parking_probe import ParkingProbe
from app import keys
from app.batching.consumer import BatchConsumer, Held
from app.batching.partition import Partitioner
from app.batching.sender import Outbox, Sender
from app.config.model import EmarsysConfig
from app.delivery import Clients, Outcome, close_quietly, deliver
from app.durations import format_duration
from app.envelope import dead_letter, dumps, loads, now_iso
from app.recent import RecentDeliveries
from app.retries import RetryTracker
from app.runtime import Runtime
from app.stages.bundle import bundle
from app.stages.state import DEAD, PERSON, Output

log = logging.getLogger("emd.sink")

MAX_PARTITION_RECORDS = 5000
PARKED_READ_AHEAD = 1000
SINCE_HEADER = "emd-since"  # on parked records: when the effect was first written (ms)
UNKNOWN = ""  # the lane of effects whose key names no configured account
#: The gap between a lane's calls that are not full batches: half an API user's requests
#: a minute (0.12 s at Emarsys's 1,000), so a busy account's effects go in few large
#: calls and leave the API user room for triggers and other tools.
GAP_SHARE = 2.0


def parking_topic(app_id: str, account: str) -> str:
    """The account's parking topic (account ids are valid topic-name characters)."""
    return f"{app_id}-parked-{account}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _since(record: Any) -> float:
    for name, value in record.headers or ():
        if name == SINCE_HEADER:
            try:
                return int(value) / 1000.0
            except (TypeError, ValueError):
                break
    ts = getattr(record, "timestamp", None)
    return ts / 1000.0 if isinstance(ts, int) and ts > 0 else time.time()


class Sink:
    def __init__(
        self,
        runtime: Runtime,
        clients: Clients,
        recent: RecentDeliveries,
        outbox: Outbox,
        batch_size: Callable[[], int],
        flush_interval: Callable[[], float],
        *,
        effects_topic: str,
        parking_topics: dict[str, str],
        producer: Callable[[], Any],
        partitioner: Partitioner,
        retries: RetryTracker,
        park_after: Callable[[], float],
        broker_url: Callable[[], str] | None = None,
        calls_in_flight: Callable[[], int] = lambda: 1,
    ) -> None:
        self.runtime = runtime
        self.clients = clients
        self.recent = recent
        self.outbox = outbox
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.park_after = park_after
        #: calls to one account's Emarsys at a time, never two with the same contact
        self.calls_in_flight = calls_in_flight
        self.effects_topic = effects_topic
        self.parking_topics = dict(parking_topics)  # account -> topic
        self._parked_accounts = {t: a for a, t in self.parking_topics.items()}
        self._producer = producer
        self.partitioner = partitioner
        self.retries = retries
        #: asks the broker whether a parking partition is drained after an assignment
        #: (without a broker URL it is never asked, and every partition starts parked)
        self.probe = ParkingProbe(broker_url, self.committed) if broker_url is not None else None
        self.lanes: dict[str, AccountLane] = {}
        self.spans: set[Span] = set()
        self.waiting: dict[Any, int] = {}  # records in the lanes per topic partition
        self.paused: set[Any] = set()
        self.consumer: BatchConsumer | None = None
        m = runtime.metrics
        m.gauge("emd_sink_backlog", lambda: {(): float(sum(self.waiting.values()))})
        m.gauge("emd_account_backlog", self._per_account(lambda lane: lane.backlog()))
        m.gauge("emd_account_oldest_effect_age_seconds", self._per_account(self._age))
        m.gauge("emd_account_parked", self._per_account(lambda lane: self._is_parked(lane)))
        m.gauge("emd_account_retrying_calls", self._retrying_gauge)

    # ------------------------------------------------------------------ the batch path

    def topics(self) -> set[str]:
        return {self.effects_topic, *self.parking_topics.values()}

    def claims(self, topic: str) -> bool:
        return topic == self.effects_topic or topic in self._parked_accounts

    def accept(self, tp: Any, records: list[Any], held: Held, consumer: BatchConsumer) -> None:
        self.consumer = consumer
        span = Span(self, held, consumer, len(records))
        self.spans.add(span)
        self.waiting[tp] = self.waiting.get(tp, 0) + len(records)
        parked_account = self._parked_accounts.get(tp.topic)
        if parked_account is not None:
            items = [Item(span, tp.partition, r.key, r.value, _since(r), r.offset) for r in records]
            self._lane(parked_account).accept_parked(tp.partition, items)
            self._check_pause(tp, PARKED_READ_AHEAD)
            return
        groups: dict[str, list[Item]] = {}
        for r in records:
            account = self._account_of(r.key)
            item = Item(span, tp.partition, r.key, r.value, _since(r))
            groups.setdefault(account, []).append(item)
        for account, items in groups.items():
            self._lane(account).accept_direct(tp.partition, items)
        self._check_pause(tp, MAX_PARTITION_RECORDS)

    def _account_of(self, key: Any) -> str:
        if not isinstance(key, bytes):
            return UNKNOWN
        try:
            account = keys.split(key)[0]
        except UnicodeDecodeError:
            return UNKNOWN
        return account if account in self.parking_topics else UNKNOWN

    def _lane(self, account: str) -> AccountLane:
        lane = self.lanes.get(account)
        if lane is None:
            lane = self.lanes[account] = AccountLane(
                account, self, self.parking_topics.get(account)
            )
        return lane

    # ------------------------------------------------------------------ spans and memory

    def settled(self, span: Span, n: int) -> None:
        """``n`` records of ``span`` are done (0: only check whether it can go)."""
        if span.closed:
            return
        span.pending -= n
        tp = span.held.tp
        if n and tp in self.waiting:
            self.waiting[tp] = max(0, self.waiting[tp] - n)
        if span.pending <= 0:
            self._close(span)
            span.consumer.ack_span(span.held)
        elif span.release_later and span.forwarding <= 0:
            self._close(span)
            span.consumer.release(span.held)
        self._check_resume(tp)

    def drop(self, items: Iterable[Item]) -> None:
        """A batch failed on a bug: its spans are read again after the next rebalance."""
        for item in items:
            span = item.span
            if not span.closed:
                self._close(span)
                span.consumer.release(span.held)

    def _close(self, span: Span) -> None:
        span.closed = True
        self.spans.discard(span)

    def _check_pause(self, tp: Any, limit: int) -> None:
        if self.waiting.get(tp, 0) > limit and tp not in self.paused and self.consumer:
            self.paused.add(tp)
            self.consumer.on_buffer_full(tp)

    def _check_resume(self, tp: Any) -> None:
        if tp not in self.paused:
            return
        limit = PARKED_READ_AHEAD if tp.topic in self._parked_accounts else MAX_PARTITION_RECORDS
        if self.waiting.get(tp, 0) <= limit // 2 and self.consumer is not None:
            self.paused.discard(tp)
            self.consumer.on_buffer_drop(tp)

    def on_flow_stopped(self) -> None:
        """A rebalance: drop every lane's work; its spans are read again after it. Spans
        whose records are being written to a parking topic go once that write is done."""
        for lane in self.lanes.values():
            lane.stop()
        self.lanes.clear()
        for span in list(self.spans):
            if span.forwarding > 0:
                span.release_later = True
            else:
                self._close(span)
                span.consumer.release(span.held)
        self.waiting.clear()
        self.paused.clear()

    async def stop(self) -> None:
        self.on_flow_stopped()
        await close_quietly(self.clients)

    # ------------------------------------------------------------------ what lanes ask

    def min_gap(self, account: str) -> float:
        cfg = self._config(account)
        rpm = cfg.requests_per_minute if cfg is not None else 1000
        return min(self.flush_interval(), GAP_SHARE * 60.0 / max(1, rpm))

    async def park(self, topic: str, items: list[Item]) -> dict[int, int]:
        sender = Sender(self._producer(), self.partitioner)
        for item in items:
            stamp = str(int(item.since * 1000)).encode()
            sender.add(topic, item.key, item.value, item.partition, {SINCE_HEADER: stamp})
        written = await sender.send()
        return {partition: last for (_, partition), last in written.items()}

    async def commit(self) -> None:
        if self.consumer is None:
            return
        try:
            await self.consumer.commit()
        except Exception:
            log.debug("a commit for unparking failed", exc_info=True)

    def committed(self, topic: str, partition: int) -> int | None:
        """The next offset to read as committed by this worker (Faust's bookkeeping)."""
        if self.consumer is None:
            return None
        offset: int | None = self.consumer._committed_offset.get(TP(topic, partition))
        return offset

    async def parking_drained(self, topic: str, partition: int) -> bool:
        if self.probe is None:
            return False
        return await self.probe.drained(topic, partition)

    def highwater(self, topic: str, partition: int) -> int | None:
        if self.consumer is None:
            return None
        try:
            high: int | None = self.consumer.highwater(TP(topic, partition))
        except Exception:  # not assigned (any more)
            return None
        return high

    async def deliver(self, lane: AccountLane, items: list[Item]) -> tuple[bool, list[Output]]:
        """Deliver a lane's batch: (whether Emarsys was given up on, unavailable for
        ``retry_for``; the outcomes to send, ``report``)."""
        account = lane.account
        cfg = self._config(account)
        outputs: list[Output] = []
        effects: list[dict[str, Any]] = []
        expired: list[dict[str, Any]] = []
        now = time.time()
        for item in items:
            try:
                effect = loads(item.value)
                if not isinstance(effect, dict):
                    raise ValueError("not an object")
            except Exception:
                outputs.append(self._dead("effect is not valid JSON", raw=item.value))
                continue
            owner = effect.get("account")
            if owner != account and (account != UNKNOWN or owner in self.parking_topics):
                outputs.append(
                    self._dead("the effect's key does not name its account", payload=effect)
                )
                continue
            if lane.failing and cfg is not None and now - item.since > cfg.retry_for:
                expired.append(effect)
            else:
                effects.append(effect)
        try:
            outcomes = await deliver(effects, self._config, self.clients)
        except Exception as exc:
            log.exception("delivering a batch failed")
            outcomes = [
                Outcome(e, False, None, f"internal error: {type(exc).__name__}") for e in effects
            ]
        if expired and cfg is not None:
            why = f"gave up: Emarsys unavailable for longer than {format_duration(cfg.retry_for)}"
            outcomes += [Outcome(e, False, None, why, True) for e in expired]
        reports: dict[tuple[str, str], list[dict[str, Any]]] = {}
        counts: dict[tuple[str, str, str], int] = {}
        at = now_iso()  # the batch's answer: one time for its outcomes
        for outcome in outcomes:
            outputs += self._report(outcome, reports, counts, at)
        for (acct, op, result), n in counts.items():
            self.runtime.metrics.inc(
                "emd_emarsys_contacts_total", n, account=acct, op=op, outcome=result
            )
        for (acct, person), entries in reports.items():
            outputs.append(
                Output(
                    PERSON,
                    keys.key(acct, person),
                    dumps({"k": "dlv", "a": acct, "p": person, "items": entries}),
                )
            )
        return any(o.given_up for o in outcomes), bundle(outputs, self.partitioner)

    async def report(self, outputs: list[Output]) -> None:
        """The outcomes must reach the broker before the records count as done."""
        delay = 0.2
        while True:
            try:
                await self.outbox.send(outputs)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("sending delivery outcomes failed; retrying", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)

    def _config(self, account: str) -> EmarsysConfig | None:
        acct = self.runtime.accounts.get(account)
        return acct.config.emarsys if acct is not None else None

    def _report(
        self,
        outcome: Outcome,
        reports: dict[tuple[str, str], list[dict[str, Any]]],
        counts: dict[tuple[str, str, str], int],
        at: str,
    ):
        e = outcome.effect
        account = e.get("account", "")
        result = "ok" if outcome.ok else ("gave_up" if outcome.given_up else "failed")
        counted = (account, str(e.get("op")), result)
        counts[counted] = counts.get(counted, 0) + 1
        entry = outcome.record()
        entry["at"] = at
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
        if account is None and isinstance(payload, dict):
            account = payload.get("account") if isinstance(payload.get("account"), str) else None
        return Output(
            DEAD,
            (account or "").encode(),
            dead_letter("sink", reason, account=account, payload=payload, raw=raw),
        )

    # ------------------------------------------------------------------ status

    def _age(self, lane: AccountLane) -> float:
        since = lane.oldest_since()
        return max(0.0, time.time() - since) if since is not None else 0.0

    def _is_parked(self, lane: AccountLane) -> float:
        return 1.0 if lane.blocked or lane.parked_partitions() else 0.0

    def _per_account(self, fn: Callable[[AccountLane], float]):
        def gauge() -> dict[tuple[tuple[str, str], ...], float]:
            return {
                (("account", name),): float(fn(lane))
                for name, lane in self.lanes.items()
                if name != UNKNOWN
            }

        return gauge

    def _retrying_gauge(self) -> dict[tuple[tuple[str, str], ...], float]:
        names = set(self.parking_topics) | set(self.retries.accounts())
        return {(("account", a),): float(self.retries.count(a)) for a in sorted(names)}

    def status(self, account: str) -> dict[str, Any]:
        """What this worker's lane of ``account`` holds and is doing (the deliveries view)."""
        lane = self.lanes.get(account)
        retrying = self.retries.snapshot(account)
        if lane is None:
            return {
                "state": "idle",
                "backlog": 0,
                "inMemory": 0,
                "parked": 0,
                "oldestAgeSeconds": None,
                "parkedPartitions": [],
                "directPartitions": [],
                "blockedSince": None,
                "retrying": retrying,
            }
        since = lane.oldest_since()
        parked = lane.parked_partitions()
        state = "parked" if lane.blocked or parked else "delivering"
        if state == "delivering" and not lane.in_memory():
            state = "idle"
        return {
            "state": state,
            "backlog": lane.backlog(),
            "inMemory": lane.in_memory(),
            "parked": lane.parked_backlog(),
            "oldestAgeSeconds": round(time.time() - since, 1) if since is not None else None,
            "parkedPartitions": parked,
            "directPartitions": sorted(p for p, st in lane.parts.items() if st.state == DIRECT),
            "blockedSince": iso(lane.blocked_since) if lane.blocked_since else None,
            "retrying": retrying,
        }
