"""Emarsys calls being retried right now, per account: what the client's retry hook says.

Each account's Emarsys client reports a ``RetryProgress`` before every wait between
attempts and once when a retried call ends (``app.emarsys.client``). This keeps the
latest report of every call still retrying, so the deliveries view and ``/metrics`` show
a retry while it happens (attempt, last status and replyCode, next attempt, when it is
given up), not only once it was given up. One per worker, made by the composition root;
it knows nothing of Faust.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from app.emarsys.retry import RetryHook, RetryProgress


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RetryTracker:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._active: dict[str, dict[tuple[int, int], RetryProgress]] = {}
        self._hooks = itertools.count(1)

    def hook(self, account: str) -> RetryHook:
        """The ``on_retry`` of one client of ``account`` (a client rebuilt after a config
        change gets a new hook, so call ids of the two never collide)."""
        hook_id = next(self._hooks)

        def on_retry(progress: RetryProgress) -> None:
            calls = self._active.setdefault(account, {})
            key = (hook_id, progress.call_id)
            if progress.outcome is None:
                calls[key] = progress
            else:
                calls.pop(key, None)
                if not calls:
                    self._active.pop(account, None)

        return on_retry

    def count(self, account: str) -> int:
        return len(self._active.get(account, ()))

    def accounts(self) -> list[str]:
        return sorted(self._active)

    def snapshot(self, account: str) -> list[dict[str, Any]]:
        """The account's retrying calls, the longest-retrying first, as the API shows them."""
        now = self.clock()
        rows = []
        for p in sorted(self._active.get(account, {}).values(), key=lambda p: p.started_at):
            nxt = p.next_attempt_at
            rows.append(
                {
                    "call": f"{p.method} {p.path}",
                    "attempt": p.attempt,
                    "lastStatus": p.status,
                    "lastReplyCode": p.reply_code,
                    "reason": p.reason,
                    "since": _iso(p.started_at),
                    "nextAttemptAt": _iso(nxt) if nxt is not None else None,
                    "secondsToNextAttempt": round(max(0.0, nxt - now), 1) if nxt else None,
                    "givesUpAt": _iso(p.gives_up_at),
                    "secondsUntilGivenUp": round(max(0.0, p.gives_up_at - now), 1),
                }
            )
        return rows
