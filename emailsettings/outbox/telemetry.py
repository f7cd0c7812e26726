"""The outbox's counters for the operator's ``/metrics``: attempts by channel, outcome and
error class, and the ESP's answer time. Kept in Redis (``HINCRBY``), so every worker process
adds to the same totals and the web process that serves ``/metrics`` reads them; they are
counters in Prometheus' sense (they only grow, a restart of a worker loses nothing).

Recording is best effort: without Redis (the embedded broker) or with Redis unreachable
nothing is counted, and a send is never slowed or stopped by it. No patient data: only a
channel, a status and an error class.

To add a counter: a key below, a writer here, its family in
:mod:`emailsettings.health.metrics` and its line in docs/operations.md.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import redis

from emailsettings import conf
from psicogest.breaker import Breaker

logger = logging.getLogger(__name__)

ATTEMPTS_KEY = "emailsettings:metrics:attempts"
ESP_TIME_KEY = "emailsettings:metrics:esp_answer"
SEP = "|"


@functools.cache
def _client(url: str) -> Any:
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def client() -> Any | None:
    url = conf.redis_url()
    return _client(url) if url else None


# After a Redis failure counting pauses this long: a send never waits on a dead Redis twice.
PAUSE_SECONDS = 30.0
_paused = Breaker(seconds=PAUSE_SECONDS)
# ESP answer times waiting for the next attempt's write (one round trip per message).
_pending_answers: list[float] = []


def record_esp_answer(seconds: float) -> None:
    """How long the ESP's send API took to answer one message (written with the attempt)."""
    _pending_answers.append(seconds)


def record_attempt(*, channel: str, status: str, error_class: str) -> None:
    """One attempt's outcome (the status it left the row in), with the ESP answer times
    recorded since the last write: one pipelined round trip."""
    redis_client = client()
    if redis_client is None or _paused.open:
        _pending_answers.clear()
        return
    answers = list(_pending_answers)
    _pending_answers.clear()
    try:
        pipe = redis_client.pipeline(transaction=False)
        pipe.hincrby(ATTEMPTS_KEY, SEP.join((channel, status, error_class or "")), 1)
        if answers:
            pipe.hincrbyfloat(ESP_TIME_KEY, "sum", sum(answers))
            pipe.hincrby(ESP_TIME_KEY, "count", len(answers))
        pipe.execute()
    except Exception as err:  # counting must never stop a send
        _paused.trip()
        logger.info("Outbox metrics not recorded: %s", type(err).__name__)


def attempts() -> dict[tuple[str, str, str], int]:
    """The attempt counters: (channel, status, error class) → total."""
    redis_client = client()
    if redis_client is None:
        return {}
    raw = redis_client.hgetall(ATTEMPTS_KEY)
    result: dict[tuple[str, str, str], int] = {}
    for field, value in raw.items():
        parts = field.decode().split(SEP)
        if len(parts) == 3:
            result[(parts[0], parts[1], parts[2])] = int(value)
    return result


def esp_answer() -> tuple[float, int]:
    """(total seconds, messages) of the ESP's answers."""
    redis_client = client()
    if redis_client is None:
        return 0.0, 0
    raw = redis_client.hgetall(ESP_TIME_KEY)
    return float(raw.get(b"sum", 0) or 0), int(raw.get(b"count", 0) or 0)
