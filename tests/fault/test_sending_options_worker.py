"""The sending options through the real parts: a Celery worker process on Redis, the
practitioner's mailbox on an aiosmtpd server with STARTTLS and AUTH, PostgreSQL.

Time is driven, not slept: a scheduled row's time is moved into the past and the sweeper is
run in process, as beat would every 30 seconds.
"""

from __future__ import annotations

import datetime
import time
from collections import Counter

import pytest
from django.utils import timezone

from emailsettings.models import Channel, Delivery, DeliveryStatus, EmailSettings, RecipientRole
from emailsettings.outbox.actions import cancel_scheduled
from emailsettings.outbox.publish import publish_ids
from emailsettings.outbox.queueing import queue_invoice_batch, queue_invoice_email
from emailsettings.outbox.sweeper import sweep
from tests.conftest import wait_until
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

FAST = {
    "EMAILSETTINGS_RETRY_BASE_SECONDS": "0.3",
    "EMAILSETTINGS_LEASE_SECONDS": "3",
    "EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE": "60000",
}


@pytest.fixture
def outbox(
    settings, local_ca, celery_worker_factory, practitioner, smtp_server, smtp_account_factory
):
    for name, value in FAST.items():
        setattr(settings, name, float(value))
    smtp_account_factory(smtp_server)
    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMTP}
    )
    worker = celery_worker_factory(EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file, **FAST)
    return smtp_server, worker


def statuses(ids) -> set[str]:
    return set(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True))


def test_a_scheduled_invoice_leaves_at_its_time_not_before(outbox, practitioner):
    server, worker = outbox
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))

    delivery = queue_invoice_email(invoice, send_at=timezone.now() + datetime.timedelta(hours=1))
    assert delivery.status == DeliveryStatus.SCHEDULED

    # Before its time: the sweeper leaves it alone, and nothing reaches the server, even
    # when the row's id is handed to the worker directly.
    assert sweep().released == 0
    publish_ids([delivery.pk])
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert server.messages == []
        time.sleep(0.2)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SCHEDULED and delivery.attempts == 0

    # Its time comes.
    Delivery.objects.filter(pk=delivery.pk).update(
        scheduled_for=timezone.now() - datetime.timedelta(seconds=1)
    )
    assert sweep().released == 1
    wait_until(
        lambda: statuses([delivery.pk]) == {DeliveryStatus.SENT},
        timeout=30,
        message="the scheduled row was not sent:\n" + worker.log()[-2000:],
    )
    assert Counter(server.message_ids()) == {delivery.message_id: 1}
    delivery.refresh_from_db()
    assert delivery.sent_at >= delivery.scheduled_for


def test_other_recipients_and_the_copy_each_get_their_own_message(outbox, practitioner):
    server, worker = outbox
    EmailSettings.objects.filter(practitioner=practitioner).update(copy_to_self=True)
    patient = PatientFactory(
        practitioner=practitioner,
        email="giulia@example.test",
        extra_emails=["mamma@example.test", "papa@example.test"],
    )
    invoice = InvoiceFactory(patient=patient)

    rows = queue_invoice_batch([invoice])

    ids = [row.pk for row in rows]
    wait_until(
        lambda: statuses(ids) == {DeliveryStatus.SENT},
        timeout=30,
        message="not all rows were sent:\n" + worker.log()[-2000:],
    )
    expected = {
        "giulia@example.test": RecipientRole.PATIENT,
        "mamma@example.test": RecipientRole.EXTRA,
        "papa@example.test": RecipientRole.EXTRA,
        practitioner.email: RecipientRole.COPY,
    }
    assert {row.recipient: row.role for row in rows} == expected
    by_id = {row.message_id: row.recipient for row in rows}
    assert len(by_id) == 4
    assert Counter(server.message_ids()) == dict.fromkeys(by_id, 1)
    for received in server.messages:
        message = received.message
        address = by_id[message["Message-ID"]]
        # One envelope recipient, one To, and nobody else's address anywhere in the headers.
        assert received.rcpt_tos == [address]
        assert message["To"] == address
        assert message["Cc"] is None and message["Bcc"] is None
        others = set(expected) - {address}
        headers = "".join(f"{name}: {value}\n" for name, value in message.items())
        assert not any(other in headers for other in others if other != practitioner.email)
    invoice.refresh_from_db()
    assert invoice.last_emailed_at is not None


def test_a_cancelled_scheduled_invoice_never_leaves(outbox, practitioner):
    server, _worker = outbox
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    delivery = queue_invoice_email(invoice, send_at=timezone.now() + datetime.timedelta(minutes=5))

    cancel_scheduled(delivery=delivery)
    Delivery.objects.filter(pk=delivery.pk).update(
        scheduled_for=timezone.now() - datetime.timedelta(seconds=1)
    )
    assert sweep().released == 0
    publish_ids([delivery.pk])
    time.sleep(1.5)

    assert server.messages == []
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.CANCELLED
