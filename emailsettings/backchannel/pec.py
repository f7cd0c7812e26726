"""PEC receipts read from the practitioner's PEC mailbox (the PEC presets).

A PEC provider answers every message with receipts, each an email with the ``X-Ricevuta``
header (``accettazione``, ``non-accettazione``, ``presa-in-carico``, ``avvenuta-consegna``,
``preavviso-errore-consegna``, ``errore-consegna``), the ``X-Riferimento-Message-ID`` of the
message it is about and a ``daticert.xml`` attachment with the certified data (type, date,
recipient, error). :func:`parse` reads them; :func:`apply` links a receipt to the
practitioner's own delivery with that Message-ID: ``avvenuta-consegna`` → ``delivered``
("Consegnata (ricevuta PEC del …)"), ``errore-consegna``/``non-accettazione`` → ``failed``
with the reason, the others a timeline entry. The receipt is kept as received
(:class:`~emailsettings.models.PecReceipt`): it is the practitioner's legal proof.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import logging
import xml.etree.ElementTree as ET  # noqa: S405 (a small, size-capped attachment; no DTDs fetched)
from collections.abc import Iterable
from dataclasses import dataclass, replace
from email.message import Message
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.utils.translation import gettext_noop

from emailsettings.backchannel import pecsignature, wire
from emailsettings.covermail.message import header_value
from emailsettings.failures import ErrorClass, Failure
from emailsettings.models import Channel, Delivery, PecReceipt
from emailsettings.outbox import lifecycle
from psicogest.formatting import format_long_datetime

logger = logging.getLogger(__name__)

ACCEPTED = "accettazione"
NOT_ACCEPTED = "non-accettazione"
TAKEN_IN_CHARGE = "presa-in-carico"
DELIVERED = "avvenuta-consegna"
DELIVERY_WARNING = "preavviso-errore-consegna"
NOT_DELIVERED = "errore-consegna"
KINDS = frozenset(
    {ACCEPTED, NOT_ACCEPTED, TAKEN_IN_CHARGE, DELIVERED, DELIVERY_WARNING, NOT_DELIVERED}
)
MAX_DATICERT_BYTES = 64 * 1024
_LABELS = {
    ACCEPTED: _lazy("Ricevuta di accettazione"),
    NOT_ACCEPTED: _lazy("Avviso di non accettazione"),
    TAKEN_IN_CHARGE: _lazy("Ricevuta di presa in carico"),
    DELIVERED: _lazy("Ricevuta di avvenuta consegna"),
    DELIVERY_WARNING: _lazy("Preavviso di mancata consegna"),
    NOT_DELIVERED: _lazy("Avviso di mancata consegna"),
}


def label(kind: str) -> str:
    return str(_LABELS.get(kind, kind))


@dataclass(frozen=True)
class Receipt:
    kind: str
    referenced_id: str
    recipient: str
    issued_at: datetime.datetime
    error: str
    message_id: str
    raw: bytes
    sender: str = ""
    # Set by :func:`verify`: only a verified receipt is proof.
    verified: bool = False
    signer: str = ""
    reason: str = ""


def _daticert(message: Message) -> ET.Element | None:
    for part in message.walk():
        name = (part.get_filename() or "").lower()
        if name != "daticert.xml":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or len(payload) > MAX_DATICERT_BYTES:
            return None
        try:
            return ET.fromstring(payload)  # noqa: S314 (size-capped; expat refuses entity bombs)
        except ET.ParseError:
            return None
    return None


def _text(root: ET.Element | None, path: str) -> str:
    if root is None:
        return ""
    found = root.find(path)
    return header_value(found.text or "") if found is not None else ""


def _recipient(root: ET.Element | None) -> str:
    return _text(root, "dati/consegna").lower()


def _error(root: ET.Element | None) -> str:
    """The provider's reason: the extended error, else the ``errore`` attribute."""
    return _text(root, "dati/errore-esteso") or (root.get("errore", "") if root is not None else "")


def _issued_at(root: ET.Element | None, message: Message) -> datetime.datetime:
    """The certified date of ``daticert.xml``, else the message's own ``Date``, else now:
    each only when it is a sane date (see :func:`wire.sane_date`)."""
    day, hour = _text(root, "dati/data/giorno"), _text(root, "dati/data/ora")
    zone_node = root.find("dati/data") if root is not None else None
    zone = zone_node.get("zona", "+0000") if zone_node is not None else "+0000"
    try:
        certified = datetime.datetime.strptime(f"{day} {hour} {zone}", "%d/%m/%Y %H:%M:%S %z")
    except (ValueError, OverflowError):
        certified = None
    return (
        wire.sane_date(certified)
        or wire.sane_date(wire.header_date(message.get("Date")))
        or timezone.now()
    )


def parse(raw: bytes) -> Receipt | None:
    """The receipt ``raw`` is, or ``None`` when it is not a PEC receipt."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    kind = header_value(str(message.get("X-Ricevuta", ""))).lower()
    if kind not in KINDS:
        return None
    root = _daticert(message)
    if root is not None and root.get("tipo", kind) != kind:
        logger.warning("A PEC receipt's header and daticert.xml disagree: ignored")
        return None
    referenced = wire.MESSAGE_ID.findall(str(message.get("X-Riferimento-Message-ID", "")))
    referenced = referenced or wire.MESSAGE_ID.findall(_text(root, "dati/msgid"))
    own_id = wire.MESSAGE_ID.findall(str(message.get("Message-ID", "")))
    if not referenced or not own_id:
        return None
    return Receipt(
        kind=kind,
        referenced_id=referenced[0],
        recipient=_recipient(root),
        issued_at=_issued_at(root, message),
        error=_error(root),
        message_id=own_id[0],
        raw=raw,
        sender=header_value(str(message.get("From", ""))),
    )


def verify(receipt: Receipt) -> Receipt:
    """``receipt`` as its signature allows: verified only when the provider's signature
    checks out (:mod:`~emailsettings.backchannel.pecsignature`) and the *signed*
    ``daticert.xml`` says the same as the headers it was matched by (type, our Message-ID,
    the recipient); the certified date and error are then read from the signed data."""
    signature = pecsignature.verify(receipt.raw, sender=receipt.sender)
    if not signature.verified:
        return replace(receipt, reason=signature.reason)
    signed = email.message_from_bytes(signature.content, policy=email.policy.compat32)
    root = _daticert(signed)
    if root is None:
        return replace(receipt, reason="la parte firmata non contiene i dati certificati")
    recipient = _recipient(root)
    if (
        root.get("tipo", "") != receipt.kind
        or wire.MESSAGE_ID.findall(_text(root, "dati/msgid"))[:1] != [receipt.referenced_id]
        or recipient != receipt.recipient
    ):
        return replace(receipt, reason="i dati firmati non corrispondono alla ricevuta")
    return replace(
        receipt,
        verified=True,
        signer=signature.signer,
        issued_at=_issued_at(root, signed),
        error=_error(root),
    )


def apply(receipt: Receipt, *, practitioner_id: int) -> int | None:
    """Record ``receipt`` on ``practitioner_id``'s delivery it refers to; its id."""
    delivery = (
        Delivery.objects.filter(
            practitioner_id=practitioner_id,
            channel=Channel.SMTP,
            message_id=receipt.referenced_id,
        )
        .order_by("id")
        .first()
    )
    if delivery is None:
        return None
    if receipt.recipient and receipt.recipient != delivery.recipient.lower():
        logger.info("PEC receipt for delivery %s names another recipient: ignored", delivery.pk)
        return None
    if not receipt.verified:
        # Anyone can write a mail that looks like a receipt: noted, never proof.
        lifecycle.apply_news(
            delivery.pk,
            source=lifecycle.Source.PEC,
            news=lifecycle.News.NOTE,
            text=lifecycle.EventText(
                gettext_noop(
                    "%(label)s non verificata (%(reason)s): non cambia lo stato della fattura e "
                    "non vale come prova."
                ),
                {"label": label(receipt.kind), "reason": receipt.reason},
            ),
        )
        return None
    try:
        with transaction.atomic():
            PecReceipt.objects.create(
                practitioner_id=practitioner_id,
                delivery=delivery,
                kind=receipt.kind,
                message_id=receipt.message_id[:255],
                recipient=receipt.recipient[:254],
                issued_at=receipt.issued_at,
                raw=receipt.raw,
                signer=receipt.signer[:200],
            )
            _record(receipt, delivery)
    except IntegrityError:
        return None  # already stored: read before
    return delivery.pk


def _receipt_text(kind: str, when: str, error: str) -> lifecycle.EventText:
    """A receipt's sentence; for a failure, the provider's reason after it."""
    if error and kind in _WITH_REASON:
        return lifecycle.EventText(_WITH_REASON[kind], {"when": when, "reason": error})
    return lifecycle.EventText(_SENTENCES[kind], {"when": when})


_SENTENCES = {
    DELIVERED: gettext_noop("Consegnata (ricevuta PEC di avvenuta consegna del %(when)s)."),
    NOT_DELIVERED: gettext_noop("Non consegnata: avviso PEC di mancata consegna del %(when)s."),
    NOT_ACCEPTED: gettext_noop(
        "Non accettata dal gestore PEC: avviso di non accettazione del %(when)s."
    ),
    ACCEPTED: gettext_noop("Accettata dal gestore PEC del mittente (ricevuta del %(when)s)."),
    TAKEN_IN_CHARGE: gettext_noop("Presa in carico dal gestore PEC del destinatario (%(when)s)."),
    DELIVERY_WARNING: gettext_noop(
        "Il gestore PEC non è ancora riuscito a consegnare il messaggio (%(when)s)."
    ),
}


# The receipts that settle what happened to the message, most telling first.
_OUTCOMES = (DELIVERED, NOT_DELIVERED, NOT_ACCEPTED)


def summary(receipts: Iterable[Any]) -> str:
    """The delivery's outcome as its PEC receipts tell it, in one sentence: «Consegnata
    (ricevuta PEC di avvenuta consegna del …).» — "" while no receipt settles it."""
    found = {receipt.kind: receipt for receipt in receipts if receipt.kind in _OUTCOMES}
    for kind in _OUTCOMES:
        if kind in found:
            return _(_SENTENCES[kind]) % {"when": format_long_datetime(found[kind].issued_at)}
    return ""


_WITH_REASON = {
    NOT_DELIVERED: gettext_noop(
        "Non consegnata: avviso PEC di mancata consegna del %(when)s (%(reason)s)."
    ),
    NOT_ACCEPTED: gettext_noop(
        "Non accettata dal gestore PEC: avviso di non accettazione del %(when)s (%(reason)s)."
    ),
}


def _record(receipt: Receipt, delivery: Delivery) -> None:
    when = format_long_datetime(receipt.issued_at)
    error = receipt.error if receipt.error and receipt.error != "nessuno" else ""
    text = _receipt_text(receipt.kind, when, error)
    failure = None
    if receipt.kind == DELIVERED:
        news = lifecycle.News.DELIVERED
    elif receipt.kind in (NOT_DELIVERED, NOT_ACCEPTED):
        news = lifecycle.News.FAILED
        error_class = (
            ErrorClass.RECIPIENT_REFUSED
            if receipt.kind == NOT_DELIVERED
            else ErrorClass.MESSAGE_REJECTED
        )
        failure = Failure(phase="", error_class=error_class, reply=receipt.error)
    else:
        news = lifecycle.News.NOTE
    lifecycle.apply_news(
        delivery.pk, source=lifecycle.Source.PEC, news=news, text=text, failure=failure
    )
