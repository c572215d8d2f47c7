"""``GET /ready``: whether this worker processes events yet.

``/health`` answers as soon as the web server listens, seconds before the worker has
joined its consumer group, been assigned partitions and recovered its tables; a load
balancer (or the quick start) that trusts it sends events that wait unseen. ``/ready``
answers 503 until both hold:

- **partitions assigned**: Faust finished its first rebalance and table recovery (the
  moment it logs "Worker ready"); a worker given no partitions (more workers than
  partitions) is ready too: it ingests and forwards lookups;
- **live config read**: the config topic was read to its end, so events are processed
  with the console's edits, not the file's.

Then 200, for good: a later rebalance pauses processing for seconds, but taking every
worker out of a load balancer at once during one would stop ingest, which needs no
assignment. The body says whether a rebalance is in progress.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Readiness:
    def __init__(self, faust_app: Any, config_loaded: Callable[[], bool]) -> None:
        self._app = faust_app
        self._config_loaded = config_loaded
        self._assigned_once = False

    def _assigned(self) -> bool:
        if not self._assigned_once:
            try:
                recovery = self._app.tables.recovery
                done = recovery.completed.is_set() and not self._app.rebalancing
            except AttributeError:
                done = False
            self._assigned_once = bool(done)
        return self._assigned_once

    def state(self) -> dict[str, Any]:
        assigned = self._assigned()
        config = bool(self._config_loaded())
        return {
            "ready": assigned and config,
            "partitions_assigned": assigned,
            "live_config_read": config,
            "rebalancing": bool(getattr(self._app, "rebalancing", False)),
        }
