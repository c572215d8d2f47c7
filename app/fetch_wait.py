"""How long the broker may hold a fetch that finds no records: 100 ms, not Faust's 1.5 s.

Faust's aiokafka driver hard-codes ``fetch_max_wait_ms=1500`` for the worker's consumer.
Kafka answers a waiting fetch as soon as records arrive, so there the wait costs nothing;
the embedded broker (Tansu) does not. Measured on it: a record produced while a fetch
waits reaches the consumer 0.38 s later at the median (0.69 s at worst) with 1.5 s, 24 ms
(49 ms) with 0.1 s. Every hop of the pipeline (the input topic, emarsys-effects, a
parking topic) pays that, so it is most of the time from ingest to Emarsys. A short wait
costs an idle consumer ten small fetch requests a second per broker.

This only sets the option on the consumer Faust creates (before it starts): the batch
consumer (``app.batching.consumer``) is otherwise unchanged.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from app.batching.consumer import BatchConsumer, BatchTransport

FETCH_MAX_WAIT_MS = 100


class _ShortFetchThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by AIOKafkaConsumer.start()
        return consumer


class ShortFetchConsumer(BatchConsumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _ShortFetchThread(self, loop=self.loop, beacon=self.beacon)


class ShortFetchTransport(BatchTransport):
    Consumer = ShortFetchConsumer
