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

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from app.jsonpath import MISSING, Step

#: Read by ``app.person`` and the rule machine whatever the config says.
ALWAYS: tuple[tuple[Step, ...], ...] = (
    ("type",),
    ("event",),
    ("userId",),
    ("anonymousId",),
    ("previousId",),
)


class Projection:
    """Which paths of a message to keep, compiled once per account config into one copying
    walk: each kept prefix's steps are looked up once, shared steps once for all of them
    (the bench account keeps ~26 prefixes under a handful of top-level keys)."""

    __slots__ = ("_copy", "prefixes")

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
        tree: dict[str, Any] = {}
        for prefix in self.prefixes:
            node = tree
            for step in prefix[:-1]:
                node = node.setdefault(step, {})
            node[prefix[-1]] = None  # kept whole
        self._copy = _copier(tree)

    def __call__(self, message: Mapping[str, Any]) -> dict[str, Any]:
        return self._copy(message) or {}


Copier = Callable[[Any], "dict[str, Any] | None"]


def _copier(tree: dict[str, Any]) -> Copier:
    """A closure copying ``tree``'s keys out of a mapping (None when given anything else):
    a key marked None is kept whole (the value itself, not a copy); a subtree becomes a new
    dict holding what was found under it, and is left out when nothing was."""
    whole = tuple(key for key, sub in tree.items() if sub is None)
    nested = tuple((key, _copier(sub)) for key, sub in tree.items() if sub is not None)

    def copy(cur: Any) -> dict[str, Any] | None:
        get: Callable[[str, Any], Any]
        if type(cur) is dict:
            get = cur.get
        elif isinstance(cur, Mapping):
            get = _mapping_get(cur)
        else:
            return None
        out: dict[str, Any] = {}
        for key in whole:
            value = get(key, MISSING)
            if value is not MISSING:
                out[key] = value
        for key, sub in nested:
            value = get(key, MISSING)
            if value is not MISSING:
                inner = sub(value)
                if inner:
                    out[key] = inner
        return out

    return copy


def _mapping_get(cur: Mapping[str, Any]) -> Callable[[str, Any], Any]:
    """``read``'s rule for mappings other than dicts: ``in``, then ``[]``."""

    def get(key: str, default: Any) -> Any:
        return cur[key] if key in cur else default  # noqa: SIM401 (exactly read()'s test)

    return get
