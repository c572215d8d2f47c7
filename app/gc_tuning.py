"""The garbage collector's settings for a worker: fewer young collections, and nothing
that was alive at start-up scanned again.

A worker allocates a few dicts per field of every event it decodes, and keeps many
long-lived objects (Faust's and aiokafka's, the tables' handles, the recent events of
20,000 persons). CPython's defaults collect the young generation every 700 net
allocations and walk the older ones often: the identity and person stages of
``bench.core`` ran 1.2-1.4 x as fast with the settings below as with the defaults.
``tune()`` freezes what exists once the worker has started (``gc.freeze``: start-up's
objects are never scanned again) and raises the thresholds to ``THRESHOLDS``; garbage
without reference cycles is freed at once as always, cycles a little later. Set
``EMD_GC_DEFAULTS=1`` to keep CPython's defaults (to compare, or if memory matters more).
"""

from __future__ import annotations

import gc
import os

ENV = "EMD_GC_DEFAULTS"
#: young generation every 50,000 net allocations; the middle one every 20 of those; the
#: oldest every 20 of the middle one's (and then only when it has grown by a quarter).
THRESHOLDS = (50_000, 20, 20)


def apply() -> None:
    """The worker's settings, whatever the environment (``bench.core`` times under them)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


def tune() -> bool:
    """Applies the worker's settings unless ``EMD_GC_DEFAULTS`` is set; True if it did."""
    if os.environ.get(ENV):
        return False
    apply()
    return True
