"""The Emarsys API client: one per account, one pooled HTTP session, shared by all callers.

``call`` is one logical API call: auth (an OAuth bearer token, or a fresh WSSE header per
request and per retry), the account's rate limit, and retries per ``app.emarsys.retry``
until ``retry_for`` has passed; ``on_retry`` hears of every wait and of how a retried call
ended (``RetryProgress``), so retries can be shown while they happen. It returns the parsed envelope of a 2xx answer, raises
``EmarsysRejected`` for an answer that retrying cannot fix (keeping HTTP status, replyCode
and text for the delivery log) and ``EmarsysUnavailable`` when it gives up.

The typed methods read what Emarsys hides inside HTTP 200: per-contact errors in
``data.errors`` and whole-request failures such as ``{"<NO_KEY_ID>": {"2004": ...}}``.

Logging (``emd.emarsys``) carries method, path, status, replyCode and attempt number
only: never bodies, tokens, secrets or key values.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import orjson

from app.config.model import EmarsysConfig
from app.emarsys.auth import OAuthTokens, TokenError, wsse_header
from app.emarsys.batching import CONTACT_MAX_BYTES, MAX_COUNT, TRIGGER_MAX_BYTES
from app.emarsys.ratelimit import Clock, RateLimiter, Sleep
from app.emarsys.retry import (
    RETRIABLE_EXCEPTIONS,
    Backoff,
    RetryHook,
    RetryOutcome,
    RetryProgress,
    classify,
    retry_delay,
)

log = logging.getLogger("emd.emarsys")

EVENT_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$")
EVENT_CACHE_SECONDS = 600.0
EVENT_REFETCH_SECONDS = 60.0  # an unknown name refetches the list at most this often
LIST_MAX_IDS = 10_000  # external_ids per POST /contactlist/{id}/add|delete
CONNECT_TIMEOUT = 10.0
TEXT_LIMIT = 300
USER_AGENT = "emarsys-destination/0.1"

RC_NOT_FOUND = 2008


class EmarsysError(Exception):
    """Base of the errors a caller of the client is expected to handle."""


class EmarsysRejected(EmarsysError):
    """Emarsys refused the request and retrying will not change that (4xx, or a 2xx
    whose envelope says the whole request failed)."""

    def __init__(self, status: int, reply_code: int | None, reply_text: str) -> None:
        self.status = status
        self.reply_code = reply_code
        self.reply_text = reply_text
        super().__init__(f"HTTP {status} replyCode {reply_code}: {reply_text}")


class EmarsysUnavailable(EmarsysError):
    """Retries were given up after ``retry_for`` (429s, 5xx, timeouts, connection errors)."""

    def __init__(self, reason: str, last_status: int | None, attempts: int) -> None:
        self.reason = reason
        self.last_status = last_status
        self.attempts = attempts
        super().__init__(f"Emarsys unavailable after {attempts} attempt(s): {reason}")


@dataclass(frozen=True)
class Reply:
    """A parsed answer. ``reply_code`` is None when the body had none (plain text, 403)."""

    status: int
    reply_code: int | None
    reply_text: str
    data: Any
    attempts: int
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass
class ContactResult:
    """``ids`` as Emarsys gives them (existing as strings, new as ints); ``errors`` per key
    value: ``(replyCode, text)``."""

    ids: list[Any]
    errors: dict[str, tuple[int, str]]
    reply: Reply | None = None


@dataclass
class TriggerResult:
    """``errors`` per external_id: ``(replyCode, text)``; every other contact was accepted."""

    errors: dict[str, tuple[int, str]]
    reply: Reply | None = None


@dataclass
class ListResult:
    """A contact-list add or delete: ``count`` is Emarsys's ``inserted_contacts`` /
    ``deleted_contacts`` (0 when the contacts were already in, or already out: both calls
    are idempotent); ``errors`` per external id: ``(replyCode, text)``, e.g. 2008 for a
    contact that does not exist."""

    count: int
    errors: dict[str, tuple[int, str]]
    reply: Reply | None = None


@dataclass(frozen=True)
class CatalogEntry:
    """One entry of the account's catalog (a field, an external event, a contact list) as
    the console shows it; ``type`` is a field's ``application_type`` (else None)."""

    id: int
    name: str
    type: str | None = None


@dataclass
class ContactData:
    """``contacts`` as field id -> value (plus Emarsys's ``id``); ``errors`` per key value
    (2008: no such contact)."""

    contacts: list[dict[str, Any]]
    errors: dict[str, tuple[int, str]]
    reply: Reply | None = None


_UNREADABLE = object()


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _parse_body(raw: bytes) -> Any:
    if not raw.strip():
        return _UNREADABLE
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _UNREADABLE


def parse_reply(
    status: int, raw: bytes, headers: Mapping[str, str] | None = None, attempts: int = 1
) -> Reply:
    """The envelope, read defensively: non-JSON bodies, plain-text 429s, missing keys."""
    obj = _parse_body(raw)
    hdrs: Mapping[str, str] = headers if headers is not None else {}
    if isinstance(obj, dict):
        text = obj.get("replyText")
        return Reply(
            status=status,
            reply_code=_to_int(obj.get("replyCode")),
            reply_text="" if text is None else str(text)[:TEXT_LIMIT],
            data=obj.get("data"),
            attempts=attempts,
            headers=hdrs,
        )
    if obj is _UNREADABLE:
        text = raw.decode("utf-8", "replace").strip()[:TEXT_LIMIT]
        return Reply(status, None, text, None, attempts, hdrs)
    return Reply(status, None, "", obj, attempts, hdrs)


def _first_code(value: Any, default: int) -> tuple[int, str]:
    """``{"2010": "text"}`` -> ``(2010, "text")``; tolerates a bare string or list."""
    if isinstance(value, Mapping):
        for code, text in value.items():
            c = _to_int(code)
            return (c if c is not None else default, str(text))
        return (default, "")
    if isinstance(value, list) and value:
        return _first_code(value[0], default)
    return (default, "" if value is None else str(value))


def parse_errors(data: Any, default_code: int = 0) -> dict[str, tuple[int, str]]:
    """Per-key errors from ``data.errors``: the dict form ``{key: {code: text}}`` (upsert,
    trigger) or the list form ``[{"key", "errorCode", "errorMsg"}]`` (getdata)."""
    errors = data.get("errors") if isinstance(data, Mapping) else None
    out: dict[str, tuple[int, str]] = {}
    if isinstance(errors, Mapping):
        for key, value in errors.items():
            out[str(key)] = _first_code(value, default_code)
    elif isinstance(errors, list):
        for item in errors:
            if isinstance(item, Mapping) and "key" in item:
                code = _to_int(item.get("errorCode"))
                out[str(item["key"])] = (
                    code if code is not None else default_code,
                    str(item.get("errorMsg", "")),
                )
    return out


def _whole_request_failure(errors: dict[str, tuple[int, str]]) -> tuple[int, str] | None:
    """Emarsys reports a failure of the whole request under a pseudo key: ``<NO_KEY_ID>``."""
    for key, value in errors.items():
        if key.startswith("<") and key.endswith(">"):
            return value
    return None


def _check_batch_reply(reply: Reply) -> dict[str, tuple[int, str]]:
    errors = parse_errors(reply.data, reply.reply_code or 0)
    whole = _whole_request_failure(errors)
    if whole is not None:
        raise EmarsysRejected(reply.status, whole[0], whole[1])
    if reply.reply_code not in (None, 0) and not errors:
        raise EmarsysRejected(reply.status, reply.reply_code, reply.reply_text)
    return errors


def _exc_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, TokenError):
        return f"token endpoint HTTP {exc.status}"
    return f"connection error ({type(exc).__name__})"


class EmarsysClient:
    """The API of one Emarsys account. Create one per account and share it."""

    def __init__(
        self,
        account: str,
        cfg: EmarsysConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        limiter: RateLimiter | None = None,
        backoff: Backoff | None = None,
        on_response: Callable[[str, str, int | None, int | None], None] | None = None,
        on_retry: RetryHook | None = None,
    ) -> None:
        self.account = account
        # Called after every HTTP attempt with (method, path, status, replyCode): metrics.
        self._on_response = on_response
        # Called before every wait between attempts and when a retried call ends.
        self._on_retry = on_retry
        self._call_ids = itertools.count(1)
        self.cfg = cfg
        self._clock = clock
        self._sleep = sleep
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(
            total=cfg.timeout, connect=min(cfg.timeout, CONNECT_TIMEOUT)
        )
        self.limiter = limiter or RateLimiter(cfg.requests_per_minute, clock=clock, sleep=sleep)
        self.backoff = backoff or Backoff.from_config(cfg)
        self._tokens: OAuthTokens | None = None
        self._events = _Names("/event", "external event")
        self._lists = _Names("/contactlist", "contact list")
        self._last_progress: dict[int, RetryProgress] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._session is None or (self._owns_session and self._session.closed):
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300),
                headers={"User-Agent": USER_AGENT},
            )
            self._owns_session = True
        if self.cfg.auth == "oauth2" and self._tokens is None:
            assert self.cfg.client_id and self.cfg.client_secret  # checked by the config model
            self._tokens = OAuthTokens(
                self.cfg.token_url,
                self.cfg.client_id,
                self.cfg.client_secret,
                self._session,
                clock=self._clock,
                timeout=self._timeout,
            )

    async def close(self) -> None:
        if self._session is not None and self._owns_session and not self._session.closed:
            await self._session.close()
        self._tokens = None

    async def __aenter__(self) -> EmarsysClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def tokens(self) -> OAuthTokens | None:
        return self._tokens

    # -- the one logical call --------------------------------------------------------------

    async def _auth_headers(self) -> tuple[dict[str, str], str | None]:
        if self.cfg.auth == "wsse":
            assert self.cfg.username and self.cfg.secret  # checked by the config model
            return {"X-WSSE": wsse_header(self.cfg.username, self.cfg.secret)}, None
        assert self._tokens is not None
        token = await self._tokens.token()
        return {"Authorization": f"Bearer {token}"}, token

    async def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Reply:
        """One logical API call (``path`` below ``api_url``, e.g. ``/contact/``)."""
        if (
            self._session is None
            or self._session.closed
            or (self.cfg.auth == "oauth2" and self._tokens is None)
        ):
            await self.start()
        assert self._session is not None
        method = method.upper()
        body = None if json is None else orjson.dumps(json, option=orjson.OPT_NON_STR_KEYS)
        url = self.cfg.api_url + (path if path.startswith("/") else "/" + path)
        started = self._clock()
        deadline = started + self.cfg.retry_for
        call_id = next(self._call_ids)
        outcome: RetryOutcome = "cancelled"  # unless it ends otherwise (CancelledError)
        try:
            reply = await self._attempts(
                method, path, url, body, params, started, deadline, call_id
            )
            outcome = "ok"
            return reply
        except EmarsysUnavailable:
            outcome = "gave_up"
            raise
        except Exception:
            outcome = "rejected"  # refused, or an error retrying cannot fix
            raise
        finally:
            last = self._last_progress.pop(call_id, None)
            if last is not None:
                self._report(replace(last, next_attempt_at=None, outcome=outcome))

    def _report(self, progress: RetryProgress) -> None:
        if self._on_retry is None:
            return
        try:
            self._on_retry(progress)
        except Exception:  # an observer must never break a call
            log.debug("the retry hook failed", exc_info=True)

    async def _attempts(
        self,
        method: str,
        path: str,
        url: str,
        body: bytes | None,
        params: Mapping[str, str] | None,
        started: float,
        deadline: float,
        call_id: int,
    ) -> Reply:
        assert self._session is not None
        attempt = 0
        refreshed = False

        while True:
            attempt += 1
            await self.limiter.acquire()
            status: int | None = None
            reply: Reply | None = None
            exc: BaseException | None = None
            token: str | None = None
            readable = False
            try:
                headers, token = await self._auth_headers()
                headers["Accept"] = "application/json"
                if body is not None:
                    headers["Content-Type"] = "application/json"
                async with self._session.request(
                    method, url, data=body, params=params, headers=headers, timeout=self._timeout
                ) as resp:
                    status = resp.status
                    raw = await resp.read()
                    reply = parse_reply(resp.status, raw, resp.headers, attempt)
                    readable = _parse_body(raw) is not _UNREADABLE
            except TokenError as e:
                exc, status = e, e.status
            except RETRIABLE_EXCEPTIONS as e:
                exc = e

            code = reply.reply_code if reply is not None else None
            log.debug("%s %s -> %s replyCode=%s attempt=%d", method, path, status, code, attempt)
            if self._on_response is not None:
                self._on_response(method, path, status, code)

            if reply is not None and 200 <= reply.status < 300:
                if readable:
                    return reply
                decision = "retry"
                reason = f"HTTP {reply.status} with an unreadable body"
            elif (
                reply is not None
                and reply.status == 401
                and self._tokens is not None
                and not refreshed
            ):
                refreshed = True
                self._tokens.invalidate(token)
                log.info("%s %s: 401, refreshing the token (attempt %d)", method, path, attempt)
                continue
            else:
                decision = classify(status, exc)
                reason = _exc_reason(exc) if exc else f"HTTP {status} replyCode {code}"

            if decision == "fail":
                log.warning(
                    "%s %s -> %s replyCode=%s attempt=%d: rejected",
                    method,
                    path,
                    status,
                    code,
                    attempt,
                )
                if reply is not None:
                    raise EmarsysRejected(reply.status, reply.reply_code, reply.reply_text)
                if isinstance(exc, TokenError):
                    raise EmarsysRejected(exc.status, None, str(exc)) from exc
                assert exc is not None
                raise exc

            now = self._clock()
            delay = retry_delay(
                attempt,
                self.backoff,
                status=status,
                headers=reply.headers if reply is not None else None,
                now=now,
            )
            if status == 429:
                self.limiter.pause_until(now + delay)  # every caller of the account waits
            if now + delay > deadline:
                log.warning(
                    "%s %s -> %s replyCode=%s attempt=%d: giving up",
                    method,
                    path,
                    status,
                    code,
                    attempt,
                )
                raise EmarsysUnavailable(reason, status, attempt) from exc
            log.warning(
                "%s %s -> %s replyCode=%s attempt=%d: retrying in %.2fs",
                method,
                path,
                status,
                code,
                attempt,
                delay,
            )
            progress = RetryProgress(
                call_id=call_id,
                method=method,
                path=path,
                attempt=attempt,
                status=status,
                reply_code=code,
                reason=reason,
                started_at=started,
                gives_up_at=deadline,
                next_attempt_at=now + delay,
            )
            self._last_progress[call_id] = progress
            self._report(progress)
            await self._sleep(delay)

    # -- contacts --------------------------------------------------------------------------

    async def upsert_contacts(self, contacts: list[dict[str, Any]]) -> ContactResult:
        """``PUT /contact/?create_if_not_exists=1`` for rows already merged and chunked.

        Each row carries only the fields to write (a null wipes a field in Emarsys).
        """
        if len(contacts) > MAX_COUNT:
            raise ValueError(f"{len(contacts)} contacts in one call; Emarsys takes {MAX_COUNT}")
        if not contacts:
            return ContactResult([], {})
        key = str(self.cfg.key_field)
        seen: set[str] = set()
        for row in contacts:
            kv = row.get(key)
            if kv is not None:
                if str(kv) in seen:
                    raise ValueError("one key value twice in one batch: merge_contacts first")
                seen.add(str(kv))
        body: dict[str, Any] = {"key_id": self.cfg.key_field, "contacts": contacts}
        if self.cfg.contact_list_id is not None:
            body["contact_list_id"] = self.cfg.contact_list_id
        _check_size(body, CONTACT_MAX_BYTES)
        reply = await self.call("PUT", "/contact/", json=body, params={"create_if_not_exists": "1"})
        errors = _check_batch_reply(reply)
        data = reply.data if isinstance(reply.data, Mapping) else {}
        ids = data.get("ids")
        return ContactResult(list(ids) if isinstance(ids, list) else [], errors, reply)

    async def delete_contact(self, key_value: str) -> bool:
        """``POST /contact/delete`` with ``{"key_id": K, "K": value}`` (the single-contact form
        of Emarsys's delete). True if deleted; False if it was already gone (2008)."""
        kf = self.cfg.key_field
        try:
            reply = await self.call(
                "POST", "/contact/delete", json={"key_id": kf, str(kf): key_value}
            )
        except EmarsysRejected as e:
            if e.reply_code == RC_NOT_FOUND:
                return False
            raise
        errors = parse_errors(reply.data, reply.reply_code or 0)
        if errors:
            code, text = next(iter(errors.values()))
            if code == RC_NOT_FOUND:
                return False
            raise EmarsysRejected(reply.status, code, text)
        if reply.reply_code == RC_NOT_FOUND:
            return False
        if reply.reply_code not in (None, 0):
            raise EmarsysRejected(reply.status, reply.reply_code, reply.reply_text)
        return True

    async def get_contacts(
        self, key_values: Iterable[str], fields: Iterable[int | str]
    ) -> ContactData:
        """``POST /contact/getdata``; the key field is always among the fields read, so rows
        can be matched to key values. Not-found contacts come back in ``errors`` (2008)."""
        values = [str(v) for v in key_values]
        if len(values) > MAX_COUNT:
            raise ValueError(f"{len(values)} key values in one call; Emarsys takes {MAX_COUNT}")
        key = str(self.cfg.key_field)
        wanted = [str(f) for f in fields]
        if key not in wanted:
            wanted.append(key)
        if not values:
            return ContactData([], {})
        reply = await self.call(
            "POST",
            "/contact/getdata",
            json={"keyId": key, "keyValues": values, "fields": wanted},
        )
        errors = parse_errors(reply.data, RC_NOT_FOUND)
        if reply.reply_code not in (None, 0) and not errors:
            raise EmarsysRejected(reply.status, reply.reply_code, reply.reply_text)
        data = reply.data if isinstance(reply.data, Mapping) else {}
        result = data.get("result")
        contacts = (
            [dict(r) for r in result if isinstance(r, Mapping)] if isinstance(result, list) else []
        )
        return ContactData(contacts, errors, reply)

    # -- the account's catalog (read only) ------------------------------------------------

    async def list_fields(self) -> list[CatalogEntry]:
        """``GET /field/translate/en``: every contact field (system and custom) with its
        English name and ``application_type``."""
        return _catalog(await self.call("GET", "/field/translate/en"), "application_type")

    async def list_events(self) -> list[CatalogEntry]:
        """``GET /event``: the account's external events (automation triggers)."""
        return _catalog(await self.call("GET", "/event"))

    async def list_contact_lists(self) -> list[CatalogEntry]:
        """``GET /contactlist``: the account's contact lists."""
        return _catalog(await self.call("GET", "/contactlist"))

    # -- external events -------------------------------------------------------------------

    async def trigger_event(self, event_id: int, items: list[dict[str, Any]]) -> TriggerResult:
        """Batch trigger ``POST /event/{id}/trigger``; each item needs ``external_id`` and a
        stable ``trigger_id`` (Emarsys deduplicates on it, which makes retries safe)."""
        if isinstance(event_id, bool) or not isinstance(event_id, int):
            raise TypeError("event_id must be an int: use resolve_event_id for names")
        if len(items) > MAX_COUNT:
            raise ValueError(f"{len(items)} contacts in one trigger; Emarsys takes {MAX_COUNT}")
        if not items:
            return TriggerResult({})
        contacts: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            if item.get("external_id") in (None, ""):
                raise ValueError(f"trigger item {i} has no external_id")
            if not item.get("trigger_id"):
                raise ValueError(f"trigger item {i} has no trigger_id")
            event_time = item.get("event_time")
            if event_time is not None and (
                not isinstance(event_time, str) or not EVENT_TIME_RE.match(event_time)
            ):
                raise ValueError(
                    f"trigger item {i}: event_time {event_time!r} is not UTC "
                    "YYYY-MM-DDTHH:MM:SS[.sss]Z"
                )
            contact = {
                k: item[k]
                for k in ("external_id", "trigger_id", "data", "event_time")
                if item.get(k) is not None
            }
            contacts.append(contact)
        body = {"key_id": self.cfg.key_field, "contacts": contacts}
        _check_size(body, TRIGGER_MAX_BYTES)
        reply = await self.call("POST", f"/event/{event_id}/trigger", json=body)
        return TriggerResult(_check_batch_reply(reply), reply)

    async def resolve_event_id(self, event: int | str) -> int:
        """An external event id: ints and digit strings pass through; a name is looked up in
        ``GET /event`` (cached 10 minutes; an unknown name refetches at most once a minute)."""
        return await self._events.resolve(self, event)

    # -- contact lists ---------------------------------------------------------------------

    async def resolve_list_id(self, contact_list: int | str) -> int:
        """A contact list id, resolved like ``resolve_event_id`` through ``GET /contactlist``
        (the same cache times)."""
        return await self._lists.resolve(self, contact_list)

    async def add_to_list(self, list_id: int, external_ids: list[str]) -> ListResult:
        """``POST /contactlist/{id}/add``: the contacts (by key value) join the list. The
        contacts must exist (else 2008 for that contact); adding a member again is a no-op,
        so a retry or a redelivery is harmless. An unknown list: HTTP 400, replyCode 3004."""
        return await self._list_call(list_id, "add", external_ids, "inserted_contacts")

    async def remove_from_list(self, list_id: int, external_ids: list[str]) -> ListResult:
        """``POST /contactlist/{id}/delete``: the contacts leave the list (they stay
        contacts). Removing a non-member is a no-op, so it is as safe to repeat as add."""
        return await self._list_call(list_id, "delete", external_ids, "deleted_contacts")

    async def _list_call(
        self, list_id: int, verb: str, external_ids: list[str], count_key: str
    ) -> ListResult:
        if isinstance(list_id, bool) or not isinstance(list_id, int):
            raise TypeError("list_id must be an int: use resolve_list_id for names")
        if len(external_ids) > LIST_MAX_IDS:
            raise ValueError(
                f"{len(external_ids)} contacts in one list call; Emarsys takes {LIST_MAX_IDS}"
            )
        if not external_ids:
            return ListResult(0, {})
        if any(v in (None, "") for v in external_ids):
            raise ValueError("an empty external id cannot be added to or removed from a list")
        body = {"key_id": self.cfg.key_field, "external_ids": [str(v) for v in external_ids]}
        reply = await self.call("POST", f"/contactlist/{list_id}/{verb}", json=body)
        errors = _check_batch_reply(reply)
        data = reply.data if isinstance(reply.data, Mapping) else {}
        return ListResult(_to_int(data.get(count_key)) or 0, errors, reply)


class _Names:
    """Names of one kind of the account's catalog (external events, contact lists) to ids,
    so a config can say "Welcome series" instead of 1302.

    Cached ``EVENT_CACHE_SECONDS``; an unknown name refetches at most every
    ``EVENT_REFETCH_SECONDS`` (a list created a minute ago is found, a typo does not cost
    a call per effect). A name matches exactly, else case-insensitively when only one
    entry matches that way (two entries differing by case only: use the exact name)."""

    def __init__(self, path: str, noun: str) -> None:
        self.path = path
        self.noun = noun
        self._ids: dict[str, int] = {}
        self._at: float | None = None
        self._lock = asyncio.Lock()

    async def resolve(self, client: EmarsysClient, ref: int | str) -> int:
        if isinstance(ref, bool):
            raise TypeError(f"an {self.noun} is an id or a name, not a bool")
        if isinstance(ref, int):
            return ref
        name = ref.strip()
        if name.isdigit():
            return int(name)
        async with self._lock:
            now = client._clock()
            age = None if self._at is None else now - self._at
            if age is None or age >= EVENT_CACHE_SECONDS:
                await self._load(client)
            found = self._find(name)
            stale = age is not None and EVENT_REFETCH_SECONDS <= age < EVENT_CACHE_SECONDS
            if found is None and stale:
                await self._load(client)
                found = self._find(name)
        if found is None:
            raise EmarsysRejected(200, None, f"no {self.noun} named {name!r}")
        return found

    async def _load(self, client: EmarsysClient) -> None:
        ids: dict[str, int] = {}
        for entry in _catalog(await client.call("GET", self.path)):
            ids.setdefault(entry.name, entry.id)
        self._ids = ids
        self._at = client._clock()

    def _find(self, name: str) -> int | None:
        if name in self._ids:
            return self._ids[name]
        folded = [i for n, i in self._ids.items() if n.casefold() == name.casefold()]
        return folded[0] if len(folded) == 1 else None


def _catalog(reply: Reply, type_key: str | None = None) -> list[CatalogEntry]:
    """Rows ``{id, name, ...}`` of a list answer, read defensively: Emarsys sends ids as
    strings or numbers; a row without a usable id or name is skipped, not fatal."""
    if reply.reply_code not in (None, 0):
        raise EmarsysRejected(reply.status, reply.reply_code, reply.reply_text)
    rows = reply.data if isinstance(reply.data, list) else []
    out: list[CatalogEntry] = []
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        eid = _to_int(row.get("id"))
        name = row.get("name")
        if eid is None or not isinstance(name, str):
            continue
        kind = row.get(type_key) if type_key else None
        out.append(CatalogEntry(eid, name, kind if isinstance(kind, str) else None))
    return out


def _check_size(body: Mapping[str, Any], limit: int) -> None:
    n = len(orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS))
    if n > limit:
        raise ValueError(f"request body is {n} bytes; Emarsys takes {limit}: chunk first")
