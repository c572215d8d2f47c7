"""Durations as users write them in the config: ``30s``, ``15m``, ``1h``, ``2d`` or seconds."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")


def parse_duration(value: object) -> float:
    """Seconds for ``value``; raises ``ValueError`` with a reason a person can act on."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r} (use 30s, 15m, 1h, 2d or seconds)")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"a duration must be finite: {value!r}")
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value!r}")
        return float(value)
    if isinstance(value, str):
        m = _PATTERN.match(value)
        if m:
            seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
            if math.isfinite(seconds):
                return seconds
    raise ValueError(f"not a duration: {value!r} (use 30s, 15m, 1h, 2d or seconds)")


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of ``seconds`` (``3600`` -> ``1h``)."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
