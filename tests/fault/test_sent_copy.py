"""The copy of each invoice mail in the mailbox's Sent folder, against Postfix and Dovecot.

The invoice goes out through the private Postfix; the copy is filed over the private
Dovecot's IMAP. What the practitioner sees in their mail client: the invoice in "Sent",
already read, the very message the patient received; nothing for Gmail (it files its own);
and a failing copy never touches the invoice's outcome, only its timeline, after retries.
"""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from emailsettings.models import (
    DeliveryEvent,
    DeliveryStatus,
    SentCopy,
    SentCopyState,
    SmtpAccount,
)
from emailsettings.outbox import sentcopy
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.outbox.worker import send_batch
from tests.factories import InvoiceFactory, PatientFactory
from tests.fault.conftest import imap_login
from tests.support.mta_fixtures import MTA_PATIENT, MTA_PATIENT_PASSWORD, PostfixMTA

pytestmark = pytest.mark.django_db

SENT = "Sent"


@pytest.fixture
def sent_folder(mta: PostfixMTA):
    """maria's Sent folder, emptied (the MTA is shared by the session)."""
    with imap_login(mta, mta.user, mta.password) as client:
        if not client.folder_exists(SENT):
            client.create_folder(SENT)
        client.select_folder(SENT)
        uids = client.search(["ALL"])
        if uids:
            client.delete_messages(uids)
            client.expunge()
    yield SENT
    with imap_login(mta, mta.user, mta.password) as client:
        client.delete_folder(SENT)


@pytest.fixture
def account(mail_account) -> SmtpAccount:
    return mail_account()


def send_one(practitioner):
    delivery = queue_invoice_email(
        InvoiceFactory(patient=PatientFactory(practitioner=practitioner, email=MTA_PATIENT))
    )
    send_batch(delivery_ids=[delivery.pk])
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT, delivery.last_error_text
    return delivery


def messages_in(mta, user, password, folder, criteria):
    with imap_login(mta, user, password) as client:
        client.select_folder(folder, readonly=True)
        uids = client.search(criteria)
        return [
            (data[b"BODY[]"], data[b"FLAGS"])
            for data in client.fetch(uids, ["BODY.PEEK[]", "FLAGS"]).values()
        ]


def test_the_invoice_is_filed_in_sent_as_the_patient_received_it(
    mta, account, practitioner, sent_folder
):
    delivery = send_one(practitioner)

    assert sentcopy.file_pending(account) == 1

    [(copy, flags)] = messages_in(mta, mta.user, mta.password, SENT, ["ALL"])
    assert b"\\Seen" in flags
    [(received, _flags)] = messages_in(
        mta,
        MTA_PATIENT,
        MTA_PATIENT_PASSWORD,
        "INBOX",
        ["HEADER", "Message-ID", delivery.message_id],
    )
    # The patient's copy is the same bytes, below the headers their server added.
    assert received.endswith(copy)
    assert delivery.message_id.encode() in copy
    stored = SentCopy.objects.get(delivery=delivery)
    assert stored.state == SentCopyState.FILED and bytes(stored.raw) == b""
    # Filed once.
    assert sentcopy.file_pending(account) == 0


def test_gmail_gets_no_copy_and_the_option_can_be_turned_off(
    mta, account, practitioner, sent_folder
):
    SmtpAccount.objects.filter(pk=account.pk).update(preset="gmail")
    send_one(practitioner)
    SmtpAccount.objects.filter(pk=account.pk).update(preset="custom", sent_copy=False)
    send_one(practitioner)

    assert not SentCopy.objects.exists()
    assert messages_in(mta, mta.user, mta.password, SENT, ["ALL"]) == []


def test_no_sent_folder_is_noted_and_the_invoice_stays_sent(mta, account, practitioner):
    delivery = send_one(practitioner)

    assert sentcopy.file_pending(account) == 0

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert SentCopy.objects.get(delivery=delivery).state == SentCopyState.FAILED
    event = DeliveryEvent.objects.filter(delivery=delivery).latest("id")
    assert "non ha una cartella della posta inviata" in event.text


def test_a_failing_append_is_retried_then_noted_without_touching_the_outcome(
    mta, account, practitioner, sent_folder
):
    delivery = send_one(practitioner)
    # The IMAP side stops answering as IMAP (the SMTP port): every attempt fails.
    SmtpAccount.objects.filter(pk=account.pk).update(imap_port=mta.submission_port)
    account.refresh_from_db()
    now = timezone.now()
    for attempt in range(1, sentcopy.MAX_ATTEMPTS + 1):
        sentcopy.file_pending(account, now=now)
        copy = SentCopy.objects.get(delivery=delivery)
        assert copy.attempts == attempt
        now = copy.next_attempt_at + datetime.timedelta(seconds=1)

    assert copy.state == SentCopyState.FAILED
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert (
        "non è stata salvata" in DeliveryEvent.objects.filter(delivery=delivery).latest("id").text
    )
    assert messages_in(mta, mta.user, mta.password, SENT, ["ALL"]) == []
