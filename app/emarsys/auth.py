"""Emarsys authentication: WSSE headers (v2) and OAuth 2.0 client-credentials tokens (v3).

WSSE needs a fresh nonce and a current timestamp on every request *and every retry*: a
header reused across queued batches goes stale (Emarsys answers 401 "Time frame is
invalid" after 5 minutes), which is what one peer integration gets wrong. OAuth tokens
are cached and shared by every caller of an account; one fetch is in flight at a time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

Clock = Callable[[], float]

DEFAULT_EXPIRES_IN = 3600.0
REFRESH_MARGIN = 60.0


def wsse_digest(nonce: str, created: str, secret: str) -> str:
    """base64 of the 40-char lowercase sha1 *hex* of nonce+created+secret (not the raw digest)."""
    hex_digest = hashlib.sha1((nonce + created + secret).encode("utf-8")).hexdigest()
    return base64.b64encode(hex_digest.encode("ascii")).decode("ascii")


def wsse_created(now: datetime | float | None = None) -> str:
    """UTC ISO 8601 with milliseconds and ``Z``: ``2019-10-14T00:00:00.000Z``."""
    if now is None:
        dt = datetime.now(UTC)
    elif isinstance(now, datetime):
        dt = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    else:
        dt = datetime.fromtimestamp(float(now), UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def wsse_header(
    username: str,
    secret: str,
    *,
    now: datetime | float | None = None,
    nonce: str | None = None,
) -> str:
    """The value of the ``X-WSSE`` header; call it once per request, never reuse the result."""
    n = nonce if nonce is not None else secrets.token_hex(16)
    created = wsse_created(now)
    digest = wsse_digest(n, created, secret)
    return (
        f'UsernameToken Username="{username}", PasswordDigest="{digest}", '
        f'Nonce="{n}", Created="{created}"'
    )


class TokenError(Exception):
    """The token endpoint said no (or answered nonsense). Never carries the client secret."""

    def __init__(self, status: int, text: str) -> None:
        self.status = status
        self.text = text
        super().__init__(f"OAuth token request failed: HTTP {status}: {text}")


def _error_text(raw: bytes) -> str:
    try:
        obj: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace").strip()[:200] or "(empty body)"
    if isinstance(obj, dict):
        parts = [str(obj[k]) for k in ("error", "error_description", "message") if obj.get(k)]
        if parts:
            return ": ".join(parts)[:200]
    return str(obj)[:200]


class OAuthTokens:
    """Client-credentials tokens for one account: cached, refreshed ~60 s before expiry.

    ``invalidate(token)`` drops the cached token after a 401 so that the next ``token()``
    fetches a new one; passing the token that failed keeps concurrent 401s from throwing
    away a token another caller has just fetched.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        session: aiohttp.ClientSession,
        *,
        clock: Clock = time.time,
        timeout: aiohttp.ClientTimeout | None = None,
        margin: float = REFRESH_MARGIN,
    ) -> None:
        self._url = token_url
        self._client_id = client_id
        self._secret = client_secret
        self._session = session
        self._clock = clock
        self._timeout = timeout
        self._margin = margin
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    def _current(self) -> str | None:
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        return None

    async def token(self) -> str:
        tok = self._current()
        if tok is not None:
            return tok
        async with self._lock:
            tok = self._current()
            if tok is not None:
                return tok
            return await self._fetch()

    def invalidate(self, token: str | None = None) -> None:
        if token is None or token == self._token:
            self._token = None
            self._refresh_at = 0.0

    async def _fetch(self) -> str:
        self.fetches += 1
        kwargs: dict[str, Any] = {}
        if self._timeout is not None:
            kwargs["timeout"] = self._timeout
        async with self._session.post(
            self._url,
            data={"grant_type": "client_credentials"},
            auth=aiohttp.BasicAuth(self._client_id, self._secret),
            headers={"Accept": "application/json"},
            **kwargs,
        ) as resp:
            status = resp.status
            raw = await resp.read()
        if status != 200:
            raise TokenError(status, self._scrub(_error_text(raw)))
        try:
            obj: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        token = obj.get("access_token") if isinstance(obj, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenError(status, "the answer has no access_token")
        try:
            expires_in = float(obj.get("expires_in", DEFAULT_EXPIRES_IN))
        except (TypeError, ValueError):
            expires_in = DEFAULT_EXPIRES_IN
        # A short-lived token (a simulator's) is refreshed at half its life instead.
        margin = min(self._margin, expires_in / 2)
        self._token = token
        self._refresh_at = self._clock() + expires_in - margin
        return token

    def _scrub(self, text: str) -> str:
        basic = base64.b64encode(f"{self._client_id}:{self._secret}".encode()).decode()
        for s in (basic, self._secret):
            if s:
                text = text.replace(s, "***")
        return text
