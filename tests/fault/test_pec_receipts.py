"""PEC receipts read from the practitioner's PEC mailbox, against real servers.

The invoice leaves through the private Postfix (``tests/support/mta_fixtures.py``) from a
mailbox on a PEC preset; the receipts its PEC provider would send back (built to the PEC
technical rules by ``devtools/pec.py``: ``X-Ricevuta``, ``X-Riferimento-Message-ID``, a
signed body with ``daticert.xml``) are put in the practitioner's INBOX over IMAP, and the
product reads them through the private Dovecot like any PEC mailbox.
"""

from __future__ import annotations

import datetime
import email
import email.policy

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from devtools.pec import PROVIDER_ADDRESS, receipt
from devtools.smtpserver import LocalCA
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
def pec_account(mail_account, clean_inbox, settings, local_ca) -> SmtpAccount:
    # The accredited providers the operator trusts: here the tests' CA, which issued the
    # "Gestore PEC di prova"'s signing certificate.
    settings.EMAILSETTINGS_PEC_TRUST_BUNDLE = local_ca.ca_file
    return mail_account(preset="aruba_pec", imap_enabled=True)


@pytest.fixture
def provider(local_ca):
    """The PEC provider's signing certificate and key, issued by the trusted CA."""
    return local_ca.pec_signer(PROVIDER_ADDRESS)


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


def receipt_for(delivery, kind: str, *, at: datetime.datetime, signer, **extra) -> bytes:
    return receipt(
        kind,
        sender=delivery.from_header or "maria@studio.test",
        recipient=delivery.recipient,
        subject=delivery.subject,
        referenced_id=delivery.message_id,
        at=at,
        signer=signer,
        **extra,
    )


def test_acceptance_then_delivery_receipt_make_the_invoice_delivered_with_its_proof(
    mta, pec_account, practitioner, provider, other_practitioner
):
    delivery, original = sent_invoice(mta, practitioner)
    accepted_at = timezone.localtime().replace(microsecond=0)
    accepted = receipt_for(delivery, "accettazione", at=accepted_at, signer=provider)
    delivered = receipt_for(
        delivery,
        "avvenuta-consegna",
        at=accepted_at + datetime.timedelta(seconds=4),
        original=original,
        signer=provider,
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
    assert "Ricevuta verificata: firmata da Gestore PEC di prova" in page
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


def test_a_non_delivery_notice_fails_the_invoice_with_the_reason(
    mta, pec_account, practitioner, provider
):
    delivery, _original = sent_invoice(mta, practitioner)
    at = timezone.localtime().replace(microsecond=0)
    put_in_inbox(
        mta,
        receipt_for(delivery, "accettazione", at=at, signer=provider),
        receipt_for(
            delivery,
            "errore-consegna",
            at=at + datetime.timedelta(minutes=1),
            error="no-dest",
            extended_error="5.1.1 - casella del destinatario inesistente",
            signer=provider,
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
    mta, pec_account, practitioner, provider, other_practitioner
):
    theirs = queue_invoice_email(
        InvoiceFactory(patient=PatientFactory(practitioner=other_practitioner, email=MTA_PATIENT))
    )
    mine, _original = sent_invoice(mta, practitioner)
    at = timezone.localtime().replace(microsecond=0)
    put_in_inbox(mta, receipt_for(theirs, "avvenuta-consegna", at=at, signer=provider))

    assert mailreader.read_mailbox(pec_account).ok

    theirs.refresh_from_db()
    assert theirs.status != DeliveryStatus.DELIVERED
    assert not PecReceipt.objects.filter(delivery=theirs).exists()
    mine.refresh_from_db()
    assert mine.status == DeliveryStatus.SENT


# --- forged receipts: anyone can write one -------------------------------------------------


def _unsigned(raw: bytes) -> bytes:
    """The same receipt without its signature: the signed part, under the outer headers."""
    outer = email.message_from_bytes(raw, policy=email.policy.compat32)
    inner = outer.get_payload(0)
    for name in ("From", "To", "Subject", "Date", "Message-ID", "X-Ricevuta"):
        inner[name] = outer[name]
    inner["X-Riferimento-Message-ID"] = outer["X-Riferimento-Message-ID"]
    return inner.as_bytes()


def _tampered(raw: bytes) -> bytes:
    """The signed text changed after signing (the signature no longer matches)."""
    return raw.replace(b"Ricevuta: il giorno", b"Ricevuta: la sera", 1)


@pytest.mark.parametrize(
    "forgery", ["unsigned", "tampered", "another CA", "another provider's certificate"]
)
def test_a_forged_non_delivery_notice_never_undoes_a_certified_delivery(
    mta, pec_account, practitioner, provider, local_ca, tmp_path, forgery
):
    """A patient has the invoice's Message-ID: they can write an "errore-consegna". Only the
    provider's verified signature makes a receipt count; the forgery is a note on the
    timeline, never a status change, never listed or downloadable as proof."""
    delivery, original = sent_invoice(mta, practitioner)
    at = timezone.localtime().replace(microsecond=0)
    put_in_inbox(
        mta, receipt_for(delivery, "avvenuta-consegna", at=at, signer=provider, original=original)
    )
    assert mailreader.read_mailbox(pec_account).bounces == 1
    signer = provider
    if forgery == "another CA":
        signer = LocalCA.create(tmp_path / "other-ca").pec_signer(PROVIDER_ADDRESS)
    elif forgery == "another provider's certificate":
        signer = local_ca.pec_signer("posta-certificata@altro-gestore.test")
    forged = receipt_for(
        delivery,
        "errore-consegna",
        at=at + datetime.timedelta(minutes=1),
        signer=signer,
        error="no-dest",
        extended_error="5.1.1 - casella del destinatario inesistente",
    )
    if forgery == "unsigned":
        forged = _unsigned(forged)
    elif forgery == "tampered":
        forged = _tampered(forged)
    put_in_inbox(mta, forged)

    result = mailreader.read_mailbox(pec_account)

    assert result.ok and result.bounces == 0
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert list(PecReceipt.objects.filter(delivery=delivery).values_list("kind", flat=True)) == [
        "avvenuta-consegna"
    ]
    note = DeliveryEvent.objects.filter(delivery=delivery).latest("id")
    assert note.status == DeliveryStatus.DELIVERED
    assert "non verificata" in note.text and "non vale come prova" in note.text


def test_a_forged_delivery_receipt_on_a_mailbox_that_is_not_pec_is_ignored(
    mta, mail_account, clean_inbox, practitioner, settings, local_ca, provider
):
    settings.EMAILSETTINGS_PEC_TRUST_BUNDLE = local_ca.ca_file
    account = mail_account(imap_enabled=True)  # a plain mailbox, not a PEC provider's
    delivery, _original = sent_invoice(mta, practitioner)
    at = timezone.localtime().replace(microsecond=0)
    put_in_inbox(mta, receipt_for(delivery, "avvenuta-consegna", at=at, signer=provider))

    assert mailreader.read_mailbox(account).ok

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert not PecReceipt.objects.exists()
    assert not DeliveryEvent.objects.filter(delivery=delivery, kind=EventKind.MAILBOX).exists()


def test_without_a_trust_bundle_no_receipt_counts(
    mta, pec_account, practitioner, provider, settings
):
    settings.EMAILSETTINGS_PEC_TRUST_BUNDLE = ""
    delivery, original = sent_invoice(mta, practitioner)
    at = timezone.localtime().replace(microsecond=0)
    put_in_inbox(
        mta, receipt_for(delivery, "avvenuta-consegna", at=at, signer=provider, original=original)
    )

    assert mailreader.read_mailbox(pec_account).bounces == 0

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert not PecReceipt.objects.exists()
