"""``EventOrder``: a topic's records in event-time order within a memory budget."""

from __future__ import annotations

import os
import random

import pytest

from app.replay import event_order
from app.replay.event_order import EventOrder


def _records(n: int, partitions: int, seed: int = 3) -> list[tuple[int, float, bytes, str | None]]:
    """Records in offset order per partition, times nearly ordered with ties and stragglers."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = rng.randrange(partitions)
        ts = float(i // 3) + (rng.choice([0, 0, 0, -40]) if i > 50 else 0)
        acct = rng.choice([None, "acme", "ünïcode"])
        out.append((p, ts, f'{{"n":{i},"p":{p}}}'.encode() + b"x" * rng.randrange(50), acct))
    return out


def _in_memory(records, partitions):
    """The order replay always used: per partition a stable sort, then merged by time,
    ties to the partition given first."""
    per = {p: [] for p in partitions}
    for p, ts, value, acct in records:
        per[p].append((ts, value, acct))
    streams = [(i, sorted(per[p], key=lambda r: r[0])) for i, p in enumerate(partitions)]
    flat = [(r[0], i, k, r[1], r[2]) for i, recs in streams for k, r in enumerate(recs)]
    return [(v, a) for _, _, _, v, a in sorted(flat, key=lambda r: (r[0], r[1], r[2]))]


@pytest.mark.parametrize("budget", [1, 700, 5_000, 10**9])
def test_any_budget_gives_the_order_of_the_whole_in_memory(tmp_path, budget):
    partitions = [3, 0, 2, 1]  # as the broker listed them: ties go to the one listed first
    records = _records(1_500, 4)
    order = EventOrder(partitions, budget=budget, directory=str(tmp_path))
    for p, ts, value, acct in records:
        order.add(p, ts, value, acct)
    got = list(order)
    assert got == _in_memory(records, partitions)
    assert order.records == len(records)
    assert order.nbytes == sum(len(v) for _, _, v, _ in records)
    if budget < 10**9:
        assert os.listdir(tmp_path), "a small budget wrote runs to disk"
    order.close()
    assert os.listdir(tmp_path) == [], "close() removes the runs and their directory"


def test_many_runs_are_merged_into_one_and_the_order_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(event_order, "MAX_RUNS", 4)
    records = _records(600, 3)
    with EventOrder([0, 1, 2], budget=1, directory=str(tmp_path)) as order:
        for p, ts, value, acct in records:
            order.add(p, ts, value, acct)
            assert order.runs <= 5
        (run_dir,) = os.listdir(tmp_path)
        assert len(os.listdir(tmp_path / run_dir)) == order.runs
        assert list(order) == _in_memory(records, [0, 1, 2])
    assert os.listdir(tmp_path) == []


def test_values_of_any_bytes_and_empty_accounts_come_back_as_written(tmp_path):
    odd = [b"", b"\x00\xff" * 100, "ß".encode(), b"\n{" * 3]
    with EventOrder([0], budget=1, directory=str(tmp_path)) as order:
        for i, value in enumerate(odd):
            order.add(0, float(-i), value, "" if i % 2 else None)
        assert list(order) == [
            (v, "" if i % 2 else None) for i, v in reversed(list(enumerate(odd)))
        ]


def test_nothing_added_reads_nothing_and_writes_nothing(tmp_path):
    with EventOrder([0, 1], budget=1, directory=str(tmp_path)) as order:
        assert list(order) == []
    assert os.listdir(tmp_path) == []
