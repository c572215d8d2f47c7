"""The Faust application: settings, topics. Agents and tables register themselves on it.

Imported only by worker processes (``emarsys-destination worker|dev``); the config comes
from ``EMD_CONFIG`` (``--config``) and is validated before this module is imported.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import faust

from app import recovery_guard
from app.config import ConfigError, load_config
from app.config_topic import ConfigTopic
from app.runtime import Runtime
from app.settings import Settings
from app.topics import ensure_topics

log = logging.getLogger("emd.app")

_DEV_FAUST = {
    # Fast consumer-group joins on the embedded broker (the reference measured ~5 s with
    # these against ~30 s with Faust's defaults). Production keeps Faust's defaults
    # unless the config's `faust:` section says otherwise.
    "broker_session_timeout": 10.0,
    "broker_heartbeat_interval": 1.0,
    "broker_rebalance_timeout": 10.0,
}


def _load_runtime() -> Runtime:
    settings = Settings.from_env()
    if not settings.config_path:
        sys.stderr.write("no config: pass --config FILE or set EMD_CONFIG\n")
        raise SystemExit(1)
    try:
        config = load_config(settings.config_path)
    except ConfigError as exc:
        sys.stderr.write(exc.report() + "\n")
        raise SystemExit(1) from None
    return Runtime(config, settings)


RUNTIME = _load_runtime()
# EMD_DISABLE_RECOVERY_GUARD=1 only exists to prove the reliability tests fail without it.
if os.environ.get("EMD_DISABLE_RECOVERY_GUARD") != "1":
    recovery_guard.install()
CONFIG = RUNTIME.config

PERSON_TOPIC = RUNTIME.topic_name("person-events")
EFFECTS_TOPIC = RUNTIME.topic_name("emarsys-effects")
DEAD_LETTER_TOPIC = RUNTIME.topic_name("dead-letters")
CONFIG_TOPIC = RUNTIME.topic_name("config")


def _faust_settings() -> dict[str, Any]:
    settings: dict[str, Any] = {
        "broker": RUNTIME.broker_url,
        "store": "rocksdb://",
        "topic_partitions": CONFIG.partitions,
        "topic_replication_factor": CONFIG.replication_factor,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "consumer_auto_offset_reset": "earliest",
        "web_port": 6066,
        # The host other workers use to reach this one (Faust's routing): --web-host, or
        # EMD_WEB_HOST where a command line cannot carry it (a pod IP in Kubernetes).
        "web_host": os.environ.get("EMD_WEB_HOST", "127.0.0.1"),
        "web_in_thread": False,
        "producer_linger": 0.005,
        "table_standby_replicas": 0,
        "topic_disable_leader": False,
        # Faust's own /table and /router views serve table contents (personal data)
        # without authentication: off. Our API answers behind the admin token.
        "web_tables_enabled": False,
        "web_router_enabled": False,
    }
    if RUNTIME.settings.dev:
        settings.update(_DEV_FAUST)
    settings.update(CONFIG.faust)
    # Not overridable: these views would serve personal data without authentication.
    settings.update(web_tables_enabled=False, web_router_enabled=False)
    return settings


def _drop_faust_index() -> None:
    """Faust answers ``GET /`` with its own status JSON; ``/`` is our console."""
    from faust.web.drivers import aiohttp as web_driver

    web_driver.Web.production_blueprints = []


_drop_faust_index()


class EmdApp(faust.App):
    """Creates every topic before Faust's consumer and producer touch the broker."""

    async def on_first_start(self) -> None:
        await super().on_first_start()
        n = CONFIG.partitions
        topics = {
            CONFIG.input_topic: n,
            PERSON_TOPIC: n,
            EFFECTS_TOPIC: n,
            DEAD_LETTER_TOPIC: n,
        }
        for table in self.tables.values():
            topics[table.changelog_topic.get_topic_name()] = n
        topics[CONFIG_TOPIC] = 1
        retention_ms = str(int(CONFIG.dedupe_window * 2 * 1000))
        await ensure_topics(
            RUNTIME.broker_url,
            topics,
            replication=CONFIG.replication_factor,
            compacted={t.changelog_topic.get_topic_name() for t in self.tables.values()}
            | {CONFIG_TOPIC},
            configs={
                self.tables["dedupe"].changelog_topic.get_topic_name(): {
                    "cleanup.policy": "compact,delete",
                    "retention.ms": retention_ms,
                }
            },
        )
        # Console edits win over the file: apply them before any event is processed.
        await LIVE_CONFIG.load()
        LIVE_CONFIG.start_following()
        from app.web.routes import install_routes

        install_routes(self, RUNTIME, config_loaded=lambda: LIVE_CONFIG.loaded)

    async def on_stop(self) -> None:
        await END_OFFSETS.stop()
        await LIVE_CONFIG.stop()
        await super().on_stop()


app = EmdApp(CONFIG.app_id, autodiscover=False, **_faust_settings())
LIVE_CONFIG = ConfigTopic(RUNTIME, CONFIG_TOPIC)

input_topic = app.topic(
    CONFIG.input_topic, key_type=bytes, value_type=bytes, partitions=CONFIG.partitions
)
person_topic = app.topic(
    PERSON_TOPIC, key_type=bytes, value_type=bytes, partitions=CONFIG.partitions, internal=False
)
effects_topic = app.topic(
    EFFECTS_TOPIC, key_type=bytes, value_type=bytes, partitions=CONFIG.partitions
)
dead_letter_topic = app.topic(
    DEAD_LETTER_TOPIC, key_type=bytes, value_type=bytes, partitions=CONFIG.partitions
)


class _EndOffsets:
    """End offsets of the partitions the lag gauge reports, listed every few seconds.

    The consumer's own highwater comes from fetch responses, and flow control stops
    fetching a partition whose buffer is full (the sink while Emarsys is down): the lag
    would freeze at a few thousand while the backlog grows without bound. A plain
    ListOffsets from a consumer of our own (no group) keeps it true. (The embedded
    broker under-reports an end by a record or two after a batch produce; a gauge can
    live with that.)"""

    def __init__(self) -> None:
        self.ends: dict[Any, int] = {}
        self._consumer: Any = None

    async def refresh(self) -> None:
        from aiokafka import TopicPartition

        from app.topic_reader import consumer_for

        tps = [tp for tp in app.assignor.assigned_actives() if tp.topic in _LAG_TOPICS]
        if not tps:
            return
        if self._consumer is None:
            consumer = consumer_for(RUNTIME.broker_url, "emd-lag")
            await consumer.start()
            self._consumer = consumer
        listed = await self._consumer.end_offsets(
            [TopicPartition(t.topic, t.partition) for t in tps]
        )
        self.ends = {tp: listed[TopicPartition(tp.topic, tp.partition)] for tp in tps}

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


_LAG_TOPICS = (CONFIG.input_topic, PERSON_TOPIC, EFFECTS_TOPIC)
END_OFFSETS = _EndOffsets()


@app.timer(5.0)
async def _refresh_end_offsets() -> None:
    try:
        await END_OFFSETS.refresh()
    except Exception:  # a gauge: never let it disturb the worker
        log.debug("listing end offsets failed", exc_info=True)


def _consumer_lag() -> dict[tuple[tuple[str, str], ...], float]:
    """Per topic: the partitions' end offset minus the committed offset, summed."""
    lag: dict[tuple[tuple[str, str], ...], float] = {}
    consumer = app.consumer
    committed = getattr(consumer, "_committed_offset", {})
    for tp in app.assignor.assigned_actives():
        if tp.topic not in _LAG_TOPICS:
            continue
        high = max(consumer.highwater(tp) or 0, END_OFFSETS.ends.get(tp, 0))
        done = committed.get(tp) or 0
        key = (("topic", tp.topic),)
        lag[key] = lag.get(key, 0.0) + max(0, high - done)
    return lag


RUNTIME.metrics.gauge("emd_consumer_lag", _consumer_lag)
