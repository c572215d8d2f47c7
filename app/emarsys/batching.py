"""Shaping rows into Emarsys-sized requests. Pure: no IO, no aiohttp.

Emarsys takes at most 1000 contacts and 8 MB per upsert (1000 contacts and 1 MB per
trigger batch), and one key value twice in a batch is a per-contact error (2010), so
updates of one contact are merged before they are chunked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import orjson

MAX_COUNT = 1000
CONTACT_MAX_BYTES = 8_000_000
TRIGGER_MAX_BYTES = 1_000_000
# Room for the request envelope around the rows: {"key_id":3,"contacts":[...],...}.
ENVELOPE_BYTES = 256

Row = TypeVar("Row", bound=Mapping[str, Any])


def row_size(row: Mapping[str, Any]) -> int:
    return len(orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS))


def merge_contacts(rows: Iterable[Mapping[str, Any]], key_field: int) -> list[dict[str, Any]]:
    """One row per key value: later fields win, order of first appearance kept.

    Field ids become strings (``3`` and ``"3"`` are one field), and key values are
    compared as text. A row with no key value cannot be merged with anything: it passes
    through on its own, so Emarsys reports it instead of it vanishing here.
    """
    key = str(key_field)
    out: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    for row in rows:
        fields = {str(k): v for k, v in row.items()}
        value = fields.get(key)
        if value is None or value == "":
            out.append(fields)
            continue
        kv = str(value)
        at = index.get(kv)
        if at is None:
            index[kv] = len(out)
            out.append(fields)
        else:
            out[at].update(fields)
    return out


class Chunks(NamedTuple, Generic[Row]):
    """``batches`` each within both limits; ``too_big`` rows that fit no request, with why."""

    batches: list[list[Row]]
    too_big: list[tuple[Row, str]]


def chunk(
    rows: Sequence[Row] | Iterable[Row],
    max_count: int = MAX_COUNT,
    max_bytes: int = CONTACT_MAX_BYTES,
    size: Callable[[Row], int] = row_size,
    *,
    envelope: int = ENVELOPE_BYTES,
) -> Chunks[Row]:
    """Split rows, in order, into batches of at most ``max_count`` rows whose request body
    (the rows, a comma each, and ``envelope`` bytes around them) stays within ``max_bytes``.

    Use ``max_bytes=TRIGGER_MAX_BYTES`` for trigger batches.
    """
    if max_count < 1:
        raise ValueError("max_count must be at least 1")
    budget = max_bytes - envelope
    batches: list[list[Row]] = []
    too_big: list[tuple[Row, str]] = []
    current: list[Row] = []
    used = 0
    for row in rows:
        n = size(row) + 1
        if n > budget:
            too_big.append(
                (row, f"row is {n - 1} bytes; a request allows {max_bytes} bytes in all")
            )
            continue
        if current and (len(current) >= max_count or used + n > budget):
            batches.append(current)
            current, used = [], 0
        current.append(row)
        used += n
    if current:
        batches.append(current)
    return Chunks(batches, too_big)
