"""The part of a Segment message that a person's decisions read, and nothing else.

A person's lateness window (``app.timeline``) keeps its recent events so that a late one
can be put in event-time order and the window applied again. Whole messages are about
1 KB each; the identity fields, the primary key, the data maps and the JSON paths the
rule filters read are usually a tenth of that, and deciding on the copy gives exactly
what deciding on the message gave (``apply_event`` reads nothing else).

A path with an index (``properties.products[0].sku``) keeps the whole value where the
first index is taken (``properties.products``), so every index of it reads the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from app.jsonpath import MISSING, Step, read

#: Read by ``app.person`` and the rule machine whatever the config says.
ALWAYS: tuple[tuple[Step, ...], ...] = (
    ("type",),
    ("event",),
    ("userId",),
    ("anonymousId",),
    ("previousId",),
)


class Projection:
    """Which paths of a message to keep, compiled once per account config."""

    __slots__ = ("prefixes",)

    def __init__(self, paths: Iterable[tuple[Step, ...]]) -> None:
        prefixes: set[tuple[str, ...]] = set()
        for steps in (*ALWAYS, *paths):
            cut = next((i for i, s in enumerate(steps) if isinstance(s, int)), len(steps))
            if cut:
                prefixes.add(tuple(str(s) for s in steps[:cut]))
        # A prefix copied whole makes its longer paths redundant (and copying them too
        # would write into the copied value).
        ordered = sorted(prefixes, key=len)
        kept: list[tuple[str, ...]] = []
        for p in ordered:
            if not any(p[: len(k)] == k for k in kept):
                kept.append(p)
        self.prefixes = tuple(kept)

    def __call__(self, message: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for prefix in self.prefixes:
            value = read(message, prefix)
            if value is MISSING:
                continue
            node = out
            for step in prefix[:-1]:
                nxt = node.get(step)
                if nxt is None:
                    nxt = node[step] = {}
                node = nxt
            node[prefix[-1]] = value
        return out
