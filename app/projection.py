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

from app.jsonpath import MISSING, Found, PathSet, Step, read

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
    (the bench account keeps ~26 prefixes under a handful of top-level keys).

    With ``reads`` (the data maps' paths, all among ``paths``) the walk also picks up the
    data maps' raw values on its way and hands them to ``reads`` for the copy it returns:
    the person's decisions evaluate the data maps on that copy, and reading the same paths
    again from it would repeat what the copy just did (``PathSet.remember``).
    """

    __slots__ = ("_copy", "_reads", "prefixes")

    def __init__(self, paths: Iterable[tuple[Step, ...]], reads: PathSet | None = None) -> None:
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
        # Each read path lies under exactly one kept prefix: at that key, it reads the rest
        # of its steps from the value kept (``read(message, P)`` is ``read(value at K,
        # rest)`` when K is present, and MISSING when it is not).
        at: dict[tuple[str, ...], list[tuple[int, tuple[Step, ...]]]] = {}
        if reads is not None:
            for i, steps in enumerate(reads.paths):
                under = next((k for k in self.prefixes if steps[: len(k)] == k), None)
                if under is None or not steps:  # not copied: read them the usual way
                    reads, at = None, {}
                    break
                at.setdefault(under, []).append((i, steps[len(under) :]))
        self._reads = reads
        tree: dict[str, Any] = {}
        for prefix in self.prefixes:
            node = tree
            for step in prefix[:-1]:
                node = node.setdefault(step, {})
            node[prefix[-1]] = tuple(at.get(prefix, ()))  # kept whole, and what it feeds
        self._copy = _copier(tree)

    def __call__(self, message: Mapping[str, Any]) -> dict[str, Any]:
        found: Found = []
        out = self._copy(message, found)
        if out is None:
            out = {}
        if self._reads is not None:
            found.sort()  # by path index, as PathSet.present gives them
            self._reads.remember(out, found)
        return out


Copier = Callable[[Any, Found], "dict[str, Any] | None"]


def _copier(tree: dict[str, Any]) -> Copier:
    """A closure copying ``tree``'s keys out of a mapping (None when given anything else):
    a key whose entry is a tuple is kept whole (the value itself, not a copy) and feeds
    those ``(read index, rest of its steps)``; a subtree becomes a new dict holding what
    was found under it, and is left out when nothing was."""
    whole = tuple(key for key, sub in tree.items() if sub == ())
    # the usual case of a key feeding one read with nothing left to read: the value itself
    feeds_one = tuple(
        (key, sub[0][0])
        for key, sub in tree.items()
        if isinstance(sub, tuple) and len(sub) == 1 and not sub[0][1]
    )
    feeding = tuple(
        (key, sub)
        for key, sub in tree.items()
        if isinstance(sub, tuple) and sub != () and not (len(sub) == 1 and not sub[0][1])
    )
    nested = tuple((key, _copier(sub)) for key, sub in tree.items() if isinstance(sub, dict))

    def copy(cur: Any, found: Found) -> dict[str, Any] | None:
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
        for key, i in feeds_one:
            value = get(key, MISSING)
            if value is not MISSING:
                out[key] = value
                found.append((i, value))
        for key, reads in feeding:
            value = get(key, MISSING)
            if value is not MISSING:
                out[key] = value
                _feed(value, reads, found)
        for key, sub in nested:
            value = get(key, MISSING)
            if value is not MISSING:
                inner = sub(value, found)
                if inner:
                    out[key] = inner
        return out

    return copy


def _feed(value: Any, reads: tuple[tuple[int, tuple[Step, ...]], ...], found: Found) -> None:
    """The reads under a kept-whole value: the value itself, or what is below it."""
    for i, rest in reads:
        if not rest:
            found.append((i, value))
        else:
            raw = read(value, rest)
            if raw is not MISSING:
                found.append((i, raw))


def _mapping_get(cur: Mapping[str, Any]) -> Callable[[str, Any], Any]:
    """``read``'s rule for mappings other than dicts: ``in``, then ``[]``."""

    def get(key: str, default: Any) -> Any:
        return cur[key] if key in cur else default  # noqa: SIM401 (exactly read()'s test)

    return get
