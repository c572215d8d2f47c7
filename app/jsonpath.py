"""Dotted JSON paths into Segment events: ``context.traits.email``, ``properties.products[0].sku``.

A path is compiled once (at config load) into a tuple of steps; reading a missing path
gives ``MISSING`` (never an error), because events legitimately omit most fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Final

_SEGMENT = re.compile(r"([A-Za-z_$][\w$\- ]*)((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")


class _Missing:
    """The absence of a value, distinct from JSON ``null``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()

Step = str | int


@lru_cache(maxsize=4096)
def compile_path(path: str) -> tuple[Step, ...]:
    """Steps of ``path``; ``ValueError`` says which part is not a valid path."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError("a JSON path cannot be empty")
    steps: list[Step] = []
    for part in path.strip().split("."):
        m = _SEGMENT.fullmatch(part)
        if not m:
            raise ValueError(
                f"invalid JSON path {path!r} at {part!r}: use dotted names with optional [N] "
                "indexes, e.g. properties.products[0].sku"
            )
        steps.append(m.group(1))
        steps.extend(int(i) for i in _INDEX.findall(m.group(2)))
    return tuple(steps)


def read(obj: Any, steps: tuple[Step, ...]) -> Any:
    """The value at ``steps`` in ``obj``, or ``MISSING``."""
    cur = obj
    for step in steps:
        # Exact dict/list checks first: JSON decoders give exactly these, and the
        # abstract-class isinstance checks cost a microsecond per step.
        kind = type(cur)
        if kind is dict or (kind is not list and isinstance(cur, Mapping)):
            if isinstance(step, int) or step not in cur:
                return MISSING
            cur = cur[step]
        elif isinstance(step, int) and (
            kind is list or (isinstance(cur, Sequence) and not isinstance(cur, str | bytes))
        ):
            if step >= len(cur):
                return MISSING
            cur = cur[step]
        else:
            return MISSING
    return cur


def getter(steps: tuple[Step, ...]) -> Callable[[Any], Any]:
    """``read(obj, steps)`` as a function of ``obj``: through dicts it takes one ``get``
    per step; anything else on the way is left to ``read`` itself (its rules exactly)."""
    if not steps or not all(isinstance(s, str) for s in steps):
        return lambda obj: read(obj, steps)

    def get_path(obj: Any) -> Any:
        cur = obj
        for step in steps:
            if type(cur) is not dict:
                return read(obj, steps)
            cur = cur.get(step, MISSING)
            if cur is MISSING:
                return MISSING
        return cur

    return get_path


def get(obj: Any, path: str) -> Any:
    """Convenience: compile (cached) and read."""
    return read(obj, compile_path(path))


# --------------------------------------------------------------------------- many paths, one walk

Found = list[tuple[int, Any]]
Walker = Callable[[Any, Found], None]


class _Trie:
    __slots__ = ("children", "ends")

    def __init__(self) -> None:
        self.children: dict[Step, _Trie] = {}
        self.ends: list[int] = []


def _walker(node: _Trie) -> Walker | None:
    """The closure that reads ``node``'s subtree from a value, or None for a leaf: it
    appends ``(path index, value)`` for every path present below ``node``.

    Exactly ``read``'s rules per step (a str step reads a mapping, an int step a list or
    other non-text sequence), with the dict and list cases first: JSON gives only those.
    A key that ends one path and leads nowhere further (most of them) takes the short loop.
    """
    named_leaves = tuple(
        (step, child.ends[0])
        for step, child in node.children.items()
        if isinstance(step, str) and len(child.ends) == 1 and not child.children
    )
    named = tuple(
        (step, tuple(child.ends), _walker(child))
        for step, child in node.children.items()
        if isinstance(step, str) and not (len(child.ends) == 1 and not child.children)
    )
    indexed = tuple(
        (step, tuple(child.ends), _walker(child))
        for step, child in node.children.items()
        if isinstance(step, int)
    )
    if not named_leaves and not named and not indexed:
        return None

    def walk(cur: Any, found: Found) -> None:
        kind = type(cur)
        if kind is dict:
            get = cur.get
            for step, i in named_leaves:
                value = get(step, MISSING)
                if value is not MISSING:
                    found.append((i, value))
            for step, ends, sub in named:
                value = get(step, MISSING)
                if value is not MISSING:
                    for i in ends:
                        found.append((i, value))
                    if sub is not None:
                        sub(value, found)
        elif kind is list or (
            not isinstance(cur, Mapping)
            and isinstance(cur, Sequence)
            and not isinstance(cur, str | bytes)
        ):
            n = len(cur)
            for index, ends, sub in indexed:
                if index < n:
                    value = cur[index]
                    for i in ends:
                        found.append((i, value))
                    if sub is not None:
                        sub(value, found)
        elif isinstance(cur, Mapping):
            for step, i in named_leaves:
                if step in cur:
                    found.append((i, cur[step]))
            for step, ends, sub in named:
                if step in cur:
                    value = cur[step]
                    for i in ends:
                        found.append((i, value))
                    if sub is not None:
                        sub(value, found)

    return walk


class PathSet:
    """Several compiled paths read in one walk: a shared prefix is looked up once.

    ``present(obj)`` gives ``(index, value)`` for each path present in ``obj``, in the
    order the paths were given, with what ``read`` gives for it (absent paths are left
    out). Data maps read ~20 paths per event, most of them under ``traits``,
    ``properties`` or ``context`` and most of them absent: one walk instead of 20 reads,
    and nothing to do afterwards for the absent ones.
    """

    __slots__ = ("_itself", "_memo", "_walk", "paths")

    def __init__(self, paths: Sequence[tuple[Step, ...]]) -> None:
        self.paths = tuple(paths)
        root = _Trie()
        for i, steps in enumerate(self.paths):
            node = root
            for step in steps:
                child = node.children.get(step)
                if child is None:
                    child = node.children[step] = _Trie()
                node = child
            node.ends.append(i)
        self._walk = _walker(root)
        self._itself = tuple(root.ends)  # empty paths: ``read`` gives the object itself
        self._memo: tuple[Any, Found] | None = None

    def remember(self, obj: Any, found: Found) -> None:
        """``found`` is what ``present(obj)`` gives: a walk that built ``obj`` (the
        projection copying an event) read these paths on the way, so reading them again
        from the copy would only repeat that. Kept for the latest ``obj`` only, which must
        not change afterwards (a projection is an input: nothing writes into it)."""
        self._memo = (obj, found)

    def present(self, obj: Any) -> Found:
        memo = self._memo
        if memo is not None and memo[0] is obj:
            return memo[1]
        found: Found = [(i, obj) for i in self._itself]
        if self._walk is not None:
            self._walk(obj, found)
            found.sort()  # by index: each index appears once, values are never compared
        return found
