"""``/healthz`` answers while the process is up; ``/readyz`` only while the database and the
broker answer — checked against a Redis server of its own, stopped halfway."""

from __future__ import annotations

import pytest

from tests.fault.test_broker_outage import RedisServer


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def test_healthz_answers_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_fails_when_redis_is_stopped(client, settings, own_redis):
    settings.CELERY_BROKER_URL = own_redis.url

    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "broker": True}

    own_redis.stop()
    stopped = client.get("/readyz")
    assert stopped.status_code == 503
    assert stopped.json()["checks"] == {"database": True, "broker": False}
