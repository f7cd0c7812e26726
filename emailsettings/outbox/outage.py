"""Whether the broker answers, as this process last saw it.

The database is the outbox's source of truth: while Redis (the broker, and the dispatcher's
slots) is down, "Invia" still commits its rows and the sweeper publishes them once it is
back. What an outage must not cost is a wait on every request: after one failure this
process does not try again for :data:`RETRY_AFTER_SECONDS` (:func:`broker_down`), and the
progress page asks :func:`broker_reachable` to say plainly that sending is paused.
"""

from __future__ import annotations

import logging
import time

import redis

from emailsettings import conf
from psicogest.breaker import Breaker

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 10.0
# A live check's answer is reused this long (the progress page polls every 2 s).
CHECK_TTL_SECONDS = 3.0
PING_TIMEOUT_SECONDS = 0.5

_breaker = Breaker(seconds=RETRY_AFTER_SECONDS)
_checked: tuple[float, bool] = (-float("inf"), True)


def broker_down() -> bool:
    """Whether the broker failed in this process less than :data:`RETRY_AFTER_SECONDS` ago."""
    return _breaker.open


def mark_broker_down(reason: str) -> None:
    if _breaker.trip():
        logger.warning(
            "Broker unavailable (%s): not tried again for %g s", reason, RETRY_AFTER_SECONDS
        )


def reset() -> None:
    """Forget what was seen (tests, and a broker known to be back)."""
    global _checked
    _breaker.reset()
    _checked = (-float("inf"), True)


def broker_reachable() -> bool:
    """Whether the broker answers now (a ping of at most half a second, its answer reused
    for a few seconds). Always true for the embedded broker (files on this machine)."""
    global _checked
    url = conf.redis_url()
    if not url:
        return True
    if broker_down():
        return False
    checked_at, answer = _checked
    if time.monotonic() - checked_at < CHECK_TTL_SECONDS:
        return answer
    answer = _ping(url)
    _checked = (time.monotonic(), answer)
    if not answer:
        mark_broker_down("no answer to a ping")
    return answer


def _ping(url: str) -> bool:
    client = redis.Redis.from_url(
        url, socket_timeout=PING_TIMEOUT_SECONDS, socket_connect_timeout=PING_TIMEOUT_SECONDS
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()
