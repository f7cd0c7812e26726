"""The notice after a batch names what needs attention: a recipient's address refused by its
server (550 5.1.1) is the patient card's problem, never "your mailbox needs attention"; a
refused login is the mailbox's.

A real aiosmtpd server answers; the batch runs through the send task as a worker runs it.
"""

from __future__ import annotations

import pytest
from django.core import mail

from emailsettings.models import Channel, Delivery, DeliveryStatus, EmailSettings
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.tasks import send_deliveries_task
from tests.factories import InvoiceFactory, PatientFactory
from tests.support.smtp_fixtures import SMTP_USER

MAILBOX_SUBJECT = f"La tua casella {SMTP_USER} ha bisogno di attenzione"


@pytest.fixture
def smtp_practitioner(practitioner, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    EmailSettings.objects.create(practitioner=practitioner, channel=Channel.SMTP)
    mail.outbox = []
    return practitioner


def send_to(practitioner, address: str) -> Delivery:
    patient = PatientFactory(practitioner=practitioner, email=address)
    delivery = queue_invoice_email(InvoiceFactory(patient=patient, number="8/2026"))
    send_deliveries_task(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    return delivery


@pytest.mark.django_db(transaction=True)
def test_a_refused_recipient_names_the_address_not_the_mailbox(
    smtp_practitioner, smtp_server, smtp_account_factory
):
    smtp_account_factory(smtp_server)
    delivery = send_to(smtp_practitioner, "elena.greco@rifiuta.test")
    assert (delivery.status, delivery.last_error_enhanced) == (DeliveryStatus.FAILED, "5.1.1")

    assert len(mail.outbox) == 1
    notice = mail.outbox[0]
    assert notice.to == [smtp_practitioner.email]
    assert notice.subject == "Un indirizzo email da correggere: la fattura non è partita"
    assert "ha bisogno di attenzione" not in notice.subject + notice.body
    assert f"La tua casella {SMTP_USER} funziona" in notice.body
    assert "«Correggi l'indirizzo»" in notice.body
    # No patient data in the notice: the report names them.
    assert "elena" not in notice.body.lower()


@pytest.mark.django_db(transaction=True)
def test_a_refused_login_says_the_mailbox_needs_attention(
    smtp_practitioner, smtp_server, smtp_account_factory
):
    smtp_account_factory(smtp_server, password="non-quella-giusta")
    delivery = send_to(smtp_practitioner, "giulia@example.test")
    assert delivery.status == DeliveryStatus.HELD

    assert [message.subject for message in mail.outbox] == [MAILBOX_SUBJECT]
    assert "Alcune fatture inviate con la tua casella" in mail.outbox[0].body
