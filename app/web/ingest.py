"""Segment ingest over HTTP, shaped like Segment's Tracking API.

``POST /v1/{identify,track,page,screen,group,alias}``, ``POST /v1/batch`` and
``POST /segment`` (either form). Answers ``200 {"success": true}`` only once every
accepted message is acknowledged by the broker; invalid messages inside a valid batch go
to the dead-letter topic and are listed in the answer (``rejected``) without sinking the
valid ones. Whole-request problems: 400 (bad JSON, invalid single message), 401 (unknown
key, bad signature), 413 (over Segment's limits), 429 (too many requests in flight).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from app.account import Accounts
from app.identity import partition_id, resolve
from app.keys import key as make_key
from app.metrics import Metrics
from app.segment.model import (
    BATCH_LIMIT,
    BATCH_MAX_MESSAGES,
    MESSAGE_LIMIT,
    InvalidMessage,
    parse_message,
    split_batch,
)
from app.web.auth import basic_username, signature_ok

log = logging.getLogger("emd.ingest")

ACCOUNT_HEADER = "emd-account"
SINGLE_TYPES = ("identify", "track", "page", "screen", "group", "alias")


@dataclass(frozen=True)
class Record:
    key: bytes
    value: bytes
    headers: dict[str, bytes]


Publish = Callable[[list[Record]], Awaitable[None]]
DeadLetter = Callable[[str, str, str | None, Any], Awaitable[None]]


def _no_links(_ident: str) -> None:
    return None


def _error(status: int, message: str, **extra: Any) -> web.Response:
    headers = {"Retry-After": str(extra.pop("retry_after"))} if "retry_after" in extra else None
    return web.json_response({"message": message, **extra}, status=status, headers=headers)


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or its first ``limit + 1`` bytes when it is longer.

    ``StreamReader.read(n)`` returns what is buffered (a chunk), not ``n`` bytes: a single
    read cut bodies larger than one chunk and answered valid batches "malformed JSON".
    """
    body = bytearray()
    while len(body) <= limit:
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


class Ingest:
    def __init__(
        self,
        accounts: Callable[[], Accounts],
        publish: Publish,
        dead_letter: DeadLetter,
        metrics: Metrics,
        max_in_flight: int = 256,
    ) -> None:
        self._accounts = accounts
        self._publish = publish
        self._dead_letter = dead_letter
        self._metrics = metrics
        self._slots = asyncio.Semaphore(max_in_flight)
        self._max_in_flight = max_in_flight
        self._in_flight = 0

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/batch", self.batch),
            web.post("/v1/import", self.batch),
            web.post("/segment", self.any_form),
            *[web.post(f"/v1/{t}", self._single_handler(t)) for t in SINGLE_TYPES],
        ]

    def _single_handler(self, type_: str):
        async def handler(request: web.Request) -> web.Response:
            return await self._guarded(request, type_)

        return handler

    async def batch(self, request: web.Request) -> web.Response:
        return await self._guarded(request, "batch")

    async def any_form(self, request: web.Request) -> web.Response:
        return await self._guarded(request, None)

    async def _guarded(self, request: web.Request, form: str | None) -> web.Response:
        if self._in_flight >= self._max_in_flight:
            return _error(429, "too many requests in flight; retry shortly", retry_after=1)
        self._in_flight += 1
        try:
            return await self._handle(request, form)
        finally:
            self._in_flight -= 1

    async def _handle(self, request: web.Request, form: str | None) -> web.Response:
        limit = MESSAGE_LIMIT if form in SINGLE_TYPES else BATCH_LIMIT
        if request.content_length is not None and request.content_length > limit:
            return _error(413, f"request body over {limit // 1024} KB")
        try:
            body = await _read_body(request, limit)
        except web.RequestPayloadError:
            # e.g. "Content-Encoding: gzip" on a body that is not gzip: the sender's fault.
            return _error(400, "cannot read the body (bad Content-Encoding or transfer)")
        if len(body) > limit:
            return _error(413, f"request body over {limit // 1024} KB")
        accounts = self._accounts()
        key = basic_username(request)
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if key is None or accounts.account_for_key(key) is None:
                return _error(401, "unknown or missing API key")
            return _error(400, f"malformed JSON: {exc}")
        if key is None and isinstance(obj, dict) and isinstance(obj.get("writeKey"), str):
            key = obj["writeKey"]
        account = accounts.account_for_key(key) if key else None
        if account is None:
            return _error(401, "unknown or missing API key")
        secret = accounts[account].config.shared_secret
        if secret and not signature_ok(body, secret, request.headers.get("X-Signature")):
            return _error(401, "missing or wrong X-Signature")
        if not isinstance(obj, dict):
            return _error(400, "the body must be a JSON object")
        is_batch = form == "batch" or (form is None and "batch" in obj)
        if is_batch:
            try:
                items = split_batch(obj)
            except InvalidMessage as exc:
                return _error(400, exc.reason)
            if len(items) > BATCH_MAX_MESSAGES:
                return _error(413, f"a batch holds at most {BATCH_MAX_MESSAGES} messages")
        else:
            if len(body) > MESSAGE_LIMIT:
                # /segment reads up to the batch limit; one message is held to its own.
                return _error(413, f"request body over {MESSAGE_LIMIT // 1024} KB")
            single = {k: v for k, v in obj.items() if k != "writeKey"}
            if form is not None and "type" not in single:
                single["type"] = form
            if form is not None and single.get("type") != form:
                return _error(400, f"type: {single.get('type')!r} sent to /v1/{form}")
            items = [single]
        received = datetime.now(UTC)
        records: list[Record] = []
        rejected: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            if isinstance(item, dict):
                # receivedAt is stamped by parse_message, after the content messageId: a
                # retried identical body without messageId must get the same id.
                item.pop("writeKey", None)
            reason = None
            try:
                raw = orjson.dumps(item)
                if len(raw) > MESSAGE_LIMIT:
                    raise InvalidMessage(f"message over {MESSAGE_LIMIT // 1024} KB")
                msg = parse_message(item, received_at=received)
                rid = partition_id(msg.data)
                if rid is None:
                    raise InvalidMessage(
                        "no usable identifier: userId/anonymousId (previousId for alias) "
                        "is missing or a placeholder such as 'null' or '0'"
                    )
                if msg.type == "alias" and resolve(msg.data, _no_links) is None:
                    # Accepted, it would only be dead-lettered later, unseen by the sender.
                    raise InvalidMessage(
                        "alias needs a usable userId (not a placeholder such as 'null'), "
                        "different from previousId"
                    )
            except InvalidMessage as exc:
                reason = exc.reason
            except (TypeError, orjson.JSONEncodeError) as exc:
                reason = f"cannot be encoded as JSON: {exc}"
            if reason is not None:
                mid = item.get("messageId") if isinstance(item, dict) else None
                # Echo a messageId only when it is one: the answer must always encode.
                mid = mid[:200] if isinstance(mid, str) else None
                rejected.append({"index": index, "messageId": mid, "reason": reason})
                self._metrics.inc("emd_events_rejected_total", account=account, reason="invalid")
                try:
                    await self._dead_letter(reason, account, mid, item)
                except Exception as exc:
                    # Never drop a rejected message silently: the sender retries (5xx).
                    log.warning("dead-lettering a rejected message failed: %s", type(exc).__name__)
                    return _error(503, "the event log is unavailable; retry later", retry_after=5)
                continue
            records.append(
                Record(
                    key=make_key(account, str(rid)),
                    value=orjson.dumps(msg.data),
                    headers={ACCOUNT_HEADER: account.encode()},
                )
            )
        if not is_batch and rejected:
            return _error(400, rejected[0]["reason"])
        if records:
            try:
                await self._publish(records)
            except Exception as exc:
                log.warning("publishing to the input topic failed: %s", type(exc).__name__)
                return _error(503, "the event log is unavailable; retry later", retry_after=5)
            self._metrics.inc("emd_events_in_total", float(len(records)), account=account)
        answer: dict[str, Any] = {"success": True}
        if rejected:
            answer["rejected"] = rejected
        return web.json_response(answer)
