"""Schemathesis against a real worker, from the worker's own OpenAPI document.

Every operation of ``/api/openapi.json`` gets schemathesis's coverage cases (edges of
every documented constraint) and a few generated ones, authenticated as the document
says (Basic with the API key for ingest, the bearer token for the admin API). The
checks (``tests/integration/schemathesis.toml``): no 5xx; no status, content type or
header the document does not list; every body as documented (errors carry ``code`` and
``message``); schema-valid requests accepted where JSON Schema can say what is valid.
Bounded: a fixed number of cases per operation, and a timeout on the whole run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.stack import ADMIN_TOKEN, ROOT, account_config

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES_PER_OPERATION = 8


def test_schemathesis_finds_nothing(make_stack, simulator, tmp_path):
    stack = make_stack({"acme": account_config(simulator, api_keys=["st-key"])}, partitions=2)
    worker = stack.start_worker()
    stack.wait_assigned()
    st = Path(sys.executable).with_name("st")
    env = {
        **os.environ,
        "EMD_ST_API_KEY": "st-key",
        "EMD_ST_ADMIN_TOKEN": ADMIN_TOKEN,
        "EMD_ST_ACCOUNT": "acme",
        "PYTHONPATH": str(ROOT),
    }
    started = time.monotonic()
    run = subprocess.run(
        [
            str(st),
            "--no-color",
            "--config-file",
            str(CONFIG),
            "run",
            f"{worker.url}/api/openapi.json",
            "--phases",
            "coverage,fuzzing",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--request-timeout",
            "30",
            "--seed",
            "1",
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    seconds = time.monotonic() - started
    out = run.stdout + run.stderr
    print(f"schemathesis: {seconds:.1f} s\n{out[-1500:]}")
    assert run.returncode == 0, out[-6000:]
    assert " passed" in out and "failure" not in out.lower(), out[-3000:]
    assert "Traceback" not in worker.log_text()
