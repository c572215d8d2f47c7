"""What every agent needs: header access, dead-lettering, the runtime."""

from __future__ import annotations

import logging
from typing import Any

from app.envelope import dead_letter
from app.faust_app import RUNTIME, dead_letter_topic

log = logging.getLogger("emd.agents")


def header(event: Any, name: str) -> str | None:
    headers = getattr(event, "headers", None) or {}
    if isinstance(headers, dict):
        value = headers.get(name)
    else:
        value = next((v for k, v in headers if k == name), None)
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


async def send_dead_letter(
    source: str,
    reason: str,
    *,
    account: str | None = None,
    message_id: str | None = None,
    payload: Any = None,
    raw: bytes | None = None,
) -> None:
    RUNTIME.metrics.inc("emd_dead_letters_total", source=source)
    await dead_letter_topic.send(
        key=(account or "").encode(),
        value=dead_letter(
            source, reason, account=account, message_id=message_id, payload=payload, raw=raw
        ),
    )
