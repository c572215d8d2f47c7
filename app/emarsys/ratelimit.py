"""A per-account request limiter: a token bucket plus a shared pause after a 429.

Emarsys allows ``requests_per_minute`` per API user and enforces it loosely; the bucket
spreads calls evenly with a small burst. After a 429 every caller of the account waits
until ``X-RateLimit-Reset`` (``pause_until``), not only the one that was refused.
Clock (unix seconds) and sleep are injectable so tests never wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_BURST = 10
_EPSILON = 1e-6


class RateLimiter:
    """Waiters are served in arrival order (one lock), so a busy caller cannot starve others."""

    def __init__(
        self,
        requests_per_minute: int,
        *,
        burst: int | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if requests_per_minute < 1:
            raise ValueError("requests_per_minute must be at least 1")
        self.rate = requests_per_minute / 60.0
        if burst is None:
            burst = min(DEFAULT_BURST, requests_per_minute)
        self.capacity = float(burst)
        if self.capacity < 1:
            raise ValueError("burst must be at least 1")
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def pause_until(self, unix_ts: float) -> None:
        """No caller of this account sends before ``unix_ts`` (a later pause never shortens)."""
        self._paused_until = max(self._paused_until, unix_ts)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)  # a wall clock stepping back adds nothing
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._updated = now

    async def acquire(self) -> float:
        """Wait for permission to send one request; returns the seconds waited."""
        waited = 0.0
        async with self._lock:
            while True:
                now = self._clock()
                if self._paused_until > now:
                    delay = self._paused_until - now
                else:
                    self._refill(now)
                    # The epsilon keeps float rounding (a unix clock has ~0.2 us of
                    # resolution) from turning a 0.9999999 bucket into an endless wait.
                    if self._tokens >= 1.0 - _EPSILON:
                        self._tokens = max(0.0, self._tokens - 1.0)
                        return waited
                    delay = (1.0 - self._tokens) / self.rate
                await self._sleep(delay)
                waited += delay
