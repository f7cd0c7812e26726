"""What the local test server's "provider" does after accepting a message (development
only): a recipient at ``rimbalza.test`` bounces, a PEC recipient gets PEC receipts, each
written into the sender's INBOX of the IMAP side (``devtools/imapserver.py``), as a real
provider does some seconds after the SMTP session ended.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import functools
import threading
from collections.abc import Callable
from email.utils import format_datetime, make_msgid
from typing import Any

from cryptography import x509

from devtools.imapserver import MailStore, split_message
from devtools.pec import receipt

BOUNCE_DOMAIN = "rimbalza.test"
MTA_NAME = "smtp.test.local"


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


def is_pec_test_address(address: str) -> bool:
    """A recipient the local server treats as PEC: a domain with a ``pec`` label
    (``francesca.ricci@pec.example.test``)."""
    return "pec" in _domain(address).split(".")


def bounce_report(*, sender: str, recipient: str, original: bytes) -> bytes:
    """A delivery status notification (RFC 3464) like Postfix's for a recipient that does
    not exist at the destination, returning the original message's headers."""
    head, _body = split_message(original)
    boundary = make_msgid(domain=MTA_NAME).strip("<>").replace("@", "=_")
    now = datetime.datetime.now(datetime.UTC)
    reply = (
        f"550 5.1.1 <{recipient}>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )
    text = (
        f"This is the mail system at host {MTA_NAME}.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients. It's attached below.\r\n\r\n"
        f"<{recipient}>: host mx.{_domain(recipient)}[192.0.2.25] said: {reply}\r\n"
        "    (in reply to RCPT TO command)\r\n"
    )
    status = (
        f"Reporting-MTA: dns; {MTA_NAME}\r\n"
        f"Arrival-Date: {format_datetime(now)}\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Original-Recipient: rfc822;{recipient}\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        f"Remote-MTA: dns; mx.{_domain(recipient)}\r\n"
        f"Diagnostic-Code: smtp; {reply}\r\n"
    )
    return (
        (
            "Return-Path: <>\r\n"
            f"Date: {format_datetime(now)}\r\n"
            f"From: MAILER-DAEMON@{MTA_NAME} (Mail Delivery System)\r\n"
            f"To: {sender}\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\n"
            f"Message-ID: {make_msgid(domain=MTA_NAME)}\r\n"
            "Auto-Submitted: auto-replied\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status;\r\n"
            f'\tboundary="{boundary}"\r\n\r\n'
            "This is a MIME-encapsulated message.\r\n\r\n"
            f"--{boundary}\r\n"
            "Content-Description: Notification\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            f"{text}\r\n"
            f"--{boundary}\r\n"
            "Content-Description: Delivery report\r\n"
            "Content-Type: message/delivery-status\r\n\r\n"
            f"{status}\r\n"
            f"--{boundary}\r\n"
            "Content-Description: Undelivered Message Headers\r\n"
            "Content-Type: text/rfc822-headers\r\n\r\n"
        ).encode()
        + head.rstrip(b"\r\n")
        + f"\r\n\r\n--{boundary}--\r\n".encode()
    )


class DevProvider:
    """What the local server's "provider" does with a message it accepted for ``login``:
    a recipient at ``rimbalza.test`` bounces (a delivery status notification in the sender's
    INBOX after ``delay`` seconds), and a PEC recipient gets the PEC receipts of acceptance
    at once and of delivery after ``delay`` seconds, as a PEC provider sends them."""

    def __init__(
        self,
        store: MailStore,
        *,
        delay: float = 20.0,
        signer: tuple[x509.Certificate, Any] | None = None,
    ) -> None:
        self.store = store
        self.delay = delay
        # The "Gestore PEC di prova"'s signing key (LocalCA.pec_signer): its receipts verify
        # against the local CA, as an accredited provider's do against the trust bundle.
        self.signer = signer
        self._timers: list[threading.Timer] = []

    def _later(self, delay: float, action: Callable[[], object]) -> None:
        timer = threading.Timer(delay, action)
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def accepted(
        self, *, login: str | None, mail_from: str, rcpt_tos: list[str], data: bytes
    ) -> None:
        if not login:
            return
        message = email.message_from_bytes(data, policy=email.policy.compat32)
        message_id = str(message.get("Message-ID", "")).strip()
        subject = str(message.get("Subject", ""))
        sender = mail_from or login
        for recipient in rcpt_tos:
            if _domain(recipient) == BOUNCE_DOMAIN:
                report = bounce_report(sender=sender, recipient=recipient, original=data)
                self._later(self.delay, functools.partial(self.store.deliver, login, report))
            elif is_pec_test_address(recipient) and message_id:

                def issue(kind: str, recipient: str = recipient) -> None:
                    self.store.deliver(
                        login,
                        receipt(
                            kind,
                            sender=sender,
                            recipient=recipient,
                            subject=subject,
                            referenced_id=message_id,
                            at=datetime.datetime.now().astimezone().replace(microsecond=0),
                            original=data,
                            signer=self.signer,
                        ),
                    )

                self._later(min(1.0, self.delay / 4), lambda: issue("accettazione"))
                self._later(self.delay, lambda: issue("avvenuta-consegna"))

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
