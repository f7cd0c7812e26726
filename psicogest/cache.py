"""The shared cache, kept out of the way of an outage: Redis down costs no error page.

What the product keeps in the cache is disposable (rate-limit counters, the live progress
of a mailbox check, a look-up's result, a short lease): :class:`ResilientRedisCache` is
Django's Redis cache that, when Redis does not answer, logs one line and answers as an
empty cache would — ``get`` misses, ``add`` adds nothing, ``set`` is dropped, ``incr`` finds
no key. A rate limit then lets the request through, a check's progress shows its last
stored result, and a reader that cannot take its lease skips its turn. After a failure
Redis is not asked again for :data:`RETRY_AFTER_SECONDS`, so a Redis that drops packets
costs one socket timeout (``OPTIONS``), not one per call.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from django.core.cache.backends.redis import RedisCache

from psicogest.breaker import Breaker

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5.0

T = TypeVar("T")
_ERRORS = (redis.RedisError, OSError)


class ResilientRedisCache(RedisCache):
    """:class:`RedisCache` that degrades to an empty cache while Redis is unreachable."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._breaker = Breaker(seconds=RETRY_AFTER_SECONDS)

    def reset_outage(self) -> None:
        """Ask Redis again at the next call (a Redis known to be back)."""
        self._breaker.reset()

    def _call(self, fallback: Callable[[], T], call: Callable[[], T]) -> T:
        if self._breaker.open:
            return fallback()
        try:
            return call()
        except _ERRORS as err:
            if self._breaker.trip():
                logger.warning(
                    "Cache unavailable (%s): answering as an empty cache for %g s",
                    type(err).__name__,
                    RETRY_AFTER_SECONDS,
                )
            return fallback()

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._call(lambda: default, functools.partial(super().get, key, default, version))

    def get_many(self, keys: Any, version: int | None = None) -> dict[str, Any]:
        return self._call(dict, functools.partial(super().get_many, keys, version))

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._call(lambda: False, functools.partial(super().has_key, key, version))

    def add(self, key: Any, value: Any, timeout: Any = None, version: int | None = None) -> bool:
        call = functools.partial(super().add, key, value, timeout, version)
        return self._call(lambda: False, call)

    def set(self, key: Any, value: Any, timeout: Any = None, version: int | None = None) -> None:
        self._call(lambda: None, functools.partial(super().set, key, value, timeout, version))

    def set_many(self, data: Any, timeout: Any = None, version: int | None = None) -> list[Any]:
        call = functools.partial(super().set_many, data, timeout, version)
        return self._call(lambda: list(data), call)

    def touch(self, key: Any, timeout: Any = None, version: int | None = None) -> bool:
        return self._call(lambda: False, functools.partial(super().touch, key, timeout, version))

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._call(lambda: False, functools.partial(super().delete, key, version))

    def delete_many(self, keys: Any, version: int | None = None) -> None:
        self._call(lambda: None, functools.partial(super().delete_many, keys, version))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        def missing() -> int:
            raise ValueError(f"Key '{key}' not found (cache unavailable)")

        return self._call(missing, functools.partial(super().incr, key, delta, version))

    def clear(self) -> None:
        self._call(lambda: None, super().clear)
