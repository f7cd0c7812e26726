"""Bounces found in the practitioner's own mailbox, for invoices sent over personal SMTP.

:func:`parse` recognises a delivery status notification with ``flufl.bounce`` (RFC 3464
reports and the non-standard bounces real MTAs send) and collects the Message-IDs the bounce
quotes (the returned message or its headers, and the bounce's own ``In-Reply-To``).
:func:`apply` matches it to one of *that practitioner's* SMTP deliveries by a quoted
Message-ID only, and the bounced address must be the delivery's: anyone can write to the
mailbox. What the news does is the outbox's after-send rule (a permanent failure →
``bounced`` and the address suppressed; a delay → a timeline note). A bounce that quotes
none of ours is at most a note on the latest send to the address.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import logging
import re
from dataclasses import dataclass, field
from email.message import Message

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_noop
from flufl.bounce import all_failures

from emailsettings import conf
from emailsettings.backchannel import wire
from emailsettings.covermail.message import header_value
from emailsettings.failures import ErrorClass, Failure
from emailsettings.models import Channel, Delivery
from emailsettings.outbox import lifecycle

logger = logging.getLogger(__name__)

# A quoted header line of the returned message: "Message-ID: <…>" (any case, folded or not).
_QUOTED_MESSAGE_ID = re.compile(rb"(?im)^message-id:\s*(<[^<>\s]{3,250}>)")
# The blank line that ends a header block, with IMAP's CRLF or a file's LF.
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
# "smtp; 550 5.1.1 …": the diagnostic's type, dropped before showing it.
_DIAGNOSTIC_TYPE = re.compile(r"^\s*[A-Za-z][\w.-]*\s*;\s*")
_MAX_REASON = 300


@dataclass
class Bounce:
    permanent: set[str] = field(default_factory=set)
    temporary: set[str] = field(default_factory=set)
    message_ids: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)

    def addresses(self) -> set[str]:
        return self.permanent | self.temporary


def _address(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return text.strip().strip("<>").lower()


def _diagnostics(message: Message) -> dict[str, str]:
    """``Final-Recipient`` → ``Diagnostic-Code`` of an RFC 3464 report."""
    found: dict[str, str] = {}
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        blocks = payload if isinstance(payload, list) else []
        for block in blocks:
            if not isinstance(block, Message):
                continue
            diagnostic = block.get("Diagnostic-Code") or block.get("Status") or ""
            reason = header_value(_DIAGNOSTIC_TYPE.sub("", str(diagnostic)))[:_MAX_REASON]
            for header in ("Original-Recipient", "Final-Recipient"):
                kind, _, value = str(block.get(header) or "").partition(";")
                if reason and value and kind.strip().lower() == "rfc822":
                    found.setdefault(_address(value), reason)
    return found


def _quoted_ids(message: Message, raw: bytes) -> list[str]:
    ids: list[str] = []
    for part in message.walk():
        if part.get_content_type() == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message) and inner.get("Message-ID"):
                ids.append(str(inner["Message-ID"]).strip())
    # Returned headers as text (text/rfc822-headers, or quoted in a plain-text bounce); the
    # first header block is the bounce's own and is skipped. IMAP returns CRLF lines.
    parts = _BLANK_LINE.split(raw, maxsplit=1)
    body = parts[1] if len(parts) == 2 else b""
    ids.extend(
        match.group(1).decode("ascii", "replace") for match in _QUOTED_MESSAGE_ID.finditer(body)
    )
    for header in ("In-Reply-To", "References"):
        for value in message.get_all(header) or []:
            ids.extend(wire.MESSAGE_ID.findall(str(value)))
    # In order, without repeats (linear), and only the first few: a bounce quoting
    # thousands of ids costs no more than one quoting a few.
    return list(dict.fromkeys(ids))[: conf.mailbox_max_quoted_ids()]


def parse(raw: bytes) -> Bounce | None:
    """The bounce ``raw`` reports, or ``None`` when it is not one (a reply, a newsletter)."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector choking on a malformed message: not a bounce we can read
        logger.warning("A message in a practitioner's mailbox could not be scanned for bounces")
        return None
    if not temporary and not permanent:
        return None
    return Bounce(
        permanent={_address(value) for value in permanent},
        temporary={_address(value) for value in temporary},
        message_ids=_quoted_ids(message, raw),
        reasons=_diagnostics(message),
    )


def apply(bounce: Bounce, *, practitioner_id: int, window: datetime.timedelta) -> list[int]:
    """Record ``bounce`` on ``practitioner_id``'s deliveries it quotes the Message-ID of (and
    whose address it names); their ids. A bounce that quotes none of ours is anyone's word:
    at most a note on the latest send to the address it names, for the practitioner to look
    at — never a status change or a suppression."""
    sent = Delivery.objects.filter(practitioner_id=practitioner_id, channel=Channel.SMTP)
    quoted = list(sent.filter(message_id__in=bounce.message_ids)) if bounce.message_ids else []
    touched: list[int] = []
    for delivery in quoted:
        address = delivery.recipient.lower()
        if address not in bounce.addresses():
            logger.info("Bounce for delivery %s names other addresses: ignored", delivery.pk)
            continue
        reason = bounce.reasons.get(address, "")
        if address in bounce.permanent:
            _record_permanent(delivery, reason)
        else:
            _record_delay(delivery, reason)
        touched.append(delivery.pk)
    if not quoted:
        _note_unmatched(bounce, sent, window)
    return touched


def _note_unmatched(bounce: Bounce, sent: QuerySet[Delivery], window: datetime.timedelta) -> None:
    since = timezone.now() - window
    for address in sorted(bounce.permanent)[:5]:
        delivery = (
            sent.filter(recipient__iexact=address, sent_at__gte=since)
            .order_by("-sent_at", "-id")
            .first()
        )
        if delivery is None:
            continue
        lifecycle.apply_news(
            delivery.pk,
            source=lifecycle.Source.MAILBOX,
            news=lifecycle.News.NOTE,
            text=lifecycle.EventText(
                gettext_noop(
                    "Nella casella è arrivato un avviso di mancata consegna per %(address)s che "
                    "non cita questa fattura: non cambia nulla. Se il paziente dice di non "
                    "averla ricevuta, controlla l'avviso nella casella."
                ),
                {"address": delivery.recipient},
            ),
        )


def _record_permanent(delivery: Delivery, reason: str) -> None:
    text = lifecycle.EventText(
        gettext_noop(
            "Rimbalzata: l'indirizzo %(address)s non esiste o non accetta posta, secondo il "
            "server del destinatario (%(reason)s)."
        )
        if reason
        else gettext_noop(
            "Rimbalzata: l'indirizzo %(address)s non esiste o non accetta posta, secondo il "
            "server del destinatario."
        ),
        {"address": delivery.recipient, "reason": reason},
    )
    failure = Failure(phase="", error_class=ErrorClass.BOUNCED, reply=reason)
    lifecycle.apply_news(
        delivery.pk,
        source=lifecycle.Source.MAILBOX,
        news=lifecycle.News.BOUNCED,
        text=text,
        failure=failure,
    )


def _record_delay(delivery: Delivery, reason: str) -> None:
    text: str | lifecycle.EventText = gettext_noop(
        "Il server del destinatario segnala un ritardo nella consegna; riproverà da solo."
    )
    if reason:
        text = lifecycle.EventText(
            gettext_noop(
                "Il server del destinatario segnala un ritardo nella consegna; riproverà da "
                "solo (%(reason)s)."
            ),
            {"reason": reason},
        )
    lifecycle.apply_news(
        delivery.pk, source=lifecycle.Source.MAILBOX, news=lifecycle.News.NOTE, text=text
    )
