"""Which partition a key lands on: Kafka's murmur2 of ``app.keys.partition_bytes(key)``.

A record sent by the batch path must land where Faust's router and ``table_route`` look
for its key, so keys are hashed with aiokafka's (and the Java client's ``Utils.murmur2``)
hash, and Faust's own producer is given the same rule (``ProducerPartitioner``, the
``producer_partitioner`` setting): the bytes are the key's except for an anonymous
visitor's person key, hashed as its input key (``app.keys``). Compiled (``app.native``) on 64-bit native integers: every
operand is below 2**32 and the multiplier below 2**31, so no product reaches 2**63 and
none leaves the machine word (as tagged Python integers, which stop at 63 bits, did: the
hash then cost more compiled than interpreted). The hash is also cached per key, since
the same persons and contacts come back batch after batch.
"""

from __future__ import annotations

import random
from typing import Final

from mypy_extensions import i64

from app.keys import partition_bytes

MAX_CACHED_KEYS: Final = 200_000
_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` (``tests/unit/test_batching_faust_internals.py``
    compares it with aiokafka's for every length and byte)."""
    length: i64 = len(data)
    h: i64 = 0x9747B28C ^ length
    body: i64 = length & ~3
    i: i64 = 0
    while i < body:
        k: i64 = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
        i += 4
    extra: i64 = length & 3
    if extra:
        if extra == 3:
            h ^= data[body + 2] << 16
        if extra >= 2:
            h ^= data[body + 1] << 8
        h = ((h ^ data[body]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def _index(hashed: bytes, partitions: int) -> int:
    """Kafka's: the positive murmur2 of the bytes, modulo the partition count."""
    return (murmur2(hashed) & 0x7FFFFFFF) % partitions


class Partitioner:
    """A key's partition of a topic with ``partitions`` partitions. ``as_before``: every
    key hashed as it is, as the versions before this rule did (where the state they left
    is found: ``app.stages.relocation``)."""

    def __init__(self, partitions: int, *, as_before: bool = False) -> None:
        self.partitions = partitions
        self.as_before = as_before
        self._cache: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        p = self._cache.get(key)
        if p is None:
            if len(self._cache) >= MAX_CACHED_KEYS:
                self._cache.clear()
            p = _index(key if self.as_before else partition_bytes(key), self.partitions)
            self._cache[key] = p
        return p


class ProducerPartitioner:
    """The same rule in aiokafka's partitioner interface (``key, all_partitions,
    available``), for Faust's producer: what it sends and what its router
    (``app.router.key_store``, the web views' owner lookup) hashes lands where the batch
    path puts it. A record without a key goes to a random available partition, as with
    aiokafka's ``DefaultPartitioner``."""

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        return all_partitions[_index(partition_bytes(key), len(all_partitions))]
