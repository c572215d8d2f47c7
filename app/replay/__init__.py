"""``emarsys-destination replay``: recorded events through the live decision code.

``driver.Replay`` is the pure engine (in-memory state, event-time clock); ``cli`` reads
the input, prints the lines and, with ``--apply``, sends the result to Emarsys.
"""

from app.replay.driver import Replay, effect_of

__all__ = ["Replay", "effect_of"]
