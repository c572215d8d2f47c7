"""Dead letters: list an account's recent ones with their reasons; retry a selection.

A retry puts the record back where it failed: an event goes back to the input topic
(it is validated again: it fails again unless the cause was fixed, e.g. a data map or
an account), an Emarsys effect goes back to the sink. A trigger that had no contact key
cannot be retried as such: send an event that carries the key instead.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from app import keys
from app.batching.sender import Outbox
from app.identity import partition_id
from app.runtime import Runtime
from app.stages.state import EFFECTS, INPUT, Output
from app.topic_reader import consumer_for, partitions, read_to_end
from app.web.admin import guard, read_json
from app.web.errors import error

log = logging.getLogger("emd.web")

MAX_LIMIT = 1000
BROKER_ERRORS = (KafkaError, OSError, TimeoutError)


def broker_unavailable(exc: BaseException) -> web.Response:
    log.warning("dead letters: the broker did not answer (%s)", type(exc).__name__)
    return error(503, "the broker did not answer; retry later", "unavailable", retry_after=5)


FETCH_MS = 200
LOOKUP_SECONDS = 10.0
ID_PART = re.compile(r"[0-9]{1,19}")
MAX_PARTITION = 2**31 - 1
MAX_OFFSET = 2**63 - 1


async def _stop(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()``, minus aiokafka's CancelledError when the consumer is stopped
    before its coordinator task first ran (e.g. no partition was ever assigned): that
    escaped the handler and the client got an empty reply."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


def parse_id(ident: Any) -> tuple[int, int] | None:
    """``"3:1042"`` as (3, 1042); None for anything else, also for numbers no Kafka
    partition or offset can have (a 30-digit offset used to reach the client as a 500)."""
    if not isinstance(ident, str):
        return None
    part, sep, off = ident.partition(":")
    if not sep or not ID_PART.fullmatch(part) or not ID_PART.fullmatch(off):
        return None
    p, o = int(part), int(off)
    if p > MAX_PARTITION or o > MAX_OFFSET:
        return None
    return p, o


class DeadLetterApi:
    def __init__(self, runtime: Runtime, topic: str, outbox: Outbox) -> None:
        self.runtime = runtime
        self.topic = topic
        self.outbox = outbox

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/accounts/{account}/dead-letters", self.list_recent),
            web.post("/api/accounts/{account}/dead-letters/retry", self.retry),
        ]

    async def _consumer(self) -> AIOKafkaConsumer:
        consumer = consumer_for(self.runtime.broker_url, "emd-dead-letters")
        await consumer.start()
        return consumer

    async def read_recent(self, account: str, per_partition: int) -> list[dict[str, Any]]:
        consumer = await self._consumer()
        try:
            tps = await partitions(consumer, self.topic)
            if not tps:
                return []
            consumer.assign(tps)
            begins = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, max(begins[tp], ends[tp] - per_partition))
            out: list[dict[str, Any]] = []

            def keep(r: Any) -> None:
                try:
                    value = orjson.loads(r.value)
                except orjson.JSONDecodeError:
                    return
                if isinstance(value, dict) and value.get("account") == account:
                    out.append({"id": f"{r.partition}:{r.offset}", **value})

            await read_to_end(consumer, tps, keep)
            out.sort(key=lambda d: d.get("ts", 0), reverse=True)
            return out
        finally:
            await _stop(consumer)

    async def list_recent(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        denied = guard(self.runtime, request, account)
        if denied:
            return denied
        text = request.query.get("limit", "200")
        if not ID_PART.fullmatch(text):
            return error(400, "limit: a whole number (1 to 1000; larger is read as 1000)")
        limit = max(1, min(MAX_LIMIT, int(text)))
        try:
            found = await self.read_recent(account, limit)
        except BROKER_ERRORS as exc:
            return broker_unavailable(exc)
        return web.json_response({"dead_letters": found[:limit]})

    async def _fetch(self, ids: list[tuple[int, int]]) -> dict[tuple[int, int], dict[str, Any]]:
        """The dead letters at these (partition, offset) pairs, read in one pass.

        Every partition concerned is read at once, from its lowest wanted offset, and
        each fetch resolves every wanted offset it passes. Offsets before the start
        (removed by retention) and partitions the topic does not have are missing at
        once; offsets past the reported end are missing after two empty fetches in a
        row (the end offset alone cannot tell: the embedded broker under-reports it
        after a batch produce). So a retry of many missing ids costs two fetch timeouts,
        not one per id; the whole lookup is bounded by ``LOOKUP_SECONDS``."""
        consumer = await self._consumer()
        found: dict[tuple[int, int], dict[str, Any]] = {}
        try:
            tps = {tp.partition: tp for tp in await partitions(consumer, self.topic)}
            wanted: dict[int, list[int]] = {}
            for part, off in ids:
                if part in tps:
                    wanted.setdefault(part, []).append(off)
            if not wanted:
                return found
            pending = {p: sorted(set(offs)) for p, offs in wanted.items()}
            parts = [tps[p] for p in pending]
            # Offsets before assign: once assigned, the fetcher's long poll (500 ms)
            # holds the connection and every ListOffsets waits behind it.
            begins = await consumer.beginning_offsets(parts)
            ends = await consumer.end_offsets(parts)
            consumer.assign(parts)
            for part in list(pending):
                pending[part] = [o for o in pending[part] if o >= begins[tps[part]]]
            # Never seek past the reported end (out of range: aiokafka resets and
            # asks again); from there, whatever the end under-reported comes.
            cursor = {p: min(offs[0], ends[tps[p]]) for p, offs in pending.items() if offs}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + LOOKUP_SECONDS
            empty = 0
            while any(pending.values()) and loop.time() < deadline:
                active = [p for p, offs in pending.items() if offs]
                for part in active:
                    consumer.seek(tps[part], cursor[part])
                batch = await consumer.getmany(
                    *(tps[p] for p in active), timeout_ms=FETCH_MS, max_records=500
                )
                if not any(batch.values()):
                    # Nothing came. Offsets below the reported end exist: keep fetching
                    # (a fresh consumer's first fetches can come back empty). Past it,
                    # two empty fetches in a row mean there is nothing there.
                    empty += 1
                    past_end = all(cursor[p] >= ends[tps[p]] for p in active)
                    if past_end and empty >= 2:
                        break
                    continue
                empty = 0
                for tp, records in batch.items():
                    offs = pending.get(tp.partition)
                    if not offs or not records:
                        continue
                    want = set(offs)
                    for r in records:
                        if r.offset in want:
                            try:
                                found[(tp.partition, r.offset)] = orjson.loads(r.value)
                            except orjson.JSONDecodeError:
                                pass
                    last = records[-1].offset
                    # Offsets below what this fetch reached are resolved: found or gone.
                    left = [o for o in offs if o > last]
                    pending[tp.partition] = left
                    if left:
                        cursor[tp.partition] = max(last + 1, min(left[0], ends[tp]))
        finally:
            await _stop(consumer)
        return found

    async def retry(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        denied = guard(self.runtime, request, account)
        if denied:
            return denied
        body = await read_json(request, self.runtime)
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(body, dict) or set(body) - {"ids"} or not isinstance(ids, list):
            return error(400, "the body is {\"ids\": [dead-letter ids like '3:1042']}")
        if len(ids) > MAX_LIMIT:
            return error(400, f"ids: at most {MAX_LIMIT} at a time")
        parsed: list[tuple[int, int]] = []
        for index, ident in enumerate(ids):
            where = parse_id(ident)
            if where is None:
                return error(
                    400,
                    f"ids[{index}]: not a dead-letter id (PARTITION:OFFSET, e.g. '3:1042', "
                    f"partition below 2^31, offset below 2^63)",
                )
            parsed.append(where)
        if not ids:
            return web.json_response({"retried": 0, "skipped": []})
        try:
            found = await self._fetch(parsed)
        except BROKER_ERRORS as exc:
            return broker_unavailable(exc)
        records = {ident: found.get(where) for ident, where in zip(ids, parsed, strict=True)}
        retried, skipped, resend = 0, [], []
        for ident in ids:
            rec = records.get(ident)
            if not isinstance(rec, dict) or rec.get("account") != account:
                skipped.append({"id": ident, "reason": "no such dead letter in this account"})
                continue
            payload = rec.get("payload")
            source = rec.get("source")
            if source in ("ingest", "input") and isinstance(payload, dict):
                rid = partition_id(payload)
                if rid is None:
                    skipped.append({"id": ident, "reason": "the message has no usable id"})
                    continue
                resend.append(
                    Output(
                        INPUT,
                        keys.key(account, rid),
                        orjson.dumps(payload),
                        headers={"emd-account": account.encode()},
                    )
                )
            elif source == "sink" and isinstance(payload, dict) and payload.get("contact"):
                resend.append(
                    Output(
                        EFFECTS, keys.key(account, str(payload["contact"])), orjson.dumps(payload)
                    )
                )
            else:
                skipped.append(
                    {
                        "id": ident,
                        "reason": f"a {source} dead letter cannot be retried"
                        + (" (no contact key was known)" if source == "rules" else ""),
                    }
                )
                continue
            retried += 1
        try:
            await self.outbox.send(resend)
        except BROKER_ERRORS as exc:
            return broker_unavailable(exc)
        return web.json_response({"retried": retried, "skipped": skipped})
