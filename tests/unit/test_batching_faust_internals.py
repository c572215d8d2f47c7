"""The Faust internals the batch path (``app.batching``) relies on, one test each.

They are private to faust-streaming and may change in any release; pyproject.toml pins
the version range, and these tests fail loudly, naming the internal, when an upgrade
changes one. In the way faust's own ``tests/regression/`` pins its issues: a test per
internal, not one test for everything.
"""

from __future__ import annotations

import inspect
from importlib import metadata
from weakref import WeakSet

import aiokafka
import faust
import pytest
import rocksdict
from aiokafka.partitioner import DefaultPartitioner, murmur2
from faust.stores import rocksdb as rocks_store
from faust.transport import base as transport_base
from faust.transport import consumer as consumer_mod
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from app.batching.consumer import BatchConsumer, BatchTransport
from app.batching.partition import Partitioner


def test_the_pinned_faust_version_is_the_one_these_tests_describe():
    version = tuple(int(x) for x in metadata.version("faust-streaming").split(".")[:2])
    assert version == (0, 15), "app/batching uses faust-streaming 0.15 internals: re-check them"


def test_the_app_builds_its_consumer_transport_in_new_transport():
    assert hasattr(faust.App, "_new_transport")
    source = inspect.getsource(faust.App._new_transport)
    assert "broker_consumer" in source


def test_the_transport_makes_its_consumer_from_its_consumer_attribute():
    source = inspect.getsource(transport_base.Transport.create_consumer)
    assert "self.Consumer(" in source
    assert BatchTransport.Consumer is BatchConsumer
    assert issubclass(BatchConsumer, driver.Consumer)


def test_the_fetch_loop_and_its_helpers_are_where_the_batch_path_replaces_them():
    for name in ("_drain_messages", "_wait_next_records", "_add_gap", "perform_seek",
                 "_get_active_partitions", "on_buffer_full", "on_buffer_drop", "stop_flow",
                 "wait_empty", "_new_offset", "_commit_offsets"):  # fmt: skip
        assert callable(getattr(consumer_mod.Consumer, name, None)), name
    sig = inspect.signature(consumer_mod.Consumer._wait_next_records)
    assert list(sig.parameters) == ["self", "timeout"]
    # the prioritised topics' first look: the same fetch Faust's _wait_next_records makes
    assert list(inspect.signature(driver.Consumer._getmany).parameters) == [
        "self",
        "active_partitions",
        "timeout",
    ]
    assert "self._getmany(" in inspect.getsource(consumer_mod.Consumer._wait_next_records)
    assert hasattr(consumer_mod, "CONSUMER_FETCHING") and hasattr(consumer_mod, "ensure_TP")


def test_acks_are_kept_in_the_bookkeeping_the_batch_path_writes():
    source = inspect.getsource(consumer_mod.Consumer.ack)
    for name in ("_acked_index", "_acked", "_n_acked", "_unacked_messages", "_committed_offset",
                 "ack_lock"):  # fmt: skip
        assert name in source, name
    init = inspect.getsource(consumer_mod.Consumer.__init__)
    assert "_unacked_messages = WeakSet()" in init


def test_the_commit_flushes_the_producer_before_committing():
    """At-least-once of the batch path rests on it: what a transaction sent is flushed
    before its offsets are committed (faust-streaming PR #273)."""
    source = inspect.getsource(consumer_mod.Consumer._commit_offsets)
    assert source.index("producer.flush()") < source.index("self._commit(")


def test_wait_empty_waits_for_everything_in_unacked_messages():
    source = inspect.getsource(consumer_mod.Consumer.wait_empty)
    assert "self._unacked_messages" in source and "_wait_for_ack" in source
    assert "_waiting_for_ack" in inspect.getsource(consumer_mod.Consumer._wait_for_ack)


def test_recovery_seeks_to_committed_offsets_before_the_flow_resumes():
    """A sink lane lets go of its spans at a rebalance: they must be read again."""
    from faust.tables import recovery

    source = inspect.getsource(recovery.Recovery._resume_streams)
    assert source.index("perform_seek") < source.index("resume_flow")


def test_the_rocksdb_store_keeps_its_offset_under_offset_key_in_each_partition_db():
    store = rocks_store.Store
    assert store.offset_key == b"__faust\0offset__"
    assert "self.offset_key" in inspect.getsource(store.persisted_offset)
    assert "_db_for_partition" in inspect.getsource(store.set_persisted_offset)
    assert "WriteBatch(raw_mode=True)" in inspect.getsource(store.apply_changelog_batch)


def test_a_table_writes_its_changelog_to_the_partition_of_the_event():
    """Faust's on_key_set: the changelog partition is the source record's partition,
    which is what the batch path writes (not the key's hash)."""
    source = inspect.getsource(faust.tables.base.Collection.partition_for_key)
    assert "event.message.partition" in source


def test_faust_producer_exposes_the_aiokafka_producer():
    assert callable(getattr(driver.Producer, "_ensure_producer", None))
    for name in ("create_batch", "send_batch", "flush"):
        assert callable(getattr(aiokafka.AIOKafkaProducer, name)), name


def test_our_murmur2_is_aiokafkas_for_every_length_and_byte():
    import random

    from app.batching.partition import murmur2 as ours

    rng = random.Random(5)
    for n in range(0, 70):
        for _ in range(30):
            key = bytes(rng.randrange(256) for _ in range(n))
            assert ours(key) == murmur2(key), key
    assert ours(b"\xff" * 13) == murmur2(b"\xff" * 13)


def test_partitioner_matches_aiokafkas_default_partitioner():
    ours = Partitioner(8)
    for i in range(200):
        key = f"acme\x1fu:user-{i}".encode()
        assert ours(key) == DefaultPartitioner()(key, list(range(8)), list(range(8)))
        assert ours(key) == (murmur2(key) & 0x7FFFFFFF) % 8


@pytest.fixture
def consumer(tmp_path):
    """A real BatchConsumer of a real Faust app (not started: no broker needed)."""
    app = faust.App("emd-internals", broker="kafka://127.0.0.1:1", store="memory://",
                    datadir=str(tmp_path))  # fmt: skip
    app._new_transport = lambda: BatchTransport(app.conf.broker_consumer, app)  # type: ignore[method-assign]
    c = app.consumer
    assert isinstance(c, BatchConsumer)
    app.topics.acks_enabled_for = lambda topic: True  # type: ignore[method-assign]
    return c


def test_an_acked_span_is_what_faust_commits_next(consumer, monkeypatch):
    tp = TP("t", 0)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    held = consumer.hold(tp, 0, 99)
    assert isinstance(consumer._unacked_messages, WeakSet) and held in consumer._unacked_messages
    consumer.ack_span(held)
    assert held not in consumer._unacked_messages
    assert consumer._n_acked == 100
    assert consumer._new_offset(tp) == 100  # what the next commit writes


def test_spans_acked_out_of_order_commit_only_what_is_contiguous(consumer, monkeypatch):
    tp = TP("t", 1)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    first, second = consumer.hold(tp, 0, 9), consumer.hold(tp, 10, 19)
    consumer.ack_span(second)
    consumer._committed_offset[tp] = 0
    assert consumer._new_offset(tp) is None  # 0..9 still in flight
    consumer.ack_span(first)
    assert consumer._new_offset(tp) == 20


def test_a_released_span_is_not_committed(consumer, monkeypatch):
    tp = TP("t", 2)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    held = consumer.hold(tp, 0, 9)
    consumer.release(held)
    assert held not in consumer._unacked_messages
    assert consumer._new_offset(tp) is None


def test_a_span_of_a_revoked_partition_is_dropped(consumer, monkeypatch):
    tp = TP("t", 3)
    monkeypatch.setattr(consumer, "assignment", set)
    consumer.ack_span(consumer.hold(tp, 0, 9))
    assert consumer._new_offset(tp) is None


def test_rocksdict_multi_get_and_raw_write_batches(tmp_path):
    opts = rocksdict.Options(raw_mode=True)
    db = rocksdict.Rdict(str(tmp_path / "db"), options=opts)
    batch = rocksdict.WriteBatch(raw_mode=True)
    batch.put(b"a", b"1")
    batch.put(b"b", b"2")
    db.write(batch)
    assert db.get([b"a", b"missing", b"b"]) == [b"1", None, b"2"]
    db.close()


def test_releasing_a_span_releases_the_later_spans_of_its_partition(consumer, monkeypatch):
    """A later span must not be committed past the records of a released one."""
    tp = TP("t", 4)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    first, second = consumer.hold(tp, 0, 9), consumer.hold(tp, 10, 19)
    consumer.ack_span(second)
    consumer.release(first)
    assert not consumer._unacked_messages
    assert consumer._new_offset(tp) is None
