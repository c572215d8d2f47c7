"""Moving state to where the partitioner now puts it (``app.keys``), with no pause.

Versions before this one hashed an anonymous visitor's person key ``account \\x1f a:<id>``
as it is; now it is hashed as ``account \\x1f <id>``, its input key, so about three in
four such persons (and the links of ids that themselves begin with ``a:``) are stored in
a partition that no longer owns them. After the upgrade, each person partition, at its
first use after an assignment (``PersonStage._ensure_index`` scans it anyway), sends what
it holds for other partitions to where it belongs (``move``: a person's record with its
delivery log; ``lmove``: a link), deletes it, and then tells every other partition that
it is done (``reloc``). Moves and notices carry explicit partitions, so on each
partition a source's moves come before its notice.

A partition that gets a message for an anonymous visitor it holds nothing for, while the
visitor's old partition has not said it is done, may be ahead of the visitor's state (the
identity stage marks the first event of a visitor it has never seen, ``"new"``: that one
has nothing to wait for). It parks the message in the visitor's place (a record
``{"park": [messages], "until": t}``) and applies what is parked, in order, when the
visitor's state arrives, when the old partition says it is done (it had nothing for the
visitor), or after ``PARK_MAX`` (a notice that never came). Which partitions are done is
kept in the table (key ``RELOCATION``, beside the persons), so once every partition has
said so nothing is parked again, across restarts and rebalances. A new deployment parks
nothing: every visitor is new to it.

A crash between sending and deleting sends again: a second ``move`` for a person who is
already here is merged in as a hand-off is (``app.person.apply_merge``: merging the same
instances twice changes nothing), a second notice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app import delivery_log, keys
from app.envelope import dumps
from app.stages.state import PERSON, JsonView, Output, Table

#: the persons table's key holding which old partitions are done and what waits on them
RELOCATION = b"\x00relocation"
PARK = "park"
#: how long a parked message waits for its old partition at most (seconds)
PARK_MAX = 600.0
#: messages parked for one visitor at most; beyond, they are applied as they come
MAX_PARKED = 1000


def is_meta(key: bytes) -> bool:
    """A key of the stage's own (``RELOCATION``), not a person's."""
    return key[:1] == b"\x00"


class Found:
    """What a partition holds that belongs to another."""

    __slots__ = ("links", "persons")

    def __init__(self) -> None:
        self.persons: list[bytes] = []
        self.links: list[tuple[bytes, bytes]] = []

    def __bool__(self) -> bool:
        return bool(self.persons or self.links)


def moves(
    found: Found,
    persons: JsonView,
    deliveries: Any,
    links: Table,
    partition_of: Callable[[bytes], int],
    partition: int,
    partitions: int,
    now: float,
) -> list[Output]:
    """The records that move ``found`` away (each deleted here), then this partition's
    notice to every other partition. ``deliveries``: the batch's ``LogAppends``."""
    out: list[Output] = []
    for key in found.persons:
        record = persons.get(key)
        if not isinstance(record, dict):
            continue  # not a record: left where it is
        account, person = keys.split(key)
        body: dict[str, Any] = {"k": "move", "a": account, "p": person, "rec": record}
        body["t"] = now
        log_raw = deliveries.table.get(key)
        if log_raw is not None:
            body["log"] = delivery_log.entries(log_raw)
        out.append(Output(PERSON, key, dumps(body), partition=partition_of(key)))
        persons.delete(key)
        deliveries.delete(key)
    for key, value in found.links:
        account, ident = keys.split(key)
        body = {"k": "lmove", "a": account, "p": ident, "v": value.decode()}
        out.append(Output(PERSON, key, dumps(body), partition=partition_of(key)))
        links.delete(key)
    notice = dumps({"k": "reloc", "from": partition})
    out += [Output(PERSON, b"", notice, partition=p) for p in range(partitions) if p != partition]
    return out


def _meta(persons: JsonView) -> dict[str, Any]:
    meta = persons.get(RELOCATION)
    return meta if isinstance(meta, dict) else {"done": [], "parked": {}}


def waits(persons: JsonView, old: int, partition: int) -> bool:
    """Whether a visitor this partition holds nothing for must wait for ``old``, the
    partition the versions before kept it in."""
    return old != partition and old not in _meta(persons)["done"]


def complete(persons: JsonView, partition: int, partitions: int) -> bool:
    """Whether every other partition has said it is done, and nothing waits here."""
    meta = _meta(persons)
    return not meta["parked"] and len(set(meta["done"]) - {partition}) == partitions - 1


def park(persons: JsonView, key: bytes, record: Any, msg: Any, old: int, now: float) -> bool:
    """Park ``msg`` in the visitor's place (``record``: None or its park); False when the
    park is full (apply the message as it comes)."""
    if record is None:
        meta = _meta(persons)
        meta["parked"].setdefault(str(old), []).append(key.decode())
        persons.put(RELOCATION, meta)
        record = {PARK: [], "until": now + PARK_MAX}
    if len(record[PARK]) >= MAX_PARKED:
        return False
    record[PARK].append(msg)
    persons.put(key, record)
    return True


def done(persons: JsonView, source: int) -> list[bytes]:
    """``source`` has moved everything it held for others: the keys parked on it."""
    meta = _meta(persons)
    if source not in meta["done"]:
        meta["done"].append(source)
    parked = meta["parked"].pop(str(source), [])
    persons.put(RELOCATION, meta)
    return [k.encode() for k in parked]


def unpark(persons: JsonView, key: bytes) -> list[Any]:
    """The messages parked for ``key``, in order (its park is gone)."""
    record = persons.get(key)
    if not isinstance(record, dict) or PARK not in record:
        return []
    persons.delete(key)
    return list(record[PARK])
