"""``make bench-backlog``: a worker's memory while it works through a large backlog.

    python -m bench.backlog [--events 1000000] [--users 10000] [--seconds 180]

One embedded broker, the Emarsys simulator and one worker (8 partitions, 20 data maps,
100 rules, the production sink settings). ``--events`` synthetic Segment events (the
``make bench`` mix, written in chunks of 50,000 with a seed each, so anonymous visitors
keep arriving and the persons table keeps growing) are written to the input topic
**before** the worker starts; then the worker runs for ``--seconds`` while this samples
its resident memory (``VmRSS``) and the events it has processed every 2 s. The batch path
fetches at most ``broker_max_poll_records`` (5,000) records at a time and the sink holds
at most 5,000 effects per partition, so memory should follow neither the backlog nor the
number of persons (those live in RocksDB). Prints the samples' summary and writes
``.bench/backlog.json``. Nothing is asserted: figures vary with the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
import uuid
from typing import Any

from app.broker import EmbeddedBroker, free_port
from app.topics import ensure_topics
from bench.account import ACCOUNT, DATA_MAPS, EXAMPLE_RULE
from bench.events import encode, generate
from bench.latency import _rss
from bench.run import OUT_DIR, log, machine, produce, stop_process

PARTITIONS = 8
CHUNK = 50_000
SAMPLE_EVERY = 2.0


def write_backlog(bootstrap: str, topic: str, events: int, users: int) -> float:
    """Writes ``events`` events in chunks; returns the bytes written."""
    written = 0
    size = 0
    seed = 0
    while written < events:
        n = min(CHUNK, events - written)
        records = encode(generate(n, users, seed=1000 + seed), ACCOUNT)
        size += sum(len(v) for _, v in records)
        asyncio.run(produce(bootstrap, topic, records))
        written += n
        seed += 1
        log(f"written {written:,} of {events:,}")
    return size


def run(events: int, users: int, seconds: float) -> dict[str, Any]:
    from tests.integration.stack import Simulator, Stack, account_config

    logs = OUT_DIR / "backlog-logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    cleanup: list[Any] = []
    broker = EmbeddedBroker(port=free_port(), log_path=str(logs / "tansu.log"))
    result: dict[str, Any] = {"machine": machine(), "events": events, "users": users}
    try:
        broker.start()
        topic = f"backlog-{uuid.uuid4().hex[:8]}"
        asyncio.run(ensure_topics(broker.url, {topic: PARTITIONS}))
        started = time.monotonic()
        result["backlog_bytes"] = write_backlog(broker.bootstrap, topic, events, users)
        result["write_seconds"] = round(time.monotonic() - started, 1)

        sim = Simulator(logs)
        cleanup.append(lambda: stop_process(sim.proc))
        accounts = {
            ACCOUNT: account_config(
                sim, api_keys=["bench-key"], data_maps=DATA_MAPS, rules=[EXAMPLE_RULE]
            )
        }
        extra = {"input_topic": topic, "sink": {"batch_size": 1000, "flush_interval": "1s"}}
        stack = Stack(broker.url, logs, accounts, partitions=PARTITIONS, extra=extra)
        stack.input_topic = topic
        cleanup.append(stack.stop)
        worker = stack.start_worker(wait=True, datadir=str(logs / "data"))
        pid = worker.proc.pid
        result["rss_mb_ready"] = _rss(pid, "VmRSS")
        samples: list[dict[str, float]] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(SAMPLE_EVERY)
            processed = stack.metric("emd_events_processed_total")
            samples.append(
                {
                    "s": round(time.monotonic() - t0, 1),
                    "processed": processed,
                    "rss_mb": _rss(pid, "VmRSS") or 0.0,
                }
            )
            if processed >= events:
                break
        result["samples"] = samples
        result["rss_mb_high_water"] = _rss(pid, "VmHWM")
        stack.stop_worker(worker)
    finally:
        for fn in reversed(cleanup):
            try:
                fn()
            except Exception as exc:  # stop everything else anyway
                log(f"cleanup: {exc}")
        broker.stop()
    return result


def summary(r: dict[str, Any]) -> dict[str, Any]:
    """RSS in the first and the last third of the samples: growth with work done."""
    s = r["samples"]
    third = max(1, len(s) // 3)
    first, last = s[:third], s[-third:]
    processed = s[-1]["processed"] if s else 0
    return {
        "processed": processed,
        "backlog_left": r["events"] - processed,
        "rss_mb_first_third_max": max(x["rss_mb"] for x in first) if s else None,
        "rss_mb_last_third_max": max(x["rss_mb"] for x in last) if s else None,
        "processed_first_third": first[-1]["processed"] if s else 0,
    }


def render(r: dict[str, Any]) -> str:
    m = r["summary"]
    return "\n".join(
        [
            f"backlog: {r['events']:,} events ({r['backlog_bytes'] / 1e6:,.0f} MB of JSON) over "
            f"{r['users']:,} users, written in {r['write_seconds']} s before the worker started",
            f"worker RSS when ready: {r['rss_mb_ready']} MB; high-water {r['rss_mb_high_water']} MB",
            f"after {m['processed_first_third']:,.0f} events: RSS at most "
            f"{m['rss_mb_first_third_max']} MB; after {m['processed']:,.0f} events (backlog "
            f"left {m['backlog_left']:,.0f}): at most {m['rss_mb_last_third_max']} MB",
            "samples (s, processed, RSS MB): "
            + ", ".join(
                f"{x['s']:.0f}/{x['processed']:,.0f}/{x['rss_mb']:.0f}" for x in r["samples"][::5]
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backlog", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=180.0)
    args = parser.parse_args(argv)
    result = run(args.events, args.users, args.seconds)
    result["summary"] = summary(result)
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "backlog.json").write_text(json.dumps(result, indent=2))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
