"""The container probes: ``/healthz`` (the process answers) and ``/readyz`` (it can work:
the database and the broker answer), used by the compose file's health checks and by any
load balancer. No login, nothing about the data: "ok" or what is unreachable, by name."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

logger = logging.getLogger(__name__)


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as err:
        logger.warning("Readiness: database unreachable: %s", type(err).__name__)
        return False
    return True


def _broker_ok() -> bool:
    url = str(getattr(settings, "CELERY_BROKER_URL", "") or "")
    if url.startswith(("redis://", "rediss://")):
        import redis  # only with a Redis broker

        try:
            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            return bool(client.ping())
        except (redis.RedisError, OSError) as err:
            logger.warning("Readiness: broker unreachable: %s", type(err).__name__)
            return False
    if url.startswith("filesystem://"):
        options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}
        folder = options.get("data_folder_in", "")
        return bool(folder) and Path(folder).is_dir()
    return bool(url)


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    ready = all(checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )
