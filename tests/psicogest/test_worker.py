"""A real Celery worker process, on the real Redis, runs a task against the test database."""

import pytest

from psicogest.models import WorkerHeartbeat
from tests.conftest import wait_until

pytestmark = pytest.mark.worker


def test_a_worker_process_runs_a_task_and_writes_to_the_database(celery_worker):
    from psicogest.tasks import heartbeat

    heartbeat.delay("test-worker-marker")
    beat = wait_until(
        lambda: WorkerHeartbeat.objects.filter(hostname="test-worker-marker").first(),
        timeout=30,
        message="the worker did not run the task:\n" + celery_worker.log()[-2000:],
    )
    assert beat.seen_at is not None
