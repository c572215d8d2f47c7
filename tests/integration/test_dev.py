"""`make run` (= `emarsys-destination dev`): the whole stack from one command, stopped by
Ctrl-C. Run on free ports with a copy of examples/config.yaml pointing at them."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys

import pytest

from app.broker import free_port, probe_kafka
from tests.integration.stack import ROOT, http, wait_for

pytestmark = pytest.mark.integration


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
            lambda: http("GET", f"http://127.0.0.1:{sim_port}/_sim/contacts").json()["count"] == 1,
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
