"""Counting Emarsys calls (``emd_emarsys_calls_total``), for every client that makes them:
the sink's and the console catalog's."""

from __future__ import annotations

from collections.abc import Callable

from app.metrics import Metrics


def call_counter(
    metrics: Metrics, account: str
) -> Callable[[str, str, int | None, int | None], None]:
    """An ``EmarsysClient(on_response=...)`` callback: one count per call, by operation
    (method and the path's first two names, ids left out) and HTTP status."""

    def count(method: str, path: str, status: int | None, code: int | None) -> None:
        parts = [p for p in path.split("/") if p and not p.isdigit()]
        metrics.inc(
            "emd_emarsys_calls_total",
            account=account,
            call=f"{method} /{'/'.join(parts[:2])}",
            status=str(status) if status is not None else "error",
        )

    return count
