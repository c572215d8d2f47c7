"""The per-account lane (``agents.lanes``) against an in-memory broker and a scripted
Emarsys: random traffic, outages, slow calls and a rebalance in the middle.

The host here is test equipment, like the client's scripted HTTP server: the effects
and parking "topics" are lists with acked and committed offsets, fed to the lane as
Faust's batch path feeds it (in order per partition, a bounded read-ahead of the parking
partitions, spans acked when settled, commits now and then); Emarsys is a function that
waits while it is "down" or "slow" and records what it accepted. What is checked is what
a user would see in Emarsys: every contact ends with its last value; without a
rebalance, no contact ever gets an older value after a newer one; everything is acked.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from agents import lanes
from agents.lanes import DIRECT, PARKED, AccountLane, Item, Span

P = 3  # partitions


@pytest.fixture(autouse=True)
def quick_reprobe(monkeypatch):
    """Parked partitions that know no end of their backlog ask the broker again every
    20 ms (5 s in a worker), so every scenario here runs that path too."""
    monkeypatch.setattr(lanes, "REPROBE_EVERY", 0.02)


PARKED_READ_AHEAD = 40


@dataclass
class Held:
    tp: tuple[str, int]
    first: int
    last: int


@dataclass
class Topic:
    records: list[tuple[bytes, bytes, float]] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)
    committed: int = 0

    def commit(self) -> None:
        while self.committed in self.acked:
            self.committed += 1


class Host:
    """What the sink gives a lane, over in-memory topics and a scripted Emarsys."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.effects = {p: Topic() for p in range(P)}
        self.parking = {p: Topic() for p in range(P)}
        self.accepted: list[tuple[str, int]] = []  # (contact, seq) as Emarsys took them
        self.down_until = 0.0
        self.slow = 0.0
        self.dropped: list[Item] = []
        self.released: list[Span] = []
        self.spans: set[Span] = set()
        self.probes: list[int] = []  # partitions whose parking partition was asked about
        self.probe_fails = False
        self.calls = 3  # calls in flight at once
        self.calling: list[set[str]] = []  # the contacts of each call in flight
        self.most_calls = 0  # the most calls in flight at once
        self.shared: list[set[str]] = []  # contacts that were in two calls at once

    # -- LaneHost
    def batch_size(self) -> int:
        return 20

    def calls_in_flight(self) -> int:
        return self.calls

    def flush_interval(self) -> float:
        return 0.02

    def park_after(self) -> float:
        return 0.06

    def min_gap(self, account: str) -> float:
        return 0.005

    async def deliver(self, lane: AccountLane, items: list[Item]) -> tuple[bool, Any]:
        contacts = {json.loads(item.value)["contact"] for item in items}
        for other in self.calling:
            if contacts & other:
                self.shared.append(contacts & other)
        self.calling.append(contacts)
        self.most_calls = max(self.most_calls, len(self.calling))
        try:
            while time.monotonic() < self.down_until:  # the client retrying a 503
                await asyncio.sleep(0.005)
            if self.slow:
                await asyncio.sleep(self.slow)
            await asyncio.sleep(self.rng.uniform(0, 0.004))
            for item in items:  # accepted at once, in order (no await from here on)
                e = json.loads(item.value)
                self.accepted.append((e["contact"], e["seq"]))
            return False, []
        finally:
            self.calling.remove(contacts)

    async def report(self, outputs: Any) -> None:
        await asyncio.sleep(self.rng.uniform(0, 0.003))

    async def park(self, topic: str, items: list[Item]) -> dict[int, int]:
        await asyncio.sleep(self.rng.uniform(0, 0.003))
        last: dict[int, int] = {}
        for item in items:
            t = self.parking[item.partition]
            t.records.append((item.key, item.value, item.since))
            last[item.partition] = len(t.records) - 1
        return last

    async def commit(self) -> None:
        for t in (*self.effects.values(), *self.parking.values()):
            t.commit()

    def committed(self, topic: str, partition: int) -> int | None:
        return self.parking[partition].committed

    def highwater(self, topic: str, partition: int) -> int | None:
        return len(self.parking[partition].records)

    async def parking_drained(self, topic: str, partition: int) -> bool:
        """The broker's answer: nothing stored from the committed offset on."""
        self.probes.append(partition)
        await asyncio.sleep(self.rng.uniform(0, 0.01))
        if self.probe_fails:
            raise ConnectionError("broker unreachable")
        t = self.parking[partition]
        return t.committed >= len(t.records)

    def drop(self, items: Any) -> None:
        self.dropped += list(items)

    # -- the sink's span bookkeeping
    def settled(self, span: Span, n: int) -> None:
        if span.closed:
            return
        span.pending -= n
        if span.pending <= 0:
            span.closed = True
            self.spans.discard(span)
            topic = span.held.tp
            t = (self.effects if topic[0] == "e" else self.parking)[topic[1]]
            t.acked.update(range(span.held.first, span.held.last + 1))
        elif span.release_later and span.forwarding <= 0:
            span.closed = True
            self.spans.discard(span)
            self.released.append(span)

    def span(self, kind: str, p: int, first: int, last: int) -> Span:
        span = Span(self, Held((kind, p), first, last), None, last - first + 1)
        self.spans.add(span)
        return span


def idle_parked(st: Any) -> bool:
    """A partition taken over with a parking backlog (or whose probe failed) that has had no
    effect of its own since: it goes direct once the broker says its parking partition is
    drained (asked again every ``REPROBE_EVERY``), or with its next effect."""
    return st.state != DIRECT and st.parked_end is None and st.forwarding == 0


class Run:
    """One scenario: a producer, the batch path's fetches, chaos, maybe a rebalance."""

    def __init__(self, seed: int, rebalance: bool) -> None:
        self.rng = random.Random(seed)
        self.host = Host(self.rng)
        self.rebalance = rebalance
        self.contacts = [f"c{i}" for i in range(12)]
        self.last: dict[str, int] = {}
        self.produced = 0
        self.done_producing = False

    def partition(self, contact: str) -> int:
        return int(contact[1:]) % P

    async def produce(self, n: int) -> None:
        for seq in range(n):
            contact = self.rng.choice(self.contacts)
            value = json.dumps({"contact": contact, "seq": seq}).encode()
            key = f"acme\x1f{contact}".encode()
            self.host.effects[self.partition(contact)].records.append((key, value, time.time()))
            self.last[contact] = seq
            self.produced += 1
            if self.rng.random() < 0.2:
                await asyncio.sleep(self.rng.uniform(0, 0.01))
        self.done_producing = True

    async def fetch(self, lane: AccountLane, pos: dict[str, dict[int, int]]) -> None:
        """Faust's batch path: spans per partition, in order; parking read-ahead bounded."""
        while True:
            for p in range(P):
                t = self.host.effects[p]
                start = pos["e"][p]
                if start < len(t.records):
                    end = min(len(t.records), start + self.rng.randint(1, 15))
                    span = self.host.span("e", p, start, end - 1)
                    items = [Item(span, p, k, v, s) for k, v, s in t.records[start:end]]
                    pos["e"][p] = end
                    lane.accept_direct(p, items)
                k = self.host.parking[p]
                start = pos["k"][p]
                in_memory = sum(1 for i in lane.parked if i.partition == p)
                if start < len(k.records) and in_memory < PARKED_READ_AHEAD:
                    end = min(len(k.records), start + self.rng.randint(1, 15))
                    span = self.host.span("k", p, start, end - 1)
                    items = [
                        Item(span, p, key, v, s, off)
                        for off, (key, v, s) in enumerate(k.records[start:end], start)
                    ]
                    pos["k"][p] = end
                    lane.accept_parked(p, items)
            await asyncio.sleep(self.rng.uniform(0, 0.006))

    async def chaos(self) -> None:
        while not self.done_producing:
            await asyncio.sleep(self.rng.uniform(0.02, 0.12))
            roll = self.rng.random()
            if roll < 0.3:
                self.host.down_until = time.monotonic() + self.rng.uniform(0.05, 0.3)
            elif roll < 0.45:
                self.host.slow = self.rng.uniform(0.07, 0.15)
            else:
                self.host.slow = 0.0
        self.host.slow = 0.0

    async def committer(self) -> None:
        while True:
            await asyncio.sleep(0.03)
            await self.host.commit()

    def new_lane(self) -> tuple[AccountLane, dict[str, dict[int, int]]]:
        lane = AccountLane("acme", self.host, "parked-acme")
        pos = {
            "e": {p: self.host.effects[p].committed for p in range(P)},
            "k": {p: self.host.parking[p].committed for p in range(P)},
        }
        return lane, pos

    def drained(self, lane: AccountLane) -> bool:
        h = self.host
        return (
            self.done_producing
            and all(t.committed == len(t.records) for t in h.effects.values())
            and all(t.committed == len(t.records) for t in h.parking.values())
            and all(st.state == DIRECT or idle_parked(st) for st in lane.parts.values())
        )

    async def go(self) -> AccountLane:
        lane, pos = self.new_lane()
        tasks = [
            asyncio.ensure_future(self.produce(400)),
            asyncio.ensure_future(self.chaos()),
            asyncio.ensure_future(self.committer()),
        ]
        fetcher = asyncio.ensure_future(self.fetch(lane, pos))
        if self.rebalance:
            await asyncio.sleep(self.rng.uniform(0.1, 0.4))
            # A rebalance: the lane lets go (forwards being written finish first) and the
            # partitions are read again from their committed offsets by a new lane.
            fetcher.cancel()
            lane.stop()
            for span in list(self.host.spans):
                if span.forwarding > 0:
                    span.release_later = True
                else:
                    span.closed = True
                    self.host.spans.discard(span)
            await asyncio.sleep(0.02)  # the old lane's forward finishes
            lane, pos = self.new_lane()
            fetcher = asyncio.ensure_future(self.fetch(lane, pos))
        deadline = time.monotonic() + 20
        while not self.drained(lane):
            assert time.monotonic() < deadline, "not drained"
            await asyncio.sleep(0.02)
        fetcher.cancel()
        for t in tasks:
            t.cancel()
        lane.stop()
        return lane


def latest(accepted: list[tuple[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for contact, seq in accepted:
        out[contact] = seq
    return out


@pytest.mark.parametrize("seed", range(6))
async def test_every_contact_ends_with_its_last_value_and_never_goes_back(seed):
    run = Run(seed, rebalance=False)
    await run.go()
    assert run.host.dropped == []
    assert latest(run.host.accepted) == run.last
    seen: dict[str, int] = {}
    for contact, seq in run.host.accepted:
        assert seq >= seen.get(contact, -1), f"{contact}: {seq} after {seen[contact]}"
        seen[contact] = seq
    # every effect reached Emarsys at least once
    assert {s for _, s in run.host.accepted} == set(range(run.produced))
    # calls at once (as many as traffic and timing allow), never two with one contact
    assert run.host.shared == []
    assert run.host.most_calls <= run.host.calls


@pytest.mark.parametrize("calls", [1, 2, 3])
async def test_a_slow_emarsys_gets_calls_in_flight_calls_at_once(calls: int) -> None:
    """Emarsys answering slowly (but within park_after): the lane keeps ``calls`` calls
    in flight, each with other contacts, and every contact still gets its effects in
    order and ends with its last value."""
    run = Run(11, rebalance=False)
    run.host.calls = calls
    run.host.slow = 0.04
    lane, pos = run.new_lane()
    await fed(run, lane, pos, 300)
    assert latest(run.host.accepted) == run.last
    assert in_order_per_contact(run.host.accepted)
    assert (run.host.shared, run.host.most_calls) == ([], calls)


@pytest.mark.parametrize("seed", range(6))
async def test_a_rebalance_in_the_middle_loses_nothing(seed):
    run = Run(100 + seed, rebalance=True)
    await run.go()
    assert run.host.dropped == []
    assert latest(run.host.accepted) == run.last
    assert {s for _, s in run.host.accepted} == set(range(run.produced))


async def test_an_outage_parks_then_the_lane_goes_direct_again(monkeypatch):
    blocks: list[float] = []
    block = AccountLane._block

    def counted(self: AccountLane) -> None:
        blocks.append(time.monotonic())
        block(self)

    monkeypatch.setattr(AccountLane, "_block", counted)
    run = Run(7, rebalance=False)
    run.host.down_until = time.monotonic() + 0.3
    lane = await run.go()
    assert blocks, "the lane never parked during the outage"
    assert all(st.state == DIRECT for st in lane.parts.values())
    assert latest(run.host.accepted) == run.last


def in_order_per_contact(accepted: list[tuple[str, int]]) -> bool:
    seen: dict[str, int] = {}
    for contact, seq in accepted:
        if seq < seen.get(contact, seq):
            return False
        seen[contact] = seq
    return True


async def fed(run: Run, lane: AccountLane, pos: dict[str, dict[int, int]], n: int) -> None:
    """Produces ``n`` effects while the batch path feeds them, until all are committed."""
    fetcher = asyncio.ensure_future(run.fetch(lane, pos))
    committer = asyncio.ensure_future(run.committer())
    try:
        await run.produce(n)
        deadline = time.monotonic() + 10
        while not run.drained(lane):
            assert time.monotonic() < deadline, "not drained"
            await asyncio.sleep(0.01)
    finally:
        fetcher.cancel()
        committer.cancel()
        lane.stop()


async def test_after_an_assignment_an_empty_parking_partition_is_not_used() -> None:
    """The broker says the parking partitions are drained: effects go straight to
    Emarsys, none takes the parking hop (it cost every partition's first effects a
    produce, a fetch and a commit after each restart or rebalance)."""
    run = Run(3, rebalance=False)
    lane, pos = run.new_lane()
    await fed(run, lane, pos, 200)
    assert sorted(set(run.host.probes)) == list(range(P))
    assert all(not t.records for t in run.host.parking.values())
    assert all(st.state == DIRECT for st in lane.parts.values())
    assert in_order_per_contact(run.host.accepted)
    assert latest(run.host.accepted) == run.last


def left_parked(run: Run, n: int) -> None:
    """``n`` effects of contact c0 (partition 0), seq -n..-1, that a previous owner parked
    and did not deliver before the assignment."""
    for seq in range(-n, 0):
        value = json.dumps({"contact": "c0", "seq": seq}).encode()
        run.host.parking[0].records.append((b"acme\x1fc0", value, time.time()))


async def test_a_backlog_left_in_the_parking_partition_goes_before_new_effects() -> None:
    """A previous owner parked effects and did not deliver them: the probe finds them,
    so the new effects of that partition wait behind them (per contact, in order)."""
    run = Run(4, rebalance=False)
    left_parked(run, 30)
    lane, pos = run.new_lane()
    await fed(run, lane, pos, 200)
    c0 = [seq for contact, seq in run.host.accepted if contact == "c0"]
    assert c0[:30] == list(range(-30, 0))
    assert c0 == sorted(c0)
    assert latest(run.host.accepted) == run.last


async def test_a_probe_that_fails_parks_as_before() -> None:
    """No answer from the broker: the partitions park (the first effect tells the lane
    where the parked backlog ends), and everything still arrives, in order."""
    run = Run(5, rebalance=False)
    run.host.probe_fails = True
    lane, pos = run.new_lane()
    await fed(run, lane, pos, 200)
    assert any(t.records for t in run.host.parking.values())
    assert in_order_per_contact(run.host.accepted)
    assert latest(run.host.accepted) == run.last


async def test_a_backlog_taken_over_goes_direct_without_waiting_for_a_new_effect() -> None:
    """A previous owner left 30 effects in a parking partition and no new effect comes:
    once they are delivered and committed, the partition goes direct by itself (the
    broker asked again), so the next effect goes straight to Emarsys instead of taking
    the parking hop (produce, fetch, commit) first."""
    run = Run(8, rebalance=False)
    left_parked(run, 30)
    lane, pos = run.new_lane()
    fetcher = asyncio.ensure_future(run.fetch(lane, pos))
    committer = asyncio.ensure_future(run.committer())
    try:
        deadline = time.monotonic() + 10
        while 0 not in lane.parts or lane.parts[0].state != PARKED:
            assert time.monotonic() < deadline, "the backlog was not found"
            await asyncio.sleep(0.005)
        while lane.parts[0].state != DIRECT:
            assert time.monotonic() < deadline, "still parked with its backlog delivered"
            await asyncio.sleep(0.01)
        assert [seq for _, seq in run.host.accepted] == list(range(-30, 0))
        assert run.host.parking[0].committed == 30
        await run.produce(60)  # new effects, c0's among them: none is parked
        while not run.drained(lane):
            assert time.monotonic() < deadline, "not drained"
            await asyncio.sleep(0.01)
    finally:
        fetcher.cancel()
        committer.cancel()
        lane.stop()
    assert len(run.host.parking[0].records) == 30
    assert all(not run.host.parking[p].records for p in (1, 2))
    assert latest(run.host.accepted) == run.last
    assert in_order_per_contact(run.host.accepted)


async def test_a_parked_partition_never_goes_direct_before_its_backlog_is_committed() -> None:
    """The broker is asked again only when nothing of the partition is in memory, in a
    call or on its way to the parking topic, and says drained only once the delivered
    backlog's offsets are committed: with commits held back, the partition stays parked."""
    run = Run(9, rebalance=False)
    left_parked(run, 10)
    commits: list[float] = []

    async def no_commit() -> None:
        commits.append(time.monotonic())

    run.host.commit = no_commit  # type: ignore[method-assign]
    lane, pos = run.new_lane()
    fetcher = asyncio.ensure_future(run.fetch(lane, pos))
    try:
        deadline = time.monotonic() + 10
        while len(run.host.accepted) < 10:
            assert time.monotonic() < deadline, "the backlog was not delivered"
            await asyncio.sleep(0.01)
        probes = len(run.host.probes)
        await asyncio.sleep(0.2)  # ten times REPROBE_EVERY
        assert len(run.host.probes) > probes and commits  # asked again, committing first
        assert lane.parts[0].state == PARKED
    finally:
        fetcher.cancel()
        lane.stop()
