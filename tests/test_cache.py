"""The shared cache degrades to an empty cache while Redis is unreachable (psicogest/cache.py):
the rate limits let a request through, nothing raises, and one slow Redis costs one timeout."""

from __future__ import annotations

import socket

import pytest

from emailsettings.limits import within_fixed_window
from psicogest.cache import ResilientRedisCache


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dead_cache() -> ResilientRedisCache:
    return ResilientRedisCache(
        f"redis://127.0.0.1:{closed_port()}/0",
        {"OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1}},
    )


class SilentRedis:
    """A Redis host that accepts connections and never answers (dropping packets)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.held: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"

    def new_connections(self) -> int:
        count = 0
        while True:
            try:
                connection, _address = self.listener.accept()
            except BlockingIOError:
                return count
            self.held.append(connection)
            count += 1

    def close(self) -> None:
        for connection in self.held:
            connection.close()
        self.listener.close()


@pytest.fixture
def silent_redis():
    server = SilentRedis()
    yield server
    server.close()


def test_a_dead_redis_answers_as_an_empty_cache(dead_cache):
    dead_cache.set("k", 1)
    assert dead_cache.get("k") is None
    assert dead_cache.get("k", "fallback") == "fallback"
    assert dead_cache.add("k", 1) is False
    assert dead_cache.get_many(["k"]) == {}
    assert dead_cache.touch("k") is False
    assert dead_cache.delete("k") is False
    with pytest.raises(ValueError):
        dead_cache.incr("k")


def test_a_rate_limit_lets_the_request_through_without_redis(dead_cache, monkeypatch):
    monkeypatch.setattr("emailsettings.limits.cache", dead_cache)
    assert all(within_fixed_window("k", limit=1, window=60) for _ in range(5))


def test_a_silent_redis_is_asked_once_then_left_alone_for_a_while(silent_redis):
    cache = ResilientRedisCache(
        silent_redis.url, {"OPTIONS": {"socket_connect_timeout": 0.3, "socket_timeout": 0.3}}
    )
    assert cache.get("a") is None
    assert silent_redis.new_connections() >= 1, "the first call should have tried Redis"
    for _ in range(20):
        assert cache.get("a") is None
        cache.set("a", 1)
    assert silent_redis.new_connections() == 0, "later calls waited on the silent host again"
    cache.reset_outage()
    assert cache.get("a") is None
    assert silent_redis.new_connections() >= 1
