"""The identity stage: validates input, dedupes by messageId, links anonymousIds to users.

Reads the input topic, keyed ``account \\x1f routing id`` (anonymousId, else userId;
alias: previousId), so an identity link and every lookup of it meet in one partition.
Messages other tools wrote with another key, or to another partition than the app's
partitioner picks for it (librdkafka's default partitioner is CRC32, not murmur2), are
re-sent once, where their identity lives. Each event goes on to the
person stage keyed by its person; a first link of a visitor with state of its own also
asks that visitor's person to hand its state over (``merge``), with the linking event's
time, at which the user's timeline puts it (``app.timeline``).

Events carrying a userId are keyed by their person (``app.identity.partition_id``): they
skip ``resolve`` here and go straight to the person stage of the same partition, which
asks this stage for the link (``handle_link``, a ``link`` record) only when the
anonymousId is new to the user. Replay runs ``resolve`` on every event; the decisions are
the same (``tests/unit/test_handoff.py`` compares them over random interleavings).

A dedupe entry remembers where its messageId was first read (``partition:offset``): the
same record read again after a crash is processed again (downstream is idempotent), and
only another record with the same messageId is a duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from app import keys
from app.account import Accounts
from app.batching.partition import Partitioner
from app.envelope import dead_letter, dumps
from app.identity import partition_id, resolve
from app.metrics import Metrics
from app.segment.model import InvalidMessage, parse_message
from app.segment.plain import parse_usual
from app.stages.state import DEAD, INPUT, PERSON, Output, RecordLike, Tables, header, log_failure

log = logging.getLogger("emd.link")

ACCOUNT_HEADER = "emd-account"
#: links value of an anonymous visitor that has a person of its own but no userId yet
MARKER = b""
LINKS = "links"
DEDUPE = "dedupe"


class LinkStage:
    def __init__(
        self,
        accounts: Callable[[], Accounts],
        metrics: Metrics,
        dedupe_window: Callable[[], float],
        partition_of: Partitioner,
    ) -> None:
        self.accounts = accounts
        self.metrics = metrics
        self.dedupe_window = dedupe_window
        #: the app's partitioner (``app.batching.partition``): where each key belongs
        self.partition_of = partition_of

    def handle(
        self, partition: int, records: Sequence[RecordLike], tables: Tables, now: float
    ) -> list[Output]:
        out: list[Output] = []
        links = tables(LINKS, partition)
        dedupe = tables(DEDUPE, partition)
        accounts = self.accounts()
        #: (account, type) -> events processed, counted once per batch
        processed: dict[tuple[str, str], int] = {}
        for record in records:
            try:
                self._one(record, accounts, links, dedupe, now, out, processed)
            except Exception as exc:  # never stall the partition: dead-letter and go on
                log_failure(log, "the identity stage failed on a record (dead-lettered)", exc)
                self.metrics.inc("emd_dead_letters_total", source="link")
                out.append(
                    Output(
                        DEAD,
                        b"",
                        dead_letter(
                            "link", f"internal error: {type(exc).__name__}", raw=record.value
                        ),
                    )
                )
        for (account, type_), n in processed.items():
            self.metrics.inc("emd_events_processed_total", n, account=account, type=type_)
        return out

    def _reject(
        self,
        out: list[Output],
        reason: str,
        why: str,
        account: str | None,
        *,
        message_id: Any = None,
        payload: Any = None,
        raw: bytes | None = None,
    ) -> None:
        if reason == "account":  # the account is unknown: not a label
            self.metrics.inc("emd_events_rejected_total", reason=reason)
        else:
            self.metrics.inc("emd_events_rejected_total", account=account or "", reason=reason)
        self.metrics.inc("emd_dead_letters_total", source="input")
        out.append(
            Output(
                DEAD,
                (account or "").encode(),
                dead_letter(
                    "input",
                    why,
                    account=account,
                    message_id=message_id if isinstance(message_id, str) else None,
                    payload=payload,
                    raw=raw,
                ),
            )
        )

    def _reject_alias(self, out: list[Output], account: str, msg: Any) -> None:
        self._reject(
            out,
            "identity",
            "alias needs a usable previousId and a different userId",
            account,
            message_id=msg.message_id,
            payload=msg.data,
        )

    def _one(
        self,
        record: RecordLike,
        accounts: Accounts,
        links: Any,
        dedupe: Any,
        now: float,
        out: list[Output],
        processed: dict[tuple[str, str], int],
    ) -> None:
        raw = record.value if record.value is not None else b""
        account = header(record, ACCOUNT_HEADER) or accounts.config.fallback_account()
        if account is None or accounts.get(account) is None:
            why = (
                f"unknown account {account!r}"
                if account
                else f"no {ACCOUNT_HEADER} header and no default_account in the config"
            )
            self._reject(out, "account", why, account, raw=raw)
            return
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self._reject(out, "json", f"not valid JSON: {exc}", account, raw=raw)
            return
        try:
            msg = parse_usual(obj)
            if msg is None:
                msg = parse_message(obj)
        except InvalidMessage as exc:
            mid = obj.get("messageId") if isinstance(obj, dict) else None
            # Unvalidated: may be an object nested 1,000 deep (the record must stay JSON).
            self._reject(out, "invalid", exc.reason, account, message_id=mid, raw=raw)
            return
        rid = partition_id(msg.data)
        if rid is None:
            self._reject(
                out,
                "identity",
                "no usable identifier: userId/anonymousId (previousId for alias) is missing or junk",
                account,
                message_id=msg.message_id,
                payload=msg.data,
            )
            return
        expected = keys.key(account, rid)
        if record.key != expected or self.partition_of(expected) != record.partition:
            # Written by another tool with another key or partitioner (or before the
            # partitioning changed): put it where its identity lives.
            out.append(
                Output(INPUT, expected, dumps(msg.data), headers={ACCOUNT_HEADER: account.encode()})
            )
            return
        dkey = keys.key(account, keys.dedupe_id(msg.message_id))
        here = f"{record.partition}:{record.offset}"
        seen = dedupe.get(dkey)
        if seen is None:
            dedupe.set(dkey, f"{now:.3f} {here}".encode())
        else:
            first_seen, _, where = seen.decode().partition(" ")
            if where != here:  # the same record again is a redelivery after a crash: go on
                if now - float(first_seen) < self.dedupe_window():
                    self.metrics.inc("emd_events_deduped_total", account=account)
                    return
                dedupe.set(dkey, f"{now:.3f} {here}".encode())

        t = msg.event_time.timestamp()
        if msg.type == "alias" and resolve(msg.data, _no_links) is None:
            self._reject_alias(out, account, msg)
            return
        if rid.startswith("u:"):
            # Keyed by its person: the person stage of this very partition takes it (the
            # pipeline applies records for the partition in hand without sending them),
            # and asks for the link if the anonymousId is new to the user.
            counted = (account, msg.type)
            processed[counted] = processed.get(counted, 0) + 1
            out.append(_event(account, rid, msg.data, msg.message_id, t))
            return

        def lookup(ident: str) -> str | None:
            value = links.get(keys.key(account, ident))
            return value.decode() if value else None  # b"": anonymous, not linked

        res = resolve(msg.data, lookup)
        if res is None:
            self._reject_alias(out, account, msg)
            return
        first = False
        if res.person.startswith("a:"):
            # Mark that this anonymous visitor has state of its own (written once), so the
            # first link only asks for a merge when there is something to merge.
            anon_key = keys.key(account, res.person[2:])
            if links.get(anon_key) is None:
                links.set(anon_key, MARKER)
                first = True
        merge_from = [
            source
            for source in res.merge_from
            if not source.startswith("a:") or links.get(keys.key(account, source[2:])) is not None
        ]
        if res.link is not None:
            links.set(keys.key(account, res.link[0]), res.link[1].encode())
        for source in merge_from:
            out.append(_merge(account, source, res.person, t))
        counted = (account, msg.type)
        processed[counted] = processed.get(counted, 0) + 1
        out.append(_event(account, res.person, msg.data, msg.message_id, t, first=first))

    def handle_link(self, partition: int, msg: dict[str, Any], tables: Tables) -> list[Output]:
        """A user's partition asks for a link (``link`` from the person stage): an alias
        naming ``p`` as previousId, or an event with ``p`` an anonymousId new to the user.
        This partition holds ``p``'s link; the decisions are ``resolve``'s, as replay
        takes them: a first link merges the other person's state (if any) into the user,
        a link to another user moves (a shared device; that user is told, so that its
        next event with the id asks again). The user is always answered (``settle``):
        it keeps its window open until every state it was promised has arrived."""
        links = tables(LINKS, partition)
        account, ident, user, t = msg["a"], msg["p"], msg["user"], float(msg["t"])
        if msg.get("alias"):
            seen: dict[str, Any] = {"type": "alias", "previousId": ident, "userId": user}
        else:
            seen = {"type": "track", "anonymousId": ident, "userId": user}

        def lookup(i: str) -> str | None:
            value = links.get(keys.key(account, i))
            return value.decode() if value else None

        res = resolve(seen, lookup)
        if res is None:
            return [_settled(account, user, ident, [])]
        sources = [
            source
            for source in res.merge_from
            if not source.startswith("a:") or links.get(keys.key(account, source[2:])) is not None
        ]
        out = [_merge(account, source, res.person, t) for source in sources]
        out.append(_settled(account, user, ident, sources))
        if res.link is not None:
            links.set(keys.key(account, res.link[0]), res.link[1].encode())
        if res.relinked_from is not None:
            out.append(
                Output(
                    PERSON,
                    keys.key(account, res.relinked_from),
                    dumps({"k": "lost", "a": account, "p": res.relinked_from, "anon": ident}),
                )
            )
        return out


def _settled(account: str, user: str, ident: str, sources: list[str]) -> Output:
    """The answer to a link request: the persons asked to hand their state to the user."""
    requester = keys.user_person(user)
    body = {"k": "settle", "a": account, "p": requester, "ident": ident, "srcs": sources}
    return Output.of(PERSON, keys.key(account, requester), body)


def _no_links(ident: str) -> str | None:
    return None


def _event(
    account: str,
    person: str,
    message: dict[str, Any],
    message_id: str,
    t: float,
    *,
    first: bool = False,
) -> Output:
    """The event for its person's stage, kept decoded (``Output.of``): a person of this
    very partition (a user's event keyed by the user, an anonymous visitor's by its id:
    ``app.keys.partition_bytes``) reads ``message``, the parsed input that nothing changes
    after this, as is; for another partition it is encoded when it leaves. ``first``: an
    anonymous visitor never seen before (no state anywhere to wait for:
    ``app.stages.relocation``)."""
    body = {"k": "ev", "a": account, "p": person, "m": message, "id": message_id, "t": t}
    if first:
        body["new"] = True
    return Output.of(PERSON, keys.key(account, person), body)


def _merge(account: str, source: str, into: str, t: float) -> Output:
    """Ask ``source`` to hand its state to ``into``, at ``t`` (the linking event's time)."""
    return Output.of(
        PERSON,
        keys.key(account, source),
        {"k": "merge", "a": account, "p": source, "into": into, "t": t},
    )
