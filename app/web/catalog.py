"""The account's Emarsys catalog by name: fields, external events, contact lists.

The console's pickers read it so that users choose "E-Mail" rather than type 3. Each
answer comes from the account's Emarsys API and is kept for ``ttl`` seconds per account
and kind (``?refresh=1`` fetches again), so opening an editor does not cost an API call
each time and the account's rate limit stays with the sink. Concurrent requests for the
same list share one fetch.

The fetch has its own short budget, not the sink's ``retry_for`` (an hour by default): a
person waiting for a picker gets ``504`` when Emarsys does not answer in time and ``502``
when it cannot be reached or refuses, each with a message saying which. Nothing is
served stale: a list that could not be fetched is an error the console shows as a
warning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from app.config.model import EmarsysConfig
from app.emarsys.client import CatalogEntry, EmarsysClient, EmarsysRejected, EmarsysUnavailable
from app.runtime import Runtime
from app.web.admin import guard

log = logging.getLogger("emd.web.catalog")

ClientFactory = Callable[[str, EmarsysConfig], EmarsysClient]

TTL = 300.0  # seconds an answer is kept per account and kind
BUDGET = 15.0  # seconds a fetch may take in all (retries included)
RETRY_FOR = 5.0  # seconds the client keeps retrying 429/5xx/connection errors


@dataclass(frozen=True)
class Kind:
    path: str  # the Emarsys call, for messages
    key: str  # the answer's list key
    fetch: Callable[[EmarsysClient], Awaitable[list[CatalogEntry]]]


KINDS = {
    "fields": Kind("GET /field/translate/en", "fields", lambda c: c.list_fields()),
    "events": Kind("GET /event", "events", lambda c: c.list_events()),
    "lists": Kind("GET /contactlist", "lists", lambda c: c.list_contact_lists()),
}


@dataclass
class _Entry:
    items: list[dict[str, Any]]
    at: float  # clock time of the fetch
    fetched_at: str  # the same, as UTC ISO for the answer


class CatalogError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CatalogApi:
    """``GET /api/accounts/{account}/emarsys/{fields|events|lists}`` behind the admin token."""

    def __init__(
        self,
        runtime: Runtime,
        client_factory: ClientFactory = EmarsysClient,
        *,
        ttl: float = TTL,
        budget: float = BUDGET,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.client_factory = client_factory
        self.ttl = ttl
        self.budget = budget
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[EmarsysConfig, _Entry]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._clients: dict[str, tuple[EmarsysConfig, EmarsysClient]] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(f"/api/accounts/{{account}}/emarsys/{kind}", self.handler(kind))
            for kind in KINDS
        ]

    async def on_cleanup(self, _app: web.Application) -> None:
        """Close the HTTP sessions of the clients (an aiohttp ``on_cleanup`` hook)."""
        for _, client in self._clients.values():
            await client.close()
        self._clients.clear()

    def handler(self, kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            account = request.match_info["account"]
            denied = guard(self.runtime, request, account)
            if denied:
                return denied
            refresh = request.query.get("refresh") in ("1", "true")
            try:
                entry, cached = await self.get(account, kind, refresh=refresh)
            except CatalogError as exc:
                return web.json_response(
                    {"message": exc.message, "account": account}, status=exc.status
                )
            return web.json_response(
                {
                    "account": account,
                    KINDS[kind].key: entry.items,
                    "fetched_at": entry.fetched_at,
                    "cached": cached,
                }
            )

        return handle

    async def get(self, account: str, kind: str, *, refresh: bool = False) -> tuple[_Entry, bool]:
        """The catalog list and whether it came from the cache; ``CatalogError`` if not."""
        acct = self.runtime.accounts.get(account)
        if acct is None:
            raise CatalogError(404, "no such account")
        cfg = acct.config.emarsys
        key = (account, kind)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            held = self._cache.get(key)
            if (
                not refresh
                and held is not None
                and held[0] == cfg  # an edited Emarsys config is another account
                and self.clock() - held[1].at < self.ttl
            ):
                return held[1], True
            entry = await self._fetch(account, kind, cfg)
            self._cache[key] = (cfg, entry)
            return entry, False

    async def _client(self, account: str, cfg: EmarsysConfig) -> EmarsysClient:
        held = self._clients.get(account)
        if held is not None and held[0] == cfg:
            return held[1]
        short = cfg.model_copy(
            update={
                "retry_for": min(cfg.retry_for, RETRY_FOR, self.budget),
                "timeout": min(cfg.timeout, self.budget),
            }
        )
        client = self.client_factory(account, short)
        self._clients[account] = (cfg, client)  # stored before any await: one per config
        if held is not None:  # the account's Emarsys config was edited
            await held[1].close()
        return client

    async def _fetch(self, account: str, kind: str, cfg: EmarsysConfig) -> _Entry:
        spec = KINDS[kind]
        client = await self._client(account, cfg)
        try:
            async with asyncio.timeout(self.budget):
                rows = await spec.fetch(client)
        except TimeoutError:
            raise self._failed(
                account, kind, 504, f"Emarsys did not answer {spec.path} within {self.budget:g} s"
            ) from None
        except EmarsysUnavailable as exc:
            status = 504 if exc.reason == "timeout" else 502
            raise self._failed(
                account, kind, status, f"cannot reach Emarsys ({spec.path}): {exc.reason}"
            ) from None
        except EmarsysRejected as exc:
            code = f" replyCode {exc.reply_code}" if exc.reply_code is not None else ""
            text = f": {exc.reply_text}" if exc.reply_text else ""
            raise self._failed(
                account,
                kind,
                502,
                f"Emarsys refused {spec.path}: HTTP {exc.status}{code}{text}",
            ) from None
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        items = [_public(row) for row in rows]
        return _Entry(items, self.clock(), now)

    def _failed(self, account: str, kind: str, status: int, message: str) -> CatalogError:
        # The message names the call and Emarsys's answer, never a credential.
        log.warning("catalog %s of account %s: %s", kind, account, message)
        return CatalogError(status, message)


def _public(row: CatalogEntry) -> dict[str, Any]:
    out = asdict(row)
    if out["type"] is None:
        del out["type"]
    return out
