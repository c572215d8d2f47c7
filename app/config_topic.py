"""Live configuration through a compacted topic that every worker reads whole.

A console edit (``PUT /api/accounts/{a}/config``) is validated, then produced to
``<app_id>-config`` keyed by account. Every worker reads that topic to its end before it
starts processing (so a restarted worker runs the edited config, not the file's) and
then follows it, applying each record within about a second, without a restart. The
YAML file is the initial state; the console's edits win afterwards.

Records: ``{"version": n, "data_maps": [...], "rules": [...], "at": unix time}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from app.config.live import apply_edit
from app.config.loader import ConfigError
from app.runtime import Runtime
from app.topic_reader import consumer_for, read_to_end
from app.topics import bootstrap_servers

log = logging.getLogger("emd.config")


class ConfigTopic:
    def __init__(self, runtime: Runtime, topic: str) -> None:
        self.runtime = runtime
        self.topic = topic
        self.versions: dict[str, int] = {}
        self.loaded = False  # read to its end once (GET /ready waits for it)
        self._offset = 0
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None

    @property
    def servers(self) -> str:
        return bootstrap_servers(self.runtime.broker_url)

    def apply(self, account: str, record: dict[str, Any]) -> bool:
        if self.runtime.accounts.get(account) is None:
            log.warning("config record for unknown account %r ignored", account)
            return False
        edit = {k: record[k] for k in ("data_maps", "rules") if k in record}
        try:
            config = apply_edit(self.runtime.config, account, edit)
        except ConfigError as exc:
            log.error("config record for %r is invalid and was not applied: %s", account, exc)
            return False
        self.runtime.replace_config(config)
        self.versions[account] = int(record.get("version", 0))
        return True

    def _consume(self, value: bytes | None, key: bytes | None) -> None:
        if key is None or value is None:
            return
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            log.error("config record is not JSON; ignored")
            return
        if self.apply(key.decode(), record):
            log.info("applied config version %s of account %s", record.get("version"), key.decode())

    async def load(self) -> None:
        """Read the topic to its end (past the broker's reported end: see topic_reader)."""
        consumer = consumer_for(self.runtime.broker_url, "emd-config")
        await consumer.start()
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            await read_to_end(consumer, [tp], self._take)
        finally:
            await consumer.stop()
        self.loaded = True

    def _take(self, record: Any) -> None:
        self._consume(record.value, record.key)
        self._offset = record.offset + 1

    async def follow(self) -> None:
        consumer = consumer_for(self.runtime.broker_url, "emd-config")
        await consumer.start()
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            consumer.seek(tp, self._offset)
            while True:
                batch = await consumer.getmany(tp, timeout_ms=500)
                for r in batch.get(tp, []):
                    self._take(r)
        finally:
            await consumer.stop()

    def start_following(self) -> None:
        async def run() -> None:
            while True:
                try:
                    await self.follow()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("following the config topic failed; retrying")
                    await asyncio.sleep(2)

        self._task = asyncio.get_event_loop().create_task(run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, account: str, edit: dict[str, Any]) -> int:
        """Validate and store an edit; returns its version. Raises ConfigError."""
        apply_edit(self.runtime.config, account, edit)  # validate before storing
        version = self.versions.get(account, 0) + 1
        record = {**edit, "version": version, "at": time.time()}
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.servers, acks="all")
            await self._producer.start()
        await self._producer.send_and_wait(
            self.topic, orjson.dumps(record), key=account.encode(), partition=0
        )
        # Apply here at once too: the PUT's answer reflects the new config.
        self.apply(account, record)
        return version
