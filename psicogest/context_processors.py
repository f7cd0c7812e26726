"""Template context shared by every page of the host."""

from __future__ import annotations

import datetime
from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from psicogest.models import WorkerHeartbeat

# Beat runs the heartbeat every minute: three missed beats mean no worker (or no beat).
WORKER_SILENCE = datetime.timedelta(minutes=3)


def worker_status(request: HttpRequest) -> dict[str, Any]:
    """``workers_down`` is true when no Celery worker has run the heartbeat recently: the
    invoices queued meanwhile wait, and the practitioner should know why."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    recent = WorkerHeartbeat.objects.filter(seen_at__gte=timezone.now() - WORKER_SILENCE)
    return {"workers_down": not recent.exists()}
