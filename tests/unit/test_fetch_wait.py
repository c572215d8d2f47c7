"""The Faust and aiokafka internals ``app.fetch_wait`` relies on (faust-streaming 0.15)."""

from __future__ import annotations

import inspect

import aiokafka
from faust.transport.drivers import aiokafka as driver

from app.batching.consumer import BatchConsumer
from app.faust_app import EmdApp
from app.fetch_wait import FETCH_MAX_WAIT_MS, ShortFetchConsumer, ShortFetchTransport


def test_the_worker_consumer_is_the_batch_consumer_with_a_short_fetch_wait():
    assert "ShortFetchTransport(" in inspect.getsource(EmdApp._new_transport)
    assert ShortFetchTransport.Consumer is ShortFetchConsumer
    assert issubclass(ShortFetchConsumer, BatchConsumer)
    assert FETCH_MAX_WAIT_MS <= 200


def test_faust_makes_its_consumer_thread_and_hard_codes_the_wait_where_it_is_replaced():
    thread = inspect.getsource(driver.Consumer._new_consumer_thread)
    assert "AIOKafkaConsumerThread(self, loop=self.loop, beacon=self.beacon)" in thread
    create = inspect.getsource(driver.AIOKafkaConsumerThread._create_worker_consumer)
    assert "fetch_max_wait_ms=1500" in create


async def test_aiokafka_reads_the_wait_when_it_starts_the_fetcher():
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(
        aiokafka.AIOKafkaConsumer.start
    )
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
    assert consumer._fetch_max_wait_ms == 500  # the attribute app.fetch_wait sets
