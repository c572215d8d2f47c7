"""Which partition a key lands on: Kafka's murmur2, as aiokafka's ``DefaultPartitioner``.

A record sent by the batch path must land where Faust's router and ``table_route`` look
for its key, so keys are hashed exactly as aiokafka (and the Java client's
``Utils.murmur2``) hash them. Compiled (``app.native``) on 64-bit native integers: every
operand is below 2**32 and the multiplier below 2**31, so no product reaches 2**63 and
none leaves the machine word (as tagged Python integers, which stop at 63 bits, did: the
hash then cost more compiled than interpreted). The hash is also cached per key, since
the same persons and contacts come back batch after batch.
"""

from __future__ import annotations

from typing import Final

from mypy_extensions import i64

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


class Partitioner:
    """A key's partition of a topic with ``partitions`` partitions."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._cache: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        p = self._cache.get(key)
        if p is None:
            if len(self._cache) >= MAX_CACHED_KEYS:
                self._cache.clear()
            p = self._cache[key] = (murmur2(key) & 0x7FFFFFFF) % self.partitions
        return p
