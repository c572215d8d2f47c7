"""Quix Streams, the peer row of the bench: a stateful count with a changelog.

What people pick instead of Faust: a synchronous loop over librdkafka, state in RocksDB
with changelog topics, checkpoints. Per event it keeps a count per key in its state
(``state.get``/``state.set``, changelogged) after ``json`` decoding, over the same topic
the other rows read. Progress goes to ``BENCH_OUT`` like ``bench/bare_app.py``'s.

Run as a process (``bench.run`` does): ``python -m bench.quix_app`` with ``BENCH_BROKER``
(host:port), ``BENCH_TOPIC``, ``BENCH_EVENTS``, ``BENCH_OUT``, ``BENCH_STATE_DIR``,
``BENCH_APP_ID``. Installed by ``make bench`` (the ``bench`` extra), never by ``make test``.
"""

from __future__ import annotations

import json
import os
import time

from quixstreams import Application
from quixstreams.models.topics.manager import TopicManager

BROKER = os.environ.get("BENCH_BROKER", "127.0.0.1:9092")
TOPIC = os.environ.get("BENCH_TOPIC", "bench-events")
EVENTS = int(os.environ.get("BENCH_EVENTS", "20000"))
OUT = os.environ.get("BENCH_OUT", ".bench/quix-progress.json")


def _patch_retention() -> None:
    """The embedded broker's DescribeConfigs answers no ``retention.ms``, which Quix
    reads to size its changelog topics; -1 (keep forever) is what Quix would pick for a
    topic without a limit. Nothing else of Quix is changed."""
    derive = TopicManager.derive_topic_config

    def with_retention(topics):  # type: ignore[no-untyped-def]
        for t in topics:
            t.broker_config.extra_config.setdefault("retention.ms", "-1")
        return derive(topics)

    TopicManager.derive_topic_config = staticmethod(with_retention)  # type: ignore[method-assign]


def main() -> None:
    _patch_retention()
    app = Application(
        broker_address=BROKER,
        consumer_group=os.environ.get("BENCH_APP_ID", "emdbench-quix"),
        auto_offset_reset="earliest",
        state_dir=os.environ.get("BENCH_STATE_DIR", ".bench/quix-state"),
        use_changelog_topics=True,
    )
    progress: dict[str, float | int | None] = {"count": 0, "first": None, "last": None}
    last_write = 0.0

    def report() -> None:
        tmp = OUT + ".tmp"
        with open(tmp, "w") as f:
            json.dump(progress, f)
        os.replace(tmp, OUT)

    def count(value: dict, state) -> int:  # type: ignore[no-untyped-def]
        nonlocal last_write
        n = state.get("count", 0) + 1
        state.set("count", n)
        now = time.time()
        if progress["first"] is None:
            progress["first"] = now
        progress["last"] = now
        progress["count"] = int(progress["count"] or 0) + 1
        if now - last_write > 0.25 or progress["count"] >= EVENTS:
            last_write = now
            report()
        if progress["count"] >= EVENTS:
            app.stop()
        return n

    topic = app.topic(TOPIC, value_deserializer="json", key_deserializer="bytes")
    app.dataframe(topic).apply(count, stateful=True)
    app.run()
    report()


if __name__ == "__main__":
    main()
