"""A database blip under a busy outbox, with the real parts: the test PostgreSQL restarted
(``pg_ctl restart -m fast``) while real Celery worker processes send through an aiosmtpd
server with STARTTLS and AUTH.

Neither beat nor the sweeper runs here: the workers alone must ride the restart out. Each
scenario counts what the SMTP server received by Message-ID.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections import Counter
from collections.abc import Callable

import pytest
from django.db import connections
from django.utils import timezone

from devtools.smtpserver import Behaviour
from emailsettings.models import Channel, Delivery, DeliveryStatus, EmailSettings
from emailsettings.outbox.queueing import queue_invoice_email, queue_invoice_emails
from tests.conftest import wait_until
from tests.factories import InvoiceFactory, PatientFactory, PractitionerFactory
from tests.fault.test_reliability import SlowFinalReply

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# The lease stays long (its default): no row may need the sweeper to move on.
WORKER_ENV = {
    "EMAILSETTINGS_RETRY_BASE_SECONDS": "0.3",
    "EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE": "60000",
    "EMAILSETTINGS_BATCH_SIZE": "4",
}


@pytest.fixture
def restart_postgres() -> Callable[[], float]:
    """Restart the test PostgreSQL (every connection is cut); returns when it accepts
    connections again, with the time that took."""
    pg_ctl = os.environ.get("PSICOGEST_TEST_PG_CTL", "")
    assert pg_ctl, "make test exports PSICOGEST_TEST_PG_CTL (scripts/services.sh)"

    def restart() -> float:
        started = time.monotonic()
        subprocess.run(
            [*shlex.split(pg_ctl), "restart", "-m", "fast", "-w", "-t", "60"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # This process's own connection died too: the next query opens a new one.
        connections.close_all()
        return time.monotonic() - started

    return restart


@pytest.fixture
def smtp_outbox(settings, local_ca, celery_worker_factory):
    for name, value in WORKER_ENV.items():
        setattr(settings, name, float(value))

    def start_worker():
        return celery_worker_factory(
            EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file, **WORKER_ENV
        )

    return start_worker


def by_smtp(practitioner, server, smtp_account_factory) -> None:
    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMTP}
    )
    smtp_account_factory(server, practitioner=practitioner)


def statuses(ids) -> Counter:
    return Counter(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True))


def test_outcome_of_an_accepted_message_lands_through_a_restart(
    smtp_outbox, smtp_server_factory, smtp_account_factory, practitioner, restart_postgres
):
    """The server has the message and answers it while the database restarts: the outcome
    write waits for the database instead of leaving the row "esito sconosciuto"."""
    behaviour = SlowFinalReply(3.0)
    server = smtp_server_factory(behaviour=behaviour)
    by_smtp(practitioner, server, smtp_account_factory)
    worker = smtp_outbox()
    delivery = queue_invoice_email(
        InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    )

    wait_until(behaviour.slow.started.is_set, timeout=30, message="the data never arrived")
    restart_postgres()

    wait_until(lambda: statuses([delivery.pk]) == {DeliveryStatus.SENT: 1}, timeout=30)
    row = Delivery.objects.get(pk=delivery.pk)
    assert row.attempts == 1
    assert Counter(server.message_ids()) == {delivery.message_id: 1}
    assert "Database unavailable during an outcome" in worker.log()


def test_postgres_restart_mid_batch_resumes_within_30_s_nothing_unknown_nothing_twice(
    smtp_outbox, smtp_server_factory, smtp_account_factory, restart_postgres
):
    server = smtp_server_factory(behaviour=Behaviour(data_delay=0.3))
    practitioners = [PractitionerFactory(email=f"dott{n}@example.test") for n in range(4)]
    for practitioner in practitioners:
        by_smtp(practitioner, server, smtp_account_factory)
    smtp_outbox()
    smtp_outbox()
    invoices = [
        InvoiceFactory(
            patient=PatientFactory(practitioner=practitioner, email=f"p{n}@example.test")
        )
        for practitioner in practitioners
        for n in range(8)
    ]
    ids = [delivery.pk for delivery in queue_invoice_emails(invoices)]

    wait_until(lambda: statuses(ids)[DeliveryStatus.SENT] >= 4, timeout=60)
    assert statuses(ids)[DeliveryStatus.SENT] < len(ids), "the restart must come mid-send"
    restart_postgres()
    back_at = timezone.now()

    try:
        wait_until(lambda: statuses(ids) == {DeliveryStatus.SENT: len(ids)}, timeout=90)
    except AssertionError:
        left = Delivery.objects.filter(pk__in=ids).exclude(status=DeliveryStatus.SENT)
        raise AssertionError(
            f"not all sent: {statuses(ids)}; "
            f"{list(left.values('status', 'phase', 'attempts', 'last_error_class'))}"
        ) from None
    sent_at = sorted(
        Delivery.objects.filter(pk__in=ids, sent_at__gt=back_at).values_list("sent_at", flat=True)
    )
    assert sent_at, "nothing was sent after the restart"
    assert (sent_at[0] - back_at).total_seconds() < 30
    rows = Delivery.objects.filter(pk__in=ids)
    assert Counter(server.message_ids()) == {row.message_id: 1 for row in rows}
    assert {row.attempts for row in rows} == {1}
