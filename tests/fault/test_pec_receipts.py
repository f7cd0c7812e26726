"""PEC receipts read from the practitioner's PEC mailbox, against real servers.

The invoice leaves through the private Postfix (``tests/support/mta_fixtures.py``) from a
mailbox on a PEC preset; the receipts its PEC provider would send back (built to the PEC
technical rules by ``devtools/pec.py``: ``X-Ricevuta``, ``X-Riferimento-Message-ID``, a
signed body with ``daticert.xml``) are put in the practitioner's INBOX over IMAP, and the
product reads them through the private Dovecot like any PEC mailbox.
"""

from __future__ import annotations

import datetime

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from devtools.pec import receipt
from emailsettings.backchannel import reader as mailreader
from emailsettings.failures import ErrorClass
from emailsettings.models import (
    DeliveryEvent,
    DeliveryStatus,
    EventKind,
    PecReceipt,
    SmtpAccount,
)
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.outbox.worker import send_batch
from tests.factories import InvoiceFactory, PatientFactory
from tests.fault.conftest import imap_login
from tests.support.mta_fixtures import MTA_PATIENT, PostfixMTA

pytestmark = pytest.mark.django_db


@pytest.fixture
def pec_account(mail_account) -> SmtpAccount:
    return mail_account(preset="aruba_pec", imap_enabled=True)


def put_in_inbox(mta: PostfixMTA, *messages: bytes) -> None:
    with imap_login(mta) as client:
        for raw in messages:
            client.append("INBOX", raw)


def unread_count(mta: PostfixMTA) -> int:
    with imap_login(mta) as client:
        client.select_folder("INBOX", readonly=True)
        return len(client.search(["UNSEEN"]))


def sent_invoice(mta: PostfixMTA, practitioner):
    before = len(mta.messages(MTA_PATIENT))
    delivery = queue_invoice_email(
        InvoiceFactory(patient=PatientFactory(practitioner=practitioner, email=MTA_PATIENT))
    )
    send_batch(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT, delivery.last_error_text
    [original] = [
        raw
        for raw in mta.wait_for_messages(MTA_PATIENT, before + 1)[before:]
        if delivery.message_id.encode() in raw
    ]
    return delivery, original


def receipt_for(delivery, kind: str, *, at: datetime.datetime, **extra) -> bytes:
    return receipt(
        kind,
        sender=delivery.from_header or "maria@studio.test",
        recipient=delivery.recipient,
        subject=delivery.subject,
        referenced_id=delivery.message_id,
        at=at,
        **extra,
    )


def test_acceptance_then_delivery_receipt_make_the_invoice_delivered_with_its_proof(
    mta, pec_account, practitioner, other_practitioner
):
    delivery, original = sent_invoice(mta, practitioner)
    accepted_at = timezone.localtime().replace(microsecond=0)
    accepted = receipt_for(delivery, "accettazione", at=accepted_at)
    delivered = receipt_for(
        delivery,
        "avvenuta-consegna",
        at=accepted_at + datetime.timedelta(seconds=4),
        original=original,
    )
    put_in_inbox(mta, accepted, delivered)
    unread = unread_count(mta)

    result = mailreader.read_mailbox(pec_account)

    assert result.ok, result.error
    assert result.bounces == 2
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    texts = list(
        DeliveryEvent.objects.filter(delivery=delivery, kind=EventKind.MAILBOX)
        .order_by("id")
        .values_list("text", flat=True)
    )
    assert texts[0].startswith("Accettata dal gestore PEC del mittente")
    assert texts[1].startswith("Consegnata (ricevuta PEC di avvenuta consegna del ")
    assert unread_count(mta) == unread  # nothing marked read

    # The receipts are downloadable from the delivery's page, byte for byte, by their owner.
    client = Client()
    client.force_login(practitioner)
    page = client.get(reverse("emailsettings:delivery", args=[delivery.pk])).content.decode()
    assert "Ricevuta di avvenuta consegna" in page
    stored = PecReceipt.objects.get(delivery=delivery, kind="avvenuta-consegna")
    url = reverse("emailsettings:pec_receipt", args=[delivery.pk, stored.pk])
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "message/rfc822"
    assert response.content == delivered
    intruder = Client()
    intruder.force_login(other_practitioner)
    assert intruder.get(url).status_code == 404

    # Read once: the same receipts are not recorded twice.
    again = mailreader.read_mailbox(pec_account)
    assert again.ok and again.bounces == 0
    assert PecReceipt.objects.filter(delivery=delivery).count() == 2


def test_a_non_delivery_notice_fails_the_invoice_with_the_reason(mta, pec_account, practitioner):
    delivery, _original = sent_invoice(mta, practitioner)
    at = timezone.localtime().replace(microsecond=0)
    put_in_inbox(
        mta,
        receipt_for(delivery, "accettazione", at=at),
        receipt_for(
            delivery,
            "errore-consegna",
            at=at + datetime.timedelta(minutes=1),
            error="no-dest",
            extended_error="5.1.1 - casella del destinatario inesistente",
        ),
    )

    assert mailreader.read_mailbox(pec_account).ok

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error_class == ErrorClass.RECIPIENT_REFUSED
    event = DeliveryEvent.objects.filter(delivery=delivery).latest("id")
    assert event.text.startswith("Non consegnata: avviso PEC di mancata consegna del ")
    assert "casella del destinatario inesistente" in event.text
    assert PecReceipt.objects.filter(delivery=delivery, kind="errore-consegna").exists()


def test_a_receipt_for_another_practitioners_message_changes_nothing(
    mta, pec_account, practitioner, other_practitioner
):
    theirs = queue_invoice_email(
        InvoiceFactory(patient=PatientFactory(practitioner=other_practitioner, email=MTA_PATIENT))
    )
    mine, _original = sent_invoice(mta, practitioner)
    at = timezone.localtime().replace(microsecond=0)
    put_in_inbox(mta, receipt_for(theirs, "avvenuta-consegna", at=at))

    assert mailreader.read_mailbox(pec_account).ok

    theirs.refresh_from_db()
    assert theirs.status != DeliveryStatus.DELIVERED
    assert not PecReceipt.objects.filter(delivery=theirs).exists()
    mine.refresh_from_db()
    assert mine.status == DeliveryStatus.SENT
