"""Message and table keys.

Keys are bytes ``account \\x1f id`` and are serialised raw on topics and table changelogs
alike, so the producer's partitioner and Faust's ``table_route`` hash the very same bytes
and a lookup lands on the worker that owns the key (the reference's routing trap).

Person ids are ``u:<userId>`` for known users and ``a:<anonymousId>`` until an anonymous
visitor is linked to a user.

Which partition a key lands on is murmur2 (Kafka's) of ``partition_bytes(key)``: the key
itself, except that an anonymous visitor's person key ``account \x1f a:<id>`` is hashed
as ``account \x1f <id>``, the key its events arrive with on the input topic. So a
visitor's events, its link and its person state all live in one partition, and the
identity stage hands the event to the person stage in the same transaction, as it does
for users (``u:<userId>`` is both the input key and the person key). Every key of that
shape is hashed so, whatever it names: an id that itself begins with ``a:`` simply
shares a partition with the id without it.
"""

from __future__ import annotations

SEP = "\x1f"


def key(account: str, ident: str) -> bytes:
    return f"{account}{SEP}{ident}".encode()


#: ``account \x1f a:`` inside a key: the anonymous visitor's prefix, after the separator
_ANON_AT = b"\x1fa:"


def partition_bytes(key: bytes) -> bytes:
    """The bytes a key is partitioned by (module docstring)."""
    sep = key.find(b"\x1f")
    if sep < 0 or key[sep : sep + 3] != _ANON_AT:
        return key
    return key[: sep + 1] + key[sep + 3 :]


def split(raw: bytes | str) -> tuple[str, str]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    account, _, ident = text.partition(SEP)
    return account, ident


def user_person(user_id: str) -> str:
    return f"u:{user_id}"


def anon_person(anonymous_id: str) -> str:
    return f"a:{anonymous_id}"


def pk_index_id(primary_key: str) -> str:
    """Key of the primary-key index entry (lives in the person topic's key space)."""
    return f"k:{primary_key}"


def dedupe_id(message_id: str) -> str:
    return f"m:{message_id}"
