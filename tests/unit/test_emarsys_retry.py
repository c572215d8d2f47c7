"""Retry policy (what is retried, how long to wait) and the per-account rate limiter."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import pytest

from app.emarsys.auth import TokenError
from app.emarsys.ratelimit import RateLimiter
from app.emarsys.retry import Backoff, classify, header, rate_limit_wait, retry_delay

NOW = 1_700_000_000.0


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 599])
def test_retried_statuses(status: int) -> None:
    assert classify(status) == "retry"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
def test_failed_statuses(status: int) -> None:
    assert classify(status) == "fail"


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError(),
        aiohttp.ServerTimeoutError(),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(),
        aiohttp.ClientPayloadError("cut"),
        ConnectionResetError(),
    ],
)
def test_retried_exceptions(exc: BaseException) -> None:
    assert classify(None, exc) == "retry"


def test_exceptions_with_status_and_others() -> None:
    assert classify(None, TokenError(503, "down")) == "retry"
    assert classify(None, TokenError(401, "invalid_client")) == "fail"
    assert classify(None, ValueError("bug")) == "fail"
    assert classify(None, None) == "fail"


def test_backoff_grows_and_is_capped() -> None:
    b = Backoff(base=0.5, factor=2, max=10, jitter="none")
    assert [b.delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert b.cap(10_000) == 10  # no overflow


def test_backoff_from_config_defaults() -> None:
    class Cfg:
        max_backoff = 42.0

    b = Backoff.from_config(Cfg())
    assert (b.base, b.factor, b.max, b.jitter) == (0.5, 2, 42.0, "full")


def test_full_jitter_within_bounds() -> None:
    b = Backoff(max=8)
    rng = random.Random(7)
    for attempt in range(1, 12):
        cap = b.cap(attempt)
        samples = [b.delay(attempt, rng.uniform) for _ in range(200)]
        assert all(0 <= s <= cap for s in samples)
        assert max(samples) > cap * 0.8  # really spread over the range
        assert min(samples) < cap * 0.2


def test_header_lookup_case_insensitive() -> None:
    assert header({"x-ratelimit-reset": "5"}, "X-RateLimit-Reset") == "5"
    assert header({"X-RATELIMIT-RESET": "6"}, "X-RateLimit-Reset") == "6"
    assert header(None, "X-RateLimit-Reset") is None
    assert header({}, "X-RateLimit-Reset") is None


def test_rate_limit_wait_until_reset() -> None:
    assert rate_limit_wait({"X-RateLimit-Reset": str(int(NOW) + 12)}, NOW, 60) == 12
    assert rate_limit_wait({"x-ratelimit-reset": f"{NOW + 3.5}"}, NOW, 60) == 3.5


def test_rate_limit_wait_bounded_by_max() -> None:
    assert rate_limit_wait({"X-RateLimit-Reset": str(int(NOW) + 3600)}, NOW, 60) == 60


@pytest.mark.parametrize("value", ["", "soon", "nan", "inf", "-5", str(int(NOW) - 10), "0"])
def test_rate_limit_wait_garbage_or_past(value: str) -> None:
    assert rate_limit_wait({"X-RateLimit-Reset": value}, NOW, 60) is None


def test_rate_limit_wait_missing() -> None:
    assert rate_limit_wait({"X-RateLimit-Limit": "1000"}, NOW, 60) is None
    assert rate_limit_wait(None, NOW, 60) is None


def test_rate_limit_wait_tolerates_millis_and_deltas() -> None:
    assert rate_limit_wait({"X-RateLimit-Reset": str(int((NOW + 7) * 1000))}, NOW, 60) == 7
    assert rate_limit_wait({"X-RateLimit-Reset": "9"}, NOW, 60) == 9


def test_retry_delay_429_honours_reset_else_backoff() -> None:
    b = Backoff(max=30, jitter="none")
    hdrs = {"X-RateLimit-Reset": str(int(NOW) + 20)}
    assert retry_delay(1, b, status=429, headers=hdrs, now=NOW) == 20
    assert retry_delay(3, b, status=429, headers={"X-RateLimit-Reset": "x"}, now=NOW) == 2
    assert retry_delay(3, b, status=429, headers=None, now=NOW) == 2
    assert retry_delay(3, b, status=503, headers=hdrs, now=NOW) == 2  # only 429 reads it


# -- rate limiter ---------------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.t = NOW
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, d: float) -> None:
        self.sleeps.append(d)
        self.t += d
        await asyncio.sleep(0)


async def test_limiter_burst_then_rate() -> None:
    ft = FakeTime()
    lim = RateLimiter(60, burst=3, clock=ft, sleep=ft.sleep)
    for _ in range(3):
        assert await lim.acquire() == 0
    assert await lim.acquire() == pytest.approx(1.0)
    assert await lim.acquire() == pytest.approx(1.0)
    ft.t += 10  # idle time refills to the burst, no further
    for _ in range(3):
        assert await lim.acquire() == 0
    assert await lim.acquire() > 0


async def test_limiter_sustained_rate() -> None:
    ft = FakeTime()
    lim = RateLimiter(1000, clock=ft, sleep=ft.sleep)
    start = ft.t
    for _ in range(1010):
        await lim.acquire()
    # 10 burst + 1000 at 1000/min: one minute
    assert ft.t - start == pytest.approx(60.0, rel=0.01)


async def test_limiter_default_burst_is_small() -> None:
    assert RateLimiter(1000).capacity == 10
    assert RateLimiter(3).capacity == 3
    with pytest.raises(ValueError):
        RateLimiter(0)


async def test_pause_until_holds_every_caller() -> None:
    ft = FakeTime()
    lim = RateLimiter(6000, burst=100, clock=ft, sleep=ft.sleep)
    lim.pause_until(NOW + 30)
    lim.pause_until(NOW + 5)  # a shorter pause never shortens the longer one
    done: list[float] = []

    async def caller() -> None:
        await lim.acquire()
        done.append(ft.t)

    await asyncio.gather(*(caller() for _ in range(5)))
    assert len(done) == 5
    assert all(t >= NOW + 30 for t in done)
    assert lim.paused_until == NOW + 30
