"""Segment ingest over HTTP, shaped like Segment's Tracking API.

``POST /v1/{identify,track,page,screen,group,alias}``, ``POST /v1/batch`` and
``POST /segment`` (either form). Answers ``200 {"success": true}`` only once every
accepted message is acknowledged by the broker; invalid messages inside a valid batch go
to the dead-letter topic and are listed in the answer (``rejected``) without sinking the
valid ones. Whole-request problems, each ``{"code", "message"}``: 400 (bad JSON, an
invalid single message, a charset we cannot decode), 401 (unknown key, bad signature),
408 (the body did not arrive in time), 413 (over Segment's limits, also after
inflating), 415 (a Content-Encoding other than gzip/deflate), 429 (too many requests in
flight), 503 (the broker did not acknowledge).
"""

from __future__ import annotations

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
from app.web.bodies import BodyError, decode_json, read_body
from app.web.errors import error
from app.web.server import BAD_CONNECTIONS

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


@dataclass(frozen=True)
class _BadJson:
    """A body that is not JSON: answered 400 once the sender is known (401 otherwise)."""

    error: BodyError


def _error(status: int, message: str, code: str | None = None, **extra: Any) -> web.Response:
    return error(status, message, code, **extra)


class Ingest:
    """The ingest routes, with two budgets of requests in flight.

    A request authenticated from its headers (HTTP Basic with a known key: what Segment
    and its server-side libraries send) is counted against ``max_in_flight`` and may take
    ``body_timeout`` seconds to send its body. A request without an Authorization header
    can only authenticate with a ``writeKey`` inside its body (analytics.js does this), so
    its body has to be read first: it is counted against the smaller
    ``max_unauthenticated`` budget, gets ``unauthenticated_timeout`` seconds for its
    body, and moves to the authenticated budget only once its writeKey is known. Any
    number of anonymous slow clients can therefore fill only their own budget (429 for
    the next of them), never the one authenticated senders use. A wrong key in the
    header is refused before a byte of the body is read.
    """

    def __init__(
        self,
        accounts: Callable[[], Accounts],
        publish: Publish,
        dead_letter: DeadLetter,
        metrics: Metrics,
        max_in_flight: int = 256,
        *,
        max_unauthenticated: int = 64,
        body_timeout: float = 30.0,
        unauthenticated_timeout: float = 5.0,
    ) -> None:
        self._accounts = accounts
        self._publish = publish
        self._dead_letter = dead_letter
        self._metrics = metrics
        self._max_in_flight = max_in_flight
        self._max_unauthenticated = max_unauthenticated
        self._body_timeout = body_timeout
        self._unauthenticated_timeout = unauthenticated_timeout
        self._in_flight = 0
        self._unauthenticated = 0

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

    def _throttled(self, budget: str) -> web.Response:
        self._metrics.inc("emd_ingest_throttled_total", budget=budget)
        return _error(
            429, "too many requests in flight; retry shortly", "too_many_requests", retry_after=1
        )

    async def _guarded(self, request: web.Request, form: str | None) -> web.Response:
        limit = MESSAGE_LIMIT if form in SINGLE_TYPES else BATCH_LIMIT
        if "Authorization" in request.headers:
            key = basic_username(request)
            account = self._accounts().account_for_key(key) if key else None
            if account is None:
                return _error(401, "unknown or missing API key", "unauthorized")
            if self._in_flight >= self._max_in_flight:
                return self._throttled("authenticated")
            self._in_flight += 1
            try:
                read = await self._read(request, limit, self._body_timeout)
                if isinstance(read, web.Response):
                    return read
                return await self._handle(request, form, account, read)
            finally:
                self._in_flight -= 1
        if self._unauthenticated >= self._max_unauthenticated:
            return self._throttled("unauthenticated")
        self._unauthenticated += 1
        try:
            read = await self._read(request, limit, self._unauthenticated_timeout)
        finally:
            self._unauthenticated -= 1
        if isinstance(read, web.Response):
            return read
        _body, obj = read
        key = obj.get("writeKey") if isinstance(obj, dict) else None
        account = self._accounts().account_for_key(key) if isinstance(key, str) else None
        if account is None:
            return _error(401, "unknown or missing API key", "unauthorized")
        if self._in_flight >= self._max_in_flight:
            return self._throttled("authenticated")
        self._in_flight += 1
        try:
            return await self._handle(request, form, account, read)
        finally:
            self._in_flight -= 1

    async def _read(
        self, request: web.Request, limit: int, timeout: float
    ) -> tuple[bytes, Any] | web.Response:
        """(body, parsed JSON or ``_BAD_JSON``), or the error answer."""
        try:
            body = await read_body(request, limit, timeout)
        except BodyError as exc:
            if exc.aborted is not None:
                self._metrics.inc(BAD_CONNECTIONS, reason=exc.aborted)
                log.info("ingest body not received (%s)", exc.aborted)
            resp = _error(exc.status, exc.message, exc.code)
            if exc.aborted is not None:
                resp.force_close()
            return resp
        try:
            charset = request.charset
        except Exception:
            charset = None
        try:
            return body, decode_json(body, charset)
        except BodyError as exc:
            return body, _BadJson(exc)

    async def _handle(
        self, request: web.Request, form: str | None, account: str, read: tuple[bytes, Any]
    ) -> web.Response:
        body, obj = read
        if isinstance(obj, _BadJson):
            return _error(obj.error.status, obj.error.message, obj.error.code)
        secret = self._accounts()[account].config.shared_secret
        if secret and not signature_ok(body, secret, request.headers.get("X-Signature")):
            return _error(401, "missing or wrong X-Signature", "bad_signature")
        if not isinstance(obj, dict):
            return _error(400, "the body must be a JSON object", "invalid_message")
        is_batch = form == "batch" or (form is None and "batch" in obj)
        if is_batch:
            try:
                items = split_batch(obj)
            except InvalidMessage as exc:
                return _error(400, exc.reason, "invalid_message")
            if len(items) > BATCH_MAX_MESSAGES:
                return _error(
                    413, f"a batch holds at most {BATCH_MAX_MESSAGES} messages", "too_large"
                )
        else:
            if len(body) > MESSAGE_LIMIT:
                # /segment reads up to the batch limit; one message is held to its own.
                return _error(413, f"request body over {MESSAGE_LIMIT // 1024} KB", "too_large")
            single = {k: v for k, v in obj.items() if k != "writeKey"}
            if form is not None and "type" not in single:
                single["type"] = form
            if form is not None and single.get("type") != form:
                return _error(
                    400, f"type: {single.get('type')!r} sent to /v1/{form}", "invalid_message"
                )
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
                    return _error(
                        503,
                        "the event log is unavailable; retry later",
                        "unavailable",
                        retry_after=5,
                    )
                continue
            records.append(
                Record(
                    key=make_key(account, str(rid)),
                    value=orjson.dumps(msg.data),
                    headers={ACCOUNT_HEADER: account.encode()},
                )
            )
        if not is_batch and rejected:
            return _error(400, rejected[0]["reason"], "invalid_message")
        if records:
            try:
                await self._publish(records)
            except Exception as exc:
                log.warning("publishing to the input topic failed: %s", type(exc).__name__)
                return _error(
                    503, "the event log is unavailable; retry later", "unavailable", retry_after=5
                )
            self._metrics.inc("emd_events_in_total", float(len(records)), account=account)
        answer: dict[str, Any] = {"success": True}
        if rejected:
            answer["rejected"] = rejected
        return web.json_response(answer)
