"""The daily mailbox check and the alert email, against the real Postfix + Dovecot.

A practitioner whose provider no longer takes the stored password (changed at the provider,
say) learns it from one email before the month's invoices fail: the mailbox turns "da
correggere", its waiting invoices are held, the banner shows it, and the next day's check
does not send a second email the same day.
"""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from emailsettings.health import daily as health
from emailsettings.models import (
    DeliveryStatus,
    MailboxStatus,
    SmtpAccount,
)
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.tasks import send_deliveries_task
from tests.factories import InvoiceFactory, PatientFactory
from tests.support.mta_fixtures import MTA_PATIENT

pytestmark = pytest.mark.django_db


@pytest.fixture
def mta(mta, settings):
    settings.EMAILSETTINGS_SITE_URL = "https://app.psicogest.test"
    return mta


@pytest.fixture
def account(mta, mail_account, practitioner) -> SmtpAccount:
    # Verify probes RCPT TO the practitioner's own address: one the MTA delivers to.
    practitioner.email = mta.user
    practitioner.save()
    return mail_account()


def test_a_refused_password_gives_one_alert_a_day_holds_invoices_and_shows_the_banner(
    mta, account, practitioner
):
    waiting = queue_invoice_email(
        InvoiceFactory(patient=PatientFactory(practitioner=practitioner, email=MTA_PATIENT))
    )
    account.set_password("la-vecchia-password")
    account.save()
    assert health.accounts_in_use() == [account.pk]

    assert health.check_account(account) is False

    account.refresh_from_db()
    assert account.status == MailboxStatus.BROKEN
    waiting.refresh_from_db()
    assert waiting.status == DeliveryStatus.HELD
    [alert] = mail.outbox
    assert alert.to == [practitioner.email]
    assert alert.subject == f"La tua casella {mta.user} ha bisogno di attenzione"
    assert "Il controllo giornaliero della tua casella" in alert.body
    assert "https://app.psicogest.test" + reverse("emailsettings:settings") + "#smtp" in alert.body
    assert "la-vecchia-password" not in alert.body
    client = Client()
    client.force_login(practitioner)
    page = client.get(reverse("emailsettings:settings")).content.decode()
    assert "da correggere" in page

    # The next run the same day: still broken, no second email.
    assert health.check_account(account) is False
    assert len(mail.outbox) == 1


def test_a_working_mailbox_gets_no_email(mta, account):
    assert health.check_account(account) is True
    account.refresh_from_db()
    assert account.status == MailboxStatus.OK
    assert mail.outbox == []


def test_a_refused_imap_login_is_an_alert_too(mta, account, settings):
    SmtpAccount.objects.filter(pk=account.pk).update(
        imap_enabled=True,
        imap_port=mta.submission_port,  # not an IMAP server at all
    )
    account.refresh_from_db()

    assert health.check_account(account) is False

    account.refresh_from_db()
    assert account.imap_error
    [alert] = mail.outbox
    assert "non riesce a leggere gli avvisi di mancata consegna" in alert.body


def test_a_batch_ending_with_failed_invoices_sends_the_same_email_once(mta, account, practitioner):
    deliveries = [
        queue_invoice_email(
            InvoiceFactory(patient=PatientFactory(practitioner=practitioner, email=address))
        )
        for address in ("nessuno@studio.test", "neanche@studio.test", MTA_PATIENT)
    ]

    send_deliveries_task([d.pk for d in deliveries])

    statuses = sorted(type(d).objects.get(pk=d.pk).status for d in deliveries)
    assert statuses == [DeliveryStatus.FAILED, DeliveryStatus.FAILED, DeliveryStatus.SENT]
    [alert] = mail.outbox
    assert "2 fatture non sono partite" in alert.body
    send_deliveries_task([d.pk for d in deliveries])
    assert len(mail.outbox) == 1
