"""How the aiohttp server under Faust's web (one port) treats connections.

Two options of aiohttp's server, set before it starts:

- ``auto_decompress=False``: aiohttp would inflate ``Content-Encoding: gzip`` bodies
  inside its protocol callback, before any handler can bound or pace it; bodies are
  inflated by ``app.web.bodies`` instead (bounded, in slices, yielding).
- a ``logger`` that writes **one line, no traceback** for what hostile or broken clients
  cause (a connection reset mid-body, a request aiohttp cannot parse) and counts it in
  ``emd_http_bad_connections_total{reason}``; every other error keeps its traceback at
  ERROR, so real bugs stay visible. A slow-body attack used to log hundreds of
  ``ConnectionResetError`` tracebacks.

Neither line names the client's address: an IP address is personal data.

And the listening socket's backlog: aiohttp's default of 128 pending connections is
filled by a few hundred clients reconnecting after their 429s; a legitimate client's
SYN is then dropped and retried a second later (measured during the slow-body attack of
tests/integration/test_hostile_clients.py: the slowest identify 1.07 s with 128, 0.58 s
with 1024, the rest being two CPU cores shared with the attackers).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import http_exceptions, web

from app.metrics import Metrics

BAD_CONNECTIONS = "emd_http_bad_connections_total"
BACKLOG = 1024


def _exception_of(kw: dict[str, Any]) -> BaseException | None:
    exc = kw.get("exc_info")
    if isinstance(exc, BaseException):
        return exc
    if isinstance(exc, tuple) and len(exc) == 3:
        return exc[1]  # type: ignore[no-any-return]
    return None


def classify(exc: BaseException | None) -> str | None:
    """``disconnected`` / ``malformed`` for what a client did; None for our own errors."""
    if isinstance(exc, ConnectionError):
        return "disconnected"
    if isinstance(exc, http_exceptions.HttpProcessingError):
        return "malformed"
    return None


class ServerLog:
    """Stands in for aiohttp's ``aiohttp.server`` logger (it calls ``exception`` and
    ``debug``; the rest is passed through)."""

    def __init__(self, metrics: Metrics, logger: logging.Logger | None = None) -> None:
        self.metrics = metrics
        self.logger = logger or logging.getLogger("aiohttp.server")

    def exception(self, msg: str, *args: Any, **kw: Any) -> None:
        exc = _exception_of(kw)
        reason = classify(exc)
        if reason is None:
            self.logger.exception(msg, *args, **kw)
            return
        self.metrics.inc(BAD_CONNECTIONS, reason=reason)
        level = logging.INFO if reason == "disconnected" else logging.WARNING
        # aiohttp's message names the remote address: our line does not.
        self.logger.log(level, "bad HTTP connection (%s): %s", reason, type(exc).__name__)

    def debug(self, msg: str, *args: Any, **kw: Any) -> None:
        # aiohttp logs a first request with a bad method (TLS or junk on the port) at
        # debug level: kept at debug, but counted like every malformed request.
        if kw.get("exc_info") is not None and classify(_exception_of(kw)) == "malformed":
            self.metrics.inc(BAD_CONNECTIONS, reason="malformed")
        self.logger.debug(msg, *args, **kw)

    def error(self, msg: str, *args: Any, **kw: Any) -> None:
        if kw.get("exc_info") and classify(_exception_of(kw)) is not None:
            self.exception(msg, *args, **kw)
            return
        self.logger.error(msg, *args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.logger, name)


def server_options(metrics: Metrics) -> dict[str, Any]:
    """Keyword arguments for aiohttp's ``Server`` (``AppRunner(app, **options)``)."""
    return {"auto_decompress": False, "logger": ServerLog(metrics)}


def configure(faust_web: Any, metrics: Metrics) -> None:
    """Apply ``server_options`` and the backlog to Faust's aiohttp web, before it starts.

    Faust builds ``AppRunner(web_app, access_log=None)`` and ``TCPSite(runner, bind,
    port, ssl_context=...)`` and offers no setting for either; its runner keeps the
    keyword arguments it hands to aiohttp's ``Server`` in ``_kwargs`` until ``setup()``,
    and it picks the site from ``_transport_handlers``, so both are set there (the
    integration tests run through them)."""
    runner = faust_web._runner
    runner._kwargs.update(server_options(metrics))
    conf = faust_web.app.conf

    def tcp_site() -> web.BaseSite:  # Faust's own, plus the backlog
        return web.TCPSite(
            runner,
            conf.web_bind,
            conf.web_port,
            ssl_context=conf.web_ssl_context,
            backlog=BACKLOG,
        )

    faust_web._transport_handlers["tcp"] = tcp_site
