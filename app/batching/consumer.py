"""Batch delivery inside Faust: each partition's fetched records reach a handler as a list.

Faust's per-message path (``Consumer._drain_messages``: a ``wait_first`` per message, the
conductor's lock, the channel queue, ``Event`` objects, the stream iterator, an ack under
a lock) costs more per event than this app's whole decision. For the topics a
``BatchHandler`` claims, ``BatchConsumer`` replaces it: one fetch (``_wait_next_records``,
Faust's own) becomes one call with ``{tp: [ConsumerRecord, ...]}``; the handler (or a task
it hands records to) calls ``ack_span`` when a partition's records are done, which marks
them acked in Faust's own bookkeeping (``_acked``/``_acked_index``/``_n_acked``). Faust's
commit (producer flushed, then offsets committed, ``Consumer._commit_offsets``) stays
the only commit, so at-least-once is unchanged. Topics no handler claims keep Faust's
per-message route. Each fetch first takes, without waiting, what the fetcher holds of the
topics the handler prioritises (``_prioritised_records``), so a backlog on one topic does
not keep the others' records behind it.

Rebalances: Faust stops the flow (``stop_flow``), then waits for every message it handed
out to be acked (``wait_empty`` over ``_unacked_messages``). A span in flight is a
``Held`` placeholder in that set, so the wait covers it; ``stop_flow`` tells the handler
(``on_flow_stopped``), so work that may take long (Emarsys retries) lets go of its spans
instead of holding the rebalance. A fetch is handed out only while the flow is active
and the consumer generation is the one the fetch began in.

These are private internals of faust-streaming 0.15: the version is pinned in
pyproject.toml and ``tests/unit/test_batching_faust_internals.py`` fails loudly when an
upgrade changes any of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from faust.transport.consumer import CONSUMER_FETCHING, ensure_TP
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from faust.types.tuples import ack_lock


class BatchHandler(Protocol):
    def claims(self, topic: str) -> bool:
        """Whether records of ``topic`` go to ``handle`` (else Faust's per-message path)."""

    async def handle(self, batches: Mapping[TP, list[Any]], consumer: BatchConsumer) -> None:
        """One fetch of claimed records; call ``consumer.ack_span`` for each partition done."""

    async def idle(self, consumer: BatchConsumer) -> None:
        """Called after every fetch, records or not (the clock runs here)."""

    def poll_timeout(self) -> float:
        """How long a fetch may wait for records (seconds)."""

    def prioritised(self, topic: str) -> bool:
        """Whether what the fetcher holds of ``topic`` is taken before the other topics'."""

    def on_flow_stopped(self) -> None:
        """A rebalance began: let go of long work (its spans will be read again)."""


class Held:
    """A span handed out and not yet acked: what ``wait_empty`` waits for."""

    __slots__ = ("__weakref__", "acked", "done", "first", "last", "refcount", "tp")

    def __init__(self, tp: TP, first: int, last: int) -> None:
        self.tp, self.first, self.last = tp, first, last
        self.done = False  # processed; acked once every earlier span of tp is
        self.acked = False
        self.refcount = 1  # Faust's wait_empty log line prints it

    def __repr__(self) -> str:
        return f"<span {self.tp.topic}[{self.tp.partition}] {self.first}..{self.last}>"


_NO_TP = TP("", -1)


class BatchConsumer(driver.Consumer):
    """Faust's aiokafka consumer with batch delivery for the topics a handler claims."""

    batch_handler: BatchHandler | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._held: dict[TP, list[Held]] = {}  # spans in flight per partition, in order

    # ------------------------------------------------------------------ acks

    def hold(self, tp: TP, first: int, last: int) -> Held:
        """Mark ``first..last`` of ``tp`` handed out (``wait_empty`` waits for it)."""
        held = Held(tp, first, last)
        self._held.setdefault(tp, []).append(held)
        self._unacked_messages.add(held)  # type: ignore[arg-type]
        return held

    def busy(self) -> Held:
        """Mark work in flight that holds no span (the clock's transactions): a rebalance
        waits for it like for a span (``wait_empty``), so its writes are in before the
        partition's next owner recovers the table. ``idle_done`` ends it."""
        held = Held(_NO_TP, -1, -1)
        self._unacked_messages.add(held)  # type: ignore[arg-type]
        return held

    def idle_done(self, held: Held) -> None:
        held.acked = True
        self._unacked_messages.discard(held)  # type: ignore[arg-type]
        self._notify_ack()

    def release(self, held: Held) -> None:
        """Forget a span without acking it, and the partition's later spans with it:
        they will be read again after the rebalance (acking a later span would commit
        past this one's records)."""
        spans = self._held.get(held.tp, [])
        doomed = [h for h in spans if h.first >= held.first] if held in spans else [held]
        for h in doomed:
            self._forget(h)
            h.acked = True  # nothing waits for it any more
        self._notify_ack()

    def ack_span(self, held: Held) -> None:
        """Everything in ``held`` is processed: ack it as Faust acks messages one by one,
        so the next commit includes it. Spans are committed in offset order: one acked
        while an earlier span of its partition is in flight waits for it (Faust's
        ``_new_offset`` alone would commit past a head it has not seen acked). A span of a
        partition revoked meanwhile is dropped (its records belong to the new owner)."""
        spans = self._held.get(held.tp)
        if not spans or held not in spans:
            return  # released already
        held.done = True
        while spans and spans[0].done:
            self._ack_offsets(spans[0])
        self._notify_ack()

    def _ack_offsets(self, held: Held) -> None:
        tp = held.tp
        self._forget(held)
        with ack_lock:
            if held.acked:
                return
            held.acked = True
            if tp in self.assignment() and self.app.topics.acks_enabled_for(tp.topic):
                committed = self._committed_offset[tp]
                start = held.first if committed is None else max(held.first, committed)
                if start <= held.last:
                    index = self._acked_index[tp]
                    fresh = [o for o in range(start, held.last + 1) if o not in index]
                    index.update(fresh)
                    self._acked[tp].extend(fresh)
                    self._n_acked += len(fresh)

    def _forget(self, held: Held) -> None:
        spans = self._held.get(held.tp)
        if spans is not None and held in spans:
            spans.remove(held)
            if not spans:
                del self._held[held.tp]
        self._unacked_messages.discard(held)  # type: ignore[arg-type]

    def _notify_ack(self) -> None:
        waiter = self._waiting_for_ack
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def stop_flow(self) -> None:
        super().stop_flow()
        handler = self.batch_handler
        if handler is not None:
            handler.on_flow_stopped()

    # ------------------------------------------------------------------ the fetch loop

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - live only
        handler = self.batch_handler
        if handler is None:
            await super()._drain_messages(fetcher)
            return
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                try:
                    await self._drain_once(handler)
                finally:
                    self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise

    async def _drain_once(self, handler: BatchHandler) -> None:
        before = self.app.consumer_generation_id
        first = await self._prioritised_records(handler)
        records, active = await self._wait_next_records(0 if first else handler.poll_timeout())
        generation = self.app.consumer_generation_id
        if first:
            if generation != before:
                # A rebalance between the two: both are read again from the committed
                # offsets (the fetcher's positions are past them).
                await self._seek_back()
                return
            records = _joined(first, records or {})
        await asyncio.sleep(0)
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            # A rebalance began while fetching: what was fetched is read again after it.
            await self._seek_back()
            return
        claimed: dict[TP, list[Any]] = {}
        for tp, recs in records.items():
            if not recs:
                continue
            tp = ensure_TP(tp)
            if (
                active is not None
                and tp not in active
                and tp not in self._buffered_partitions
                and tp not in first  # active when it was taken; the generation is the same
            ):
                continue
            recs = self._unread(tp, recs)
            if not recs:
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            if handler.claims(tp.topic):
                if self.app.consumer_generation_id != generation or not self.flow_active:
                    return  # read again after the rebalance
                await self._close_gap(tp, recs[0].offset)
                claimed[tp] = recs
                self._read_offset[tp] = recs[-1].offset + 1
            else:
                await self._per_message(tp, recs, generation)
        if claimed:
            await handler.handle(claimed, self)
        if self.flow_active and self.app.consumer_generation_id == generation:
            await handler.idle(self)
        commit_every = self._commit_every
        if commit_every is not None and self._n_acked >= commit_every:
            self._n_acked = 0
            await self.commit()

    async def _seek_back(self) -> None:
        try:
            await self.perform_seek()
        except Exception as exc:
            self.log.warning("seeking back after a stopped flow failed: %r", exc)

    async def _prioritised_records(self, handler: BatchHandler) -> dict[Any, list[Any]]:
        """The fetcher's buffered records of the prioritised topics, taken first.

        aiokafka hands out buffered records partition by partition in the order their
        fetches arrived, up to ``max_poll_records`` (5,000): while the input topic has a
        backlog, its partitions fill every fetch and the effects the stages wrote wait
        behind them for several fetches (seconds before Emarsys hears of them). A first
        look at the other topics, without waiting, gives them their turn in every fetch."""
        if not self.flow_active:
            return {}
        wanted = {tp for tp in self._get_active_partitions() if handler.prioritised(tp.topic)}
        if not wanted:
            return {}
        return dict(await self._getmany(active_partitions=wanted, timeout=0))

    def _unread(self, tp: TP, recs: list[Any]) -> list[Any]:
        """Drop what was read already (a fetch racing a seek returns it again)."""
        r_offset = self._read_offset[tp]
        if r_offset is None or recs[0].offset >= r_offset:
            return recs
        return [r for r in recs if r.offset >= r_offset]

    async def _close_gap(self, tp: TP, first: int) -> None:
        """Offsets between what was read and this fetch hold no records (compaction,
        transaction markers): count them as acked, or the commit stops at them."""
        expected = self._read_offset[tp]
        if expected is None:
            expected = self._committed_offset[tp]
        if expected is not None and first > expected:
            await self._add_gap(tp, expected, first - 1)

    async def _per_message(self, tp: TP, recs: list[Any], generation: int) -> None:
        """Faust's own route for topics no handler claims (config, changelogs...)."""
        callback = self.callback
        to_message = self._to_message
        for record in recs:
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return
            r_offset = self._read_offset[tp]
            if r_offset is not None and record.offset < r_offset:
                continue
            await self._close_gap(tp, record.offset)
            await self.wait_first(callback(to_message(tp, record)), self.suspend_flow.wait())
            self._read_offset[tp] = record.offset + 1


class BatchTransport(driver.Transport):
    """The aiokafka transport with ``BatchConsumer`` (set on the app: ``EmdApp``)."""

    Consumer = BatchConsumer


def _joined(first: Mapping[Any, list[Any]], then: Mapping[Any, list[Any]]) -> dict[Any, list[Any]]:
    """Two fetches in one: per partition, the first's records before the second's."""
    out = {tp: list(recs) for tp, recs in first.items()}
    for tp, recs in then.items():
        out[tp] = out[tp] + list(recs) if tp in out else list(recs)
    return out
