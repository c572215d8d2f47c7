"""Message and table keys.

Keys are bytes ``account \\x1f id`` and are serialised raw on topics and table changelogs
alike, so the producer's partitioner and Faust's ``table_route`` hash the very same bytes
and a lookup lands on the worker that owns the key (the reference's routing trap).

Person ids are ``u:<userId>`` for known users and ``a:<anonymousId>`` until an anonymous
visitor is linked to a user.
"""

from __future__ import annotations

SEP = "\x1f"


def key(account: str, ident: str) -> bytes:
    return f"{account}{SEP}{ident}".encode()


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
