"""``emarsys-destination dev``: the whole stack on one machine (what ``make run`` runs).

Starts the embedded broker (memory-only) when the config says ``broker: embedded``, the
Emarsys simulator when an account points at it, and one worker with the web console,
prints where everything is, and stops it all on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from app.broker import BrokerError, EmbeddedBroker, probe_kafka
from app.child_process import follow_parent


def _simulator_port(config) -> int | None:
    """The port of a local Emarsys simulator some account points at, if any."""
    for account in config.accounts.values():
        url = urlparse(account.emarsys.api_url)
        if url.hostname in ("127.0.0.1", "localhost") and url.port:
            return url.port
    return None


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _start_simulator(port: int) -> subprocess.Popen[bytes] | None:
    if _port_open(port):
        print(f"  an Emarsys simulator (or something) already listens on {port}; using it")
        return None
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "emarsys-simulator", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=follow_parent,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not _port_open(port):
        if proc.poll() is not None:
            raise SystemExit(f"the Emarsys simulator exited at start (code {proc.returncode})")
        time.sleep(0.1)
    return proc


def _listening(bind: str) -> str:
    if bind in ("127.0.0.1", "localhost", "::1"):
        return f"{bind} only: not reachable from the network (--web-bind 0.0.0.0 opens it)"
    return f"{bind}: REACHABLE FROM THE NETWORK (ingest and the admin API)"


def _banner(config, args, broker_url: str, embedded: bool, sim_port: int | None) -> str:
    web = f"http://127.0.0.1:{args.web_port}"
    token = os.environ["EMD_ADMIN_TOKEN"]
    lines = [
        "",
        "emarsys-destination dev",
        "=======================",
        f"  listening on   {_listening(args.web_bind)}",
        f"  console        {web}/",
        f"  ingest         POST {web}/v1/batch  (also /v1/track, /v1/identify, /segment ...)",
        f"  health         {web}/health     ready {web}/ready     metrics {web}/metrics",
        f"  broker         {broker_url}"
        + ("  (embedded Tansu, MEMORY ONLY: every topic is lost on exit)" if embedded else ""),
    ]
    if sim_port:
        lines.append(
            f"  emarsys sim    http://127.0.0.1:{sim_port}/_sim/contacts   (state: /_sim/calls)"
        )
    lines.append(f"  config         {os.environ['EMD_CONFIG']}")
    for name, account in config.accounts.items():
        lines.append(f"  account        {name}: API key {account.api_keys[0]!r}")
    lines += [
        f"  admin token    {token}   (also in {token_file(args.datadir)})",
        "",
        "  try:",
        f"    curl -u {next(iter(config.accounts.values())).api_keys[0]}: {web}/v1/track \\",
        "      -H 'Content-Type: application/json' \\",
        '      -d \'{"userId": "u1", "event": "Coupon Entered", '
        '"properties": {"coupon": "SAVE10", "cart_id": "c1"}, "context": {"traits": '
        '{"email": "ann@example.com"}}}\'',
        f'    curl -H "Authorization: Bearer $(cat {token_file(args.datadir)})" \'{web}/api/accounts/'
        f"{next(iter(config.accounts))}/users?userId=u1'",
        "",
        "  Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def dev_main(argv: list[str]) -> int:
    from app.config import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="emarsys-destination dev")
    parser.add_argument("--config", default=os.environ.get("EMD_CONFIG", "examples/config.yaml"))
    parser.add_argument("--broker-port", type=int, default=9092)
    parser.add_argument("--web-port", type=int, default=6066)
    parser.add_argument(
        "--web-bind",
        default=os.environ.get("EMD_WEB_BIND", "127.0.0.1"),
        help="address the HTTP port listens on (default 127.0.0.1: this machine only; "
        "0.0.0.0 for every interface)",
    )
    parser.add_argument("--datadir", default=".emd-data/dev")
    parser.add_argument("-l", "--loglevel", default="info")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    os.environ["EMD_CONFIG"] = os.path.abspath(args.config)
    os.environ["EMD_PROFILE"] = "dev"
    if not os.environ.get("EMD_ADMIN_TOKEN"):
        os.environ["EMD_ADMIN_TOKEN"] = secrets.token_urlsafe(18)

    broker: EmbeddedBroker | None = None
    simulator: subprocess.Popen[bytes] | None = None
    embedded = config.broker == "embedded"
    try:
        if embedded:
            reuse = probe_kafka("127.0.0.1", args.broker_port) is True
            stale = _leftover_broker(args.datadir, args.broker_port) if reuse else None
            if stale is not None:
                print(
                    f"error: a broker left over from an earlier `make run` (pid {stale}) "
                    f"still holds port {args.broker_port}, with that run's topics; `make run` "
                    f"starts fresh: stop it (kill {stale}) or choose another port "
                    "(--broker-port)",
                    file=sys.stderr,
                )
                return 1
            broker = EmbeddedBroker(port=args.broker_port, die_with_parent=True).start()
            os.environ["EMD_BROKER"] = broker.url
            if broker.process is not None:
                _record_broker(args.datadir, broker.process.pid, args.broker_port)
            if not reuse:
                # The broker starts empty: local table state from an earlier run would
                # claim offsets the new broker never had.
                shutil.rmtree(args.datadir, ignore_errors=True)
            broker_url = broker.url
        else:
            broker_url = config.broker
        sim_port = _simulator_port(config)
        if sim_port:
            simulator = _start_simulator(sim_port)
        Path(args.datadir).mkdir(parents=True, exist_ok=True)
        _write_token(args.datadir, os.environ["EMD_ADMIN_TOKEN"])
        print(_banner(config, args, broker_url, embedded, sim_port), flush=True)
        return _run_worker(args)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if simulator is not None:
            simulator.terminate()
            try:
                simulator.wait(timeout=5)
            except subprocess.TimeoutExpired:
                simulator.kill()
        if broker is not None and not broker.reused:
            broker.stop()
            with contextlib.suppress(OSError):
                os.unlink(_broker_file(args.datadir))


def _broker_file(datadir: str) -> str:
    """Where ``dev`` notes the broker it started (beside the data dir, which a fresh start
    wipes): ``pid port``."""
    return os.path.normpath(datadir) + ".broker"


def _record_broker(datadir: str, pid: int, port: int) -> None:
    Path(datadir).parent.mkdir(parents=True, exist_ok=True)
    Path(_broker_file(datadir)).write_text(f"{pid} {port}\n")


def _leftover_broker(datadir: str, port: int) -> int | None:
    """The pid of a broker an earlier ``dev`` started on ``port`` and never stopped (that
    ``dev`` died where the kernel cannot stop its children: see app.child_process)."""
    try:
        pid_text, port_text = Path(_broker_file(datadir)).read_text().split()
        pid, recorded = int(pid_text), int(port_text)
    except (OSError, ValueError):
        return None
    if recorded != port:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def token_file(datadir: str) -> str:
    """Where ``dev`` leaves the admin token, so a second shell (the README's quick start)
    can read it with ``$(cat .emd-data/dev/admin-token)`` without exporting anything."""
    return os.path.join(datadir, "admin-token")


def _write_token(datadir: str, token: str) -> None:
    path = token_file(datadir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def _run_worker(args: argparse.Namespace) -> int:
    from faust import Worker

    from app.worker import app

    app.conf.web_port = args.web_port
    app.conf.web_host = "127.0.0.1"
    # Faust binds 0.0.0.0 by default: on a laptop that opens ingest and the admin API
    # to every network it joins. dev listens on this machine only unless told otherwise.
    app.conf.web_bind = args.web_bind
    app.conf.canonical_url = f"http://127.0.0.1:{args.web_port}"  # type: ignore[assignment]
    app.conf.datadir = args.datadir  # type: ignore[assignment]
    worker = Worker(app, loglevel=args.loglevel)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0
