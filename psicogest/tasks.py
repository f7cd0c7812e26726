"""Host tasks."""

from __future__ import annotations

import socket

from celery import shared_task
from django.utils import timezone

from psicogest.models import WorkerHeartbeat


@shared_task(name="psicogest.heartbeat")
def heartbeat(marker: str = "") -> None:
    """Record that a worker is alive; the pages warn when none has beaten recently."""
    WorkerHeartbeat.objects.update_or_create(
        hostname=marker or socket.gethostname(), defaults={"seen_at": timezone.now()}
    )
