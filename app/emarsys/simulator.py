"""An in-memory Emarsys API simulator: test equipment held to the real API.

It serves the contact, field, external-event and contact-list endpoints under ``/api/v2``
(WSSE) and ``/api/v3`` (OAuth bearer, token at ``POST /oauth2/token``) with the behaviour
the reference (``emarsys-api.md``) documents: the ``replyCode`` envelope, per-contact errors
inside HTTP 200, batch limits, ``trigger_id`` deduplication, ``event_time`` checks, the
per-credential rate limit with its headers. Faults (error rate, latency, outage) are
injected on demand, for every caller or for one API user (credential), and everything
that happened can be read back under ``/_sim/``, including when each contact update and
trigger was accepted (``/_sim/accepted``, for latency measurements).

Several API users (OAuth clients, WSSE users) can be configured; they share one contact
store (one Emarsys account with several API users), while faults and the rate limit are
per API user: two of the app's accounts pointed at two API users see the one Emarsys
down and the other up, as two customers' Emarsys accounts would be.

A client that passes against this simulator should pass against Emarsys: where the
reference leaves a detail open, the simulator picks the stricter reading. It is independent
of the product's own Emarsys client on purpose and must never import it.

Nothing is persisted; the log carries method, path and status only (no secrets, no contact
data). All time (token expiry, the WSSE window, the rate window, outages) comes from an
injectable clock so tests can move it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextvars
import copy
import hashlib
import hmac
import json
import logging
import math
import random
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

log = logging.getLogger(__name__)

DEFAULT_PORT = 9797
MAX_BATCH = 1000
MAX_LIST_IDS = 10_000  # external_ids per contact-list add or delete
CONTACT_BODY_LIMIT = 8 * 1024 * 1024
TRIGGER_BODY_LIMIT = 1024 * 1024
WSSE_WINDOW = 300.0
NONCE_MEMORY = 2 * WSSE_WINDOW
RATE_WINDOW = 60.0
NO_KEY_ID = "<NO_KEY_ID>"

Json = Any
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ManualClock:
    """A clock tests move by hand: ``clock()`` is the time, ``advance(s)`` moves it."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set(self, when: float) -> None:
        self.now = float(when)


def _default_events() -> list[dict[str, Any]]:
    return [
        {"id": 1234, "name": "segment.com test event"},
        {"id": 1301, "name": "Cart abandoned"},
        {"id": 1302, "name": "Welcome series"},
        {"id": 1303, "name": "Back in stock"},
    ]


def _default_custom_fields() -> list[dict[str, Any]]:
    """A few account-specific fields, as a real account has them (ids are per account)."""
    return [
        {"id": 4711, "name": "Loyalty tier", "application_type": "shorttext"},
        {"id": 4712, "name": "Lifetime value", "application_type": "numeric"},
        {"id": 4713, "name": "Last order date", "application_type": "date"},
        {
            "id": 4714,
            "name": "Preferred channel",
            "application_type": "singlechoice",
            "choices": [1, 2, 3],
        },
    ]


def _default_contact_lists() -> list[dict[str, Any]]:
    return [
        {"id": 750504658, "name": "Newsletter subscribers"},
        {"id": 750504659, "name": "VIP customers"},
        {"id": 750504660, "name": "Cart abandoners"},
    ]


@dataclass
class CredentialFaults:
    """Faults of one API user (an OAuth client id or a WSSE user name): its calls, token
    requests included, answer 503 inside ``outage`` (a ``(start, end)`` clock window),
    wait ``latency`` seconds first, and fail with 500 at ``error_rate``."""

    outage: tuple[float, float] | None = None
    latency: float = 0.0
    error_rate: float = 0.0


ACCEPT_LOG = 300_000  # accepted contact rows and triggers kept for /_sim/accepted


@dataclass
class SimulatorOptions:
    """How the simulator behaves; faults can be changed later through ``POST /_sim/faults``.

    ``outage`` is a ``(start, end)`` window in clock seconds during which every API and token
    call answers 503. ``custom_fields`` entries are ``{id, name, application_type}`` with an
    optional ``choices`` list of ids for ``singlechoice`` fields (a few by default, as an
    account has). ``events`` and ``contact_lists`` are ``{id, name}``: the account's
    external events and contact lists. A ``rate_limit_per_minute`` of 0 disables rate
    limiting.
    """

    oauth_clients: dict[str, str] = field(default_factory=lambda: {"demo-client": "demo-secret"})
    wsse_users: dict[str, str] = field(default_factory=lambda: {"demo-user": "demo-secret"})
    token_ttl: int = 3600
    rate_limit_per_minute: int = 1000
    error_rate: float = 0.0
    latency: float = 0.0
    outage: tuple[float, float] | None = None
    credential_faults: dict[str, CredentialFaults] = field(default_factory=dict)
    custom_fields: list[dict[str, Any]] = field(default_factory=_default_custom_fields)
    events: list[dict[str, Any]] = field(default_factory=_default_events)
    contact_lists: list[dict[str, Any]] = field(default_factory=_default_contact_lists)
    seed: int | None = None
    clock: Callable[[], float] = time.time


# -- fields ------------------------------------------------------------------------------

_GENDERS = {1, 2}  # 1 male, 2 female; other ids are not confirmed by any source
_COUNTRIES = set(range(1, 256))  # Emarsys country ids; exact upper bound not confirmed
_OPT_IN = {1, 2}  # 1 yes, 2 no; null allowed (a wipe)

SYSTEM_FIELDS: list[dict[str, Any]] = [
    {"id": 1, "name": "First Name", "string_id": "first_name", "application_type": "shorttext"},
    {"id": 2, "name": "Last Name", "string_id": "last_name", "application_type": "shorttext"},
    {"id": 3, "name": "E-Mail", "string_id": "email", "application_type": "longtext"},
    {"id": 4, "name": "Birth Date", "string_id": "birth_date", "application_type": "date"},
    {"id": 5, "name": "Gender", "string_id": "gender", "application_type": "singlechoice"},
    {"id": 10, "name": "Address", "string_id": "address", "application_type": "longtext"},
    {"id": 11, "name": "City", "string_id": "city", "application_type": "longtext"},
    {"id": 12, "name": "State", "string_id": "state", "application_type": "longtext"},
    {"id": 13, "name": "ZIP Code", "string_id": "zip", "application_type": "longtext"},
    {"id": 14, "name": "Country", "string_id": "country", "application_type": "singlechoice"},
    {"id": 15, "name": "Phone", "string_id": "phone", "application_type": "longtext"},
    {"id": 18, "name": "Company", "string_id": "company", "application_type": "longtext"},
    {"id": 31, "name": "Opt-In", "string_id": "optin", "application_type": "singlechoice"},
    {"id": 35, "name": "Language", "string_id": "language", "application_type": "longtext"},
    {"id": 37, "name": "Mobile", "string_id": "mobile", "application_type": "longtext"},
    {"id": 46, "name": "Salutation", "string_id": "salutation", "application_type": "shorttext"},
]
_SYSTEM_CHOICES: dict[int, set[int]] = {5: _GENDERS, 14: _COUNTRIES, 31: _OPT_IN}
_TEXT_LIMITS = {"shorttext": 60, "longtext": 255, "largetext": 65535, "url": 255}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NUMERIC_RE = re.compile(r"^[+-]?(\d+)(?:\.(\d+))?$")
_EVENT_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{3})?Z$")


@dataclass
class _Field:
    id: int
    name: str
    string_id: str
    application_type: str
    choices: set[int] | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "string_id": self.string_id,
            "application_type": self.application_type,
        }


def _build_fields(custom: list[dict[str, Any]]) -> dict[str, _Field]:
    fields: dict[str, _Field] = {}
    for f in SYSTEM_FIELDS:
        fid = int(f["id"])
        fields[str(fid)] = _Field(
            fid, f["name"], f["string_id"], f["application_type"], _SYSTEM_CHOICES.get(fid)
        )
    for f in custom:
        try:
            fid = int(f["id"])
            name = str(f["name"])
            app_type = str(f.get("application_type", "longtext"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a custom field needs id, name, application_type: {f!r}") from exc
        if str(fid) in fields:
            raise ValueError(f"custom field id {fid} is already taken")
        raw_choices = f.get("choices")
        choices = {int(c) for c in raw_choices} if raw_choices is not None else None
        string_id = str(f.get("string_id") or re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_"))
        fields[str(fid)] = _Field(fid, name, string_id, app_type, choices)
    return fields


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field_error(f: _Field, value: Any) -> str | None:
    """Why ``value`` cannot go into field ``f`` (None when it can). ``value`` is not None."""
    kind = f.application_type
    if kind in _TEXT_LIMITS:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return f"Field {f.id} ({f.name}) expects text"
        limit = _TEXT_LIMITS[kind]
        if len(str(value)) > limit:
            return f"Field {f.id} ({f.name}) is longer than {limit} characters"
        return None
    if kind == "date":
        if not isinstance(value, str) or not _DATE_RE.match(value):
            return f"Field {f.id} ({f.name}) expects a date as YYYY-MM-DD"
        try:
            date.fromisoformat(value)
        except ValueError:
            return f"Field {f.id} ({f.name}) is not a valid date"
        return None
    if kind == "numeric":
        if _is_int(value) or isinstance(value, float):
            text = repr(abs(value))
        elif isinstance(value, str):
            text = value
        else:
            return f"Field {f.id} ({f.name}) expects a number"
        m = _NUMERIC_RE.match(text)
        if not m:
            return f"Field {f.id} ({f.name}) expects a number"
        digits = len(m.group(1)) + len(m.group(2) or "")
        if digits > 24:
            return f"Field {f.id} ({f.name}) has more than 24 digits"
        return None
    if kind == "singlechoice":
        choice = _choice_id(value)
        if choice is None or (f.choices is not None and choice not in f.choices):
            return f"Field {f.id} ({f.name}): invalid choice id {value!r}"
        if f.choices is None and choice < 1:
            return f"Field {f.id} ({f.name}): invalid choice id {value!r}"
        return None
    if kind == "multichoice":
        items = value if isinstance(value, list) else [value]
        for item in items:
            choice = _choice_id(item)
            if choice is None or (f.choices is not None and choice not in f.choices):
                return f"Field {f.id} ({f.name}): invalid choice id {item!r}"
        return None
    return None


def _choice_id(value: Any) -> int | None:
    if _is_int(value):
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


# -- WSSE --------------------------------------------------------------------------------

_WSSE_PAIR = re.compile(r'\s*([A-Za-z]+)="([^"]*)"\s*')
_WSSE_KEYS = {"Username", "PasswordDigest", "Nonce", "Created"}
_NONCE_RE = re.compile(r"^[0-9a-f]{32}$")


def wsse_digest(nonce: str, created: str, secret: str) -> str:
    """base64 of the sha1 *hex* digest of nonce + created + secret, as Emarsys computes it."""
    hexdigest = hashlib.sha1((nonce + created + secret).encode()).hexdigest()
    return base64.b64encode(hexdigest.encode()).decode()


def parse_wsse(header: str) -> dict[str, str] | None:
    """The four parts of an ``X-WSSE`` header, or None when it is not exactly that shape."""
    prefix = "UsernameToken "
    if not header.startswith(prefix):
        return None
    parts: dict[str, str] = {}
    for chunk in header[len(prefix) :].split(","):
        m = _WSSE_PAIR.fullmatch(chunk)
        if not m or m.group(1) in parts:
            return None
        parts[m.group(1)] = m.group(2)
    if set(parts) != _WSSE_KEYS:
        return None
    return parts


def _parse_created(text: str) -> float | None:
    if "T" not in text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp()


# -- state -------------------------------------------------------------------------------


class ApiError(Exception):
    """An answer other than success, in the envelope."""

    def __init__(
        self,
        status: int,
        reply_code: int,
        text: str,
        data: Json = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.reply_code = reply_code
        self.text = text
        self.data = data
        self.headers = headers or {}


@dataclass
class _Call:
    """What the middleware learns about the call in flight (read back by the handlers)."""

    auth: str | None = None
    credential: str | None = None
    reply_code: int | None = None
    contacts: int = 0


_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("sim_call", default=None)


@dataclass
class _Contact:
    id: int
    fields: dict[str, Any]
    created_at: float
    updated_at: float

    def public(self, lists: list[int]) -> dict[str, Any]:
        return {
            "id": self.id,
            "fields": dict(self.fields),
            "lists": lists,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _norm_key(field_id: str, value: Any) -> str:
    text = str(value)
    return text.lower() if field_id == "3" else text


def _label(value: Any) -> str:
    return "" if value is None else str(value)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class Simulator:
    """The state and the handlers; one per application (``app[SIMULATOR]``)."""

    def __init__(self, options: SimulatorOptions) -> None:
        if not 0.0 <= options.error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        if options.latency < 0 or options.token_ttl <= 0:
            raise ValueError("latency must be >= 0 and token_ttl > 0")
        self.options = options
        self.clock = options.clock
        self.rng = random.Random(options.seed)
        self.fields = _build_fields(options.custom_fields)
        self.tokens: dict[str, tuple[str, float]] = {}
        self.nonces: dict[tuple[str, str], float] = {}
        self._nonce_order: deque[tuple[float, tuple[str, str]]] = deque()
        self.reset()

    # state that POST /_sim/reset clears (tokens and seen nonces survive: auth is not data)
    def reset(self) -> None:
        self.started_at = self.clock()
        self.contacts: dict[int, _Contact] = {}
        self._index: dict[str, dict[str, set[int]]] = {}
        self._next_id = 100000001
        self.lists: dict[int, set[int]] = {}
        self.list_changes: list[dict[str, Any]] = []
        self.list_names: dict[int, tuple[str, float]] = {
            int(c["id"]): (str(c["name"]), self.started_at) for c in self.options.contact_lists
        }
        self.events: dict[int, str] = {int(e["id"]): str(e["name"]) for e in self.options.events}
        self.fired: list[dict[str, Any]] = []
        self._fired_by_trigger: dict[tuple[int, str], dict[str, Any]] = {}
        self.duplicates: Counter[str] = Counter()
        self.wipes: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.windows: dict[str, deque[float]] = {}
        # (time, credential, op, key value, fields or (event id, trigger_id)), oldest first
        self.accepted: deque[tuple[float, str | None, str, Any, Any]] = deque(maxlen=ACCEPT_LOG)
        self.accepted_total = 0

    # -- contacts store ------------------------------------------------------------------

    def _find(self, field_id: str, value: Any) -> list[int]:
        return sorted(self._index.get(field_id, {}).get(_norm_key(field_id, value), ()))

    def _set_field(self, contact: _Contact, field_id: str, value: Any) -> None:
        index = self._index.setdefault(field_id, {})
        old = contact.fields.get(field_id)
        if old is not None:
            ids = index.get(_norm_key(field_id, old))
            if ids is not None:
                ids.discard(contact.id)
                if not ids:
                    del index[_norm_key(field_id, old)]
        contact.fields[field_id] = value
        if value is not None:
            index.setdefault(_norm_key(field_id, value), set()).add(contact.id)

    def _delete_contact(self, contact: _Contact) -> None:
        for fid in list(contact.fields):
            self._set_field(contact, fid, None)
        del self.contacts[contact.id]
        for members in self.lists.values():
            members.discard(contact.id)

    def _lists_of(self, contact_id: int) -> list[int]:
        return sorted(lid for lid, members in self.lists.items() if contact_id in members)

    def _record_wipe(
        self, contact: _Contact, field_id: str, key_id: str, key_value: Any, had_value: bool
    ) -> None:
        self.wipes.append(
            {
                "time": self.clock(),
                "contact_id": contact.id,
                "key_id": int(key_id),
                "key_value": key_value,
                "field_id": int(field_id),
                "had_value": had_value,
            }
        )

    # -- auth and limits -----------------------------------------------------------------

    def _authenticate(self, request: web.Request, api: str, now: float) -> tuple[str, str]:
        if api == "v2":
            return self._auth_wsse(request.headers.get("X-WSSE"), now)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, 1, "Unauthorized: a bearer token is required")
        entry = self.tokens.get(token.strip())
        if entry is None:
            raise ApiError(401, 1, "Unauthorized: unknown token")
        client_id, expires_at = entry
        if now >= expires_at:
            raise ApiError(401, 1, "Unauthorized: the token has expired")
        return "bearer", f"oauth:{client_id}"

    def _auth_wsse(self, header: str | None, now: float) -> tuple[str, str]:
        if not header:
            raise ApiError(401, 1, "Unauthorized: the X-WSSE header is missing")
        parts = parse_wsse(header)
        if parts is None or not _NONCE_RE.match(parts["Nonce"]):
            raise ApiError(401, 1, "Unauthorized: malformed X-WSSE header")
        user = parts["Username"]
        secret = self.options.wsse_users.get(user)
        if secret is None:
            raise ApiError(401, 1, "Unauthorized")
        created = _parse_created(parts["Created"])
        if created is None or abs(now - created) > WSSE_WINDOW:
            raise ApiError(401, 1, "Time frame is invalid")
        expected = wsse_digest(parts["Nonce"], parts["Created"], secret)
        if not hmac.compare_digest(expected, parts["PasswordDigest"]):
            raise ApiError(401, 1, "Unauthorized")
        self._forget_nonces(now)
        key = (user, parts["Nonce"])
        if key in self.nonces:
            raise ApiError(401, 1, "Unauthorized: the nonce was already used")
        self.nonces[key] = now
        self._nonce_order.append((now, key))
        return "wsse", f"wsse:{user}"

    def _forget_nonces(self, now: float) -> None:
        while self._nonce_order and self._nonce_order[0][0] < now - NONCE_MEMORY:
            _, key = self._nonce_order.popleft()
            self.nonces.pop(key, None)

    def _rate(self, credential: str, now: float) -> tuple[bool, dict[str, str]]:
        limit = self.options.rate_limit_per_minute
        if limit <= 0:
            return True, {}
        window = self.windows.setdefault(credential, deque())
        while window and window[0] <= now - RATE_WINDOW:
            window.popleft()
        allowed = len(window) < limit
        if allowed:
            window.append(now)
        reset = math.ceil(window[0] + RATE_WINDOW) if window else math.ceil(now + RATE_WINDOW)
        return allowed, {
            "X-RateLimit-Limit": str(limit),
            "X-Ratelimit-Remaining": str(max(0, limit - len(window))),
            "X-RateLimit-Reset": str(reset),
        }

    def _in_outage(self, now: float) -> bool:
        window = self.options.outage
        return window is not None and window[0] <= now < window[1]

    def _accept(self, now: float, op: str, key: Any, what: Any) -> None:
        call = _CALL.get()
        self.accepted.append((now, call.credential if call is not None else None, op, key, what))
        self.accepted_total += 1

    def _caller(self, request: web.Request, api: str | None) -> str | None:
        """The API user a request comes from, read without side effects (no nonce is
        used up, no token checked), so its own faults can apply before authentication."""
        if api is None:
            if request.path != "/oauth2/token":
                return None
            return _basic_credentials(request.headers.get("Authorization", ""))[0]
        if api == "v2":
            parts = parse_wsse(request.headers.get("X-WSSE", ""))
            return parts["Username"] if parts else None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        entry = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        return entry[0] if entry is not None else None

    async def _credential_faults(self, request: web.Request, api: str | None) -> None:
        faults = self.options.credential_faults
        who = self._caller(request, api) if faults else None
        f = faults.get(who) if who is not None else None
        if f is None:
            return
        if f.latency > 0:
            await asyncio.sleep(f.latency)
        if f.outage is not None and f.outage[0] <= self.clock() < f.outage[1]:
            raise ApiError(503, 503, "Service Unavailable")
        if f.error_rate > 0 and self.rng.random() < f.error_rate:
            raise ApiError(500, 6001, "request interpretation error")

    # -- envelope ------------------------------------------------------------------------

    @staticmethod
    def _reply(
        status: int,
        reply_code: int,
        text: str,
        data: Json,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        call = _CALL.get()
        if call is not None:
            call.reply_code = reply_code
        body = {"replyCode": reply_code, "replyText": text, "data": data}
        return web.json_response(body, status=status, headers=headers)

    def _ok(self, data: Json) -> web.Response:
        return self._reply(200, 0, "OK", data)

    @staticmethod
    def _count_contacts(n: int) -> None:
        call = _CALL.get()
        if call is not None:
            call.contacts = n

    @staticmethod
    async def _json(request: web.Request, limit: int, too_big_code: int) -> Json:
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, too_big_code, f"Request body larger than {limit} bytes")
        try:
            raw = await request.read()
        except ConnectionResetError as exc:  # the caller gave up mid-request (a timeout)
            raise ApiError(400, 1010, "the request body was cut off") from exc
        if len(raw) > limit:
            raise ApiError(413, too_big_code, f"Request body larger than {limit} bytes")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, 1010, "Invalid JSON in the request body") from exc

    async def _object(self, request: web.Request, limit: int, too_big_code: int) -> dict[str, Any]:
        body = await self._json(request, limit, too_big_code)
        if not isinstance(body, dict):
            raise ApiError(400, 1001, "The request body must be a JSON object")
        return body

    def _key_id(self, raw: Any) -> str | None:
        if isinstance(raw, bool):
            return None
        if _is_int(raw) or (isinstance(raw, str) and raw.isdigit()):
            fid = str(int(raw))
            return fid if fid in self.fields else None
        return None

    # -- middleware ----------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path == "/_sim" or path.startswith("/_sim/"):
            return await handler(request)
        call = _Call()
        token = _CALL.set(call)
        started = self.clock()
        try:
            if self.options.latency > 0:
                await asyncio.sleep(self.options.latency)
            response = await self._guarded(request, handler, call)
        finally:
            _CALL.reset(token)
        self.calls.append(
            {
                "index": len(self.calls),
                "time": started,
                "ended": self.clock(),
                "method": request.method,
                "path": path,
                "query": request.query_string,
                "status": response.status,
                "reply_code": call.reply_code,
                "contacts": call.contacts,
                "auth": call.auth,
                "credential": call.credential,
            }
        )
        log.info("%s %s %s", request.method, path, response.status)
        return response

    async def _guarded(
        self, request: web.Request, handler: Handler, call: _Call
    ) -> web.StreamResponse:
        now = self.clock()
        path = request.path
        api = "v2" if path.startswith("/api/v2/") else "v3" if path.startswith("/api/v3/") else None
        rate_headers: dict[str, str] = {}
        try:
            if self._in_outage(now):
                raise ApiError(503, 503, "Service Unavailable")
            await self._credential_faults(request, api)
            now = self.clock()
            if api is not None:
                call.auth, call.credential = self._authenticate(request, api, now)
                allowed, rate_headers = self._rate(call.credential, now)
                if not allowed:
                    raise ApiError(429, 7003, "Too many requests: rate limit exceeded")
                rate = self.options.error_rate
                if rate > 0 and self.rng.random() < rate:
                    raise ApiError(500, 6001, "request interpretation error")
            response = await handler(request)
        except ApiError as exc:
            response = self._reply(exc.status, exc.reply_code, exc.text, exc.data, exc.headers)
        except web.HTTPException as exc:
            if api is None and path != "/oauth2/token":
                raise
            response = self._reply(exc.status, 1001, exc.reason, "")
        for name, value in rate_headers.items():
            response.headers[name] = value
        return response

    # -- OAuth ---------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        call = _CALL.get()
        if call is not None:
            call.auth = "basic"
        client_id, secret = _basic_credentials(request.headers.get("Authorization", ""))
        known = self.options.oauth_clients.get(client_id) if client_id is not None else None
        if known is None or secret is None or not hmac.compare_digest(known, secret):
            return web.json_response(
                {"error": "invalid_client"},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="emarsys"'},
            )
        if request.content_type != "application/x-www-form-urlencoded":
            return web.json_response({"error": "invalid_request"}, status=400)
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        assert client_id is not None
        if call is not None:
            call.credential = f"oauth:{client_id}"
        token = secrets.token_urlsafe(32)
        ttl = int(self.options.token_ttl)
        now = self.clock()
        self.tokens = {t: e for t, e in self.tokens.items() if e[1] > now}
        self.tokens[token] = (client_id, now + ttl)
        return web.json_response({"access_token": token, "token_type": "bearer", "expires_in": ttl})

    # -- contacts ------------------------------------------------------------------------

    async def upsert(self, request: web.Request) -> web.Response:
        create = request.query.get("create_if_not_exists") == "1"
        return await self._write(request, "upsert", create)

    async def create(self, request: web.Request) -> web.Response:
        return await self._write(request, "create", True)

    async def _write(self, request: web.Request, mode: str, create: bool) -> web.Response:
        body = await self._object(request, CONTACT_BODY_LIMIT, 1000)
        contacts = body.get("contacts")
        if not isinstance(contacts, list) or not all(isinstance(c, dict) for c in contacts):
            raise ApiError(400, 1001, "contacts must be a list of objects")
        self._count_contacts(len(contacts))
        if len(contacts) > MAX_BATCH:
            raise ApiError(400, 1000, f"Too many contacts: {len(contacts)} (at most {MAX_BATCH})")
        raw_key = body.get("key_id", 3)
        key_id = self._key_id(raw_key)
        if key_id is None:
            return self._ok(
                {"ids": [], "errors": {NO_KEY_ID: {"2004": f"Invalid key field id: {raw_key}"}}}
            )
        list_id: int | None = None
        if "contact_list_id" in body:
            list_id = _positive_int(body["contact_list_id"])
            if list_id is None:
                raise ApiError(400, 2020, f"Invalid contact list id: {body['contact_list_id']}")

        errors: dict[str, dict[str, str]] = {}
        seen = Counter(
            _norm_key(key_id, c.get(key_id)) for c in contacts if not _empty(c.get(key_id))
        )
        ids: list[int | str] = []
        applied: list[int] = []
        now = self.clock()
        for c in contacts:
            key_value = c.get(key_id)
            label = _label(key_value)
            problems: dict[str, str] = {}
            matches: list[int] = []
            if _empty(key_value):
                problems["2005"] = f"No value provided for key field: {key_id}"
            elif seen[_norm_key(key_id, key_value)] > 1:
                problems["2010"] = "The same key value occurs more than once in the request"
            else:
                bad = self._validate(c, key_id)
                if bad:
                    problems["2007"] = "; ".join(bad)
                matches = self._find(key_id, key_value)
                if len(matches) > 1:
                    problems["2010"] = f"Several contacts share the key: {key_id}"
                elif matches and mode == "create":
                    problems["2009"] = f"Contact already exists with key field {key_id}"
                elif not matches and not create:
                    problems["2008"] = f"No contact found with the external id: {key_id}"
            if problems:
                errors.setdefault(label, {}).update(problems)
                continue
            existing = self.contacts.get(matches[0]) if matches else None
            if existing is None:
                contact = _Contact(self._next_id, {}, now, now)
                self._next_id += 1
                self.contacts[contact.id] = contact
                ids.append(contact.id)
            else:
                contact = existing
                contact.updated_at = now
                ids.append(str(contact.id))
            for fid, value in c.items():
                if value is None:
                    had = contact.fields.get(fid) is not None
                    self._record_wipe(contact, fid, key_id, key_value, had)
                self._set_field(contact, fid, value)
            applied.append(contact.id)
            self._accept(now, mode, key_value, c)
        if list_id is not None and applied:
            self.lists.setdefault(list_id, set()).update(applied)
        data: dict[str, Any] = {"ids": ids}
        if errors:
            data["errors"] = errors
        return self._ok(data)

    def _validate(self, contact: dict[str, Any], key_id: str) -> list[str]:
        bad: list[str] = []
        for fid, value in contact.items():
            f = self.fields.get(fid)
            if f is None:
                bad.append(f"Invalid field id: {fid}")
                continue
            if value is None:
                continue
            if fid == key_id and isinstance(value, bool | dict | list):
                bad.append(f"Field {fid} ({f.name}) cannot be a key value")
                continue
            problem = _field_error(f, value)
            if problem:
                bad.append(problem)
        return bad

    async def getdata(self, request: web.Request) -> web.Response:
        body = await self._object(request, CONTACT_BODY_LIMIT, 1000)
        key_id = self._key_id(body.get("keyId", 3))
        if key_id is None:
            raise ApiError(400, 2004, f"Invalid key field id: {body.get('keyId')}")
        values = body.get("keyValues")
        if not isinstance(values, list):
            raise ApiError(400, 1001, "keyValues must be a list")
        self._count_contacts(len(values))
        if len(values) > MAX_BATCH:
            raise ApiError(400, 1000, f"Too many key values: {len(values)} (at most {MAX_BATCH})")
        wanted = body.get("fields")
        if wanted is None:
            field_ids = list(self.fields)
        elif isinstance(wanted, list):
            field_ids = [str(w) for w in wanted]
            unknown = [w for w in field_ids if w not in self.fields]
            if unknown:
                raise ApiError(400, 1001, f"Invalid field id: {', '.join(unknown)}")
        else:
            raise ApiError(400, 1001, "fields must be a list of field ids")
        errors: list[dict[str, Any]] = []
        result: list[dict[str, Any]] = []
        for value in values:
            matches = [] if _empty(value) else self._find(key_id, value)
            if not matches:
                errors.append({"key": value, "errorCode": "2008", "errorMsg": "No contact found"})
                continue
            for cid in matches:
                contact = self.contacts[cid]
                row: dict[str, Any] = {"id": str(cid)}
                for fid in field_ids:
                    v = contact.fields.get(fid)
                    row[fid] = None if v is None else str(v)
                result.append(row)
        return self._ok({"errors": errors, "result": result or False})

    async def delete(self, request: web.Request) -> web.Response:
        body = await self._object(request, CONTACT_BODY_LIMIT, 1000)
        raw_key = body.get("key_id", 3)
        key_id = self._key_id(raw_key)
        if key_id is None:
            raise ApiError(400, 2004, f"Invalid key field id: {raw_key}")
        single = "contacts" not in body
        contacts = [body] if single else body["contacts"]
        if not isinstance(contacts, list) or not all(isinstance(c, dict) for c in contacts):
            raise ApiError(400, 1001, "contacts must be a list of objects")
        self._count_contacts(len(contacts))
        if len(contacts) > MAX_BATCH:
            raise ApiError(400, 1000, f"Too many contacts: {len(contacts)} (at most {MAX_BATCH})")
        deleted = 0
        errors: dict[str, dict[str, str]] = {}
        for c in contacts:
            value = c.get(key_id)
            matches = [] if _empty(value) else self._find(key_id, value)
            if _empty(value):
                code, text = "2005", f"No value provided for key field: {key_id}"
            elif not matches:
                code, text = "2008", f"No contact found with the external id: {key_id}"
            elif len(matches) > 1:
                code, text = "2010", f"Several contacts share the key: {key_id}"
            else:
                self._delete_contact(self.contacts[matches[0]])
                deleted += 1
                continue
            if single:
                raise ApiError(400, int(code), text)
            errors.setdefault(_label(value), {})[code] = text
        data: dict[str, Any] = {"deleted_contacts": deleted}
        if errors:
            data["errors"] = errors
        return self._ok(data)

    async def translate(self, request: web.Request) -> web.Response:
        return self._ok([f.public() for f in self.fields.values()])

    # -- contact lists -------------------------------------------------------------------

    async def list_add(self, request: web.Request) -> web.Response:
        return await self._list_change(request, add=True)

    async def list_delete(self, request: web.Request) -> web.Response:
        return await self._list_change(request, add=False)

    async def _list_change(self, request: web.Request, add: bool) -> web.Response:
        """``POST /contactlist/{id}/add|delete``: an unknown list is HTTP 400 replyCode
        3004; each external id must name exactly one contact (2005 empty, 2008 none, 2010
        several: per contact inside HTTP 200). Adding a member or removing a non-member
        changes nothing and is no error (the reference is silent; idempotent is the
        reading every retrying client needs), and is counted in ``/_sim/list-changes``."""
        raw_id = request.match_info["list_id"]
        list_id = _positive_int(raw_id)
        if list_id is None or list_id not in self.list_names:
            raise ApiError(400, 3004, f"Invalid contact list id: {raw_id}")
        body = await self._object(request, CONTACT_BODY_LIMIT, 1000)
        raw_key = body.get("key_id", 3)
        key_id = self._key_id(raw_key)
        if key_id is None:
            raise ApiError(400, 2004, f"Invalid key field id: {raw_key}")
        external_ids = body.get("external_ids")
        if not isinstance(external_ids, list):
            raise ApiError(400, 1001, "external_ids must be a list")
        self._count_contacts(len(external_ids))
        if len(external_ids) > MAX_LIST_IDS:
            raise ApiError(
                400, 1000, f"Too many contacts: {len(external_ids)} (at most {MAX_LIST_IDS})"
            )
        members = self.lists.setdefault(list_id, set())
        changed = 0
        errors: dict[str, dict[str, str]] = {}
        now = self.clock()
        for value in external_ids:
            matches = [] if _empty(value) else self._find(key_id, value)
            if _empty(value):
                code, text = "2005", f"No value provided for key field: {key_id}"
            elif not matches:
                code, text = "2008", f"No contact found with the external id: {key_id} - {value}"
            elif len(matches) > 1:
                code, text = "2010", f"Several contacts share the key: {key_id}"
            else:
                contact_id = matches[0]
                did = contact_id not in members if add else contact_id in members
                if did:
                    (members.add if add else members.discard)(contact_id)
                    changed += 1
                self.list_changes.append(
                    {
                        "time": now,
                        "list_id": list_id,
                        "op": "add" if add else "delete",
                        "contact_id": contact_id,
                        "external_id": value,
                        "changed": did,
                    }
                )
                continue
            errors.setdefault(_label(value), {})[code] = text
        count_key = "inserted_contacts" if add else "deleted_contacts"
        return self._ok({count_key: changed, "errors": errors})

    async def list_contact_lists(self, request: web.Request) -> web.Response:
        # Emarsys gives ids as strings and ``created`` as "YYYY-MM-DD HH:MM:SS" (UTC);
        # type 0 is a plain (static) list.
        return self._ok(
            [
                {
                    "id": str(lid),
                    "name": name,
                    "created": datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d %H:%M:%S"),
                    "type": 0,
                }
                for lid, (name, created) in sorted(self.list_names.items())
            ]
        )

    # -- external events -----------------------------------------------------------------

    async def list_events(self, request: web.Request) -> web.Response:
        return self._ok([{"id": str(i), "name": n} for i, n in sorted(self.events.items())])

    async def create_event(self, request: web.Request) -> web.Response:
        body = await self._object(request, TRIGGER_BODY_LIMIT, 1001)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, 1001, "An external event needs a name")
        event_id = max(self.events, default=1000) + 1
        self.events[event_id] = name
        return self._ok({"id": event_id, "name": name})

    async def trigger(self, request: web.Request) -> web.Response:
        raw_id = request.match_info["event_id"]
        event_id = _positive_int(raw_id)
        if event_id is None or event_id not in self.events:
            raise ApiError(400, 5001, f"Invalid event id: {raw_id}")
        body = await self._object(request, TRIGGER_BODY_LIMIT, 5008)
        single = "contacts" not in body
        items = [body] if single else body["contacts"]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ApiError(400, 1001, "contacts must be a list of objects")
        self._count_contacts(len(items))
        if len(items) > MAX_BATCH:
            raise ApiError(400, 1000, f"Too many contacts: {len(items)} (at most {MAX_BATCH})")
        raw_key = body.get("key_id", 3)
        key_id = self._key_id(raw_key)
        if key_id is None:
            raise ApiError(400, 2004, f"Invalid key field id: {raw_key}")
        for item in items:
            when = item.get("event_time")
            if when is not None and not _valid_event_time(when):
                raise ApiError(400, 5010, f"Invalid event_time: {when!r} (UTC, ...SSZ)")
            if "data" in item and item["data"] is not None and not isinstance(item["data"], dict):
                raise ApiError(400, 1001, "data must be a JSON object")
        errors: dict[str, dict[str, str]] = {}
        now = self.clock()
        for item in items:
            external_id = item.get("external_id")
            matches = [] if _empty(external_id) else self._find(key_id, external_id)
            if _empty(external_id):
                code, text = 2005, f"No value provided for key field: {key_id}"
            elif not matches:
                code, text = 2008, f"No contact found with the external id: {key_id}"
            elif len(matches) > 1:
                code, text = 2010, f"Several contacts share the key: {key_id}"
            else:
                self._fire(event_id, key_id, matches[0], item, now)
                continue
            if single:
                raise ApiError(400, code, text)
            errors.setdefault(_label(external_id), {})[str(code)] = text
        if single:
            return self._ok("")
        return self._ok({"errors": errors} if errors else "")

    def _fire(
        self, event_id: int, key_id: str, contact_id: int, item: dict[str, Any], now: float
    ) -> None:
        trigger_id = item.get("trigger_id")
        dedupe = None if _empty(trigger_id) else (event_id, str(trigger_id))
        if dedupe is not None and dedupe in self._fired_by_trigger:
            self.duplicates[str(trigger_id)] += 1
            self._fired_by_trigger[dedupe]["duplicates"] += 1
            return
        record = {
            "event_id": event_id,
            "key_id": int(key_id),
            "external_id": item.get("external_id"),
            "contact_id": contact_id,
            "trigger_id": trigger_id,
            "data": copy.deepcopy(item.get("data")),
            "event_time": item.get("event_time"),
            "fired_at": now,
            "duplicates": 0,
        }
        call = _CALL.get()
        record["credential"] = call.credential if call is not None else None
        self.fired.append(record)
        if dedupe is not None:
            self._fired_by_trigger[dedupe] = record
        self._accept(now, "trigger", item.get("external_id"), (event_id, trigger_id))

    # -- /_sim ---------------------------------------------------------------------------

    async def sim_contacts(self, request: web.Request) -> web.Response:
        key = request.query.get("key")
        key_id = request.query.get("key_id", "3")
        if key is not None:
            chosen = [self.contacts[c] for c in self._find(key_id, key)]
        else:
            chosen = list(self.contacts.values())
        rows = [c.public(self._lists_of(c.id)) for c in chosen]
        return web.json_response({"count": len(rows), "contacts": rows})

    async def sim_lists(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"lists": {str(lid): sorted(members) for lid, members in sorted(self.lists.items())}}
        )

    async def sim_list_changes(self, request: web.Request) -> web.Response:
        """Every add/delete a list call applied to an existing contact, in order;
        ``changed`` is false for a repeat (a member added again, a non-member removed)."""
        rows = self.list_changes
        if "list_id" in request.query:
            rows = [r for r in rows if str(r["list_id"]) == request.query["list_id"]]
        if "external_id" in request.query:
            wanted = _norm_key("3", request.query["external_id"])
            rows = [r for r in rows if _norm_key("3", r["external_id"]) == wanted]
        return web.json_response({"count": len(rows), "changes": rows})

    async def sim_calls(self, request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return web.json_response({"error": "since must be an integer"}, status=400)
        rows = self.calls[max(0, since) :]
        return web.json_response({"next": len(self.calls), "calls": rows})

    async def sim_triggers(self, request: web.Request) -> web.Response:
        rows = self.fired
        if "event_id" in request.query:
            rows = [r for r in rows if str(r["event_id"]) == request.query["event_id"]]
        if "external_id" in request.query:
            rows = [r for r in rows if str(r["external_id"]) == request.query["external_id"]]
        return web.json_response(
            {
                "count": len(rows),
                "fired": rows,
                "duplicates": dict(self.duplicates),
                "duplicates_total": sum(self.duplicates.values()),
            }
        )

    async def sim_accepted(self, request: web.Request) -> web.Response:
        """What was accepted, oldest first: ``{"i", "t", "credential", "op", "key", ...}``
        with ``op`` ``upsert``/``create`` (and ``fields``) or ``trigger`` (and
        ``event_id``, ``trigger_id``; a deduplicated repeat is not an acceptance).
        ``since=N`` skips the first N ever accepted; ``credential`` (a client id or WSSE
        user, with or without its ``oauth:``/``wsse:`` prefix) and ``op`` filter. Keeps
        the latest 300,000."""
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return web.json_response({"error": "since must be an integer"}, status=400)
        who = request.query.get("credential")
        op = request.query.get("op")
        first = self.accepted_total - len(self.accepted)
        rows: list[dict[str, Any]] = []
        for n, (t, cred, kind, key, what) in enumerate(self.accepted, start=first):
            if n < since or (op and kind != op):
                continue
            if who and cred != who and (cred or "").partition(":")[2] != who:
                continue
            row: dict[str, Any] = {"i": n, "t": t, "credential": cred, "op": kind, "key": key}
            if kind == "trigger":
                row["event_id"], row["trigger_id"] = what
            else:
                row["fields"] = what
            rows.append(row)
        return web.json_response({"next": self.accepted_total, "accepted": rows})

    async def sim_wipes(self, request: web.Request) -> web.Response:
        return web.json_response({"count": len(self.wipes), "wipes": self.wipes})

    def _faults(self) -> dict[str, Any]:
        o = self.options
        now = self.clock()
        remaining = max(0.0, o.outage[1] - now) if o.outage and self._in_outage(now) else 0.0
        return {
            "error_rate": o.error_rate,
            "latency": o.latency,
            "outage_seconds": remaining,
            "rate_limit_per_minute": o.rate_limit_per_minute,
            "token_ttl": o.token_ttl,
            "credentials": {
                name: {
                    "error_rate": f.error_rate,
                    "latency": f.latency,
                    "outage_seconds": (
                        max(0.0, f.outage[1] - now)
                        if f.outage and f.outage[0] <= now < f.outage[1]
                        else 0.0
                    ),
                }
                for name, f in sorted(o.credential_faults.items())
            },
        }

    def _set_credential_faults(self, name: Any, body: dict[str, Any]) -> web.Response:
        """``POST /_sim/faults {"credential": NAME, ...}``: faults of one API user only."""
        if not isinstance(name, str) or not name:
            return web.json_response({"error": "credential must be a name"}, status=400)
        unknown = set(body) - {"credential", "error_rate", "latency", "outage_seconds"}
        if unknown:
            return web.json_response({"error": f"unknown keys: {sorted(unknown)}"}, status=400)
        f = self.options.credential_faults.get(name) or CredentialFaults()
        try:
            error_rate = float(body.get("error_rate", f.error_rate))
            latency = float(body.get("latency", f.latency))
            outage = float(body["outage_seconds"]) if "outage_seconds" in body else None
        except (TypeError, ValueError):
            return web.json_response({"error": "values must be numbers"}, status=400)
        if not 0.0 <= error_rate <= 1.0 or latency < 0 or (outage or 0) < 0:
            return web.json_response({"error": "value out of range"}, status=400)
        f.error_rate, f.latency = error_rate, latency
        if outage is not None:
            now = self.clock()
            f.outage = (now, now + outage) if outage > 0 else None
        self.options.credential_faults[name] = f
        return web.json_response(self._faults())

    async def sim_get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self._faults())

    async def sim_set_faults(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return web.json_response({"error": "invalid JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "expected a JSON object"}, status=400)
        if "credential" in body:
            return self._set_credential_faults(body["credential"], body)
        unknown = set(body) - {
            "error_rate",
            "latency",
            "outage_seconds",
            "rate_limit_per_minute",
            "token_ttl",
        }
        if unknown:
            return web.json_response({"error": f"unknown keys: {sorted(unknown)}"}, status=400)
        o = self.options
        try:
            error_rate = float(body.get("error_rate", o.error_rate))
            latency = float(body.get("latency", o.latency))
            limit = int(body.get("rate_limit_per_minute", o.rate_limit_per_minute))
            ttl = int(body.get("token_ttl", o.token_ttl))
            outage = float(body["outage_seconds"]) if "outage_seconds" in body else None
        except (TypeError, ValueError):
            return web.json_response({"error": "values must be numbers"}, status=400)
        if not 0.0 <= error_rate <= 1.0 or latency < 0 or ttl <= 0 or (outage or 0) < 0:
            return web.json_response({"error": "value out of range"}, status=400)
        o.error_rate, o.latency, o.rate_limit_per_minute, o.token_ttl = (
            error_rate,
            latency,
            limit,
            ttl,
        )
        if outage is not None:
            now = self.clock()
            o.outage = (now, now + outage) if outage > 0 else None
        return web.json_response(self._faults())

    async def sim_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})

    async def sim_stats(self, request: web.Request) -> web.Response:
        calls = self.calls
        now = self.clock()
        elapsed = (calls[-1]["time"] if calls else now) - self.started_at
        per_second: Counter[int] = Counter(int(c["time"] - self.started_at) for c in calls)
        with_contacts = [c["contacts"] for c in calls if c["contacts"]]
        return web.json_response(
            {
                "calls": len(calls),
                "elapsed_seconds": elapsed,
                "calls_per_second": len(calls) / elapsed if elapsed > 0 else float(len(calls)),
                "per_second": [{"second": s, "calls": n} for s, n in sorted(per_second.items())],
                "contacts_per_call": (
                    sum(with_contacts) / len(with_contacts) if with_contacts else 0.0
                ),
                "contacts_total": sum(with_contacts),
                "status": {
                    str(k): v for k, v in sorted(Counter(c["status"] for c in calls).items())
                },
                "reply_codes": {
                    str(k): v
                    for k, v in sorted(
                        Counter(
                            c["reply_code"] for c in calls if c["reply_code"] is not None
                        ).items()
                    )
                },
                "contacts": len(self.contacts),
                "triggers_fired": len(self.fired),
                "trigger_duplicates": sum(self.duplicates.values()),
                "wipes": len(self.wipes),
            }
        )


def _positive_int(raw: Any) -> int | None:
    if _is_int(raw):
        return int(raw) if raw > 0 else None
    if isinstance(raw, str) and raw.isdigit() and int(raw) > 0:
        return int(raw)
    return None


def _valid_event_time(value: Any) -> bool:
    if not isinstance(value, str) or not _EVENT_TIME_RE.match(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _basic_credentials(header: str) -> tuple[str | None, str | None]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None, None
    # RFC 6749 2.3.1 form-encodes both parts before Basic; undo it (a no-op for plain ids)
    return unquote_plus(user), unquote_plus(password)


# -- application -------------------------------------------------------------------------

SIMULATOR = web.AppKey("emarsys_simulator", Simulator)


def _copy_options(options: SimulatorOptions) -> SimulatorOptions:
    clock = options.clock
    copied = copy.deepcopy(
        SimulatorOptions(
            oauth_clients=options.oauth_clients,
            wsse_users=options.wsse_users,
            token_ttl=options.token_ttl,
            rate_limit_per_minute=options.rate_limit_per_minute,
            error_rate=options.error_rate,
            latency=options.latency,
            outage=options.outage,
            credential_faults=options.credential_faults,
            custom_fields=options.custom_fields,
            events=options.events,
            contact_lists=options.contact_lists,
            seed=options.seed,
        )
    )
    copied.clock = clock
    return copied


def create_app(options: SimulatorOptions | None = None) -> web.Application:
    """The simulator as an aiohttp application; ``app[SIMULATOR]`` is its state."""
    sim = Simulator(_copy_options(options or SimulatorOptions()))
    app = web.Application(middlewares=[sim.middleware], client_max_size=32 * 1024 * 1024)
    app[SIMULATOR] = sim
    r = app.router
    r.add_post("/oauth2/token", sim.token)
    for prefix in ("/api/v2", "/api/v3"):
        r.add_put(prefix + "/contact/", sim.upsert)
        r.add_put(prefix + "/contact", sim.upsert)
        r.add_post(prefix + "/contact/", sim.create)
        r.add_post(prefix + "/contact", sim.create)
        r.add_post(prefix + "/contact/getdata", sim.getdata)
        r.add_post(prefix + "/contact/delete", sim.delete)
        r.add_get(prefix + "/field/translate/en", sim.translate)
        r.add_get(prefix + "/event", sim.list_events)
        r.add_post(prefix + "/event", sim.create_event)
        r.add_post(prefix + "/event/{event_id}/trigger", sim.trigger)
        r.add_get(prefix + "/contactlist", sim.list_contact_lists)
        r.add_post(prefix + "/contactlist/{list_id}/add", sim.list_add)
        r.add_post(prefix + "/contactlist/{list_id}/delete", sim.list_delete)
    r.add_get("/_sim/contacts", sim.sim_contacts)
    r.add_get("/_sim/lists", sim.sim_lists)
    r.add_get("/_sim/list-changes", sim.sim_list_changes)
    r.add_get("/_sim/calls", sim.sim_calls)
    r.add_get("/_sim/triggers", sim.sim_triggers)
    r.add_get("/_sim/wipes", sim.sim_wipes)
    r.add_get("/_sim/accepted", sim.sim_accepted)
    r.add_get("/_sim/faults", sim.sim_get_faults)
    r.add_post("/_sim/faults", sim.sim_set_faults)
    r.add_post("/_sim/reset", sim.sim_reset)
    r.add_get("/_sim/stats", sim.sim_stats)
    return app


async def serve(
    host: str = "127.0.0.1", port: int = DEFAULT_PORT, options: SimulatorOptions | None = None
) -> web.AppRunner:
    """Start the simulator and return its runner (``await runner.cleanup()`` stops it).

    With ``port=0`` the bound port is in ``runner.addresses[0][1]``.
    """
    runner = web.AppRunner(create_app(options), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner


def run(
    port: int = DEFAULT_PORT, options: SimulatorOptions | None = None, host: str = "127.0.0.1"
) -> None:
    """Serve until Ctrl-C (the ``emarsys-destination emarsys-simulator`` command)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(
        f"Emarsys simulator on http://{host}:{port}: api_url http://{host}:{port}/api/v3, "
        f"token_url http://{host}:{port}/oauth2/token (Ctrl-C stops)",
        flush=True,
    )
    web.run_app(create_app(options), host=host, port=port, access_log=None, print=None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags; ``options_from_args`` turns the parsed namespace into options."""
    d = SimulatorOptions()
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (9797)")
    parser.add_argument("--client-id", default="demo-client", help="OAuth client id")
    parser.add_argument("--client-secret", default="demo-secret", help="OAuth client secret")
    parser.add_argument("--wsse-user", default="demo-user", help="WSSE user name")
    parser.add_argument("--wsse-secret", default="demo-secret", help="WSSE secret")
    parser.add_argument(
        "--oauth-client",
        action="append",
        default=[],
        metavar="ID:SECRET",
        help="another OAuth client (API user); repeatable",
    )
    parser.add_argument(
        "--wsse-credential",
        action="append",
        default=[],
        metavar="USER:SECRET",
        help="another WSSE user (API user); repeatable",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=d.rate_limit_per_minute,
        help="requests a minute per credential, 0 for none (1000)",
    )
    parser.add_argument(
        "--error-rate", type=float, default=0.0, help="fraction of calls answered 500 (0)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to calls (0)")
    parser.add_argument("--token-ttl", type=int, default=d.token_ttl, help="token seconds (3600)")
    parser.add_argument("--seed", type=int, default=None, help="seed for fault injection")


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, secret = value.partition(":")
        if not sep or not name or not secret:
            raise SystemExit(f"{flag} wants NAME:SECRET, not {value!r}")
        out[name] = secret
    return out


def options_from_args(ns: argparse.Namespace) -> SimulatorOptions:
    return SimulatorOptions(
        oauth_clients={
            ns.client_id: ns.client_secret,
            **_pairs(ns.oauth_client, "--oauth-client"),
        },
        wsse_users={
            ns.wsse_user: ns.wsse_secret,
            **_pairs(ns.wsse_credential, "--wsse-credential"),
        },
        token_ttl=ns.token_ttl,
        rate_limit_per_minute=ns.rate_limit,
        error_rate=ns.error_rate,
        latency=ns.latency,
        seed=ns.seed,
    )
