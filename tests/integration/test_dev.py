"""`make run` (= `emarsys-destination dev`): the whole stack from one command, stopped by
Ctrl-C. Run on free ports with a copy of examples/config.yaml pointing at them; the
README's quick start is pasted into bash as written (ports and data dir swapped)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.broker import free_port, probe_kafka
from tests.integration.stack import ROOT, http, wait_for

pytestmark = pytest.mark.integration


def quick_start() -> str:
    """The README's first shell block after `make run`: the one a user pastes."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("Try it, in another shell")
    return re.search(r"```sh\n(.*?)```", readme[start:], re.S).group(1)  # type: ignore[union-attr]


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, _remote, state = line.split()[1:4]
        host, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":
            found.add(".".join(str(int(host[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_dev_runs_the_stack_and_stops_cleanly(tmp_path):
    broker_port, web_port, sim_port = free_port(), free_port(), free_port()
    # Text replacement, not a YAML round trip: PyYAML would turn `on:` into `true:`.
    text = (ROOT / "examples" / "config.yaml").read_text()
    assert text.count("127.0.0.1:9797") == 2
    path = tmp_path / "config.yaml"
    path.write_text(text.replace("127.0.0.1:9797", f"127.0.0.1:{sim_port}"))
    log = tmp_path / "dev.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "dev",
            "--config",
            str(path),
            "--broker-port",
            str(broker_port),
            "--web-port",
            str(web_port),
            "--datadir",
            str(tmp_path / "data"),
        ],
        cwd=ROOT,
        stdout=open(log, "wb"),  # noqa: SIM115 - the process owns it
        stderr=subprocess.STDOUT,
        env={**os.environ, "EMD_ADMIN_TOKEN": "dev-token"},
    )
    base = f"http://127.0.0.1:{web_port}"
    key = {"Authorization": "Basic " + base64.b64encode(b"demo-key:").decode()}
    try:

        def healthy():
            try:
                return http("GET", f"{base}/health", timeout=2).status == 200
            except OSError:
                return False

        wait_for(healthy, 90, interval=0.5, what="dev to serve /health")
        banner = log.read_text()
        assert "MEMORY ONLY" in banner and "dev-token" in banner and "demo-key" in banner
        assert "listening on   127.0.0.1 only" in banner
        assert listening_addresses(web_port) == {"127.0.0.1"}  # not 0.0.0.0
        token_file = tmp_path / "data" / "admin-token"
        assert token_file.read_text().strip() == "dev-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        # The quick start, pasted as written (only the ports and the data dir differ).
        script = (
            quick_start()
            .replace("6066", str(web_port))
            .replace("9797", str(sim_port))
            .replace(".emd-data/dev", str(tmp_path / "data"))
        )
        run = subprocess.run(
            ["bash", "-e", "-c", script], capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stderr
        ready, ingest, contacts, user = [
            json.loads(line) for line in run.stdout.replace("}{", "}\n{").splitlines() if line
        ]
        assert ready["ready"] is True and ingest == {"success": True}
        assert [c["fields"]["3"] for c in contacts["contacts"]] == ["ann@example.com"]
        assert user["userId"] == "u1" and user["primaryKey"] == "ann@example.com"
        batch = {
            "batch": [
                {
                    "type": "identify",
                    "userId": "d1",
                    "context": {"traits": {"email": "dev@example.com"}},
                }
            ]
        }
        assert http("POST", f"{base}/v1/batch", batch, headers=key).status == 200
        bad_key = {"Authorization": "Basic " + base64.b64encode(b"nope:").decode()}
        assert http("POST", f"{base}/v1/batch", batch, headers=bad_key).status == 401
        assert http("POST", f"{base}/v1/batch", raw=b"{oops", headers=key).status == 400
        wait_for(
            lambda: http("GET", f"http://127.0.0.1:{sim_port}/_sim/contacts").json()["count"] == 2,
            what="the contact in the simulator dev started",
        )
        assert http("GET", f"{base}/").status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, log.read_text()[-3000:]
    assert probe_kafka("127.0.0.1", broker_port) is None  # the broker stopped with it
    with pytest.raises(OSError):
        http("GET", f"http://127.0.0.1:{sim_port}/_sim/stats", timeout=2)


def _start_dev(tmp_path: Path, broker_port: int, web_port: int, sim_port: int, log: Path):
    text = (ROOT / "examples" / "config.yaml").read_text()
    path = tmp_path / "config.yaml"
    path.write_text(text.replace("127.0.0.1:9797", f"127.0.0.1:{sim_port}"))
    cmd = [sys.executable, "-m", "app.cli", "dev", "--config", str(path),
           "--broker-port", str(broker_port), "--web-port", str(web_port),
           "--datadir", str(tmp_path / "data")]  # fmt: skip
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "EMD_ADMIN_TOKEN": "dev-token"},
    )


def _listening(port: int) -> bool:
    return bool(listening_addresses(port))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_a_sigkilled_dev_leaves_no_broker_or_simulator_behind(tmp_path):
    broker_port, web_port, sim_port = free_port(), free_port(), free_port()
    proc = _start_dev(tmp_path, broker_port, web_port, sim_port, tmp_path / "dev.log")
    try:
        wait_for(
            lambda: _listening(broker_port) and _listening(sim_port) and _listening(web_port),
            90,
            interval=0.5,
            what="dev's broker, simulator and worker listening",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(
            lambda: not _listening(broker_port) and not _listening(sim_port),
            20,
            interval=0.25,
            what="the broker and the simulator gone with dev",
        )
    finally:
        if proc.poll() is None:
            proc.kill()


def test_dev_refuses_a_broker_an_earlier_dev_left_behind(tmp_path):
    """Where the kernel cannot stop dev's children with it: the leftover broker (noted
    beside the data dir) is refused with a clear message, never silently reused."""
    from app.broker import EmbeddedBroker

    broker_port, web_port, sim_port = free_port(), free_port(), free_port()
    leftover = EmbeddedBroker(port=broker_port).start()  # as if an earlier dev had died
    try:
        assert leftover.process is not None
        (tmp_path / "data.broker").write_text(f"{leftover.process.pid} {broker_port}\n")
        log = tmp_path / "dev.log"
        proc = _start_dev(tmp_path, broker_port, web_port, sim_port, log)
        assert proc.wait(60) == 1
        text = log.read_text()
        assert f"left over from an earlier `make run` (pid {leftover.process.pid})" in text
        assert f"kill {leftover.process.pid}" in text
    finally:
        leftover.stop()
