"""Per-account delivery lanes: an account's failing or slow Emarsys delays only that account.

Every account has one lane per worker, fed by every emarsys-effects partition the worker
owns (a partition interleaves accounts; a lane takes only its account's records). A lane
sends batches to its account's Emarsys, up to ``sink.calls_in_flight`` calls at a time
(``Flight``), while the other accounts' lanes keep sending theirs. Calls in flight
together never share a contact (a batch leaves out the contacts of the calls in flight;
they wait, in order, for the next one), so each contact's effects still reach Emarsys
one call after the other, in order. A batch from the parking topic goes alone.

Offsets may be committed only once every effect up to them is accepted or
dead-lettered, so a lane that cannot deliver must not keep its records: it **parks**
them. Its account's effects go, in order, to the account's parking topic
(``<app_id>-parked-<account>``, keyed like the effects, partition p for effects
partition p); once the broker has them they count as done, and the effects partition's
offsets move on. The lane then delivers from the parking topic (the worker that owns
effects partition p owns parking partition p: same partition count, co-partitioned),
retrying as long as Emarsys fails, holding only a bounded read-ahead in memory.

Per (effects partition p, account) the lane is in one of four states:

- ``direct``: the account's records of p go into the lane and are delivered.
- ``parked``: they are forwarded to parking partition p. A lane parks when a call has
  been in flight for ``sink.park_after`` (5xx or 429 retries, timeouts, a slow Emarsys)
  or its oldest waiting effect has waited that long: the batches in flight are cancelled
  and parked first (oldest first), then the queued effects, then whatever arrives (a
  cancelled call may have reached Emarsys: effects are idempotent and trigger_ids
  dedupe).
- ``probing``: right after an assignment, until the broker has said whether the parking
  partition holds a backlog (below); new records wait in memory.
- ``unparking``: the parked backlog of p is nearly delivered; new records of p wait in
  memory until the last forwarded one is delivered **and its parking offset committed**,
  then the lane goes ``direct`` with them. Until that commit, a crash would read parked
  effects again after newer ones had gone directly (an old value over a new one).

Per contact the order holds in every state: a partition is fed by one source at a time,
the parking partition keeps the effects partition's order, and a state change waits for
the other source to be empty. Right after an assignment a partition starts
``probing``: the parking partition may hold what a previous owner parked, so its new
records wait in memory while ``agents.parking_probe`` asks the broker whether anything
is stored there from the committed offset on. Drained (the usual case: most accounts
never park), the partition goes ``direct`` with them; otherwise, or when the answer is
unclear, it goes ``parked``, and the first record forwarded tells the lane where that
backlog ends (no end offset is trusted: the embedded broker under-reports them), after
which it unparks as above; with no record to forward, it asks the broker again every
``REPROBE_EVERY`` seconds once nothing of it is in memory or in a call, and goes
``direct`` when the broker says drained (delivered and committed). A worker that
loses partitions (``stop``) lets its forwards in flight reach the broker before their
spans are released, so a new owner never finds a parked record appear behind it.

Parked effects that waited longer than ``retry_for`` while their account's Emarsys
kept failing are given up (dead-lettered with the reason) without another call; one
batch at a time retries as long as the client's ``retry_for``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Iterable
from typing import Any, Protocol

log = logging.getLogger("emd.sink")

DIRECT, PARKED, UNPARKING, PROBING = "direct", "parked", "unparking", "probing"
LINGER = 0.05  # a batch waits at least this long for company (unless it is full)
UNPARK_SLACK = 1000  # a parked backlog this small is drained with new records held back
HOLD_LIMIT = 5000  # records held back while unparking before the lane parks them again
UNPARK_POLL = 0.05
#: seconds between asking the broker again whether a parked partition that never parked
#: a record itself (taken over with a backlog, or its first probe failed) is drained
REPROBE_EVERY = 5.0
FORWARD_RETRY_MAX = 5.0
REPORTS_AHEAD = 2  # batches whose outcomes are still being sent when the next call starts


class Span:
    """A fetched span (one partition's records of one fetch): acked once every record of
    it is settled (delivered, dead-lettered or parked). The sink owns the bookkeeping."""

    __slots__ = ("closed", "consumer", "forwarding", "held", "owner", "pending", "release_later")

    def __init__(self, owner: Any, held: Any, consumer: Any, pending: int) -> None:
        self.owner = owner
        self.held = held
        self.consumer = consumer
        self.pending = pending
        self.forwarding = 0  # records of this span being written to a parking topic
        self.release_later = False  # released once its forwards are done (a rebalance)
        self.closed = False

    def settle(self, n: int = 1) -> None:
        self.owner.settled(self, n)


class Item:
    """One effect record in a lane. ``since`` is when the effect was first written (unix
    seconds); ``offset`` its parking offset when it came from the parking topic."""

    __slots__ = ("key", "offset", "partition", "queued", "since", "span", "value")

    def __init__(
        self,
        span: Span,
        partition: int,
        key: bytes,
        value: bytes,
        since: float,
        offset: int | None = None,
    ) -> None:
        self.span = span
        self.partition = partition
        self.key = key
        self.value = value
        self.since = since
        self.offset = offset
        self.queued = time.monotonic()


class Flight:
    """One call to Emarsys: its records, where they came from, the call's task, and
    whether ``_block`` took them back to park them (the call cancelled)."""

    __slots__ = ("call", "contacts", "items", "kind", "parked", "started")

    def __init__(self, kind: str, items: list[Item]) -> None:
        self.kind = kind
        self.items = items
        self.started = time.monotonic()
        self.contacts = {item.key for item in items}
        self.call: asyncio.Future[Any] | None = None
        self.parked = False


class LaneHost(Protocol):
    """What a lane needs from the sink."""

    def batch_size(self) -> int: ...
    def calls_in_flight(self) -> int: ...
    def flush_interval(self) -> float: ...
    def park_after(self) -> float: ...
    def min_gap(self, account: str) -> float: ...
    def deliver(self, lane: AccountLane, items: list[Item]) -> Awaitable[tuple[bool, Any]]: ...
    def report(self, outputs: Any) -> Awaitable[None]: ...
    def park(self, topic: str, items: list[Item]) -> Awaitable[dict[int, int]]: ...
    def commit(self) -> Awaitable[None]: ...
    def committed(self, topic: str, partition: int) -> int | None: ...
    def highwater(self, topic: str, partition: int) -> int | None: ...
    def parking_drained(self, topic: str, partition: int) -> Awaitable[bool]: ...
    def drop(self, items: Iterable[Item]) -> None: ...


class Partition:
    """The lane's view of one effects partition (and its parking partition)."""

    __slots__ = (
        "delivered",
        "forwarding",
        "holding",
        "parked_end",
        "probing",
        "state",
        "unparking",
    )

    def __init__(self, state: str) -> None:
        self.state = state
        self.parked_end: int | None = None  # last parking offset known written
        self.delivered: int | None = None  # last parking offset delivered by this lane
        self.forwarding = 0  # records of this partition being written to the parking topic
        self.holding: list[Item] = []  # unparking or probing: new records held back
        self.unparking: asyncio.Task[None] | None = None
        self.probing: asyncio.Task[None] | None = None

    def parked_backlog(self, highwater: int | None, committed: int | None) -> int:
        """Records in the parking partition not delivered yet (a gauge: approximate)."""
        end = self.parked_end if self.parked_end is not None else -1
        if highwater is not None:
            end = max(end, highwater - 1)
        done = self.delivered if self.delivered is not None else (committed or 0) - 1
        return max(0, end - done)


class AccountLane:
    def __init__(self, account: str, host: LaneHost, parked_topic: str | None) -> None:
        self.account = account
        self.host = host
        self.parked_topic = parked_topic  # None: this lane never parks (unknown accounts)
        self.direct: deque[Item] = deque()
        self.parked: deque[Item] = deque()
        self.parts: dict[int, Partition] = {}
        self.blocked = False  # Emarsys failing or slow: records are parked, not queued
        self.blocked_since: float | None = None
        self.failing = False  # the last batch was given up (Emarsys unavailable)
        #: the calls in flight, oldest first (direct ones, or a single parked one)
        self.flights: list[Flight] = []
        self.forward_queue: deque[Item] = deque()
        self.forwarding_now: list[Item] = []
        # Delivered batches whose outcomes are being sent (then their records are settled):
        # sent in order by one task while the next batch goes to Emarsys.
        self.reports: deque[tuple[Any, list[Item]]] = deque()
        self._report_task: asyncio.Task[None] | None = None
        self.last_call = 0.0
        self.stopped = False
        self._wakeup = asyncio.Event()
        self._forward_wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flight_tasks: set[asyncio.Task[None]] = set()
        self._forward_task: asyncio.Task[None] | None = None
        self._reprobe_task: asyncio.Task[None] | None = None

    @property
    def can_park(self) -> bool:
        return self.parked_topic is not None

    # ------------------------------------------------------------------ input

    def accept_direct(self, partition: int, items: list[Item]) -> None:
        """Records of an effects partition, in offset order."""
        st = self._part(partition)
        if st.state == DIRECT:
            if self.blocked and self.can_park:
                st.state = PARKED
                self._forward(items)
            else:
                self.direct.extend(items)
                self._check_age()
                self._wakeup.set()
        elif st.state == PARKED:
            self._forward(items)
        else:
            st.holding.extend(items)
            if len(st.holding) > HOLD_LIMIT:
                self._repark(st)
        self._ensure_running()

    def accept_parked(self, partition: int, items: list[Item]) -> None:
        """Records of the account's parking partition, in offset order."""
        if self._part(partition).state == DIRECT:
            # Only this lane writes there, and it went direct once all was delivered.
            log.warning(
                "account %s: parked effects appeared in partition %d after it went direct",
                self.account,
                partition,
            )
        self.parked.extend(items)
        self._wakeup.set()
        self._ensure_running()

    def _part(self, partition: int) -> Partition:
        st = self.parts.get(partition)
        if st is None:
            if not self.can_park:
                st = self.parts[partition] = Partition(DIRECT)
            elif self.blocked:
                st = self.parts[partition] = Partition(PARKED)
                self._ensure_reprobing()
            else:
                # Unknown until proven empty: the parking partition may hold a backlog.
                st = self.parts[partition] = Partition(PROBING)
                st.probing = asyncio.ensure_future(self._probe(partition, st))
        return st

    async def _probe(self, partition: int, st: Partition) -> None:
        """Ask the broker whether the parking partition is drained (``agents.parking_probe``):
        then the partition goes direct with what it held back, else it parks it."""
        assert self.parked_topic is not None
        try:
            drained = await self.host.parking_drained(self.parked_topic, partition)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("account %s: probing parking partition %d failed", self.account, partition)
            drained = False
        finally:
            st.probing = None
        if self.stopped or st.state != PROBING:
            return  # revoked, or parked meanwhile (Emarsys failing, too much held back)
        if not drained or self.blocked:
            self._repark(st)
            return
        self._go_direct(st)

    def _go_direct(self, st: Partition) -> None:
        """The partition delivers directly from now on, starting with what it held back."""
        st.state = DIRECT
        if st.holding:
            self.direct.extend(st.holding)
            st.holding = []
            self._wakeup.set()
            self._ensure_running()

    def _ensure_running(self) -> None:
        if self.stopped:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    # ------------------------------------------------------------------ delivering

    async def _run(self) -> None:
        while not self.stopped:
            kind, items = await self._gather()
            # From here to the call's start nothing awaits: a batch is always either
            # queued or in flight, where ``_block`` finds it (a batch between the two
            # would be sent directly after newer effects of its contacts were parked).
            flight = Flight(kind, items)
            self.flights.append(flight)
            self.last_call = flight.started
            flight.call = asyncio.ensure_future(self.host.deliver(self, items))
            task = asyncio.ensure_future(self._deliver(flight))
            self._flight_tasks.add(task)
            task.add_done_callback(self._flight_tasks.discard)

    def _choose(self) -> str | None:
        if self.parked and (self.blocked or not self.direct):
            return "parked"
        if self.direct and not self.parked:
            return "direct"
        if not self.direct:
            return None
        return "parked" if self.parked[0].since <= self.direct[0].since else "direct"

    def _room(self, kind: str) -> set[bytes] | None:
        """The contacts a new ``kind`` call must leave out (those in flight), or None when
        no call may start now: the outcomes of ``REPORTS_AHEAD`` batches are still being
        sent (the broker is slow), or a parked batch goes alone, or ``calls_in_flight``
        direct ones are in flight."""
        if len(self.reports) >= REPORTS_AHEAD:
            return None
        flights = self.flights
        if not flights:
            return set()
        if kind == "parked" or flights[0].kind == "parked":
            return None
        if len(flights) >= max(1, self.host.calls_in_flight()):
            return None
        return {key for f in flights for key in f.contacts}

    @staticmethod
    def _take(queue: deque[Item], limit: int, busy: set[bytes]) -> list[Item]:
        """Up to ``limit`` records from the head of ``queue`` whose contact is not
        ``busy``; the others stay, in their order."""
        if not busy:
            return [queue.popleft() for _ in range(min(limit, len(queue)))]
        taken: list[Item] = []
        kept: list[Item] = []
        while queue and len(taken) < limit:
            item = queue.popleft()
            (kept if item.key in busy else taken).append(item)
        queue.extendleft(reversed(kept))
        return taken

    async def _gather(self) -> tuple[str, list[Item]]:
        """The next batch: full, or its oldest record waited ``flush_interval``, or it waited
        ``LINGER`` and the account's previous call started at least ``min_gap`` ago (so a
        quiet account's effects go at once and a busy one's in few, large calls); only
        when a call may start (``_room``), of records whose contact is not in flight."""
        while True:
            self._check_age()
            kind = self._choose()
            busy = self._room(kind) if kind is not None else None
            queue = self.parked if kind == "parked" else self.direct
            if busy and not any(item.key not in busy for item in queue):
                busy = None  # every record waits for a contact in flight
            if kind is None or busy is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            limit = self.host.batch_size()
            now = time.monotonic()
            age = now - queue[0].queued
            gap = self.last_call + self.host.min_gap(self.account) - now
            flush = self.host.flush_interval()
            if len(queue) >= limit or age >= flush or (age >= LINGER and gap <= 0):
                return kind, self._take(queue, limit, busy)
            self._wakeup.clear()
            wait = max(0.005, min(flush - age, max(LINGER - age, gap)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)

    async def _deliver(self, flight: Flight) -> None:
        items = flight.items
        started = flight.started
        park_after = self.host.park_after()
        task = flight.call
        assert task is not None
        try:
            done, _ = await asyncio.wait({task}, timeout=park_after)
            if not done:
                self._block()  # the direct batches in flight are cancelled and parked first
            await asyncio.wait({task})
            if flight.parked:  # parked by _block: the parking topic has them
                if not task.cancelled() and task.exception() is not None:
                    log.debug("a cancelled delivery failed", exc_info=task.exception())
                return
            unavailable, outputs = task.result()
        except asyncio.CancelledError:
            task.cancel()
            raise
        except Exception:  # a bug, not Emarsys: the records are read again later
            log.exception("account %s: the sink failed on a batch", self.account)
            self.host.drop(items)
            return
        finally:
            if flight in self.flights:  # stop() lets go of them all
                self.flights.remove(flight)
            self._wakeup.set()  # its contacts, or the room it took, are free again
        self.failing = unavailable
        # Emarsys answered: the lane is healthy again if it answered in time, or if there
        # is nothing else to send (the next records go directly; a slow answer parks them
        # again after park_after).
        if not unavailable and (time.monotonic() - started < park_after or self._idle()):
            self._unblock()
        for item in items:
            if item.offset is not None:
                st = self._part(item.partition)
                if st.delivered is None or item.offset > st.delivered:
                    st.delivered = item.offset
        self.reports.append((outputs, items))
        if self._report_task is None or self._report_task.done():
            self._report_task = asyncio.ensure_future(self._report_loop())
        self._check_unparks()

    async def _report_loop(self) -> None:
        """Outcomes to the broker in delivery order; then the batch's records are done
        (their offsets may be committed: a parked partition unparks only after that)."""
        while self.reports and not self.stopped:
            outputs, items = self.reports[0]
            try:
                await self.host.report(outputs)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: the records are read again later
                log.exception("account %s: sending outcomes failed", self.account)
                self.reports.popleft()
                self.host.drop(items)
                self._wakeup.set()
                continue
            self.reports.popleft()
            for item in items:
                item.span.settle()
            self._wakeup.set()  # a call waiting for the broker may start
            self._check_unparks()

    # ------------------------------------------------------------------ parking

    def _check_age(self) -> None:
        """Effects waiting longer than ``park_after``: the lane cannot keep up."""
        if (
            self.can_park
            and self.direct
            and time.monotonic() - self.direct[0].queued > self.host.park_after()
        ):
            self._block()

    def _block(self) -> None:
        """Park: the direct batch in flight (cancelled), the queued records, the ones held
        back by an unparking partition, and from now on every new one, in that order
        (oldest first, per partition)."""
        if not self.blocked:
            log.warning(
                "account %s: Emarsys failing or slow for %.0fs: parking its effects",
                self.account,
                self.host.park_after(),
            )
            self.blocked_since = time.time()
        self.blocked = True
        if not self.can_park:
            return
        moved: list[Item] = []
        for flight in self.flights:
            call = flight.call
            if (
                flight.kind == "direct"
                and not flight.parked
                and call is not None
                and not call.done()
            ):
                call.cancel()  # it may have reached Emarsys: effects are idempotent
                flight.parked = True
                moved += flight.items
        moved += self.direct
        self.direct.clear()
        for st in self.parts.values():
            if st.state in (UNPARKING, PROBING):
                moved += st.holding
                st.holding = []
                st.state = PARKED
        for item in moved:
            self._part(item.partition).state = PARKED
        if moved:
            self._forward(moved)
        self._ensure_reprobing()

    def _unblock(self) -> None:
        if self.blocked:
            log.info("account %s: Emarsys answers again", self.account)
        self.blocked = False
        self.blocked_since = None
        self._check_unparks()

    def _repark(self, st: Partition) -> None:
        st.state = PARKED
        held, st.holding = st.holding, []
        self._forward(held)
        self._ensure_reprobing()

    # A parked partition learns where its parking backlog ends from the first record it
    # forwards itself (no end offset is trusted). One that has forwarded none (taken
    # over with a backlog, or its probe failed, and no effect since) asks the broker
    # again every ``REPROBE_EVERY`` seconds, once nothing of it is in memory or in a
    # call: drained (everything delivered and committed), it goes direct, so its next
    # effect does not take the parking hop.

    def _unknown_end(self, partition: int, st: Partition) -> bool:
        return (
            st.state == PARKED
            and st.parked_end is None
            and st.forwarding == 0
            and not any(i.partition == partition for i in self.parked)
            and not any(
                i.partition == partition
                for f in self.flights
                if f.kind == "parked"
                for i in f.items
            )
        )

    def _ensure_reprobing(self) -> None:
        if self.stopped or not self.can_park:
            return
        if self._reprobe_task is None or self._reprobe_task.done():
            self._reprobe_task = asyncio.ensure_future(self._reprobe_loop())

    async def _reprobe_loop(self) -> None:
        assert self.parked_topic is not None
        while not self.stopped:
            waiting = [
                p for p, st in self.parts.items() if st.state == PARKED and st.parked_end is None
            ]
            if not waiting:
                return
            await asyncio.sleep(REPROBE_EVERY)
            if self.blocked:
                continue  # Emarsys failing: everything parks anyway
            ready = [p for p in waiting if self._unknown_end(p, self.parts[p])]
            if not ready:
                continue
            await self.host.commit()  # what was delivered: its parking offsets committed
            topic = self.parked_topic
            # asked in one turn: the probe answers them all over one connection
            answers = await asyncio.gather(
                *(self.host.parking_drained(topic, p) for p in ready), return_exceptions=True
            )
            for p, drained in zip(ready, answers, strict=True):
                if isinstance(drained, BaseException):
                    if isinstance(drained, asyncio.CancelledError):
                        raise drained
                    log.warning("account %s: probing parking partition %d failed", self.account, p)
                    continue
                st = self.parts[p]
                if (
                    drained
                    and not self.stopped
                    and not self.blocked
                    and self._unknown_end(p, st)  # nothing forwarded or fetched meanwhile
                ):
                    self._go_direct(st)
                    log.info("account %s: partition %d delivers directly", self.account, p)

    def _forward(self, items: list[Item]) -> None:
        for item in items:
            self._part(item.partition).forwarding += 1
            item.span.forwarding += 1
        self.forward_queue.extend(items)
        self._forward_wakeup.set()
        if self._forward_task is None or self._forward_task.done():
            self._forward_task = asyncio.ensure_future(self._forward_loop())

    async def _forward_loop(self) -> None:
        assert self.parked_topic is not None
        while True:
            if not self.forward_queue:
                if self.stopped:
                    return
                self._forward_wakeup.clear()
                await self._forward_wakeup.wait()
                continue
            batch = list(self.forward_queue)
            self.forward_queue.clear()
            self.forwarding_now = batch
            delay = 0.2
            while True:
                try:
                    written = await self.host.park(self.parked_topic, batch)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    if self.stopped:  # lost the partitions: the records are read again
                        self._forwarded(batch, {})
                        return
                    log.warning("account %s: parking failed; retrying", self.account)
                    await asyncio.sleep(delay)
                    delay = min(FORWARD_RETRY_MAX, delay * 2)
            self._forwarded(batch, written)
            if self.stopped:
                return

    def _forwarded(self, batch: list[Item], written: dict[int, int]) -> None:
        self.forwarding_now = []
        for partition, last in written.items():
            st = self._part(partition)
            if st.parked_end is None or last > st.parked_end:
                st.parked_end = last
        for item in batch:
            self._part(item.partition).forwarding -= 1
            item.span.forwarding -= 1
            if written:
                item.span.settle()
            else:
                item.span.settle(0)  # only lets a released span go
        self._check_unparks()

    def _check_unparks(self) -> None:
        if self.stopped or self.blocked or not self.can_park:
            return
        for partition, st in self.parts.items():
            if (
                st.state == PARKED
                and st.forwarding == 0
                and st.parked_end is not None
                and st.delivered is not None
                and st.parked_end - st.delivered <= UNPARK_SLACK
            ):
                st.state = UNPARKING
                st.unparking = asyncio.ensure_future(self._unpark(partition, st))

    async def _unpark(self, partition: int, st: Partition) -> None:
        assert self.parked_topic is not None
        try:
            while not self.stopped and st.state == UNPARKING:
                end = st.parked_end
                drained = (
                    st.forwarding == 0
                    and end is not None
                    and st.delivered is not None
                    and st.delivered >= end
                )
                if drained and end is not None:
                    committed = self.host.committed(self.parked_topic, partition)
                    if committed is not None and committed > end:
                        self._go_direct(st)
                        log.info(
                            "account %s: partition %d delivers directly", self.account, partition
                        )
                        return
                    await self.host.commit()
                await asyncio.sleep(UNPARK_POLL)
        finally:
            st.unparking = None

    # ------------------------------------------------------------------ lifecycle, status

    def stop(self) -> None:
        """Partitions revoked: drop everything; forwards already sending may finish."""
        self.stopped = True
        for task in (
            self._task,
            *self._flight_tasks,
            self._report_task,
            self._reprobe_task,
            *(st.unparking for st in self.parts.values()),
            *(st.probing for st in self.parts.values()),
        ):
            if task is not None:
                task.cancel()
        for flight in self.flights:  # a flight whose task never ran has its call running
            if flight.call is not None:
                flight.call.cancel()
        self.flights = []
        if self._forward_task is not None and not self.forwarding_now:
            self._forward_task.cancel()
        self._forward_wakeup.set()
        for item in self.forward_queue:  # never sent: their spans may be released now
            item.span.forwarding -= 1
        self.direct.clear()
        self.parked.clear()
        self.forward_queue.clear()
        self.reports.clear()
        for st in self.parts.values():
            st.holding = []

    def _idle(self) -> bool:
        return not (
            self.direct
            or self.parked
            or self.forward_queue
            or self.forwarding_now
            or any(st.holding for st in self.parts.values())
        )

    def in_memory(self) -> int:
        holding = sum(len(st.holding) for st in self.parts.values())
        return (
            sum(len(items) for _, items in self.reports)
            + len(self.direct)
            + len(self.parked)
            + sum(len(f.items) for f in self.flights if not f.parked)
            + len(self.forward_queue)
            + len(self.forwarding_now)
            + holding
        )

    def parked_backlog(self) -> int:
        if self.parked_topic is None:
            return 0
        topic = self.parked_topic
        return sum(
            st.parked_backlog(self.host.highwater(topic, p), self.host.committed(topic, p))
            for p, st in self.parts.items()
        )

    def backlog(self) -> int:
        """Effects not delivered yet: in memory, on their way to parking, parked (the
        parked ones read into memory are counted by ``parked_backlog``)."""
        direct = sum(len(f.items) for f in self.flights if f.kind == "direct" and not f.parked)
        return (
            direct
            + len(self.direct)
            + len(self.forward_queue)
            + len(self.forwarding_now)
            + sum(len(st.holding) for st in self.parts.values())
            + self.parked_backlog()
        )

    def oldest_since(self) -> float | None:
        heads: list[float] = [i.since for f in self.flights if not f.parked for i in f.items]
        for queue in (self.direct, self.parked, self.forward_queue):
            if queue:
                heads.append(queue[0].since)
        heads += [i.since for i in self.forwarding_now[:1]]
        heads += [st.holding[0].since for st in self.parts.values() if st.holding]
        return min(heads) if heads else None

    def parked_partitions(self) -> list[int]:
        """Partitions whose records go to the parking topic and have a backlog there."""
        topic = self.parked_topic
        if topic is None:
            return []
        return sorted(
            p
            for p, st in self.parts.items()
            if st.state != DIRECT
            and (
                st.forwarding
                or st.parked_backlog(self.host.highwater(topic, p), self.host.committed(topic, p))
            )
        )
