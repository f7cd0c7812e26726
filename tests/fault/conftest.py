"""Shared by the tests that read the practitioner's mailbox back (bounces, PEC receipts,
Sent copies, the daily check): the private Postfix + Dovecot of ``tests/support/mta_fixtures.py``
configured for the product, and the practitioner's mailbox on it (SMTP and IMAP)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import imapclient
import pytest

from emailsettings.models import Channel, EmailSettings, SmtpAccount
from tests.support.mta_fixtures import PostfixMTA


@pytest.fixture
def mta(postfix_mta: PostfixMTA, settings) -> PostfixMTA:
    """The shared Postfix + Dovecot, its log forgotten; the product trusts its CA."""
    settings.EMAILSETTINGS_SMTP_EXTRA_CA_FILE = postfix_mta.ca_file
    settings.EMAILSETTINGS_SMTP_RATE_LIMIT_PER_MINUTE = 60000.0
    postfix_mta.clear_log()
    return postfix_mta


@pytest.fixture
def mail_account(mta: PostfixMTA, smtp_account_factory, practitioner) -> Callable[..., SmtpAccount]:
    """``mail_account(**fields)``: maria@studio.test as the practitioner's mailbox (SMTP on
    the submission port, IMAP on Dovecot), invoices sent through it."""
    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMTP}
    )

    def make(**fields: Any) -> SmtpAccount:
        values: dict[str, Any] = {
            "host": mta.host,
            "port": mta.submission_port,
            "security": "starttls",
            "username": mta.user,
            "email": mta.user,
            "password": mta.password,
            "imap_host": mta.host,
            "imap_port": mta.imap_port,
            "imap_security": "ssl",
        }
        values.update(fields)
        return smtp_account_factory(None, **values)

    return make


def imap_login(mta: PostfixMTA, user: str | None = None, password: str | None = None):
    """A test's own IMAP session on the Dovecot (as maria unless told)."""
    context = ssl.create_default_context(cafile=mta.ca_file)
    client = imapclient.IMAPClient(mta.host, port=mta.imap_port, ssl=True, ssl_context=context)
    client.login(user or mta.user, password or mta.password)
    return client


@pytest.fixture
def clean_inbox(mta: PostfixMTA):
    """The Postfix + Dovecot are shared by the session: what a test leaves in maria's
    INBOX (crafted reports, receipts naming the shared test patient) is removed after it."""
    with imap_login(mta) as client:
        client.select_folder("INBOX")
        before = set(client.search(["ALL"]))
    yield
    with imap_login(mta) as client:
        client.select_folder("INBOX")
        added = [uid for uid in client.search(["ALL"]) if uid not in before]
        if added:
            client.delete_messages(added)
            client.expunge()
