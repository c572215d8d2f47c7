"""Counters and gauges, rendered in the Prometheus text format for ``GET /metrics``.

Per worker process: Prometheus scrapes every worker and sums.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

_HELP = {
    "emd_events_in_total": "Segment messages accepted into the input topic",
    "emd_events_processed_total": "events processed by the identity agent",
    "emd_person_events_total": (
        "person-events records processed by the person stage, by kind (a bundle's items one by one)"
    ),
    "emd_events_rejected_total": "messages rejected (dead-lettered) with their reason class",
    "emd_events_deduped_total": "duplicate messageIds skipped",
    "emd_datamap_failures_total": "values a data map could not convert (left out)",
    "emd_rule_transitions_total": "rule instance transitions by kind",
    "emd_emarsys_calls_total": "Emarsys API calls by operation and outcome",
    "emd_emarsys_contacts_total": "contacts or triggers sent to Emarsys by operation and outcome",
    "emd_dead_letters_total": "records written to the dead-letter topic",
    "emd_deliveries_reported_total": "Emarsys outcomes recorded in persons' delivery logs",
    "emd_sink_backlog": "effects waiting in the Emarsys sink",
    "emd_account_backlog": "effects of the account not delivered yet (in memory and parked)",
    "emd_account_oldest_effect_age_seconds": "age of the account's oldest undelivered effect",
    "emd_account_retrying_calls": "Emarsys calls of the account being retried now",
    "emd_account_parked": "1 while the account's effects are parked (its Emarsys failing)",
    "emd_consumer_lag": "messages between the committed offset and the end of each partition",
    "emd_http_bad_connections_total": "HTTP connections broken by the client (disconnected, "
    "malformed, body_timeout)",
    "emd_ingest_throttled_total": "ingest requests answered 429, by budget (authenticated, "
    "unauthenticated)",
}


def _escape(value: object) -> str:
    """A label value as the text format wants it: backslash, quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _number(value: float) -> str:
    """Every digit of a sample (``:g`` would print 1234567 as ``1.23457e+06``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Metrics:
    def __init__(self) -> None:
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._gauges: dict[str, Callable[[], dict[tuple[tuple[str, str], ...], float]]] = {}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        # Called per event on the hot path: one label needs no sorting.
        key = tuple(labels.items()) if len(labels) < 2 else tuple(sorted(labels.items()))
        series = self._counters[name]
        series[key] = series.get(key, 0.0) + amount

    def value(self, name: str, **labels: str) -> float:
        return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def gauge(self, name: str, fn: Callable[[], dict[tuple[tuple[str, str], ...], float]]) -> None:
        self._gauges[name] = fn

    def render(self) -> str:
        lines: list[str] = []
        for name in sorted(self._counters):
            lines.append(f"# HELP {name} {_HELP.get(name, name)}")
            lines.append(f"# TYPE {name} counter")
            for key, value in sorted(self._counters[name].items()):
                lines.append(f"{name}{_labels(dict(key))} {_number(value)}")
        for name in sorted(self._gauges):
            try:
                series = self._gauges[name]()
            except Exception:  # a gauge must never break the endpoint
                continue
            lines.append(f"# HELP {name} {_HELP.get(name, name)}")
            lines.append(f"# TYPE {name} gauge")
            for key, value in sorted(series.items()):
                lines.append(f"{name}{_labels(dict(key))} {_number(value)}")
        return "\n".join(lines) + "\n"
