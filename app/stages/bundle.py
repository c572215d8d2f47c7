"""Many person-events records as one: what a transaction sends to another partition.

One fetch of input sends hundreds of small records to each other person partition
(hand-off requests and answers, primary-key index entries, anonymous visitors' events);
the sink sends a delivery report per person. Each record costs the producer, the broker,
the fetch and the worker's loop once, whatever its size: in ``make bench`` they were
1.88 person-events records per event, half of the run. Bundled, that cost is paid once
per destination partition and transaction (or sink batch).

A bundle keeps the order of its items, goes to its partition explicitly, and the person
stage reads it as its items in that order (``unbundle``): exactly what the stage would
have seen of the same records read one after another in one fetch. The stages are
correct for any split of a partition's records into fetches (the hand-off property
test), so a bundle, which is never split, changes no decision. A single record for a
partition is sent as it is.

Wire format: ``{"k": "b", "i": [item, ...]}``, each ``item`` a record's own JSON, copied
as bytes (no second encoding). An item's key is not sent: every person-events body names
its account (``a``) and person (``p``), and its key is ``account \\x1f person``
(``app.keys.key``), which is all the person stage reads of a key. Every worker of a group
must run a version that reads bundles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from app import keys
from app.stages.state import PERSON, LocalRecord, Output, RecordLike

#: a bundle's bounds: well inside a producer batch (256 KB) and Kafka's message limit
MAX_ITEMS = 1000
MAX_BYTES = 64 * 1024

NOT_AN_ITEM = "an item of a bundle of person-events records is not an object"

HEAD = b'{"k":"b","i":['
_TAIL = b"]}"
_COMMA = b","


class Bundles:
    """Person-events records by destination partition, made into bundles at the end."""

    __slots__ = ("groups",)

    def __init__(self) -> None:
        self.groups: dict[int, list[Output]] = {}

    def add(self, partition: int, output: Output) -> None:
        group = self.groups.get(partition)
        if group is None:
            self.groups[partition] = [output]
        else:
            group.append(output)

    def outputs(self) -> list[Output]:
        """A lone record of a partition as it is; more, in bundles of at most
        ``MAX_ITEMS`` items and ``MAX_BYTES`` (and a record larger than that as it is), in
        order."""
        out: list[Output] = []
        for partition, group in self.groups.items():
            if len(group) == 1:
                out.append(group[0])
                continue
            parts: list[bytes] = [HEAD]
            size = 0
            for o in group:
                value = o.value
                if size and (len(parts) > 2 * MAX_ITEMS or size + len(value) > MAX_BYTES):
                    out.append(_bundle(partition, parts))
                    parts, size = [HEAD], 0
                if len(value) > MAX_BYTES:  # as it is: never larger than it was alone
                    out.append(o)
                    continue
                parts.append(value)
                parts.append(_COMMA)
                size += len(value) + 1
            if size:
                out.append(_bundle(partition, parts))
        self.groups = {}
        return out


def bundlable(o: Output) -> bool:
    """A person-events record the stages made (keyed ``account \\x1f person``), with no
    explicit partition and no headers."""
    return o.topic == PERSON and o.partition is None and not o.headers and bool(o.key)


def bundle(outputs: Iterable[Output], partition_of: Callable[[bytes], int]) -> list[Output]:
    """``outputs`` with the person-events records of each partition in bundles, in order;
    every other record (other topics, an explicit partition, headers) as it is."""
    out: list[Output] = []
    bundles = Bundles()
    for o in outputs:
        if bundlable(o):
            bundles.add(partition_of(o.key), o)
        else:
            out.append(o)
    return out + bundles.outputs()


def _bundle(partition: int, parts: list[bytes]) -> Output:
    """``parts``: HEAD, then each item followed by a comma (the last one becomes the tail)."""
    parts[-1] = _TAIL
    return Output(PERSON, b"", b"".join(parts), partition=partition)


def kinds(value: bytes) -> set[str]:
    """The kinds of a bundle's items (``EMD_CRASH_AT``'s labels)."""
    try:
        return {str(item.get("k")) for item in orjson.loads(value)["i"]}
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return set()


def unbundle(
    records: Sequence[RecordLike], partition: int
) -> tuple[list[RecordLike], list[tuple[str, Any, bytes | None]]]:
    """Fetched records with every bundle replaced by its items (as records read in this
    partition: their bodies decoded once, with the whole bundle), and what could not be
    read, as (reason, payload, raw bytes) to dead-letter: a bundle that is not JSON with
    a list of items, or an item that is not an object."""
    out: list[RecordLike] = []
    bad: list[tuple[str, Any, bytes | None]] = []
    for r in records:
        value = r.value
        if value is None or not value.startswith(HEAD):
            out.append(r)
            continue
        try:
            items = orjson.loads(value)["i"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            bad.append(("a bundle of person-events records that is not valid JSON", None, value))
            continue
        if not isinstance(items, list):
            bad.append(("a bundle of person-events records without a list of items", None, value))
            continue
        for item in items:
            if not isinstance(item, dict):
                bad.append((NOT_AN_ITEM, item, None))
                continue
            account, person = item.get("a"), item.get("p")
            key = (
                keys.key(account, person)
                if isinstance(account, str) and isinstance(person, str)
                else b""
            )
            out.append(LocalRecord(None, partition, key, item))
    return out, bad
