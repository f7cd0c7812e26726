"""Mail that comes back is written by anyone: the mailbox reader against hostile messages,
through the tests' real Postfix + Dovecot (IMAP over TLS).

What a practitioner notices: crafted reports never stop their mailbox from being read — a
genuine bounce beside them still marks its invoice "rimbalzata", the next read does not touch
them again, and the settings page shows no reading error; a report that only names a
patient's address changes nothing (a note on the timeline at most), so the patient's next
invoice still goes.
"""

from __future__ import annotations

import datetime
from email.utils import format_datetime, make_msgid

import pytest
from django.utils import timezone

from devtools.pec import PROVIDER_ADDRESS, receipt
from emailsettings.backchannel import reader as mailreader
from emailsettings.models import (
    DeliveryEvent,
    DeliveryStatus,
    EventKind,
    MailboxFolderState,
    SmtpAccount,
    SuppressedAddress,
)
from tests.fault.conftest import imap_login
from tests.support.devmail import send_invoices_now
from tests.support.mta_fixtures import MTA_PATIENT, PostfixMTA

pytestmark = pytest.mark.django_db

UNKNOWN_PATIENT = "nessuno@studio.test"


@pytest.fixture
def account(mta, mail_account, clean_inbox) -> SmtpAccount:
    return mail_account(port=mta.accept_all_port, imap_enabled=True)


def put_in_inbox(mta: PostfixMTA, *messages: bytes) -> None:
    with imap_login(mta) as client:
        for raw in messages:
            client.append("INBOX", raw)


def genuine_bounce(mta: PostfixMTA, practitioner):
    """An invoice to an unknown user: Postfix's own RFC 3464 report reaches the mailbox."""
    before = len(mta.messages(mta.user))
    bounced, fine = send_invoices_now(practitioner, UNKNOWN_PATIENT, MTA_PATIENT)
    mta.wait_for_messages(mta.user, before + 1)
    return bounced, fine


def report(*, recipient: str, quoted: str = "", status: str = "5.1.1") -> bytes:
    """An RFC 3464 report as any MTA writes it; ``quoted``: the returned headers' text."""
    parts = [
        (
            "Content-Type: text/plain; charset=us-ascii\n\n"
            "The mail system could not deliver your message.\n"
        ),
        (
            "Content-Type: message/delivery-status\n\n"
            "Reporting-MTA: dns; elsewhere.example\n\n"
            f"Final-Recipient: rfc822; {recipient}\n"
            "Action: failed\n"
            f"Status: {status}\n"
            f"Diagnostic-Code: smtp; 550 {status} User unknown\n"
        ),
    ]
    if quoted:
        parts.append(f"Content-Type: text/rfc822-headers\n\n{quoted}")
    body = "".join(f"--REPORT\n{part}\n" for part in parts) + "--REPORT--\n"
    head = (
        "From: MAILER-DAEMON@elsewhere.example\n"
        "To: maria@studio.test\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        f"Date: {format_datetime(timezone.now())}\n"
        f"Message-ID: {make_msgid(domain='elsewhere.example')}\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="REPORT"\n\n'
    )
    return (head + body).encode()


def test_crafted_reports_quoting_thousands_of_ids_cost_one_read_and_a_genuine_bounce_counts(
    mta, account, practitioner
):
    quoted = "".join(f"Message-ID: <{n}.crafted@elsewhere.example>\n" for n in range(80_000))
    crafted = [report(recipient=f"chiunque{n}@elsewhere.example", quoted=quoted) for n in range(2)]
    put_in_inbox(mta, *crafted)
    bounced, fine = genuine_bounce(mta, practitioner)

    result = mailreader.read_mailbox(account)

    assert result.ok and result.finished, result.error
    assert result.bounces == 1
    bounced.refresh_from_db()
    fine.refresh_from_db()
    assert bounced.status == DeliveryStatus.BOUNCED
    assert fine.status == DeliveryStatus.SENT
    account.refresh_from_db()
    assert account.imap_error == ""
    # Read once: the next read looks at nothing it has seen.
    again = mailreader.read_mailbox(account)
    assert again.ok and again.looked_at == 0


def nested(depth: int) -> bytes:
    lines = [
        "From: MAILER-DAEMON@elsewhere.example",
        "To: maria@studio.test",
        "Subject: Delivery Status Notification (Failure)",
        "MIME-Version: 1.0",
    ]
    for level in range(depth):
        lines += [f'Content-Type: multipart/mixed; boundary="b{level}"', "", f"--b{level}"]
    lines += ["Content-Type: text/plain", "", "Final-Recipient: rfc822; x@y.example"]
    lines += [f"--b{level}--" for level in reversed(range(depth))]
    return "\r\n".join(lines).encode()


def test_a_deeply_nested_message_and_receipts_with_absurd_dates_do_not_stop_the_reader(
    mta, account, practitioner, settings, local_ca
):
    # A PEC mailbox, its provider's receipts signed and trusted: only their dates are absurd.
    settings.EMAILSETTINGS_PEC_TRUST_BUNDLE = local_ca.ca_file
    SmtpAccount.objects.filter(pk=account.pk).update(preset="aruba_pec")
    account.refresh_from_db()
    [sent] = send_invoices_now(practitioner, MTA_PATIENT)
    absurd = [
        receipt(
            "accettazione",
            sender=mta.user,
            recipient=MTA_PATIENT,
            subject=sent.subject,
            referenced_id=sent.message_id,
            at=at,
            signer=local_ca.pec_signer(PROVIDER_ADDRESS),
        )
        for at in (
            datetime.datetime(1, 1, 2, tzinfo=datetime.UTC),
            datetime.datetime(9999, 12, 30, tzinfo=datetime.UTC),
        )
    ]
    put_in_inbox(mta, nested(1000), *absurd)
    bounced, _fine = genuine_bounce(mta, practitioner)

    result = mailreader.read_mailbox(account)

    assert result.ok, result.error
    bounced.refresh_from_db()
    assert bounced.status == DeliveryStatus.BOUNCED
    account.refresh_from_db()
    assert account.imap_error == ""
    # The receipts' dates were not believed: the timeline shows this year, not year 1.
    this_year = str(timezone.localtime().year)
    notes = DeliveryEvent.objects.filter(delivery=sent, kind=EventKind.MAILBOX)
    assert notes.count() == 2
    assert all(this_year in note.text or str(int(this_year) - 1) in note.text for note in notes)


def test_a_report_that_only_names_the_patients_address_changes_nothing(mta, account, practitioner):
    [sent] = send_invoices_now(practitioner, MTA_PATIENT)
    put_in_inbox(mta, report(recipient=MTA_PATIENT))

    result = mailreader.read_mailbox(account)

    assert result.ok and result.bounces == 0
    sent.refresh_from_db()
    assert sent.status == DeliveryStatus.SENT
    assert not SuppressedAddress.objects.exists()
    [note] = DeliveryEvent.objects.filter(delivery=sent, kind=EventKind.MAILBOX)
    assert note.status == DeliveryStatus.SENT
    assert "non cita questa fattura" in note.text


def test_a_crlf_report_quoting_our_message_id_in_its_headers_part_is_matched(
    mta, account, practitioner
):
    [sent] = send_invoices_now(practitioner, MTA_PATIENT)
    quoted = f"From: {mta.user}\nTo: {MTA_PATIENT}\nMessage-ID: {sent.message_id}\n"
    raw = report(recipient=MTA_PATIENT, quoted=quoted).replace(b"\n", b"\r\n")
    assert b"\r\n\r\n" in raw and b"\n\n" not in raw.replace(b"\r\n", b"")
    put_in_inbox(mta, raw)

    result = mailreader.read_mailbox(account)

    assert result.ok and result.bounces == 1
    sent.refresh_from_db()
    assert sent.status == DeliveryStatus.BOUNCED
    assert SuppressedAddress.objects.filter(address=MTA_PATIENT.lower()).exists()


def test_a_read_that_runs_out_of_time_goes_on_from_where_it_stopped(
    mta, account, practitioner, settings
):
    settings.EMAILSETTINGS_MAILBOX_READ_SECONDS = 0
    # The shared mailbox holds the session's earlier mail: this read starts after it.
    with imap_login(mta) as client:
        info = client.select_folder("INBOX", readonly=True)
        seen = max(client.search(["ALL"]), default=0)
    MailboxFolderState.objects.create(
        account=account, folder="INBOX", uidvalidity=int(info[b"UIDVALIDITY"]), last_uid=seen
    )
    bounced, _fine = genuine_bounce(mta, practitioner)
    put_in_inbox(mta, *(report(recipient=f"altro{n}@elsewhere.example") for n in range(3)))

    reads = [mailreader.read_mailbox(account)]
    while not reads[-1].finished and len(reads) < 50:
        reads.append(mailreader.read_mailbox(account))

    # Out of time at once, each read still moved on by one message at least, and the last
    # one reached the end: the genuine bounce was found on the way, nothing was read twice.
    assert all(r.ok for r in reads)
    assert reads[-1].finished and len(reads) >= 4  # the bounce and the three reports
    assert all(r.looked_at >= 1 for r in reads[:-1])
    bounced.refresh_from_db()
    assert bounced.status == DeliveryStatus.BOUNCED
    assert mailreader.read_mailbox(account).looked_at == 0
    assert MailboxFolderState.objects.get(account=account, folder="INBOX").last_uid > 0
