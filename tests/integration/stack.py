"""Real parts for integration tests: the embedded broker, the Emarsys simulator, workers.

Workers run as real ``emarsys-destination worker`` processes against the embedded broker;
each test stack gets its own app id and input topic, so stacks sharing one broker never
see each other's topics or consumer groups.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token"


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    timeout: float = 15.0,
) -> Response:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Response(resp.status, resp.read(), dict(resp.headers))
    except urllib.error.HTTPError as exc:
        return Response(exc.code, exc.read(), dict(exc.headers))


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Simulator:
    """The Emarsys simulator as a real process on its own port."""

    def __init__(self, log_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_dir / f"simulator-{self.port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "emarsys-simulator",
                "--port",
                str(self.port),
                *args,
            ],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._up, 20, what="the simulator")

    def _up(self) -> bool:
        try:
            return http("GET", f"{self.url}/_sim/stats", timeout=1).status == 200
        except OSError:
            return False

    def get(self, path: str) -> Any:
        return http("GET", f"{self.url}{path}").json()

    def post(self, path: str, body: Any) -> Any:
        return http("POST", f"{self.url}{path}", body).json()

    def contact(self, key: str) -> dict[str, Any] | None:
        found = self.get(f"/_sim/contacts?key={urllib.request.quote(key)}")["contacts"]
        return found[0]["fields"] if found else None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def account_config(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    emarsys = {
        "api_url": f"{sim.url}/api/v3",
        "auth": "oauth2",
        "token_url": f"{sim.url}/oauth2/token",
        "client_id": "demo-client",
        "client_secret": "demo-secret",
        "key_field": 3,
        "requests_per_minute": 1000,
        "retry_for": "10m",
        "max_backoff": "2s",
    }
    emarsys.update(overrides.pop("emarsys", {}))
    cfg = {
        "api_keys": ["test-key"],
        "primary_key": "context.traits.email",
        "emarsys": emarsys,
        "data_maps": [
            {"name": "email", "path": "context.traits.email", "type": "string", "field": 3},
            {"name": "first_name", "path": "traits.firstName", "type": "string", "field": 1},
            {"name": "ecom_event", "path": "event", "type": "string"},
            {"name": "ecom_revenue", "path": "properties.revenue", "type": "numeric"},
            {"name": "cart_id", "path": "properties.cart_id", "type": "string"},
            {"name": "coupon", "path": "properties.coupon", "type": "string"},
        ],
        "rules": [],
    }
    cfg.update(overrides)
    return cfg


@dataclass
class Worker:
    index: int
    web_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Stack:
    """A config (own app id + input topic) and its worker processes."""

    broker_url: str
    tmp: Path
    accounts: dict[str, dict[str, Any]]
    partitions: int = 4
    extra: dict[str, Any] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.app_id = f"emdtest-{suffix}"
        self.input_topic = f"segment-events-{suffix}"
        self.config_path = self.tmp / f"config-{suffix}.yaml"
        config = {
            "app_id": self.app_id,
            "broker": self.broker_url,
            "input_topic": self.input_topic,
            "partitions": self.partitions,
            "sink": {"flush_interval": "0.2s"},
            # Short waits in tests: hold deadlines a second after a person's latest
            # event, not the product's minute (tests of the window set their own).
            "allowed_lateness": "1s",
            "faust": {
                "broker_session_timeout": 10.0,
                "broker_heartbeat_interval": 1.0,
                "broker_rebalance_timeout": 10.0,
                "broker_commit_interval": 0.5,
            },
            "accounts": self.accounts,
            **self.extra,
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def topic(self, suffix: str) -> str:
        return f"{self.app_id}-{suffix}"

    def start_worker(
        self, datadir: str | None = None, wait: bool = True, env: dict[str, str] | None = None
    ) -> Worker:
        index = len(self.workers)
        port = free_port()
        log_path = self.tmp / f"{self.app_id}-worker{index}-{port}.log"
        env = dict(
            os.environ,
            EMD_ADMIN_TOKEN=ADMIN_TOKEN,
            PYTHONUNBUFFERED="1",
            **(env or {}),
        )
        data = datadir or str(self.tmp / f"{self.app_id}-data{index}")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "worker",
                "--config",
                str(self.config_path),
                "--web-port",
                str(port),
                "--web-host",
                "127.0.0.1",
                "--datadir",
                data,
                "-l",
                "info",
            ],
            cwd=ROOT,
            env=env,
            stdout=open(log_path, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        worker = Worker(index, port, proc, log_path)
        self.workers.append(worker)
        if wait:
            self.wait_ready(worker)
        return worker

    def wait_ready(self, worker: Worker, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if worker.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited with {worker.proc.returncode}:\n{worker.log_text()[-4000:]}"
                )
            return "Worker ready" in worker.log_text()

        wait_for(ready, timeout, what=f"worker {worker.index} ready")

    def wait_assigned(self, timeout: float = 60.0) -> None:
        """Every live worker agrees on an assignment covering every input partition."""

        def covered() -> bool:
            seen: list[int] = []
            for w in self.live():
                try:
                    h = http("GET", f"{w.url}/health", timeout=2)
                except OSError:
                    return False
                if h.status != 200:
                    return False
                seen += h.json()["assigned_partitions"].get(self.input_topic, [])
            return sorted(seen) == list(range(self.partitions))

        wait_for(covered, timeout, interval=0.5, what="partitions assigned")

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.proc.poll() is None]

    def stop_worker(self, worker: Worker, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if worker.proc.poll() is None:
            worker.proc.send_signal(sig)
            try:
                worker.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait(10)

    def stop(self) -> None:
        for w in self.workers:
            self.stop_worker(w)

    # -- talking to it ------------------------------------------------------------------------

    def url(self, i: int = 0) -> str:
        return self.live()[i].url if i < len(self.live()) else self.workers[i].url

    def post(self, path: str, body: Any = None, key: str = "test-key", i: int = 0, **kw):
        return http("POST", f"{self.url(i)}{path}", body, headers=basic(key), **kw)

    def user(self, account: str, i: int = 0, **query: str) -> Response:
        qs = "&".join(f"{k}={urllib.request.quote(v)}" for k, v in query.items())
        return http("GET", f"{self.url(i)}/api/accounts/{account}/users?{qs}", headers=admin())

    def metric(self, name: str, i: int = 0, **labels: str) -> float:
        text = http("GET", f"{self.url(i)}/metrics").body.decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


def read_topic(broker_url: str, topic: str, timeout: float = 3.0) -> list[Any]:
    """Every record of ``topic`` (key, value, headers), read until fetches come back empty.

    Reads past the broker's reported end offset (it under-reports after batch produces)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker_url.removeprefix("kafka://"),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: list[Any] = []
            deadline = time.monotonic() + timeout + 10
            while time.monotonic() < deadline:
                positions = {tp: await consumer.position(tp) for tp in tps}
                if all(positions[tp] >= ends[tp] for tp in tps):
                    break
                batch = await consumer.getmany(timeout_ms=300)
                out += [r for recs in batch.values() for r in recs]
            # The embedded broker under-reports the end offset after a batch produce:
            # one more fetch picks up the tail it did not count.
            batch = await consumer.getmany(timeout_ms=int(timeout * 100))
            out += [r for recs in batch.values() for r in recs]
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())


def replayed_triggers(
    config_path: Path | str, messages: list[dict[str, Any]], rule: str | None = None
) -> set[tuple[Any, ...]]:
    """``replay`` of ``messages`` (in event-time order, as ``replay --topic`` reads them):
    its triggers as ``(trigger_id, contact, event_time, data)``, of ``rule`` if given."""
    import orjson

    from app.config import load_config
    from app.replay.driver import Replay

    r = Replay(load_config(config_path))
    lines: list[dict[str, Any]] = []
    for m in sorted(messages, key=lambda m: m["timestamp"]):
        lines += r.feed(orjson.dumps(m))
    lines += r.finish()
    return {
        (x["trigger_id"], x["contact"], x["event_time"], json.dumps(x["data"], sort_keys=True))
        for x in lines
        if x["kind"] == "trigger" and (rule is None or x["rule"] == rule)
    }
