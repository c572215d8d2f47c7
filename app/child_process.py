"""Children that die with their parent: what ``dev`` starts (the embedded broker, the
Emarsys simulator) must not outlive a ``dev`` that was SIGKILLed or crashed; an orphaned
broker would keep its port and its old topics, and the next ``make run`` would use them.

On Linux the child asks the kernel for a signal when its parent dies
(``prctl(PR_SET_PDEATHSIG)``); elsewhere ``dev`` records what it started
(``app.dev``) and refuses a leftover it finds on the port.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys

PR_SET_PDEATHSIG = 1


def follow_parent() -> None:
    """A ``preexec_fn``: in the child, before it runs, ask for SIGTERM when the parent dies."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def supported() -> bool:
    return sys.platform.startswith("linux")
