"""Queueing invoice mails: which invoices can be sent, to whom, through which channel, and
the new ``Delivery`` rows (with the rendered cover mail, From/Reply-To and a stable
Message-ID) created in one transaction and published on commit.

Each address is its own row and its own message — the patient's chosen address (email or
PEC), the card's other recipients, and the practitioner's copy when asked for — so no
patient's address is ever shown to another (no Cc, no Bcc). A row whose release time (a
chosen "Invia il …" or the sending window, see ``emailsettings.outbox.schedule``) is still to
come is created ``scheduled`` and published when the sweeper releases it.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from emailsettings import conf
from emailsettings.covermail.identity import Identity, smart_mail_identity, smtp_identity
from emailsettings.covermail.languages import PracticeTexts, cover_mail_texts
from emailsettings.covermail.message import header_value, new_message_id
from emailsettings.covermail.protection import check_protection, practice_default, protection_for
from emailsettings.covermail.reminders import render_reminder
from emailsettings.covermail.rendering import render_cover_mail
from emailsettings.exceptions import InvalidRecipient
from emailsettings.models import (
    Channel,
    Delivery,
    EmailSettings,
    MailboxStatus,
    RecipientRole,
    ReminderLevel,
    SmtpAccount,
    SuppressedAddress,
)
from emailsettings.outbox import lifecycle, publish
from emailsettings.outbox.schedule import release_time, sending_window
from psicogest.models import MAX_EXTRA_RECIPIENTS, Invoice, InvoiceAddress, InvoiceDelivery

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from psicogest.models import Invoice, Practitioner


@dataclass(frozen=True)
class Recipient:
    """One address an invoice goes to, and why (``RecipientRole``)."""

    address: str
    role: str = RecipientRole.PATIENT


def is_valid_address(address: str) -> bool:
    """One plain address the pipeline can put in a header: no list, no quoting."""
    if not address or any(ord(char) < 32 or char in '<>",; ' for char in address):
        return False
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


def _values(invoice: Invoice) -> dict[str, str]:
    name = header_value(invoice.patient.display_name) or _("il paziente")
    return {"number": invoice.number, "name": name}


def check_recipient(invoice: Invoice, *, default_protection: str | None = None) -> str:
    """The patient's address for ``invoice`` (the email, or the PEC when the card says so),
    or :class:`InvalidRecipient` saying why the invoice cannot be emailed (no address, an
    invalid one, no PDF to attach, no password or second factor for the protection the card
    asks for). ``default_protection``: the practice's default, when already read."""
    patient = invoice.patient
    values = _values(invoice)
    address = patient.invoice_recipient
    if not address and patient.invoice_address == InvoiceAddress.PEC:
        raise InvalidRecipient(
            _(
                "La fattura %(number)s non può essere inviata: nella scheda di %(name)s le "
                "fatture vanno alla PEC, ma l'indirizzo PEC manca. Aggiungilo nella scheda "
                "paziente."
            )
            % values
        )
    if not address:
        raise InvalidRecipient(
            _(
                "La fattura %(number)s non può essere inviata: %(name)s non ha un indirizzo "
                "email. Aggiungilo nella scheda paziente."
            )
            % values
        )
    if not is_valid_address(address):
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
    check_protection(
        patient,
        mode=protection_for(patient, default=default_protection),
        invoice_number=header_value(invoice.number),
    )
    return address


def copy_address(practitioner: Practitioner) -> str:
    """The practitioner's address when a copy of every invoice mail is asked for, else ""."""
    wanted = EmailSettings.objects.filter(practitioner=practitioner, copy_to_self=True).exists()
    return (practitioner.email or "").strip() if wanted else ""


def invoice_recipients(
    invoice: Invoice, *, copy_to: str = "", default_protection: str | None = None
) -> list[Recipient]:
    """Every address ``invoice`` goes to, each once: the patient's, the card's other
    recipients, and ``copy_to`` (the practitioner's copy). :class:`InvalidRecipient` when
    one of them cannot be used."""
    primary = check_recipient(invoice, default_protection=default_protection)
    result = [Recipient(primary)]
    seen = {primary.lower()}
    for address in invoice.patient.extra_recipients:
        if len(result) > MAX_EXTRA_RECIPIENTS:
            # Whatever wrote the card (the admin's raw JSON, an import), an invoice is never
            # a mailing: the first few other recipients only.
            logger.warning(
                "Patient %s has more than %s other recipients: the rest are not sent",
                invoice.patient_id,
                MAX_EXTRA_RECIPIENTS,
            )
            break
        if not is_valid_address(address):
            raise InvalidRecipient(
                _(
                    "La fattura %(number)s non può essere inviata: l'altro destinatario "
                    "«%(address)s» di %(name)s non è valido. Correggilo nella scheda paziente."
                )
                % {**_values(invoice), "address": header_value(address)[:254]}
            )
        if address.lower() not in seen:
            seen.add(address.lower())
            result.append(Recipient(address, RecipientRole.EXTRA))
    if copy_to and copy_to.lower() not in seen:
        result.append(Recipient(copy_to, RecipientRole.COPY))
    return result


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


def channel_choice(practitioner: Practitioner) -> _ChannelChoice:
    """The channel, identity and hold state new rows of ``practitioner`` get now."""
    return _channel_for(practitioner)


def _new_delivery(
    *,
    invoice: Invoice,
    recipient: Recipient,
    choice: _ChannelChoice,
    scheduled_for: datetime.datetime | None,
    default_protection: str,
    practice: PracticeTexts,
) -> Delivery:
    texts = cover_mail_texts(
        practitioner=invoice.practitioner, patient=invoice.patient, practice=practice
    )
    rendered = render_cover_mail(
        subject_template=texts.subject, body_template=texts.body, invoice=invoice
    )
    now = timezone.now()
    # The practitioner's own copy carries the plain PDF: it is their record, in their mailbox.
    protection = (
        InvoiceDelivery.ATTACHMENT
        if recipient.role == RecipientRole.COPY
        else protection_for(invoice.patient, default=default_protection)
    )
    return Delivery(
        practitioner=invoice.practitioner,
        protection=protection,
        invoice=invoice,
        patient=invoice.patient,
        channel=choice.channel,
        recipient=recipient.address,
        role=recipient.role,
        scheduled_for=scheduled_for,
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


def _as_reminder(delivery: Delivery, *, like: Delivery) -> None:
    """A resent payment reminder stays a reminder of its level, with its text rendered again
    (today's days late and amount due) and the invoice attached as before."""
    level = ReminderLevel.objects.filter(
        rules__practitioner_id=like.practitioner_id, level=like.reminder_level
    ).first()
    delivery.reminder_level = like.reminder_level
    delivery.with_invoice = like.with_invoice
    if level is None:
        delivery.subject, delivery.body_text, delivery.body_html = (
            like.subject,
            like.body_text,
            like.body_html,
        )
        return
    rendered, _language = render_reminder(level=level, invoice=delivery.invoice)
    delivery.subject = header_value(rendered.subject)[:300]
    delivery.body_text, delivery.body_html = rendered.text, rendered.html


def queue_invoice_email(invoice: Invoice, *, send_at: datetime.datetime | None = None) -> Delivery:
    """Queue one invoice mail; see :func:`queue_invoice_emails`."""
    return queue_invoice_emails([invoice], send_at=send_at)[0]


def queue_invoice_emails(
    invoices: Iterable[Invoice], *, send_at: datetime.datetime | None = None
) -> list[Delivery]:
    """Queue the cover mail with the PDF of each invoice; returns each invoice's delivery
    to its patient (:func:`queue_invoice_batch` also returns the other recipients' rows
    and the practitioner's copy).

    Raises :class:`InvalidRecipient` (nothing is created) when any invoice cannot be sent
    (no valid address, no PDF). An invoice with a delivery still pending, or created in the
    last ``EMAILSETTINGS_DUPLICATE_WINDOW_SECONDS``, gets that delivery back instead of a new
    one: a double click sends once. ``actions.resend`` is the explicit way to send again.
    ``send_at`` schedules the mails (the sending window may move them later).
    """
    rows = queue_invoice_batch(invoices, send_at=send_at)
    return [row for row in rows if row.role == RecipientRole.PATIENT]


def queue_invoice_batch(
    invoices: Iterable[Invoice], *, send_at: datetime.datetime | None = None
) -> list[Delivery]:
    """Like :func:`queue_invoice_emails`, every row: per invoice, the patient's first,
    then the other recipients', then the practitioner's copy."""
    invoices = list(invoices)
    if not invoices:
        return []
    # Each practitioner's settings are read once for the batch, not once an invoice.
    copies: dict[int, str] = {}
    defaults: dict[int, str] = {}
    recipients: dict[int, list[Recipient]] = {}
    for invoice in invoices:
        owner = invoice.practitioner
        if owner.pk not in copies:
            copies[owner.pk] = copy_address(owner)
            defaults[owner.pk] = practice_default(owner)
        recipients[invoice.pk] = invoice_recipients(
            invoice, copy_to=copies[owner.pk], default_protection=defaults[owner.pk]
        )
    return create_deliveries(invoices=invoices, recipients=recipients, send_at=send_at)


def _key(invoice_id: int, role: str, address: str) -> tuple[int, str, str]:
    # The patient's row is one per invoice whatever its address (a double click after
    # fixing the card still sends once); the others are one per address.
    return (invoice_id, role, "" if role == RecipientRole.PATIENT else address.lower())


def create_deliveries(
    *,
    invoices: Sequence[Invoice],
    recipients: Mapping[int, str | Sequence[Recipient]],
    resend_of: Delivery | None = None,
    send_at: datetime.datetime | None = None,
) -> list[Delivery]:
    """The rows for ``invoices`` (to ``recipients`` by invoice id: an address for the
    patient, or :class:`Recipient` entries), one transaction, the send tasks published on
    commit. With ``resend_of`` only a pending resend of that row is reused. Rows due later
    (``send_at``, the sending window) are created ``scheduled``."""
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
        # Payment reminders are rows of their own kind: never mistaken for the invoice mail
        # (a resend is of the kind it resends).
        kind = resend_of.reminder_level if resend_of is not None else 0
        recent = Delivery.objects.filter(invoice_id__in=ids, reminder_level=kind).order_by(
            "created_at", "id"
        )
        if resend_of is not None:
            recent = recent.filter(
                created_at__gt=resend_of.created_at, status__in=lifecycle.PENDING
            )
        else:
            recent = recent.filter(
                Q(status__in=lifecycle.PENDING) | Q(created_at__gte=window_start)
            )
        existing: dict[tuple[int, str, str], Delivery] = {}
        for delivery in recent:
            # The latest wins.
            existing[_key(delivery.invoice_id, delivery.role, delivery.recipient)] = delivery

        choices: dict[int, _ChannelChoice] = {}
        suppressed: dict[int, set[str]] = {}
        releases: dict[int, datetime.datetime | None] = {}
        defaults: dict[int, str] = {}
        texts: dict[int, PracticeTexts] = {}
        fresh: list[tuple[Delivery, bool, bool]] = []
        result: list[Delivery] = []
        for invoice in invoices:
            current = locked[invoice.pk]
            owner = current.practitioner
            wanted = recipients[invoice.pk]
            entries = [Recipient(wanted)] if isinstance(wanted, str) else list(wanted)
            for recipient in entries:
                key = _key(invoice.pk, recipient.role, recipient.address)
                if key in existing:
                    result.append(existing[key])
                    continue
                if owner.pk not in choices:
                    choices[owner.pk] = _channel_for(owner)
                    suppressed[owner.pk] = {
                        address.lower()
                        for address in SuppressedAddress.objects.filter(
                            practitioner=owner
                        ).values_list("address", flat=True)
                    }
                    releases[owner.pk] = release_time(
                        window=sending_window(owner), send_at=send_at, now=now
                    )
                    defaults[owner.pk] = practice_default(owner)
                    texts[owner.pk] = PracticeTexts(owner)
                choice = choices[owner.pk]
                delivery = _new_delivery(
                    invoice=current,
                    recipient=recipient,
                    choice=choice,
                    scheduled_for=releases[owner.pk],
                    default_protection=defaults[owner.pk],
                    practice=texts[owner.pk],
                )
                delivery.resend_of = resend_of
                if resend_of is not None and resend_of.reminder_level:
                    _as_reminder(delivery, like=resend_of)
                is_suppressed = recipient.address.lower() in suppressed[owner.pk]
                fresh.append((delivery, choice.held, is_suppressed))
                existing[key] = delivery
                result.append(delivery)
        if fresh:
            publish.publish_queued_on_commit(lifecycle.create(fresh))
    return result
