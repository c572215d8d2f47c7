"""The worker's composition root: the Faust app and every part it runs, built in one place.

``Worker`` makes the Faust app, its topics and tables, the identity and person stages,
the sink, the batch pipeline that drives them (``agents.pipeline``) and the web routes,
and hands each part what it needs; no other module imports a worker or reaches for a
module-level singleton. ``app.worker`` builds the one worker a process runs (Faust's
command line needs its ``app``) and is imported only by the CLI and ``dev``.

The config comes from ``EMD_CONFIG`` (``--config``) and is validated before this runs.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import faust

from agents.pipeline import Pipeline, TopicNames, subscribe
from agents.sink import Sink, parking_topic
from app import gc_tuning, profiling, recovery_guard
from app.batching.partition import Partitioner, ProducerPartitioner
from app.batching.sender import Outbox
from app.config import ConfigError, load_config
from app.config_topic import ConfigTopic
from app.delivery import Clients
from app.emarsys.calls import call_counter
from app.emarsys.client import EmarsysClient
from app.fetch_wait import ShortFetchTransport
from app.recent import RecentDeliveries, RecentEvents
from app.retries import RetryTracker
from app.runtime import Runtime
from app.settings import Settings
from app.stages.flow import PartitionFlow
from app.stages.link import LinkStage
from app.stages.person import PersonStage
from app.state_reader import StateReader
from app.topics import ensure_topics
from tables import Tables, build_tables

log = logging.getLogger("emd.app")

_DEV_FAUST = {
    # Fast consumer-group joins on the embedded broker (the reference measured ~5 s with
    # these against ~30 s with Faust's defaults). Production keeps Faust's defaults
    # unless the config's `faust:` section says otherwise.
    "broker_session_timeout": 10.0,
    "broker_heartbeat_interval": 1.0,
    "broker_rebalance_timeout": 10.0,
}


def load_runtime() -> Runtime:
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


def faust_settings(runtime: Runtime) -> dict[str, Any]:
    config = runtime.config
    settings: dict[str, Any] = {
        "broker": runtime.broker_url,
        "store": "rocksdb://",
        "topic_partitions": config.partitions,
        "topic_replication_factor": config.replication_factor,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "consumer_auto_offset_reset": "earliest",
        "web_port": 6066,
        # The host other workers use to reach this one (Faust's routing): --web-host, or
        # EMD_WEB_HOST where a command line cannot carry it (a pod IP in Kubernetes).
        "web_host": os.environ.get("EMD_WEB_HOST", "127.0.0.1"),
        "web_in_thread": False,
        "producer_linger": 0.005,
        # The batch path sends one producer batch per topic partition and transaction.
        "producer_max_batch_size": 256 * 1024,
        "producer_max_request_size": 4 * 1024 * 1024,
        "broker_max_poll_records": 5000,
        "table_standby_replicas": 0,
        "topic_disable_leader": False,
        # Faust's own /table and /router views serve table contents (personal data)
        # without authentication: off. Our API answers behind the admin token.
        "web_tables_enabled": False,
        "web_router_enabled": False,
    }
    if runtime.settings.dev:
        settings.update(_DEV_FAUST)
    settings.update(config.faust)
    # Not overridable: these views would serve personal data without authentication.
    settings.update(web_tables_enabled=False, web_router_enabled=False)
    # Not overridable: what Faust's producer sends and where its router looks for a key
    # must be where the batch path puts it (app.keys.partition_bytes).
    settings["producer_partitioner"] = ProducerPartitioner()
    return settings


def _drop_faust_index() -> None:
    """Faust answers ``GET /`` with its own status JSON; ``/`` is our console."""
    from faust.web.drivers import aiohttp as web_driver

    web_driver.Web.production_blueprints = []


class EmdApp(faust.App):
    """Faust's app with the batch consumer; start and stop belong to its ``Worker``."""

    worker: Worker | None = None

    def _new_transport(self) -> Any:
        # The batch consumer, with a short fetch wait (app.fetch_wait: Tansu answers a
        # waiting fetch only when its wait ends).
        return ShortFetchTransport(self.conf.broker_consumer, self)

    async def on_first_start(self) -> None:
        await super().on_first_start()
        if self.worker is not None:
            await self.worker.on_first_start()

    async def on_stop(self) -> None:
        if self.worker is not None:
            await self.worker.on_stop()
        await super().on_stop()


class Worker:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        config = runtime.config
        # EMD_DISABLE_RECOVERY_GUARD=1 only exists to prove the reliability tests fail
        # without it.
        if os.environ.get("EMD_DISABLE_RECOVERY_GUARD") != "1":
            recovery_guard.install()
        _drop_faust_index()
        app = self.app = EmdApp(config.app_id, autodiscover=False, **faust_settings(runtime))
        app.worker = self
        n = config.partitions
        self.names = TopicNames(
            input=config.input_topic,
            person=runtime.topic_name("person-events"),
            effects=runtime.topic_name("emarsys-effects"),
            dead=runtime.topic_name("dead-letters"),
        )
        self.config_topic_name = runtime.topic_name("config")

        def topic(name: str) -> Any:
            return app.topic(name, key_type=bytes, value_type=bytes, partitions=n, internal=False)

        self.input_topic = topic(self.names.input)
        self.person_topic = topic(self.names.person)
        self.effects_topic = topic(self.names.effects)
        self.dead_letter_topic = topic(self.names.dead)
        # One parking topic per account (agents.lanes): where a failing account's effects
        # wait, so they hold neither memory nor the other accounts' offsets.
        self.parking_names = {a: parking_topic(config.app_id, a) for a in config.accounts}
        self.parking_topics = [topic(name) for name in self.parking_names.values()]
        self.tables: Tables = build_tables(app, n, config.dedupe_window)
        self.live_config = ConfigTopic(runtime, self.config_topic_name)
        self.recent_events = RecentEvents()
        self.recent_deliveries = RecentDeliveries()
        accounts = lambda: runtime.accounts  # noqa: E731 - the live config can replace them
        self.partitioner = Partitioner(n)
        self.link = LinkStage(
            accounts, runtime.metrics, lambda: runtime.config.dedupe_window, self.partitioner
        )
        self.person = PersonStage(
            accounts,
            runtime.metrics,
            self.recent_events,
            self.link,
            self.partitioner,
            # state the versions before left where this partitioner no longer looks
            moves_from=Partitioner(n, as_before=True),
        )
        producer = lambda: app.producer._ensure_producer()  # type: ignore[attr-defined]  # noqa: E731
        self.outbox = Outbox(producer, self.partitioner, self.names.logical())
        self.retries = RetryTracker()
        self.sink = Sink(
            runtime,
            Clients(
                lambda account, cfg: EmarsysClient(
                    account,
                    cfg,
                    on_response=call_counter(runtime.metrics, account),
                    on_retry=self.retries.hook(account),
                )
            ),
            self.recent_deliveries,
            self.outbox,
            batch_size=lambda: runtime.config.sink.batch_size,
            flush_interval=lambda: runtime.config.sink.flush_interval,
            effects_topic=self.names.effects,
            parking_topics=self.parking_names,
            producer=producer,
            partitioner=self.partitioner,
            retries=self.retries,
            park_after=lambda: runtime.config.sink.park_after,
            calls_in_flight=lambda: runtime.config.sink.calls_in_flight,
            broker_url=lambda: runtime.broker_url,
        )
        self.pipeline = Pipeline(
            app,
            self.names,
            self.tables,
            PartitionFlow(self.link, self.person, self.partitioner),
            self.sink,
            self.partitioner,
        )
        subscribe(
            app, [self.input_topic, self.person_topic, self.effects_topic, *self.parking_topics]
        )
        self.state = StateReader(
            app,
            self.tables,
            self.recent_events,
            self.recent_deliveries,
            self.names.person,
            n,
            delivery_status=self.sink.status,
        )
        self.lag = LagGauge(self)
        app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]
        app.timer(5.0)(self.lag.refresh_quietly)

    async def _on_assigned(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        self.pipeline.partitions_assigned()

    async def on_first_start(self) -> None:
        """Every topic exists before Faust's consumer and producer touch the broker; the
        live config is read before any event is processed."""
        config = self.runtime.config
        n = config.partitions
        topics = {name: n for name in (self.names.input, self.names.person, self.names.effects)}
        topics[self.names.dead] = n
        topics.update(dict.fromkeys(self.parking_names.values(), n))
        changelogs = {t.changelog_topic.get_topic_name() for t in self.tables.all()}
        topics.update(dict.fromkeys(changelogs, n))
        topics[self.config_topic_name] = 1
        retention_ms = str(int(config.dedupe_window * 2 * 1000))
        await ensure_topics(
            self.runtime.broker_url,
            topics,
            replication=config.replication_factor,
            compacted=changelogs | {self.config_topic_name},
            configs={
                self.tables.dedupe.changelog_topic.get_topic_name(): {
                    "cleanup.policy": "compact,delete",
                    "retention.ms": retention_ms,
                }
            },
        )
        # Console edits win over the file: apply them before any event is processed.
        await self.live_config.load()
        self.live_config.start_following()
        self.app.consumer.batch_handler = self.pipeline  # type: ignore[attr-defined]
        gc_tuning.tune()
        profiling.start()
        from app.web.routes import WebServices, install_routes

        install_routes(
            self.app,
            self.runtime,
            WebServices(
                outbox=self.outbox,
                live_config=self.live_config,
                dead_letter_topic=self.names.dead,
                state=self.state,
            ),
        )

    async def on_stop(self) -> None:
        profiling.stop()
        await self.sink.stop()
        await self.lag.stop()
        await self.live_config.stop()


class LagGauge:
    """``emd_consumer_lag``: per topic, the partitions' end offsets minus the committed
    offsets. The consumer's own highwater comes from fetch responses, and a paused
    partition (the sink while Emarsys is down) is not fetched: the lag would freeze while
    the backlog grows. A plain ListOffsets from a consumer of our own (no group), every
    few seconds, keeps it true. (The embedded broker under-reports an end by a record or
    two after a batch produce; a gauge can live with that.)"""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.ends: dict[Any, int] = {}
        self._consumer: Any = None
        names = worker.names
        self.topics = (names.input, names.person, names.effects)
        worker.runtime.metrics.gauge("emd_consumer_lag", self.lag)

    async def refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except Exception:  # a gauge: never let it disturb the worker
            log.debug("listing end offsets failed", exc_info=True)

    async def refresh(self) -> None:
        from aiokafka import TopicPartition

        from app.topic_reader import consumer_for

        app = self.worker.app
        tps = [tp for tp in app.assignor.assigned_actives() if tp.topic in self.topics]
        if not tps:
            return
        if self._consumer is None:
            consumer = consumer_for(self.worker.runtime.broker_url, "emd-lag")
            await consumer.start()
            self._consumer = consumer
        listed = await self._consumer.end_offsets(
            [TopicPartition(t.topic, t.partition) for t in tps]
        )
        self.ends = {tp: listed[TopicPartition(tp.topic, tp.partition)] for tp in tps}

    def lag(self) -> dict[tuple[tuple[str, str], ...], float]:
        app = self.worker.app
        lag: dict[tuple[tuple[str, str], ...], float] = {}
        consumer = app.consumer
        committed = getattr(consumer, "_committed_offset", {})
        for tp in app.assignor.assigned_actives():
            if tp.topic not in self.topics:
                continue
            high = max(consumer.highwater(tp) or 0, self.ends.get(tp, 0))
            done = committed.get(tp) or 0
            key = (("topic", tp.topic),)
            lag[key] = lag.get(key, 0.0) + max(0, high - done)
        return lag

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
