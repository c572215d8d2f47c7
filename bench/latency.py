"""``make bench-latency``: how long a healthy account's contact updates take to reach
Emarsys while another account's Emarsys is down.

    python -m bench.latency [--seconds 60] [--rate 1000] [--down-rate 100] [--warmup 10]
                            [--healthy-latency 0] [--calls-in-flight N]

One embedded broker, the Emarsys simulator as a process with two API users, and one
worker (8 partitions, the production sink settings) with two accounts: ``healthy`` and
``down``, whose API user the simulator answers with 503 for the whole run. A paced
client posts ``/v1/batch`` requests of 50 identifies at a steady ``--rate`` events a
second for ``healthy`` and ``--down-rate`` for ``down``, for ``--seconds`` after a
``--warmup``. Every event carries a first name of its own (a contact update each), so
the simulator's log of accepted contact rows (``/_sim/accepted``) tells when Emarsys
acknowledged each one. Latency = Emarsys acknowledged minus ingest acknowledged (the
HTTP 200 of the event's batch), both on this machine's clock; the warm-up is left out.
``--healthy-latency`` makes the healthy account's Emarsys take that long a call (a slow
Emarsys that still answers), ``--calls-in-flight`` sets ``sink.calls_in_flight`` (the
production default otherwise): together they show what calls in flight buy.

Prints p50/p90/p99/max and what the down account left in its parking topic, and writes
``.bench/latency.json``. Nothing is asserted: figures vary with the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from app.broker import EmbeddedBroker, free_port
from bench.run import OUT_DIR, log, machine, metric_totals, stop_process

PARTITIONS = 8
BATCH = 50
USERS = 20_000  # a person repeats every USERS / rate seconds: no two updates merge
API_USERS = {"healthy": ("healthy-client", "h-secret"), "down": ("down-client", "d-secret")}


def quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


class Load:
    """Paced batches for one account; remembers when each event's batch was acknowledged."""

    def __init__(self, account: str, rate: float, url: str) -> None:
        self.account = account
        self.rate = rate
        self.url = url
        key = f"{account}-key"
        self.auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        self.acked: dict[str, float] = {}  # first name -> ingest acknowledged (unix s)
        self.measured: set[str] = set()
        self.sent = 0
        self.refused = 0

    def batch(self, seq: int) -> list[dict[str, Any]]:
        out = []
        for n in range(seq, seq + BATCH):
            user = n % USERS
            out.append(
                {
                    "type": "identify",
                    "userId": f"{self.account}-u{user}",
                    "messageId": f"{self.account}-m{n}",
                    "traits": {"firstName": f"L{n}"},
                    "context": {"traits": {"email": f"{self.account}-{user}@bench.example"}},
                }
            )
        return out

    async def post(self, session: aiohttp.ClientSession, seq: int, measured: bool) -> None:
        body = {"batch": self.batch(seq)}
        for _ in range(100):
            async with session.post(
                self.url, json=body, headers={"Authorization": self.auth}
            ) as resp:
                await resp.read()
                if resp.status == 200:
                    at = time.time()
                    for msg in body["batch"]:
                        name = msg["traits"]["firstName"]
                        self.acked[name] = at
                        if measured:
                            self.measured.add(name)
                    return
                self.refused += 1
                await asyncio.sleep(float(resp.headers.get("Retry-After", "0.2")))
        raise RuntimeError(f"{self.account}: the ingest kept refusing a batch")

    async def run(self, session: aiohttp.ClientSession, warmup: float, seconds: float) -> None:
        interval = BATCH / self.rate
        start = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        k = 0
        while True:
            at = start + k * interval
            if at - start >= warmup + seconds:
                break
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(self.post(session, k * BATCH, at - start >= warmup))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            self.sent += BATCH
            k += 1
        if tasks:
            await asyncio.gather(*tasks)


async def drive(url: str, loads: list[Load], warmup: float, seconds: float) -> None:
    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(load.run(session, warmup, seconds) for load in loads))


def accepted_times(sim: Any, credential: str) -> dict[str, float]:
    """First name -> when the simulator accepted the contact row carrying it."""
    out: dict[str, float] = {}
    for row in sim.get(f"/_sim/accepted?credential={credential}&op=upsert")["accepted"]:
        name = (row.get("fields") or {}).get("1")
        if isinstance(name, str):
            out.setdefault(name, row["t"])
    return out


def effects_written(stack: Any, read_topic: Any) -> dict[str, float]:
    """First name -> when its contact update was written to emarsys-effects (the record's
    timestamp: the producer's clock, this machine's)."""
    out: dict[str, float] = {}
    for r in read_topic(stack.broker_url, stack.topic("emarsys-effects")):
        try:
            effect = json.loads(r.value)
        except ValueError:
            continue
        name = (effect.get("fields") or {}).get("1")
        if isinstance(name, str):
            out.setdefault(name, r.timestamp / 1000.0)
    return out


def run(
    seconds: float,
    rate: float,
    down_rate: float,
    warmup: float,
    healthy_latency: float = 0.0,
    calls_in_flight: int | None = None,
) -> dict[str, Any]:
    from tests.integration.stack import Simulator, Stack, account_config, admin, http, read_topic

    logs = OUT_DIR / "latency-logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    cleanup: list[Any] = []
    broker = EmbeddedBroker(port=free_port(), log_path=str(logs / "tansu.log"))
    result: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "offered_events_per_s": {"healthy": rate, "down": down_rate},
        "seconds": seconds,
        "warmup_seconds": warmup,
        "healthy_emarsys_latency_seconds": healthy_latency,
        "calls_in_flight": calls_in_flight,
    }
    try:
        broker.start()
        users = [a for pair in API_USERS.values() for a in ("--oauth-client", ":".join(pair))]
        sim = Simulator(logs, *users)
        cleanup.append(lambda: stop_process(sim.proc))
        sim.post("/_sim/faults", {"credential": API_USERS["down"][0], "outage_seconds": 86400})
        if healthy_latency:
            sim.post(
                "/_sim/faults", {"credential": API_USERS["healthy"][0], "latency": healthy_latency}
            )
        data_maps = [
            {"name": "email", "path": "context.traits.email", "type": "string", "field": 3},
            {"name": "first_name", "path": "traits.firstName", "type": "string", "field": 1},
        ]
        accounts = {
            name: account_config(
                sim,
                api_keys=[f"{name}-key"],
                emarsys={"client_id": cid, "client_secret": secret},
                data_maps=data_maps,
            )
            for name, (cid, secret) in API_USERS.items()
        }
        # The production sink settings (batch_size 1000, flush_interval 1s, park_after 10s).
        sink = {} if calls_in_flight is None else {"calls_in_flight": calls_in_flight}
        stack = Stack(broker.url, logs, accounts, partitions=PARTITIONS, extra={"sink": sink})
        cleanup.append(stack.stop)
        worker = stack.start_worker(datadir=str(logs / "data"))
        stack.wait_assigned()
        log(f"worker ready; {warmup:.0f} s warm-up, then {seconds:.0f} s measured")
        url = f"{worker.url}/v1/batch"
        healthy, down = Load("healthy", rate, url), Load("down", down_rate, url)
        t0, cpu0 = time.monotonic(), _cpu_seconds(worker.proc.pid)
        asyncio.run(drive(url, [healthy, down], warmup, seconds))
        elapsed = time.monotonic() - t0
        result["load_seconds"] = round(elapsed, 1)
        # The worker's CPU time over the load (1.0 = one core busy all the time).
        result["worker_cpu_cores"] = round((_cpu_seconds(worker.proc.pid) - cpu0) / elapsed, 2)
        log("load done; waiting for the healthy account's last updates")
        expected = healthy.measured
        deadline = time.monotonic() + 120
        accepted: dict[str, float] = {}
        while time.monotonic() < deadline:
            accepted = accepted_times(sim, API_USERS["healthy"][0])
            if expected <= accepted.keys():
                break
            time.sleep(1)
        latencies = sorted(accepted[n] - healthy.acked[n] for n in expected if n in accepted)
        # Where the time goes: ingest acknowledged -> the effect written to emarsys-effects
        # (the identity and person stages) -> Emarsys acknowledged (the sink).
        written = effects_written(stack, read_topic)
        stages = sorted(written[n] - healthy.acked[n] for n in expected if n in written)
        to_emarsys = sorted(
            accepted[n] - written[n] for n in expected if n in written and n in accepted
        )
        missing = sorted(n for n in expected if n not in accepted)
        result["missing_examples"] = missing[:5]
        result["missing_in_effects"] = sum(1 for n in missing if n in written)
        reasons: dict[str, int] = {}
        for r in read_topic(stack.broker_url, stack.topic("dead-letters")):
            why = str(json.loads(r.value).get("reason", ""))[:80]
            reasons[why] = reasons.get(why, 0) + 1
        result["dead_letters"] = reasons
        result["split_seconds"] = {
            "ingest_to_effect_p50": round(quantile(stages, 0.5), 3),
            "ingest_to_effect_p99": round(quantile(stages, 0.99), 3),
            "effect_to_emarsys_p50": round(quantile(to_emarsys, 0.5), 3),
            "effect_to_emarsys_p99": round(quantile(to_emarsys, 0.99), 3),
        }
        # Latency by 10 s of the run (does it drift as the load goes on?).
        start = min(healthy.acked[n] for n in expected) if expected else 0.0
        windows: dict[int, list[float]] = {}
        for n in expected:
            if n in accepted:
                at = healthy.acked[n]
                windows.setdefault(int((at - start) // 10), []).append(accepted[n] - at)
        result["healthy_by_10s"] = [
            {
                "from_s": k * 10,
                "p50": round(quantile(sorted(v), 0.5), 3),
                "p99": round(quantile(sorted(v), 0.99), 3),
            }
            for k, v in sorted(windows.items())
        ]
        metrics = metric_totals(http("GET", f"{worker.url}/metrics").body.decode())
        deliveries = http(
            "GET", f"{worker.url}/api/accounts/down/deliveries", headers=admin()
        ).json()
        result["healthy"] = {
            "events_measured": len(expected),
            "delivered": len(latencies),
            "missing": len(expected) - len(latencies),
            "ingest_refused_429": healthy.refused,
            "latency_seconds": {
                "p50": round(quantile(latencies, 0.50), 3),
                "p90": round(quantile(latencies, 0.90), 3),
                "p99": round(quantile(latencies, 0.99), 3),
                "max": round(latencies[-1], 3) if latencies else None,
            },
        }
        result["down"] = {
            "events_sent": down.sent,
            "backlog": deliveries["backlog"],
            "retrying_calls": len(deliveries["retrying"]),
        }
        result["worker_rss_mb_high_water"] = _rss(worker.proc.pid, "VmHWM")
        result["metrics"] = {
            k: v
            for k, v in metrics.items()
            if k in ("emd_sink_backlog", "emd_account_backlog", "emd_events_processed_total")
        }
        return result
    finally:
        for fn in reversed(cleanup):
            try:
                fn()
            except Exception as exc:  # stop everything else anyway
                log(f"cleanup: {exc}")
        broker.stop()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (``/proc/PID/stat``)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss(pid: int, field: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def render(r: dict[str, Any]) -> str:
    h, d, lat = r["healthy"], r["down"], r["healthy"]["latency_seconds"]
    rates = r["offered_events_per_s"]
    slow = r.get("healthy_emarsys_latency_seconds") or 0
    calls = r.get("calls_in_flight")
    lines = [
        f"offered load: {rates['healthy']:.0f} events/s for 'healthy'"
        + (f" (its Emarsys takes {slow:g} s a call)" if slow else "")
        + (f", sink.calls_in_flight {calls}" if calls is not None else "")
        + ", "
        f"{rates['down']:.0f} events/s for 'down' (its Emarsys answers 503), "
        f"{r['seconds']:.0f} s measured after {r['warmup_seconds']:.0f} s warm-up",
        "ingest acknowledged -> Emarsys acknowledged, healthy account:",
        f"  p50 {lat['p50']:.3f} s   p90 {lat['p90']:.3f} s   p99 {lat['p99']:.3f} s   "
        f"max {lat['max']} s",
        f"  {h['delivered']:,} of {h['events_measured']:,} updates measured "
        f"({h['missing']} missing, {h['ingest_refused_429']} batches refused with 429)",
        f"down account: {d['backlog']['effects']:,} effects waiting "
        f"({d['backlog']['parked']:,} parked), state {d['backlog']['state']}, "
        f"{d['retrying_calls']} call(s) retrying",
        f"worker RSS high-water: {r['worker_rss_mb_high_water']} MB; worker CPU "
        f"{r['worker_cpu_cores']} cores during the load (machine: {r['machine']['nproc']} "
        f"CPUs, load average {r['machine']['loadavg_1m']} at the start)",
        "split: ingest -> effect written p50 {ingest_to_effect_p50} s p99 "
        "{ingest_to_effect_p99} s; effect -> Emarsys p50 {effect_to_emarsys_p50} s p99 "
        "{effect_to_emarsys_p99} s".format(**r["split_seconds"]),
        "by 10 s: "
        + ", ".join(f"{w['from_s']}s p50 {w['p50']} p99 {w['p99']}" for w in r["healthy_by_10s"]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="healthy events/s")
    parser.add_argument("--down-rate", type=float, default=100.0, help="down account events/s")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument(
        "--healthy-latency", type=float, default=0.0, help="seconds a healthy Emarsys call takes"
    )
    parser.add_argument("--calls-in-flight", type=int, default=None, help="sink.calls_in_flight")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    result = run(
        args.seconds,
        args.rate,
        args.down_rate,
        args.warmup,
        args.healthy_latency,
        args.calls_in_flight,
    )
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "latency.json").write_text(json.dumps(result, indent=2))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
