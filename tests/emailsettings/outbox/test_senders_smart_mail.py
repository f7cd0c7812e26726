"""Smart Mail on the wire: anymail's Postmark backend against a local stand-in of Postmark's
send API (``devtools/espserver.py``, a real HTTP/1.1 keep-alive server). A batch of one
practitioner's deliveries reuses one connection (the backend's session lives from the
batch's first send to its end); each batch opens its own."""

from __future__ import annotations

import pytest

from emailsettings.models import Channel, Delivery, DeliveryStatus, EmailSettings
from emailsettings.outbox.queueing import queue_invoice_emails
from emailsettings.outbox.worker import send_batch
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def smart_mail(settings, practitioner):
    settings.EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE = 0
    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMART_MAIL}
    )


def queue(practitioner, count: int, offset: int = 0) -> list[int]:
    invoices = [
        InvoiceFactory(
            patient=PatientFactory(practitioner=practitioner, email=f"p{offset + n}@example.test")
        )
        for n in range(count)
    ]
    return [row.pk for row in queue_invoice_emails(invoices)]


def test_a_batch_through_the_postmark_backend_uses_one_connection(
    postmark_standin, smart_mail, practitioner
):
    ids = queue(practitioner, 6)

    send_batch(delivery_ids=ids)

    rows = Delivery.objects.filter(pk__in=ids)
    assert {row.status for row in rows} == {DeliveryStatus.SENT}
    assert all(row.esp_message_id for row in rows)
    assert postmark_standin.messages == 6
    assert postmark_standin.connections == 1


def test_each_batch_opens_its_own_connection_and_closes_it(
    postmark_standin, smart_mail, practitioner
):
    first, second = queue(practitioner, 3), queue(practitioner, 3, offset=3)

    send_batch(delivery_ids=first)
    send_batch(delivery_ids=second)

    assert postmark_standin.messages == 6
    assert postmark_standin.connections == 2
