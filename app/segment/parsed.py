"""What validating a Segment message gives: the message, or the reason it is wrong.

Apart from the validation itself (``app.segment.model``, pydantic; ``app.segment.plain``,
the compiled fast path) so that both can name them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple


class InvalidMessage(ValueError):
    """A message (or batch) the sender must fix; ``reason`` names the field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class ParsedMessage(NamedTuple):
    """A valid message: ``data`` is what goes on the topic; the rest is derived from it.
    (Immutable; a tuple, because a frozen dataclass costs four times as much to build.)"""

    data: dict[str, Any]
    type: str
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    event_time: datetime

    def event_time_iso(self) -> str:
        """``YYYY-MM-DDTHH:MM:SS.fffZ``."""
        return format_millis(self.event_time)


def format_millis(dt: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.fffZ`` of an aware (or UTC-naive) datetime."""
    if dt.tzinfo is not None and dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}.{dt.microsecond // 1000:03d}Z"
    )
