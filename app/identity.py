"""Identity stitching: which person an event belongs to, and which links it creates.

Policy (the README's "Identity" section repeats it):

- A person is a userId (``u:ID``); an anonymousId never linked to a userId is its own
  anonymous person (``a:ID``) until an identify/track/... carrying both, or an alias,
  links it.
- Junk identifiers (``null``, ``undefined``, ``anonymous``, empty, ``0``, ``-1``, all zeros,
  and the like) never link anything: they are treated as absent.
- The link is kept where the anonymousId's events are partitioned (keyed by anonymousId),
  so the lookup and the link always meet, whichever worker runs it.
- First link of an anonymousId: the anonymous person's state (record, rule instances)
  merges into the user. A second userId claiming an already linked anonymousId (a shared
  device) moves the link to the newer user for future events, without fusing the two
  people: nothing is merged.
- ``alias previousId -> userId``: previousId (an anonymousId or an old userId) links to
  userId; the old person's state merges into the new one and the old person forwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from app.keys import anon_person, user_person

_JUNK = frozenset(
    {
        "",
        "null",
        "none",
        "nil",
        "undefined",
        "anonymous",
        "anon",
        "unknown",
        "0",
        "-1",
        "nan",
        "[object object]",
        "00000000-0000-0000-0000-000000000000",
    }
)
MAX_ID_LENGTH = 200
#: the longest junk word that is not all zeros: longer text can only be junk as zeros
#: (lowercasing never shortens text)
_JUNK_WORD_MAX = max(len(j) for j in _JUNK if j.strip("0-"))


def is_placeholder(text: str) -> bool:
    """``null``, ``undefined``, ``0``, all zeros...: a placeholder a client sent, not an id."""
    t = text.strip()
    if not t.strip("0-"):  # empty, or only zeros and dashes
        return True
    return len(t) <= _JUNK_WORD_MAX and t.lower() in _JUNK


def usable_id(value: object) -> str | None:
    """The identifier as text, or ``None`` when it is absent or junk."""
    if type(value) is not str:  # ids are text nearly always: that case first
        if value is None or isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            value = (
                str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
            )
        if not isinstance(value, str):
            return None
    text = value.strip()
    if len(text) > MAX_ID_LENGTH or not text.strip("0-"):
        return None
    if len(text) <= _JUNK_WORD_MAX and text.lower() in _JUNK:
        return None
    return text


def routing_id(message: dict) -> str | None:
    """The id an event is partitioned by at ingest: where its identity link lives.

    alias: previousId; otherwise the anonymousId, else the userId.
    """
    if message.get("type") == "alias":
        return usable_id(message.get("previousId"))
    return usable_id(message.get("anonymousId")) or usable_id(message.get("userId"))


def partition_id(message: dict) -> str | None:
    """The id an event is keyed by on the input topic (after ``account \x1f``).

    An event carrying a userId is keyed by its person (``u:ID``): it lands in the
    partition that holds the user's record, where the identity stage hands it to the
    person stage in the same transaction, with no hop through person-events. So is an
    alias (by its new userId). Anonymous events are keyed by their anonymousId, where
    that id's link lives. The user's partition asks the other id's partition for a link
    (``link`` records, in the user's own order: an alias before the events after it)
    when an alias names a previousId or an event an anonymousId new to the user."""
    user_id = usable_id(message.get("userId"))
    if user_id is not None:
        return user_person(user_id)
    if message.get("type") == "alias":
        return None  # an alias needs its userId
    return usable_id(message.get("anonymousId"))


class Resolution(NamedTuple):
    """Where an event goes and what it changes in the link table (immutable; a tuple,
    because a frozen dataclass costs four times as much to build, once per event)."""

    person: str
    link: tuple[str, str] | None = None  # (routing id, userId) to store
    merge_from: tuple[str, ...] = ()  # persons whose state must join ``person``
    relinked_from: str | None = None  # shared device: the previous owner (no merge)


#: builds a Resolution from all its fields without NamedTuple's Python-level ``__new__``
#: frame (one per event: compiled, a call to ``_resolution`` is a C call)
_tuple_new = tuple.__new__


def _resolution(
    person: str,
    link: tuple[str, str] | None = None,
    merge_from: tuple[str, ...] = (),
    relinked_from: str | None = None,
) -> Resolution:
    return _tuple_new(Resolution, (person, link, merge_from, relinked_from))


def resolve(message: dict, lookup: Callable[[str], str | None]) -> Resolution | None:
    """Resolve ``message`` (already validated) against the links of its routing id.

    ``lookup(routing_id)`` returns the userId that id is linked to, or ``None``.
    ``None`` is returned when the message carries no usable identifier at all.
    """
    user_id = usable_id(message.get("userId"))
    if message.get("type") == "alias":
        rid = usable_id(message.get("previousId"))  # routing_id, for an alias
        if rid is None:
            return None
        if user_id is None or user_id == rid:
            return None
        current = lookup(rid)
        if current == user_id:
            return _resolution(user_person(user_id))
        if current is not None:
            # previousId already belongs to another user: move the link, fuse no one.
            return _resolution(
                user_person(user_id), link=(rid, user_id), relinked_from=user_person(current)
            )
        # previousId may be an anonymousId or an old userId and the shape cannot tell:
        # both candidate persons merge into the new user (merging an empty one is a no-op).
        return _resolution(
            user_person(user_id),
            link=(rid, user_id),
            merge_from=(anon_person(rid), user_person(rid)),
        )
    anonymous_id = usable_id(message.get("anonymousId"))
    if anonymous_id is None:
        if user_id is None:  # routing_id would be None: no usable identifier
            return None
        # userId only: an alias may have moved this userId to a newer one.
        target = lookup(user_id)
        return _resolution(user_person(target or user_id))
    current = lookup(anonymous_id)
    if user_id is None:
        return _resolution(user_person(current) if current else anon_person(anonymous_id))
    if current is None:
        return _resolution(
            user_person(user_id),
            link=(anonymous_id, user_id),
            merge_from=(anon_person(anonymous_id),),
        )
    if current == user_id:
        return _resolution(user_person(user_id))
    return _resolution(
        user_person(user_id), link=(anonymous_id, user_id), relinked_from=user_person(current)
    )
