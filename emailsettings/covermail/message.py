"""The MIME message of a delivery: text and HTML parts of the cover mail, the invoice PDF.

Built only from the delivery's snapshot (subject, bodies, From/Reply-To, Message-ID), so
every retry of the same delivery sends the same message with the same Message-ID. Headers
are checked for CR/LF once more here: nothing typed by a user may end a header line.
"""

from __future__ import annotations

import re
import uuid
from email.generator import BytesGenerator, Generator
from email.message import Message
from email.utils import format_datetime, formataddr
from io import BytesIO
from typing import TYPE_CHECKING

from django.core.mail import EmailMultiAlternatives
from django.utils.timezone import now

from emailsettings.covermail.identity import message_id_domain
from emailsettings.covermail.rendering import text_to_html

if TYPE_CHECKING:
    from emailsettings.models import Delivery
    from psicogest.models import Invoice

_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")


def new_message_id(sender_address: str) -> str:
    """A globally unique ``<uuid@sending-domain>`` Message-ID."""
    return f"<{uuid.uuid4().hex}@{message_id_domain(sender_address)}>"


def header_value(value: str) -> str:
    """One header line: every control or line-separator character becomes a space."""
    return re.sub(r"\s+", " ", _LINE_BREAKS.sub(" ", value or "")).strip()


def attachment_name(invoice_number: str) -> str:
    """``fattura-12-2026.pdf`` for invoice ``12/2026``: safe in any file system and header."""
    number = re.sub(r"[^A-Za-z0-9._-]+", "-", invoice_number.replace("/", "-")).strip("-.")
    return f"fattura-{number or 'senza-numero'}.pdf"


def invoice_pdf(invoice: Invoice) -> bytes:
    if not invoice.pdf:
        return b""
    with invoice.pdf.open("rb") as handle:
        return handle.read()


def build_message(
    delivery: Delivery, *, pdf: bytes | None = None, notice: str = ""
) -> EmailMultiAlternatives:
    """The message for ``delivery``; ``pdf`` avoids re-reading the file when given (``b""``:
    no attachment, as for a secure link). ``notice`` is a paragraph added at the end of the
    cover mail (how the invoice is protected); the HTML part is then made again from the
    text, so both say the same."""
    headers = {
        "Message-ID": header_value(delivery.message_id),
        "Date": format_datetime(now()),
    }
    body_text, body_html = delivery.body_text, delivery.body_html
    if notice:
        body_text = body_text.rstrip("\n") + "\n\n" + notice.strip("\n") + "\n"
        body_html = text_to_html(body_text)
    message = EmailMultiAlternatives(
        subject=header_value(delivery.subject),
        body=body_text,
        from_email=header_value(delivery.from_header),
        to=[header_value(delivery.recipient)],
        reply_to=[header_value(delivery.reply_to)] if delivery.reply_to else [],
        headers=headers,
    )
    if body_html:
        message.attach_alternative(body_html, "text/html")
    content = pdf if pdf is not None else invoice_pdf(delivery.invoice)
    if content:
        message.attach(attachment_name(delivery.invoice_number), content, "application/pdf")
    return message


def build_text_message(
    *, from_name: str, from_address: str, to_address: str, subject: str, text: str
) -> EmailMultiAlternatives:
    """A plain-text message with the same headers and checks as every invoice mail (the
    mailbox's test mail): a fresh Message-ID of the sender's domain, no CR/LF in a header."""
    return EmailMultiAlternatives(
        subject=header_value(subject),
        body=text,
        from_email=formataddr((header_value(from_name), header_value(from_address))),
        to=[header_value(to_address)],
        headers={"Message-ID": new_message_id(from_address), "Date": format_datetime(now())},
    )


def message_bytes(message: EmailMultiAlternatives) -> bytes:
    """The message as sent over SMTP (CRLF line endings), like Django's SMTP backend."""
    return mime_bytes(message.message())


class _Generator(BytesGenerator):
    """email's ``BytesGenerator``, writing the same bytes with less work for an attachment:
    a base64 payload (ASCII lines ending in ``\\n``) goes out in one write with its line
    endings replaced, instead of one write per 76-character line."""

    def _handle_application(self, msg: Message) -> None:
        payload = msg._payload  # type: ignore[attr-defined]
        if isinstance(payload, str) and payload.isascii() and "\r" not in payload:
            self._fp.write(payload.replace("\n", self._NL).encode("ascii"))  # type: ignore[attr-defined]
        else:
            self._handle_text(msg)  # type: ignore[attr-defined]


def _set_boundaries(mime: Message) -> None:
    """A boundary for each multipart part that has none, checked against the parts' text
    with a substring search: the generator would otherwise compile and run a regular
    expression over the whole flattened message (40 KB of base64) for each one. Same
    boundary format as email's own."""
    texts = [
        part.get_payload()
        for part in mime.walk()
        if not part.is_multipart() and isinstance(part.get_payload(), str)
    ]
    for part in mime.walk():
        if part.is_multipart() and part.get_boundary() is None:
            boundary = Generator._make_boundary()  # type: ignore[attr-defined]
            while any(boundary in text for text in texts):
                boundary = Generator._make_boundary()  # type: ignore[attr-defined]
            part.set_boundary(boundary)


def mime_bytes(mime: Message) -> bytes:
    """``mime`` flattened with CRLF line endings, as Django's ``as_bytes(linesep="\\r\\n")``
    writes it (no ``From`` mangling); boundaries are set on ``mime`` first."""
    _set_boundaries(mime)
    out = BytesIO()
    _Generator(out, mangle_from_=False).flatten(mime, linesep="\r\n")
    return out.getvalue()
