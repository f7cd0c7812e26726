"""Scenario 3: the broker (Redis) is down while invoices are queued.

The requests succeed and the rows stay ``queued``; once Redis is back the sweeper publishes
them and every invoice is sent exactly once. The test runs its own redis-server, so the
shared one used by the rest of the suite is never stopped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections import Counter

import pytest

from devtools.smtpserver import free_port
from emailsettings.models import Channel, Delivery, DeliveryStatus, EmailSettings
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.outbox.sweeper import sweep
from tests.conftest import wait_until
from tests.factories import InvoiceFactory, PatientFactory
from tests.fault.test_delivery_faults import FAST

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


class RedisServer:
    def __init__(self, directory) -> None:
        self.binary = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")
        if not self.binary:
            raise RuntimeError("redis-server not found (REDIS_SERVER_BIN)")
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def accepting() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_until(accepting, timeout=10, message="redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def own_redis(tmp_path):
    """A private redis-server, with the test process's Celery app publishing to it."""
    from psicogest.celery import app

    server = RedisServer(tmp_path)
    server.start()
    original = app.conf.broker_url

    def point_app_to(url: str) -> None:
        # kombu keeps one connection pool per broker URL in a process-wide registry: only
        # the app's references are swapped, the shared Redis's pool is never closed.
        app._pool = None
        app.amqp._producer_pool = None
        app.conf.broker_url = url

    point_app_to(server.url)
    yield server
    # Close every pool this test touched and let the app build fresh ones for the shared
    # Redis: a closed pool left in kombu's registry would break later publishes.
    from kombu import pools

    pools.reset()
    point_app_to(original)
    server.stop()


def test_broker_down_while_queueing_then_the_sweeper_sends_each_once(
    own_redis,
    settings,
    local_ca,
    smtp_server,
    smtp_account_factory,
    celery_worker_factory,
    practitioner,
):
    for name, value in FAST.items():
        setattr(settings, name, float(value))
    # The dispatcher's slots and backlogs live in the broker's Redis, here as in the worker.
    settings.CELERY_BROKER_URL = own_redis.url
    EmailSettings.objects.create(practitioner=practitioner, channel=Channel.SMTP)
    smtp_account_factory(smtp_server)
    invoices = [
        InvoiceFactory(patient=PatientFactory(practitioner=practitioner, email=f"p{n}@ex.test"))
        for n in range(20)
    ]

    own_redis.stop()
    started = time.monotonic()
    deliveries = [queue_invoice_email(invoice) for invoice in invoices]
    # Each request fails fast on the broker and still succeeds.
    assert time.monotonic() - started < 60
    ids = [d.pk for d in deliveries]
    assert Counter(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        DeliveryStatus.QUEUED: 20
    }

    own_redis.start()
    celery_worker_factory(
        EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file, REDIS_URL=own_redis.url, **FAST
    )
    time.sleep(1.2)  # older than EMAILSETTINGS_STALE_QUEUED_SECONDS

    def all_sent() -> bool:
        sweep()
        return set(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
            DeliveryStatus.SENT
        }

    wait_until(all_sent, timeout=60, interval=0.5)
    received = Counter(smtp_server.message_ids())
    assert received == {d.message_id: 1 for d in deliveries}
    assert all(
        a == 1 for a in Delivery.objects.filter(pk__in=ids).values_list("attempts", flat=True)
    )
