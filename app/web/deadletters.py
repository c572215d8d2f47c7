"""Dead letters: list an account's recent ones with their reasons; retry a selection.

A retry puts the record back where it failed: an event goes back to the input topic
(it is validated again: it fails again unless the cause was fixed, e.g. a data map or
an account), an Emarsys effect goes back to the sink. A trigger that had no contact key
cannot be retried as such: send an event that carries the key instead.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from app import keys
from app.batching.sender import Outbox
from app.identity import partition_id
from app.runtime import Runtime
from app.stages.state import EFFECTS, INPUT, Output
from app.topic_reader import consumer_for, partitions, read_to_end
from app.web.admin import guard, read_json

MAX_LIMIT = 1000


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
            await consumer.stop()

    async def list_recent(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        denied = guard(self.runtime, request, account)
        if denied:
            return denied
        try:
            limit = max(1, min(MAX_LIMIT, int(request.query.get("limit", "200"))))
        except ValueError:
            return web.json_response({"message": "limit must be a number"}, status=400)
        found = await self.read_recent(account, limit)
        return web.json_response({"dead_letters": found[:limit]})

    async def _fetch(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        consumer = await self._consumer()
        found: dict[str, dict[str, Any]] = {}
        try:
            for ident in ids:
                part, _, off = ident.partition(":")
                tp = TopicPartition(self.topic, int(part))
                consumer.assign([tp])
                consumer.seek(tp, int(off))
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
                for r in batch.get(tp, []):
                    if r.offset == int(off):
                        found[ident] = orjson.loads(r.value)
        finally:
            await consumer.stop()
        return found

    async def retry(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        denied = guard(self.runtime, request, account)
        if denied:
            return denied
        body = await read_json(request)
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(
            isinstance(i, str) and ":" in i and i.replace(":", "").isdigit() for i in ids
        ):
            return web.json_response(
                {"message": "ids: a list of dead-letter ids like '3:1042'"}, status=400
            )
        if not ids:
            return web.json_response({"retried": 0, "skipped": []})
        records = await self._fetch(ids)
        retried, skipped, resend = 0, [], []
        for ident in ids:
            rec = records.get(ident)
            if rec is None or rec.get("account") != account:
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
        await self.outbox.send(resend)
        return web.json_response({"retried": retried, "skipped": skipped})
