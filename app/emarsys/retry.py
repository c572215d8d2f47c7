"""Retry policy for Emarsys calls: what to retry and how long to wait. No IO here.

Retried: 429 (after ``X-RateLimit-Reset``), 5xx, timeouts and connection errors.
Not retried: every other 4xx, whose replyCode and text are recorded by the caller.
A status that is neither success nor a client error (an unreadable 2xx, an unexpected
3xx) is treated as transient. Emarsys sends no ``Retry-After`` on 429, only
``X-RateLimit-Reset`` (unix seconds), and its 429 body may be plain text.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

Decision = Literal["retry", "fail"]
RetryOutcome = Literal["ok", "rejected", "gave_up", "cancelled"]

RETRIABLE_EXCEPTIONS: tuple[type[BaseException], ...] = (
    TimeoutError,  # asyncio.TimeoutError is the same class since 3.11
    aiohttp.ClientConnectionError,  # connector errors, disconnects, socket read timeouts
    aiohttp.ClientPayloadError,  # the connection broke mid-body
    ConnectionError,
)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with AWS-style full jitter: ``uniform(0, min(max, base*factor^n))``."""

    base: float = 0.5
    factor: float = 2.0
    max: float = 60.0
    jitter: Literal["full", "none"] = "full"

    @classmethod
    def from_config(cls, cfg: Any) -> Backoff:
        return cls(max=float(cfg.max_backoff))

    def cap(self, attempt: int) -> float:
        """The un-jittered delay after failed attempt number ``attempt`` (1-based)."""
        try:
            raw = self.base * self.factor ** max(0, attempt - 1)
        except OverflowError:
            raw = math.inf
        return min(self.max, raw)

    def delay(self, attempt: int, rng: Callable[[float, float], float] = random.uniform) -> float:
        cap = self.cap(attempt)
        if self.jitter == "none":
            return cap
        return rng(0.0, cap)


@dataclass(frozen=True)
class RetryProgress:
    """Where a retried call stands, for whoever shows it (the deliveries view, metrics).

    The client reports one before every wait (``outcome`` None: it will try again at
    ``next_attempt_at``) and one when a call that was retried at least once ends
    (``outcome`` set). Times are unix seconds of the client's clock. ``call_id`` is unique
    per logical call of one client, so a tracker can replace and forget entries.
    """

    call_id: int
    method: str
    path: str
    attempt: int  # attempts made so far
    status: int | None  # HTTP status of the last attempt (None: no answer)
    reply_code: int | None
    reason: str  # the last failure, e.g. "HTTP 503 replyCode 503", "timeout"
    started_at: float  # the call's first attempt
    gives_up_at: float  # when retrying stops (``retry_for`` after the start)
    next_attempt_at: float | None = None
    outcome: RetryOutcome | None = None


RetryHook = Callable[[RetryProgress], None]


def classify(status: int | None, exc: BaseException | None = None) -> Decision:
    """``retry`` or ``fail`` for a failed attempt (HTTP status, or the exception raised).

    An exception with an integer ``status`` attribute (a token endpoint error) is judged
    by that status.
    """
    if exc is not None:
        if isinstance(exc, RETRIABLE_EXCEPTIONS):
            return "retry"
        exc_status = getattr(exc, "status", None)
        if isinstance(exc_status, int) and not isinstance(exc_status, bool):
            status = exc_status
        else:
            return "fail"
    if status is None:
        return "fail"
    if status == 429 or status >= 500:
        return "retry"
    if 400 <= status < 500:
        return "fail"
    return "retry"


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Case-insensitive header lookup that works on plain dicts as well as multidicts."""
    if not headers:
        return None
    try:
        value = headers.get(name)
    except Exception:
        value = None
    if value is not None:
        return value
    lname = name.lower()
    for k, v in headers.items():
        if isinstance(k, str) and k.lower() == lname:
            return v
    return None


def rate_limit_wait(headers: Mapping[str, str] | None, now: float, max_wait: float) -> float | None:
    """Seconds until ``X-RateLimit-Reset``, capped at ``max_wait``; None if unusable.

    The value is unix seconds; defensively, milliseconds (> 1e11) are scaled down and a
    small number (< 1e9) is read as seconds from now. Missing, garbage, or a reset
    already past gives None: the caller falls back to backoff.
    """
    raw = header(headers, "X-RateLimit-Reset")
    if raw is None:
        return None
    try:
        value = float(str(raw).strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    if value > 1e11:
        value /= 1000.0
    wait = value if value < 1e9 else value - now
    if wait <= 0:
        return None
    return min(wait, max_wait)


def retry_delay(
    attempt: int,
    backoff: Backoff,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    now: float = 0.0,
    rng: Callable[[float, float], float] = random.uniform,
) -> float:
    """How long to wait after failed attempt ``attempt``: the 429 reset, else backoff."""
    if status == 429:
        wait = rate_limit_wait(headers, now, backoff.max)
        if wait is not None:
            return wait
    return backoff.delay(attempt, rng)
