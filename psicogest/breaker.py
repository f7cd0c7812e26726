"""Leave a failing service alone for a while.

Redis is asked by the cache, the broker's publishers and the outbox's counters; when it is
down or silent, each call would wait on a socket timeout. A :class:`Breaker` remembers a
failure for a few seconds (per process) so that the callers answer at once instead —
an empty cache, a publish left to the sweeper, a count not kept.
"""

from __future__ import annotations

import threading
import time


class Breaker:
    """Open for ``seconds`` after each failure (:meth:`trip`); closed otherwise."""

    def __init__(self, *, seconds: float) -> None:
        self.seconds = seconds
        self._open_until = 0.0
        self._lock = threading.Lock()

    @property
    def open(self) -> bool:
        """Whether the service failed less than ``seconds`` ago: do not ask it now."""
        return time.monotonic() < self._open_until

    def trip(self) -> bool:
        """A failure: open for ``seconds`` from now. Whether it was closed until then (a new
        outage, worth one log line; a failure while open is the same outage)."""
        with self._lock:
            new = time.monotonic() >= self._open_until
            self._open_until = time.monotonic() + self.seconds
        return new

    def reset(self) -> None:
        """Ask the service again at the next call (tests, or a service known to be back)."""
        with self._lock:
            self._open_until = 0.0
