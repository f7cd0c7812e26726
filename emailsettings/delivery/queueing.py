"""Queueing invoice mails: which invoices can be sent, through which channel, and the new
``Delivery`` rows (with the rendered cover mail, From/Reply-To and a stable Message-ID)
created in one transaction and published on commit.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import conf
from ..exceptions import InvalidRecipient
from ..identity import Identity, smart_mail_identity, smtp_identity
from ..messages import header_value, new_message_id
from ..models import (
    Channel,
    Delivery,
    DeliveryStatus,
    EmailSettings,
    MailboxStatus,
    SmtpAccount,
    SuppressedAddress,
)
from . import lifecycle, publish

if TYPE_CHECKING:
    from psicogest.models import Invoice, Practitioner


def check_recipient(invoice: Invoice) -> str:
    """The patient's address for ``invoice``, or :class:`InvalidRecipient` saying why the
    invoice cannot be emailed (no address, an invalid one, no PDF to attach)."""
    patient = invoice.patient
    name = header_value(patient.display_name) or _("il paziente")
    values = {"number": invoice.number, "name": name}
    address = (patient.email or "").strip()
    if not address:
        raise InvalidRecipient(
            _(
                "La fattura %(number)s non può essere inviata: %(name)s non ha un indirizzo "
                "email. Aggiungilo nella scheda paziente."
            )
            % values
        )
    problem = any(ord(char) < 32 or char in '<>",;' for char in address)
    if not problem:
        try:
            validate_email(address)
        except ValidationError:
            problem = True
    if problem:
        raise InvalidRecipient(
            _(
                "La fattura %(number)s non può essere inviata: l'indirizzo email di %(name)s "
                "non è valido. Correggilo nella scheda paziente."
            )
            % values
        )
    if not invoice.pdf:
        # The cover mail says the invoice is attached: never send it without the PDF.
        raise InvalidRecipient(
            _(
                "La fattura %(number)s non può essere inviata: manca il PDF della fattura. "
                "Generalo o caricalo, poi riprova."
            )
            % values
        )
    return address


@dataclass
class _ChannelChoice:
    channel: str
    identity: Identity
    held: bool


def sending_mailbox(practitioner: Practitioner) -> SmtpAccount | None:
    """The personal mailbox the practitioner's invoices leave through, or ``None`` for Smart
    Mail: SMTP only when chosen and a mailbox is configured."""
    row = EmailSettings.objects.filter(practitioner=practitioner).values("channel").first()
    if row and row["channel"] == Channel.SMTP:
        return SmtpAccount.objects.filter(practitioner=practitioner).first()
    return None


def _channel_for(practitioner: Practitioner) -> _ChannelChoice:
    account = sending_mailbox(practitioner)
    if account is not None:
        return _ChannelChoice(
            channel=Channel.SMTP,
            identity=smtp_identity(account, practitioner),
            held=account.status == MailboxStatus.BROKEN,
        )
    return _ChannelChoice(
        channel=Channel.SMART_MAIL, identity=smart_mail_identity(practitioner), held=False
    )


def _new_delivery(*, invoice: Invoice, recipient: str, choice: _ChannelChoice) -> Delivery:
    from ..rendering import cover_mail_templates_for, render_cover_mail

    subject_template, body_template = cover_mail_templates_for(invoice.practitioner)
    rendered = render_cover_mail(
        subject_template=subject_template, body_template=body_template, invoice=invoice
    )
    now = timezone.now()
    return Delivery(
        practitioner=invoice.practitioner,
        invoice=invoice,
        patient=invoice.patient,
        channel=choice.channel,
        recipient=recipient,
        patient_name=header_value(invoice.patient.display_name)[:200],
        invoice_number=header_value(invoice.number)[:20],
        subject=header_value(rendered.subject)[:300],
        from_header=choice.identity.from_header[:300],
        reply_to=choice.identity.reply_to[:300],
        message_id=new_message_id(choice.identity.envelope_from),
        body_text=rendered.text,
        body_html=rendered.html,
        created_at=now,
        queued_at=now,
    )


def queue_invoice_email(invoice: Invoice) -> Delivery:
    """Queue one invoice mail; see :func:`queue_invoice_emails`."""
    return queue_invoice_emails([invoice])[0]


def queue_invoice_emails(invoices: Iterable[Invoice]) -> list[Delivery]:
    """Queue the cover mail with the PDF of each invoice to its patient.

    Raises :class:`InvalidRecipient` (nothing is created) when any invoice cannot be sent
    (no valid address, no PDF). An invoice with a delivery still pending, or created in the
    last ``EMAILSETTINGS_DUPLICATE_WINDOW_SECONDS``, gets that delivery back instead of a new
    one: a double click sends once. ``actions.resend`` is the explicit way to send again.
    """
    invoices = list(invoices)
    if not invoices:
        return []
    recipients = {invoice.pk: check_recipient(invoice) for invoice in invoices}
    return create_deliveries(invoices=invoices, recipients=recipients)


def create_deliveries(
    *,
    invoices: Sequence[Invoice],
    recipients: dict[int, str],
    resend_of: Delivery | None = None,
) -> list[Delivery]:
    """The rows for ``invoices`` (to ``recipients`` by invoice id), one transaction, the
    send tasks published on commit. With ``resend_of`` only a pending resend of that row
    is reused."""
    from psicogest.models import Invoice

    ids = sorted({invoice.pk for invoice in invoices})
    with transaction.atomic():
        # Row locks serialise concurrent requests for the same invoice (double submit).
        locked = {
            invoice.pk: invoice
            for invoice in Invoice.objects.select_for_update()
            .select_related("patient", "practitioner")
            .filter(pk__in=ids)
            .order_by("pk")
        }
        now = timezone.now()
        window_start = now - datetime.timedelta(seconds=conf.duplicate_window_seconds())
        recent = Delivery.objects.filter(invoice_id__in=ids).order_by("created_at", "id")
        if resend_of is not None:
            recent = recent.filter(
                created_at__gt=resend_of.created_at, status__in=lifecycle.PENDING
            )
        else:
            recent = recent.filter(
                Q(status__in=lifecycle.PENDING) | Q(created_at__gte=window_start)
            )
        existing: dict[int, Delivery] = {}
        for delivery in recent:
            existing[delivery.invoice_id] = delivery  # the latest wins

        choices: dict[int, _ChannelChoice] = {}
        suppressed: dict[int, set[str]] = {}
        fresh: list[tuple[Delivery, bool, bool]] = []
        result: list[Delivery] = []
        for invoice in invoices:
            if invoice.pk in existing:
                result.append(existing[invoice.pk])
                continue
            current = locked[invoice.pk]
            owner = current.practitioner
            if owner.pk not in choices:
                choices[owner.pk] = _channel_for(owner)
                suppressed[owner.pk] = {
                    address.lower()
                    for address in SuppressedAddress.objects.filter(practitioner=owner).values_list(
                        "address", flat=True
                    )
                }
            recipient = recipients[invoice.pk]
            choice = choices[owner.pk]
            delivery = _new_delivery(invoice=current, recipient=recipient, choice=choice)
            delivery.resend_of = resend_of
            fresh.append((delivery, choice.held, recipient.lower() in suppressed[owner.pk]))
            existing[invoice.pk] = delivery
            result.append(delivery)
        if fresh:
            created = lifecycle.create(fresh)
            to_send = [
                (delivery.pk, delivery.practitioner_id, delivery.channel)
                for delivery in created
                if delivery.status == DeliveryStatus.QUEUED
            ]
            if to_send:
                publish.on_commit(lambda: publish.publish_deliveries(to_send))
    return result
