"""Changelog-backed RocksDB tables (rocksdict). Keys and values are raw bytes.

Keys are ``account \\x1f id`` (see ``app.keys``): serialised raw, the same bytes the
topics are keyed with, so ``app.router`` finds the owner of a key. The batch path
(``app.batching.state``) reads and writes them; Faust keeps their changelogs, recovery,
standbys and routing.

RocksDB's defaults give every partition DB a 2 GiB block cache and 3 x 64 MB write
buffers. With the options below a partition DB holds at most 8 MB of cached blocks and
2 x 4 MB of write buffers: a worker owning every partition of the six tables (48 DBs at
8 partitions) stays under ~770 MB of RocksDB memory however large the tables grow, and
a small table uses far less (buffers and cache fill only as it is written and read).
``make bench-backlog`` measures what a worker actually uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ROCKSDB_OPTIONS: dict[str, Any] = {
    "block_cache_size": 8 * 1024 * 1024,
    "block_cache_compressed_size": 0,
    "write_buffer_size": 4 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "target_file_size_base": 16 * 1024 * 1024,
    "max_open_files": 256,
}


@dataclass(frozen=True)
class Tables:
    #: anonymousId (or aliased previousId) -> userId; written by the link stage.
    links: Any
    #: messageId -> first-seen unix time and where it was read; Segment delivers at least once.
    dedupe: Any
    #: person -> the person's record (JSON): identity, data map values, rule state.
    persons: Any
    #: person -> recent Emarsys deliveries (JSON list, bounded).
    deliveries: Any
    #: primary key value -> person, for lookups by primaryKey.
    pk_index: Any
    #: funnel counts: account, rule, hour, partition -> transitions counted in that hour.
    funnel: Any

    def by_name(self) -> dict[str, Any]:
        """The names the stages use (``app.stages``), which are the Faust table names."""
        return {t.name: t for t in self.all()}

    def all(self) -> list[Any]:
        return [self.links, self.dedupe, self.persons, self.deliveries, self.pk_index, self.funnel]


def build_tables(app: Any, partitions: int, dedupe_window: float) -> Tables:
    def raw_table(name: str, help_: str, **options: Any) -> Any:
        return app.Table(
            name,
            key_type=bytes,
            value_type=bytes,
            partitions=partitions,
            options={**ROCKSDB_OPTIONS, **options},
            help=help_,
        )

    # Dedupe entries live at least ``dedupe_window`` and are then forgotten without a
    # delete per entry: RocksDB drops them locally after the TTL (at compaction), and
    # their changelog topic is created with ``cleanup.policy=compact,delete`` and a
    # retention of twice the window (``app.faust_app``), so Kafka drops them too. Lookups
    # still compare the stored time with the window, so an entry kept longer never
    # dedupes too much.
    return Tables(
        links=raw_table("links", "identity links: routing id -> userId"),
        dedupe=raw_table(
            "dedupe", "messageIds seen in the dedupe window", ttl=int(dedupe_window * 2)
        ),
        persons=raw_table("persons", "users table: one record per person"),
        deliveries=raw_table("deliveries", "recent Emarsys deliveries per person"),
        pk_index=raw_table("pkindex", "primary key value -> person"),
        funnel=raw_table("funnel", "rule transitions per hour and partition"),
    )
