"""Reading bounces from a mailbox connected with "Accedi con Google": IMAP logs in with SASL
XOAUTH2 and the same tokens as SMTP, against a real Dovecot whose ``oauth2`` passdb checks
each token at the test authorization server (``tests/support/oauth_imap.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.utils import timezone

from emailsettings.backchannel import reader as mailreader
from emailsettings.models import DeliveryStatus, SmtpAccount
from tests.emailsettings.mailbox.test_oauth_flow import MAILBOX, connect
from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db

# A real Postfix bounce quoting the Message-ID of the invoice it returns.
POSTFIX_BOUNCE = Path(__file__).resolve().parent.parent / "data" / "bounces" / "postfix_01.eml"
QUOTED_ID = "<p04330122b60007b33216@[17.216.27.250]>"


def test_a_connected_mailbox_is_read_over_xoauth2_with_its_own_tokens(
    logged_client,
    practitioner,
    oauth_provider,
    oauth_imap,
    trust_local_ca,
):
    connect(logged_client, oauth_provider)
    imap = oauth_imap(oauth_provider)
    account = SmtpAccount.objects.get(practitioner=practitioner)
    assert account.uses_oauth
    SmtpAccount.objects.filter(pk=account.pk).update(
        imap_enabled=True, imap_host=imap.host, imap_port=imap.port, imap_security="ssl"
    )
    account.refresh_from_db()
    invoice = InvoiceFactory(
        patient=PatientFactory(practitioner=practitioner, email="xxxxx@local.ie")
    )
    delivery = DeliveryFactory(
        invoice=invoice,
        channel="smtp",
        status="sent",
        sent_at=timezone.now(),
        message_id=QUOTED_ID,
    )
    imap.deliver(MAILBOX, POSTFIX_BOUNCE.read_bytes())

    result = mailreader.read_mailbox(account)

    assert result.ok, (result.error, imap.log_text()[-2000:])
    assert result.bounces == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.BOUNCED
    log = imap.log_text()
    assert f"Login: user=<{MAILBOX}>, method=XOAUTH2" in log
    access_token = account.get_oauth_tokens()[0]
    assert access_token and access_token not in log


def test_an_expired_token_is_refreshed_before_the_imap_login(
    logged_client,
    practitioner,
    oauth_provider,
    oauth_imap,
    trust_local_ca,
):
    connect(logged_client, oauth_provider)
    imap = oauth_imap(oauth_provider)
    account = SmtpAccount.objects.get(practitioner=practitioner)
    old_token = account.get_oauth_tokens()[0]
    SmtpAccount.objects.filter(pk=account.pk).update(
        imap_enabled=True,
        imap_host=imap.host,
        imap_port=imap.port,
        imap_security="ssl",
        oauth_access_token_expires_at=timezone.now(),
    )
    account.refresh_from_db()
    DeliveryFactory(
        invoice=InvoiceFactory(patient=PatientFactory(practitioner=practitioner)),
        channel="smtp",
        status="sent",
        sent_at=timezone.now(),
    )

    result = mailreader.read_mailbox(account)

    assert result.ok, (result.error, imap.log_text()[-2000:])
    account.refresh_from_db()
    assert account.get_oauth_tokens()[0] != old_token
    assert f"Login: user=<{MAILBOX}>, method=XOAUTH2" in imap.log_text()
