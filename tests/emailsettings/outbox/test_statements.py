"""An outcome in one statement (``outbox.statements.update_then``): the row's conditional
update, its event and the invoice's "last emailed" land together or not at all — one
PostgreSQL statement, or one transaction on the other databases (tried here by making the
connection look like another vendor)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from emailsettings.models import Delivery, DeliveryEvent, DeliveryStatus, EventKind
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.outbox.statements import update_then
from psicogest.models import Invoice
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["postgresql", "another database"])
def vendor(request, monkeypatch):
    if request.param != "postgresql":
        monkeypatch.setattr(connection, "vendor", "sqlite")
    return request.param


def write(delivery: Delivery, *, attempts: int) -> bool:
    now = timezone.now()
    return update_then(
        Delivery.objects.filter(pk=delivery.pk, attempts=attempts),
        {"status": DeliveryStatus.SENT, "sent_at": now},
        insert=DeliveryEvent(
            delivery_id=delivery.pk,
            kind=EventKind.ATTEMPT,
            status=DeliveryStatus.SENT,
            text="Accettata dal server.",
            text_params={"code": 250},
        ),
        follow=[(Invoice.objects.filter(pk=delivery.invoice_id), {"last_emailed_at": now})],
    )


def test_the_row_its_event_and_the_invoice_land_together(vendor, practitioner):
    delivery = queue_invoice_email(
        InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    )

    with CaptureQueriesContext(connection) as captured:
        assert write(delivery, attempts=0) is True

    if vendor == "postgresql":
        assert len(captured.captured_queries) == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    event = delivery.events.get(kind=EventKind.ATTEMPT)
    assert (event.status, event.text, event.text_params) == (
        DeliveryStatus.SENT,
        "Accettata dal server.",
        {"code": 250},
    )
    assert event.created_at is not None
    assert Invoice.objects.get(pk=delivery.invoice_id).last_emailed_at == delivery.sent_at


def test_nothing_is_written_when_the_row_is_not_the_one_expected(vendor, practitioner):
    delivery = queue_invoice_email(
        InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    )

    # Another attempt owns the row now (the fencing token moved on).
    assert write(delivery, attempts=7) is False

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.QUEUED
    assert not delivery.events.filter(kind=EventKind.ATTEMPT).exists()
    assert Invoice.objects.get(pk=delivery.invoice_id).last_emailed_at is None
