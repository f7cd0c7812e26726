"""Database blips: a restart, a fail-over or a dropped connection costs seconds, not minutes.

A send task meets the database at every step (claim, outcome, phase). When the database
goes away for a moment, the task does not fail — a failed batch would leave its rows to the
sweeper minutes later, and an outcome lost after the server accepted the message would
become ``unknown`` (and the practitioner's "Reinvia" a duplicate). :func:`through_blips`
retries the call with a short backoff on a fresh connection, for at most
``EMAILSETTINGS_DATABASE_RETRY_SECONDS``. Only outside a transaction: inside one, the
transaction is lost with its connection and only its owner can start it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connections

from emailsettings import conf

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: What a database that is restarting, failing over or unreachable raises.
BLIP_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)

FIRST_DELAY = 0.25
MAX_DELAY = 4.0


def through_blips(call: Callable[[], T], *, what: str, budget: float | None = None) -> T:
    """``call()``, retried while the database does not answer, for ``budget`` seconds
    (``EMAILSETTINGS_DATABASE_RETRY_SECONDS`` by default); then its error is raised."""
    deadline = time.monotonic() + (conf.database_retry_seconds() if budget is None else budget)
    delay = FIRST_DELAY
    while True:
        try:
            return call()
        except BLIP_ERRORS as err:
            if _in_transaction() or time.monotonic() + delay > deadline:
                raise
            logger.warning(
                "Database unavailable during %s (%s): retrying in %.2f s",
                what,
                type(err).__name__,
                delay,
            )
            # A connection that saw the error is not reused: the next query opens a new one.
            connections.close_all()
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)


def _in_transaction() -> bool:
    return any(connection.in_atomic_block for connection in connections.all())
