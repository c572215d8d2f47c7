"""Everything a worker runs: the app, its tables and its agents (import for effect)."""

from __future__ import annotations

import agents.link
import agents.person
import agents.sink
import tables
from app.faust_app import app

__all__ = ["agents", "app", "tables"]
