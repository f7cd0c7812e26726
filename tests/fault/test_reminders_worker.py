"""Payment reminders through the real outbox: PostgreSQL, Redis, a Celery worker process and an
aiosmtpd server with STARTTLS and AUTH.

A reminder is received like an invoice mail (with the invoice when the rules say so); an
invoice marked paid after its reminder was queued gets none (the worker checks again right
before sending); a refused address stops the next level.
"""

from __future__ import annotations

import datetime
import zoneinfo
from collections import Counter

import pytest
import time_machine

from emailsettings.models import Channel, Delivery, DeliveryStatus, EmailSettings, EventKind
from emailsettings.outbox import reminders
from emailsettings.outbox.sweeper import sweep
from psicogest.payments import mark_paid
from tests.conftest import wait_until
from tests.factories import InvoiceFactory, PatientFactory
from tests.fault.test_delivery_faults import FAST

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

ROME = zoneinfo.ZoneInfo("Europe/Rome")


@pytest.fixture
def outbox(settings, local_ca, celery_worker_factory, practitioner):
    """Fast retry settings here and in the workers; the practitioner sends by SMTP."""
    for name, value in FAST.items():
        setattr(settings, name, float(value))
    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMTP}
    )

    def start_worker():
        return celery_worker_factory(EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file, **FAST)

    return start_worker


@pytest.fixture
def rules(practitioner):
    rules = reminders.rules_for(practitioner)
    rules.enabled = True
    rules.save()
    return rules


def overdue_invoice(practitioner, *, email: str = "anna@example.test", **fields):
    patient = PatientFactory(practitioner=practitioner, email=email, first_name="Anna")
    return InvoiceFactory(
        patient=patient,
        due_date=datetime.date(2026, 11, 2),
        issue_date=datetime.date(2026, 10, 2),
        **fields,
    )


def settled(ids, *final: str) -> bool:
    found = set(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True))
    return bool(found) and found <= set(final)


def drive(predicate, *, timeout: float = 60.0):
    def step():
        sweep()
        return predicate()

    return wait_until(step, timeout=timeout, interval=0.3)


def test_a_reminder_leaves_through_the_worker_with_the_invoice_attached(
    outbox, smtp_server, smtp_account_factory, practitioner, rules
):
    smtp_account_factory(smtp_server)
    outbox()
    invoice = overdue_invoice(practitioner)
    [row] = reminders.create_reminder(invoice=invoice, level=1)

    drive(lambda: settled([row.pk], DeliveryStatus.SENT), timeout=30)
    assert Counter(smtp_server.message_ids()) == {row.message_id: 1}
    [received] = smtp_server.messages
    message = received.message
    assert received.rcpt_tos == ["anna@example.test"]
    assert message["Subject"] == f"Promemoria: fattura n. {invoice.number} del 02/10/2026"
    text = message.get_body(("plain",)).get_content()
    assert "risulta ancora da saldare per € 1.234,56" in text
    [pdf] = list(message.iter_attachments())
    assert pdf.get_content() == invoice.pdf.open("rb").read()


def test_a_reminder_without_the_invoice_has_no_attachment(
    outbox, smtp_server, smtp_account_factory, practitioner, rules
):
    rules.attach_invoice = False
    rules.save()
    smtp_account_factory(smtp_server)
    outbox()
    invoice = overdue_invoice(practitioner)
    [row] = reminders.create_reminder(invoice=invoice, level=2)
    drive(lambda: settled([row.pk], DeliveryStatus.SENT), timeout=30)
    [received] = smtp_server.messages
    assert list(received.message.iter_attachments()) == []
    assert received.message["Subject"].startswith("Secondo promemoria")


def test_an_invoice_paid_between_queueing_and_sending_gets_no_reminder(
    outbox, smtp_server, smtp_account_factory, practitioner, rules
):
    smtp_account_factory(smtp_server)
    invoice = overdue_invoice(practitioner)
    paid_later = overdue_invoice(practitioner, email="piero@example.test")
    # Queued while no worker runs: the task waits in the broker.
    [row] = reminders.create_reminder(invoice=invoice, level=1)
    [other] = reminders.create_reminder(invoice=paid_later, level=1)
    assert Delivery.objects.get(pk=row.pk).status == DeliveryStatus.QUEUED
    # A minute later the patient pays, and the practitioner marks it.
    mark_paid(invoice=invoice)
    outbox()

    drive(lambda: settled([row.pk], DeliveryStatus.CANCELLED), timeout=30)
    drive(lambda: settled([other.pk], DeliveryStatus.SENT), timeout=30)
    assert Counter(smtp_server.message_ids()) == {other.message_id: 1}
    event = Delivery.objects.get(pk=row.pk).events.order_by("-created_at", "-id").first()
    assert event.status == DeliveryStatus.CANCELLED and event.kind == EventKind.ACTION
    assert "la fattura è pagata" in event.display_text


def test_a_refused_address_stops_the_next_level(
    outbox, smtp_server, smtp_account_factory, practitioner, rules
):
    smtp_account_factory(smtp_server)
    outbox()
    invoice = overdue_invoice(practitioner, email="nessuno@rifiuta.test")
    [row] = reminders.create_reminder(invoice=invoice, level=1)
    drive(lambda: settled([row.pk], DeliveryStatus.FAILED), timeout=30)
    assert smtp_server.messages == []
    # Weeks later, on a working morning: level 2 is due, but the address must be fixed first.
    moment = datetime.datetime(2027, 2, 1, 9, 0, tzinfo=ROME)
    with time_machine.travel(moment, tick=False):
        assert reminders.create_due_reminders(now=moment) == []
        assert reminders.due_reminders(practitioner=practitioner, now=moment, days=14) == []
