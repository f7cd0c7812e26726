"""Bounces read back from the practitioner's own mailbox, against real servers.

The invoice leaves through the private Postfix of ``tests/support/mta_fixtures.py`` on its
``accept_all_port``, which accepts an unknown user at RCPT like a recipient's provider does;
``virtual(8)`` then bounces it, and Postfix delivers its own bounce (a real RFC 3464 report)
to the practitioner's maildir. The product reads that maildir through the private Dovecot's
IMAP (implicit TLS, verified against the test CA) with the practitioner's credentials.

What a practitioner notices: the report turns "inviata" into "rimbalzata" with the reason;
the address is suspended; nothing else in their mailbox changes (no message marked read);
a second read finds nothing new; a wrong password is a clear reason and a later retry.
"""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from emailsettings.backchannel import reader as mailreader
from emailsettings.failures import ErrorClass
from emailsettings.models import (
    DeliveryEvent,
    DeliveryStatus,
    EventKind,
    SmtpAccount,
    SuppressedAddress,
)
from tests.fault.conftest import imap_login
from tests.support.devmail import send_invoices_now
from tests.support.mta_fixtures import MTA_PATIENT, PostfixMTA

pytestmark = pytest.mark.django_db

UNKNOWN_PATIENT = "nessuno@studio.test"


@pytest.fixture
def account(mta, mail_account) -> SmtpAccount:
    """Sending through the accept-all listener, reading over IMAP."""
    return mail_account(port=mta.accept_all_port, imap_enabled=True)


def inbox_flags(mta: PostfixMTA) -> dict[int, tuple[bytes, ...]]:
    with imap_login(mta) as client:
        client.select_folder("INBOX", readonly=True)
        uids = client.search(["ALL"])
        return {
            uid: tuple(sorted(data[b"FLAGS"]))
            for uid, data in client.fetch(uids, ["FLAGS"]).items()
        }


def append_to_inbox(mta: PostfixMTA, message: EmailMessage, flags: tuple[bytes, ...] = ()):
    with imap_login(mta) as client:
        client.append("INBOX", message.as_bytes(), flags=flags)


def test_a_real_postfix_bounce_marks_the_invoice_bounced(mta, account, practitioner):
    before = len(mta.messages(mta.user))
    bounced, delivered = send_invoices_now(practitioner, UNKNOWN_PATIENT, MTA_PATIENT)
    # Postfix's own bounce reaches the practitioner's mailbox.
    [bounce] = [
        raw
        for raw in mta.wait_for_messages(mta.user, before + 1)[before:]
        if bounced.message_id.encode() in raw
    ]
    assert b"multipart/report" in bounce
    # A patient's reply, already read by the practitioner, sits beside it.
    reply = EmailMessage()
    reply["From"] = MTA_PATIENT
    reply["To"] = mta.user
    reply["Subject"] = "Re: la fattura"
    reply["In-Reply-To"] = delivered.message_id
    reply.set_content("Ricevuta, grazie.")
    append_to_inbox(mta, reply, flags=(b"\\Seen",))
    flags_before = inbox_flags(mta)

    result = mailreader.read_mailbox(account)

    assert result.ok, result.error
    assert result.bounces == 1
    bounced.refresh_from_db()
    assert bounced.status == DeliveryStatus.BOUNCED
    assert bounced.last_error_class == ErrorClass.BOUNCED
    event = DeliveryEvent.objects.filter(delivery=bounced).latest("id")
    assert event.kind == EventKind.MAILBOX
    assert f"l'indirizzo {UNKNOWN_PATIENT} non esiste" in event.text
    assert "unknown user" in event.text.lower()  # Postfix's own reason
    assert SuppressedAddress.objects.filter(
        practitioner=practitioner, address=UNKNOWN_PATIENT
    ).exists()
    delivered.refresh_from_db()
    assert delivered.status == DeliveryStatus.SENT
    # Nothing in the mailbox changed: the bounce is still unread, the reply still read.
    assert inbox_flags(mta) == flags_before
    account.refresh_from_db()
    assert account.imap_read_at is not None and account.imap_error == ""

    # Read once: the next pass looks at nothing already seen.
    events = DeliveryEvent.objects.count()
    again = mailreader.read_mailbox(account)
    assert again.ok and again.looked_at == 0 and again.bounces == 0
    assert DeliveryEvent.objects.count() == events


def test_a_wrong_mailbox_password_is_a_clear_reason_and_a_later_retry(mta, account, practitioner):
    send_invoices_now(practitioner, MTA_PATIENT)
    account.set_password("non-e-la-password")
    account.save()

    result = mailreader.read_mailbox(account)

    assert not result.ok
    account.refresh_from_db()
    assert account.imap_error == "Il server IMAP ha rifiutato nome utente o password."
    assert "non-e-la-password" not in account.imap_error
    assert account.imap_failures == 1
    assert account.imap_next_read_at is not None
    assert account.pk not in mailreader.due_accounts()


def test_only_opted_in_mailboxes_with_recent_sends_are_read(mta, account, practitioner):
    assert mailreader.due_accounts() == []  # nothing sent yet
    send_invoices_now(practitioner, MTA_PATIENT)
    assert mailreader.due_accounts() == [account.pk]
    SmtpAccount.objects.filter(pk=account.pk).update(imap_enabled=False)
    assert mailreader.due_accounts() == []
