"""The identity agent: validates input, dedupes by messageId, links anonymousIds to users.

Consumes the input topic, keyed ``account \\x1f routing id`` (anonymousId, else userId;
alias: previousId), so an identity link and every lookup of it meet in one partition.
Messages other tools wrote with another key are re-keyed once. Each event goes on to the
person agent keyed by its person.

A dedupe entry remembers where its messageId was first read (``partition:offset``). After
a crash the uncommitted records are read again while the table (local RocksDB, or its
changelog) may already hold their entries although what they sent never left the
producer: the same record read again is therefore processed again (downstream is
idempotent), and only another record with the same messageId is a duplicate.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from agents.common import header, log, send_dead_letter
from app import keys
from app.envelope import dumps
from app.faust_app import CONFIG, RUNTIME, app, input_topic, person_topic
from app.identity import resolve, routing_id
from app.segment.model import InvalidMessage, parse_message
from tables import dedupe, links

ACCOUNT_HEADER = "emd-account"
#: links value of an anonymous visitor that has a person of its own but no userId yet
MARKER = b""


@app.agent(input_topic, name="link")
async def link_agent(stream):
    async for event in stream.events():
        try:
            await handle(event)
        except Exception as exc:  # never stall the partition: dead-letter and go on
            log.exception("link agent failed on a message")
            await send_dead_letter(
                "link", f"internal error: {type(exc).__name__}", raw=_raw(event.value)
            )


def _raw(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


async def handle(event: Any) -> None:
    metrics = RUNTIME.metrics
    raw = _raw(event.value)
    account = header(event, ACCOUNT_HEADER) or RUNTIME.config.fallback_account()
    if account is None or RUNTIME.accounts.get(account) is None:
        metrics.inc("emd_events_rejected_total", reason="account")
        why = (
            f"unknown account {account!r}"
            if account
            else f"no {ACCOUNT_HEADER} header and no default_account in the config"
        )
        await send_dead_letter("input", why, account=account, raw=raw)
        return
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        metrics.inc("emd_events_rejected_total", account=account, reason="json")
        await send_dead_letter("input", f"not valid JSON: {exc}", account=account, raw=raw)
        return
    try:
        msg = parse_message(obj)
    except InvalidMessage as exc:
        metrics.inc("emd_events_rejected_total", account=account, reason="invalid")
        mid = obj.get("messageId") if isinstance(obj, dict) else None
        await send_dead_letter(
            "input",
            exc.reason,
            account=account,
            # Unvalidated: may be an object nested 1,000 deep (the record must stay JSON).
            message_id=mid if isinstance(mid, str) else None,
            raw=raw,
        )
        return
    rid = routing_id(msg.data)
    if rid is None:
        metrics.inc("emd_events_rejected_total", account=account, reason="identity")
        await send_dead_letter(
            "input",
            "no usable identifier: userId/anonymousId (previousId for alias) is missing or junk",
            account=account,
            message_id=msg.message_id,
            payload=msg.data,
        )
        return
    expected = keys.key(account, rid)
    if event.key != expected:
        # Written by another tool with another key: put it where its identity lives.
        await input_topic.send(
            key=expected, value=dumps(msg.data), headers={ACCOUNT_HEADER: account.encode()}
        )
        return
    now = time.time()
    dkey = keys.key(account, keys.dedupe_id(msg.message_id))
    here = f"{event.message.partition}:{event.message.offset}"
    seen = dedupe.get(dkey)
    if seen is None:
        dedupe[dkey] = f"{now:.3f} {here}".encode()
    else:
        first_seen, _, where = seen.decode().partition(" ")
        if where != here:  # the same record again is a redelivery after a crash: go on
            if now - float(first_seen) < CONFIG.dedupe_window:
                metrics.inc("emd_events_deduped_total", account=account)
                return
            dedupe[dkey] = f"{now:.3f} {here}".encode()

    def lookup(ident: str) -> str | None:
        value = links.get(keys.key(account, ident))
        return value.decode() if value else None  # b"": anonymous, not linked

    res = resolve(msg.data, lookup)
    if res is None:
        metrics.inc("emd_events_rejected_total", account=account, reason="identity")
        await send_dead_letter(
            "input",
            "alias needs a usable previousId and a different userId",
            account=account,
            message_id=msg.message_id,
            payload=msg.data,
        )
        return
    if res.person.startswith("a:"):
        # Mark that this anonymous visitor has state of its own (written once), so the
        # first link only asks for a merge when there is something to merge.
        anon_key = keys.key(account, res.person[2:])
        if links.get(anon_key) is None:
            links[anon_key] = MARKER
    merge_from = [
        source
        for source in res.merge_from
        if not source.startswith("a:") or links.get(keys.key(account, source[2:])) is not None
    ]
    if res.link is not None:
        links[keys.key(account, res.link[0])] = res.link[1].encode()
    for source in merge_from:
        await person_topic.send(
            key=keys.key(account, source),
            value=dumps({"k": "merge", "a": account, "p": source, "into": res.person}),
        )
    metrics.inc("emd_events_processed_total", account=account, type=msg.type)
    await person_topic.send(
        key=keys.key(account, res.person),
        value=dumps(
            {
                "k": "ev",
                "a": account,
                "p": res.person,
                "m": msg.data,
                "id": msg.message_id,
                "t": msg.event_time.timestamp(),
            }
        ),
    )
