"""Dotted JSON paths into Segment events: ``context.traits.email``, ``properties.products[0].sku``.

A path is compiled once (at config load) into a tuple of steps; reading a missing path
gives ``MISSING`` (never an error), because events legitimately omit most fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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


def get(obj: Any, path: str) -> Any:
    """Convenience: compile (cached) and read."""
    return read(obj, compile_path(path))
