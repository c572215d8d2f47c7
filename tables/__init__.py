"""Changelog-backed RocksDB tables (rocksdict). Keys and values are raw bytes.

Keys are ``account \\x1f id`` (see ``app.keys``): serialised raw, the same bytes the
topics are keyed with, so ``app.router`` finds the owner of a key.

RocksDB's defaults give every partition DB a 2 GiB block cache and 3 x 64 MB write
buffers; these tables are small per partition, so the options below keep a worker's
memory in tens of megabytes.
"""

from __future__ import annotations

from typing import Any

from app.faust_app import CONFIG, app

ROCKSDB_OPTIONS: dict[str, Any] = {
    "block_cache_size": 8 * 1024 * 1024,
    "block_cache_compressed_size": 0,
    "write_buffer_size": 4 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "target_file_size_base": 16 * 1024 * 1024,
    "max_open_files": 256,
}


def raw_table(name: str, help_: str, **options: Any):
    return app.Table(
        name,
        key_type=bytes,
        value_type=bytes,
        partitions=CONFIG.partitions,
        options={**ROCKSDB_OPTIONS, **options},
        help=help_,
    )


#: Dedupe entries live at least ``dedupe_window`` and are then forgotten without a
#: delete per entry: RocksDB drops them locally after the TTL (at compaction), and their
#: changelog topic is created with ``cleanup.policy=compact,delete`` and a retention of
#: twice the window (``app.faust_app``), so Kafka drops them too. Lookups still compare
#: the stored time with the window, so an entry kept longer never dedupes too much.
DEDUPE_TTL = int(CONFIG.dedupe_window * 2)


#: anonymousId (or aliased previousId) -> userId; written by the link agent.
links = raw_table("links", "identity links: routing id -> userId")
#: messageId -> first-seen unix time; Segment delivers at least once.
dedupe = raw_table("dedupe", "messageIds seen in the dedupe window", ttl=DEDUPE_TTL)
#: person -> the person's record (JSON): identity, data map values, rule state.
persons = raw_table("persons", "users table: one record per person")
#: person -> recent Emarsys deliveries (JSON list, bounded).
deliveries = raw_table("deliveries", "recent Emarsys deliveries per person")
#: primary key value -> person, for lookups by primaryKey.
pk_index = raw_table("pkindex", "primary key value -> person")
#: funnel counts: account, rule, hour, partition -> transitions counted in that hour.
#: Keyed per partition so each partition's writer owns its own counter (a key written
#: from two partitions would be restored into one of them only).
funnel = raw_table("funnel", "rule transitions per hour and partition")
