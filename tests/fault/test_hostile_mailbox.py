"""A hostile mailbox only slows its owner: a server that drips a "220-" line every half second
(no single read ever times out) with a real worker of two slots, PostgreSQL and Redis.

Measured before the fix: with two worker slots, 20 invoices of the dripping practitioner
delayed another practitioner's Smart Mail invoice by about two minutes.
"""

from __future__ import annotations

import time

import pytest

from devtools.smtpserver import DripServer
from emailsettings.failures import ErrorClass
from emailsettings.models import Channel, Delivery, DeliveryStatus, EmailSettings
from emailsettings.outbox.queueing import queue_invoice_email, queue_invoice_emails
from tests.conftest import wait_until
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

LIMITS = {
    "EMAILSETTINGS_SMTP_SEND_TIMEOUT_SECONDS": "2",
    "EMAILSETTINGS_BATCH_SIZE": "5",
    "EMAILSETTINGS_MAILBOX_WORKER_SLOTS": "1",
    "EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE": "60000",
    "EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE": "0",
    "EMAILSETTINGS_RETRY_BASE_SECONDS": "600",
}


@pytest.fixture
def drip_server():
    with DripServer(interval=0.5) as server:
        yield server


def test_a_dripping_mailbox_does_not_delay_another_practitioners_invoice(
    settings,
    local_ca,
    celery_worker_factory,
    practitioner,
    other_practitioner,
    smtp_account_factory,
    drip_server,
):
    for name, value in LIMITS.items():
        setattr(settings, name, float(value))
    smtp_account_factory(drip_server, security="starttls")
    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMTP}
    )
    celery_worker_factory(
        concurrency=2, EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file, **LIMITS
    )

    dripping = queue_invoice_emails(
        [
            InvoiceFactory(
                patient=PatientFactory(practitioner=practitioner, email=f"p{n}@example.test")
            )
            for n in range(20)
        ]
    )
    time.sleep(0.5)  # the dripping batches reach the worker first
    other = queue_invoice_email(
        InvoiceFactory(patient=PatientFactory(practitioner=other_practitioner))
    )
    queued_at = time.monotonic()

    wait_until(
        lambda: Delivery.objects.get(pk=other.pk).status == DeliveryStatus.SENT,
        timeout=20,
        message="the other practitioner's invoice waited behind the dripping mailbox",
    )
    other_waited = time.monotonic() - queued_at

    ids = [delivery.pk for delivery in dripping]
    wait_until(
        lambda: (
            not Delivery.objects.filter(
                pk__in=ids, status__in=(DeliveryStatus.QUEUED, DeliveryStatus.SENDING)
            ).exists()
        ),
        timeout=60,
        message="the dripping mailbox's invoices were not all settled",
    )
    rows = list(Delivery.objects.filter(pk__in=ids))
    assert {row.status for row in rows} == {DeliveryStatus.DEFERRED}
    assert {row.last_error_class for row in rows} == {ErrorClass.TIMEOUT}
    # One worker slot for the mailbox: never two sessions to it at once, and no session
    # per invoice (the rows of a batch share the first one's failure): at most one session
    # and one TLS probe (is it an implicit-TLS port?) per batch of five.
    assert drip_server.max_concurrent == 1
    assert drip_server.connections <= 2 * 4
    # Well under the old two minutes (the deadline is 2 s per reply here).
    assert other_waited < 10, other_waited
