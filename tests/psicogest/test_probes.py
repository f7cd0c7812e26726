"""``/healthz`` answers while the process is up; ``/readyz`` only while the database and the
broker answer — checked against a Redis server of its own, stopped halfway."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def own_redis(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait()


def test_healthz_answers_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_fails_when_redis_is_stopped(client, settings, own_redis):
    process, url = own_redis
    settings.CELERY_BROKER_URL = url

    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "broker": True}

    process.terminate()
    process.wait(timeout=10)
    stopped = client.get("/readyz")
    assert stopped.status_code == 503
    assert stopped.json()["checks"] == {"database": True, "broker": False}
