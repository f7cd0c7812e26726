"""A batch's Smart Mail requests, several in flight at once.

One blocking request per message left a worker process waiting for the ESP most of the
time (about 15 messages a second against an ESP that answers in 50 ms). A batch now keeps up
to ``EMAILSETTINGS_SMART_MAIL_CONCURRENCY`` requests in flight on its backend's one
keep-alive session. Only the request runs in a thread of the pool: the batch's own thread
claims each row first (the claim records ``data_sent``, the fence), and records each outcome
on its own as its answer comes back, so no thread but the batch's touches the database.
Requests leave in the batch's order; their answers may come back in another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from emailsettings.failures import Accepted, Failure

if TYPE_CHECKING:
    from emailsettings.models import Delivery

#: What one send ended with: ``None`` when the row changed hands before its data left.
Outcome = Accepted | Failure | None


class InFlight:
    """Up to ``limit`` sends running at once (none, and no thread, when ``limit`` is 1)."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self._pool = (
            ThreadPoolExecutor(max_workers=limit, thread_name_prefix="smart-mail")
            if limit > 1
            else None
        )
        self._running: dict[Future[Outcome], Delivery] = {}

    @property
    def enabled(self) -> bool:
        return self._pool is not None

    def submit(self, delivery: Delivery, send: Callable[[], Outcome]) -> None:
        if self._pool is None:
            raise RuntimeError("sends in flight are off (limit 1)")
        self._running[self._pool.submit(send)] = delivery

    def finished(self) -> Iterator[tuple[Delivery, Outcome]]:
        """The sends that have ended; while all ``limit`` are running, waits for one."""
        if not self._running:
            return
        done, _running = wait(
            self._running,
            timeout=None if len(self._running) >= self.limit else 0,
            return_when=FIRST_COMPLETED,
        )
        yield from self._take(done)

    def drain(self) -> Iterator[tuple[Delivery, Outcome]]:
        """Every send still running, as each ends."""
        while self._running:
            done, _running = wait(self._running, return_when=FIRST_COMPLETED)
            yield from self._take(done)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _take(self, done: set[Future[Outcome]]) -> Iterator[tuple[Delivery, Outcome]]:
        # In the order the sends were started, for the ones that ended together.
        for future in [future for future in self._running if future in done]:
            delivery = self._running.pop(future)
            yield delivery, future.result()
