"""An opt-in CPU profile of a worker: ``EMD_CPU_PROFILE=FILE`` writes cProfile stats there
when the worker stops (``make bench`` uses it to print where the time goes).

Only the event loop's thread is profiled (aiokafka's fetches run in Faust's consumer
thread). cProfile slows the code it measures, so the bench times a run without it and
takes the profile from a second run.
"""

from __future__ import annotations

import cProfile
import os

ENV = "EMD_CPU_PROFILE"
_profile: cProfile.Profile | None = None


def start() -> None:
    global _profile
    if os.environ.get(ENV) and _profile is None:
        _profile = cProfile.Profile()
        _profile.enable()


def stop() -> None:
    global _profile
    path = os.environ.get(ENV)
    if _profile is not None and path:
        _profile.disable()
        _profile.dump_stats(path)
        _profile = None
