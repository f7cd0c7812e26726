"""The IMAP side of ``make run``'s local test server (``devtools/imapserver.py``).

The tour a new user takes in ``make run``: the "Server di test locale" mailbox with
"Rimbalzi e posta inviata (IMAP)" on; an invoice to a patient at ``rimbalza.test`` is
accepted, then bounces (a delivery status notification in the sender's INBOX), and the
report says "rimbalzata"; an invoice to a PEC address gets its receipts and becomes
"consegnata"; the invoice sent is filed in Sent. Real servers (aiosmtpd, the IMAP server
over TLS from the test CA), the product's own reader, sender and Sent-copy code.
"""

from __future__ import annotations

import datetime
import time
from email.message import EmailMessage

import imapclient
import pytest
import time_machine

from devtools.imapserver import MailStore
from emailsettings.backchannel import reader as mailreader
from emailsettings.models import (
    DeliveryStatus,
    PecReceipt,
    SmtpAccount,
    SuppressedAddress,
)
from emailsettings.outbox import sentcopy
from tests.support.devmail import USER, send_invoices_now

pytestmark = pytest.mark.django_db


@pytest.fixture
def local(local_mail_server):
    return local_mail_server


@pytest.fixture
def account(local_mailbox) -> SmtpAccount:
    return local_mailbox


def test_a_patient_at_rimbalza_test_bounces_and_the_report_says_so(local, account, practitioner):
    bounced, fine = send_invoices_now(
        practitioner, "davide.conti@rimbalza.test", "giulia@example.test"
    )
    [report] = local.wait_for(1)
    assert report.message.get_content_type() == "multipart/report"

    result = mailreader.read_mailbox(account)

    assert result.ok and result.bounces == 1
    bounced.refresh_from_db()
    fine.refresh_from_db()
    assert bounced.status == DeliveryStatus.BOUNCED
    assert "5.1.1" in bounced.last_error_text and "User unknown" in bounced.last_error_text
    assert fine.status == DeliveryStatus.SENT
    assert SuppressedAddress.objects.filter(
        practitioner=practitioner, address="davide.conti@rimbalza.test"
    ).exists()
    # Read once: a second pass finds nothing new, and the notice stays unread.
    assert mailreader.read_mailbox(account).bounces == 0
    assert "\\Seen" not in local.store.messages(USER)[0].flags


def test_a_pec_recipient_gets_its_receipts_and_the_invoice_is_delivered(
    local, account, practitioner
):
    [delivery] = send_invoices_now(practitioner, "francesca.ricci@pec.example.test")
    receipts = local.wait_for(2)
    kinds = [str(m.message.get("X-Ricevuta")) for m in receipts]
    assert kinds == ["accettazione", "avvenuta-consegna"]

    mailreader.read_mailbox(account)

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    kept = PecReceipt.objects.filter(delivery=delivery).order_by("id")
    assert [r.kind for r in kept] == kinds
    assert bytes(kept[1].raw) == receipts[1].data


def test_the_invoice_sent_is_filed_in_sent_byte_for_byte(local, account, practitioner):
    [delivery] = send_invoices_now(practitioner, "giulia@example.test")

    assert sentcopy.file_pending(account) == 1

    [copy] = local.store.messages(USER, "Sent")
    assert "\\Seen" in copy.flags
    [received] = local.smtp.messages
    assert copy.data == received.data
    assert delivery.message_id.encode() in copy.data


def test_two_workers_filing_at_once_file_the_copy_once(local, account, practitioner, monkeypatch):
    """Seen in make run: a batch's end and another task filed the same copy twice."""
    send_invoices_now(practitioner, "giulia@example.test")
    connect = sentcopy.open_for_account
    meanwhile: list[int] = []

    def second_worker_meanwhile(acc):
        if not meanwhile:
            # The other worker runs while this one is still connecting.
            meanwhile.append(-1)
            meanwhile[0] = sentcopy.file_pending(acc)
        return connect(acc)

    monkeypatch.setattr(sentcopy, "open_for_account", second_worker_meanwhile)

    filed = sentcopy.file_pending(account)

    assert filed + sum(meanwhile) == 1
    assert len(local.store.messages(USER, "Sent")) == 1


def _next_utc(hour: int, minute: int) -> datetime.datetime:
    """The next instant at ``hour:minute`` UTC, at least a minute ahead (the test CA's
    certificates are valid from a day before they were made)."""
    now = datetime.datetime.now(datetime.UTC)
    moment = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return moment if moment > now + datetime.timedelta(minutes=1) else moment + ONE_DAY


ONE_DAY = datetime.timedelta(days=1)


@pytest.mark.parametrize("hour", [0, 12, 23], ids=["00:30 UTC", "12:30 UTC", "23:30 UTC"])
def test_the_server_speaks_imap_to_a_mail_program(local, hour):
    """At any hour: in Rome, 23:30 UTC is already tomorrow, while the server keeps its
    internal dates in UTC."""
    with time_machine.travel(_next_utc(hour, 30), tick=True):
        _speak_imap(local)


def _speak_imap(local) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.test", USER, "Prova"
    message.set_content("Ciao")
    with local.client() as client:
        assert client.find_special_folder(imapclient.imapclient.SENT) == "Sent"
        assert client.find_special_folder(imapclient.imapclient.JUNK) == "Junk"
        client.append("INBOX", message.as_bytes())
        info = client.select_folder("INBOX")
        assert info[b"EXISTS"] == 1
        server_today = datetime.datetime.now(datetime.UTC).date()
        [uid] = client.search(["SINCE", server_today])
        assert client.search(["SINCE", server_today + ONE_DAY]) == []
        data = client.fetch([uid], ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]", "FLAGS"])[uid]
        assert data[b"BODY[HEADER.FIELDS (SUBJECT)]"].strip() == b"Subject: Prova"
        assert data[b"FLAGS"] == ()
        # BODY[] without PEEK reads the message: it becomes \Seen, as on a real server.
        client.fetch([uid], ["BODY[]"])
        assert client.get_flags([uid])[uid] == (b"\\Seen",)
        # New mail while the folder is open is announced on the next command.
        local.store.deliver(USER, message.as_bytes())
        assert (2, b"EXISTS") in client.noop()[1]
    # Another user's mailbox is their own.
    with local.client("altro@studio.test") as client:
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    # Kept on disk: a restarted server has the same messages and UIDVALIDITY.
    again = MailStore(local.store.root)
    kept = again.messages(USER)[0]
    assert kept.data == message.as_bytes().replace(b"\n", b"\r\n")
    assert again.folder(USER, "INBOX").uidvalidity == info[b"UIDVALIDITY"]


def test_without_a_login_or_to_other_addresses_nothing_arrives(local):
    local.provider.accepted(
        login=None, mail_from="a@b.test", rcpt_tos=["x@rimbalza.test"], data=b"Subject: x\r\n\r\n"
    )
    local.provider.accepted(
        login=USER, mail_from=USER, rcpt_tos=["x@example.test"], data=b"Subject: x\r\n\r\n"
    )
    time.sleep(0.5)
    assert local.store.messages(USER) == []
