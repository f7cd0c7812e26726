"""Bounces found in the practitioner's own mailbox, for invoices sent over personal SMTP.

:func:`parse` recognises a delivery status notification with ``flufl.bounce`` (RFC 3464
reports and the non-standard bounces real MTAs send) and collects the Message-IDs the bounce
quotes (the returned message or its headers, and the bounce's own ``In-Reply-To``).
:func:`apply` matches it to one of *that practitioner's* SMTP deliveries: by Message-ID, or,
when the bounce quotes none, by recipient among the sends of the last days; the bounced
address must be the delivery's. A permanent failure → ``bounced`` and the address suppressed
(as with Smart Mail); a temporary one (a delay warning) → a timeline entry only.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import logging
import re
from dataclasses import dataclass, field
from email.message import Message

from django.utils import timezone
from django.utils.translation import gettext_noop
from flufl.bounce import all_failures

from emailsettings.covermail.message import header_value
from emailsettings.failures import ErrorClass, Failure
from emailsettings.models import Channel, Delivery, DeliveryStatus
from emailsettings.outbox import lifecycle

logger = logging.getLogger(__name__)

# A quoted header line of the returned message: "Message-ID: <…>" (any case, folded or not).
_QUOTED_MESSAGE_ID = re.compile(rb"(?im)^message-id:\s*(<[^<>\s]{3,250}>)")
# "smtp; 550 5.1.1 …": the diagnostic's type, dropped before showing it.
_DIAGNOSTIC_TYPE = re.compile(r"^\s*[A-Za-z][\w.-]*\s*;\s*")
_MAX_REASON = 300


@dataclass
class Bounce:
    permanent: set[str] = field(default_factory=set)
    temporary: set[str] = field(default_factory=set)
    message_ids: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    date: datetime.datetime | None = None

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
    # first header block is the bounce's own and is skipped.
    body = raw.split(b"\n\n", 1)[1] if b"\n\n" in raw else b""
    ids.extend(
        match.group(1).decode("ascii", "replace") for match in _QUOTED_MESSAGE_ID.finditer(body)
    )
    for header in ("In-Reply-To", "References"):
        for value in message.get_all(header) or []:
            ids.extend(re.findall(r"<[^<>\s]{3,250}>", str(value)))
    unique: list[str] = []
    for value in ids:
        if value not in unique:
            unique.append(value)
    return unique


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
    bounce = Bounce(
        permanent={_address(value) for value in permanent},
        temporary={_address(value) for value in temporary},
        message_ids=_quoted_ids(message, raw),
        reasons=_diagnostics(message),
    )
    try:
        bounce.date = email.utils.parsedate_to_datetime(str(message.get("Date", "")))
    except (TypeError, ValueError):
        bounce.date = None
    return bounce


def _candidates(practitioner_id: int, bounce: Bounce, window: datetime.timedelta):
    sent = Delivery.objects.filter(
        practitioner_id=practitioner_id,
        channel=Channel.SMTP,
        status__in=(DeliveryStatus.SENT, DeliveryStatus.UNKNOWN, DeliveryStatus.BOUNCED),
    )
    if bounce.message_ids:
        by_id = list(sent.filter(message_id__in=bounce.message_ids))
        if by_id:
            return by_id
    # No Message-ID quoted (or none of ours): the latest send to a bounced address.
    since = timezone.now() - window
    latest = []
    for address in sorted(bounce.addresses()):
        row = (
            sent.filter(recipient__iexact=address, sent_at__gte=since)
            .order_by("-sent_at", "-id")
            .first()
        )
        if row is not None:
            latest.append(row)
    return latest


def apply(bounce: Bounce, *, practitioner_id: int, window: datetime.timedelta) -> list[int]:
    """Record ``bounce`` on the matching deliveries of ``practitioner_id``; their ids."""
    touched: list[int] = []
    for delivery in _candidates(practitioner_id, bounce, window):
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
    return touched


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
