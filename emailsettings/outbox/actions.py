"""What the practitioner (the report) and the mailbox do to deliveries: resend, retry now,
send with Smart Mail, reactivate an address, cancel a scheduled mail or send it now; hold
a broken mailbox's queue and resume it.

Timeline texts are stored in Italian (``gettext_noop``) whatever the request's language,
and translated when shown.

Each action is allowed only in the states the lifecycle names and raises
:class:`~emailsettings.exceptions.ActionNotAllowed` otherwise; each change is one
:func:`~emailsettings.outbox.lifecycle.transition` with its event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from emailsettings.covermail.identity import smart_mail_identity
from emailsettings.exceptions import ActionNotAllowed, AddressUnchanged, InvalidRecipient
from emailsettings.failures import ErrorClass
from emailsettings.mailbox.state import Health
from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    MailboxStatus,
    RecipientRole,
    SmtpAccount,
    SuppressedAddress,
)
from emailsettings.outbox import lifecycle, publish, reputationhold
from emailsettings.outbox.queueing import (
    Recipient,
    check_recipient,
    create_deliveries,
    is_valid_address,
)
from psicogest.models import InvoiceAddress

if TYPE_CHECKING:
    from psicogest.models import Practitioner


def _requeue(delivery: Delivery, *, allowed: Sequence[str], text: str, **changes: Any) -> Delivery:
    now = timezone.now()
    moved = lifecycle.transition(
        Delivery.objects.filter(pk=delivery.pk, status__in=allowed),
        to=DeliveryStatus.QUEUED,
        text=text,
        changes={
            "next_attempt_at": None,
            "lease_expires_at": None,
            "queued_at": now,
            **changes,
        },
        now=now,
    )
    if not moved:
        raise ActionNotAllowed(delivery.status)
    publish.publish_ids_on_commit(moved)
    delivery.refresh_from_db()
    return delivery


def _mailbox_broken(practitioner_id: int) -> bool:
    return SmtpAccount.objects.filter(
        practitioner_id=practitioner_id, status=MailboxStatus.BROKEN
    ).exists()


def can_retry_now(delivery: Delivery) -> bool:
    """A wait that can be cut short; a row held by a still-broken mailbox, or a Smart Mail
    row held by a still-standing reputation suspension, cannot."""
    if delivery.status not in lifecycle.RETRY_NOW:
        return False
    if reputationhold.is_held_by_suspension(delivery):
        return False
    return not (
        delivery.status == DeliveryStatus.HELD
        and delivery.channel == Channel.SMTP
        and _mailbox_broken(delivery.practitioner_id)
    )


def retry_now(*, delivery: Delivery) -> Delivery:
    """A deferred (or held) row goes back to the queue at once, same Message-ID."""
    if not can_retry_now(delivery):
        raise ActionNotAllowed(delivery.status)
    return _requeue(
        delivery,
        allowed=lifecycle.RETRY_NOW,
        text=gettext_noop("Nuovo tentativo richiesto dal professionista."),
    )


def send_with_smart_mail(*, delivery: Delivery) -> Delivery:
    """The practitioner's explicit choice: send this personal-SMTP row, stopped by the
    mailbox, with Smart Mail (recorded on the row and in its timeline)."""
    if not lifecycle.can_fall_back(delivery):
        raise ActionNotAllowed(delivery.status)
    identity = smart_mail_identity(delivery.practitioner)
    return _requeue(
        delivery,
        allowed=lifecycle.FALLBACK,
        text=gettext_noop("Il professionista ha scelto di inviarla con Smart Mail."),
        channel=Channel.SMART_MAIL,
        fallback_to_smart_mail=True,
        from_header=identity.from_header[:300],
        reply_to=identity.reply_to[:300],
    )


# Failures that are permanent for the address itself: sending again to the same address
# fails the same way, so the address is corrected first.
ADDRESS_FAILURES = frozenset(
    {
        ErrorClass.RECIPIENT_REFUSED,
        ErrorClass.ADDRESS_UNSUPPORTED,
        ErrorClass.BOUNCED,
        ErrorClass.SUPPRESSED,
    }
)


def needs_address_fix(delivery: Delivery) -> bool:
    """A permanent failure of the recipient's address (5.1.x, bounced, suppressed) that a
    resend would repeat: the address it would go to is still the refused one."""
    if delivery.last_error_class not in ADDRESS_FAILURES and delivery.status not in (
        DeliveryStatus.BOUNCED,
        DeliveryStatus.SUPPRESSED,
    ):
        return False
    if delivery.role == RecipientRole.COPY:
        return False
    if delivery.role == RecipientRole.PATIENT:
        current = delivery.invoice.patient.invoice_recipient
    else:
        current = delivery.recipient
    if current.strip().lower() != delivery.recipient.strip().lower():
        return False
    # A suspended address the practitioner reactivated may be tried again.
    return (
        delivery.status != DeliveryStatus.SUPPRESSED
        or SuppressedAddress.objects.filter(
            practitioner_id=delivery.practitioner_id, address__iexact=delivery.recipient
        ).exists()
    )


def resend(*, delivery: Delivery, same_address: bool = True) -> Delivery:
    """A new delivery of the same invoice (new Message-ID, current patient address and cover
    mail); the original row stays as it was, with an event saying it was resent.

    ``same_address=False`` (the bulk retry) refuses with :class:`AddressUnchanged` a row whose
    address failed permanently and has not been corrected."""
    if delivery.status not in lifecycle.RESENDABLE:
        raise ActionNotAllowed(delivery.status)
    if not same_address and needs_address_fix(delivery):
        raise AddressUnchanged(delivery.status)
    return _resend_to(delivery, _resend_recipient(delivery))


def _resend_to(delivery: Delivery, recipient: Recipient) -> Delivery:
    invoice = delivery.invoice
    created = create_deliveries(
        invoices=[invoice], recipients={invoice.pk: [recipient]}, resend_of=delivery
    )[0]
    if created.resend_of_id == delivery.pk and created.created_at >= delivery.created_at:
        lifecycle.transition(
            Delivery.objects.filter(pk=delivery.pk),
            to=delivery.status,
            text=gettext_noop("Reinvio richiesto dal professionista."),
        )
    return created


def fix_address_and_resend(*, delivery: Delivery, address: str) -> Delivery:
    """«Correggi l'indirizzo»: write ``address`` where the refused one came from (the patient
    card's email or PEC, or its list of other recipients), then send the invoice again to it.
    The same address again is :class:`AddressUnchanged`; an invalid one
    :class:`InvalidRecipient`."""
    if delivery.status not in lifecycle.RESENDABLE or delivery.role == RecipientRole.COPY:
        raise ActionNotAllowed(delivery.status)
    address = address.strip()
    if not is_valid_address(address):
        raise InvalidRecipient(
            _("«%(address)s» non è un indirizzo email valido: controllalo e riprova.")
            % {"address": address}
        )
    if address.lower() == delivery.recipient.strip().lower():
        raise AddressUnchanged(delivery.status)
    with transaction.atomic():
        patient = delivery.invoice.patient
        old = delivery.recipient.strip().lower()
        if delivery.role == RecipientRole.PATIENT:
            if patient.invoice_address == InvoiceAddress.PEC and patient.pec.lower() == old:
                patient.pec = address
                patient.save(update_fields=["pec"])
            else:
                patient.email = address
                patient.save(update_fields=["email"])
        else:
            extras = [value for value in patient.extra_recipients if value.lower() != old]
            patient.extra_emails = [*extras, address]
            patient.save(update_fields=["extra_emails"])
        return _resend_to(delivery, Recipient(address, delivery.role))


def _resend_recipient(delivery: Delivery) -> Recipient:
    """The patient's row goes to the card's current address; another recipient's row and
    the practitioner's copy to the same address as before."""
    if delivery.role == RecipientRole.PATIENT:
        return Recipient(check_recipient(delivery.invoice))
    check_recipient(delivery.invoice)  # the PDF is still needed
    if not is_valid_address(delivery.recipient):
        raise InvalidRecipient(delivery.recipient)
    return Recipient(delivery.recipient, delivery.role)


def cancel_scheduled(*, delivery: Delivery) -> Delivery:
    """One scheduled mail (one recipient) that has not left yet is cancelled: it will not
    be sent. The invoice's other scheduled mails keep their time."""
    moved = _cancel(Delivery.objects.filter(pk=delivery.pk))
    if not moved:
        raise ActionNotAllowed(delivery.status)
    delivery.refresh_from_db()
    return delivery


def send_now(*, delivery: Delivery) -> Delivery:
    """One scheduled mail (one recipient) leaves at once instead of at its time."""
    return _requeue(
        delivery,
        allowed=lifecycle.CANCELLABLE,
        text=gettext_noop("Invio anticipato dal professionista: messa in coda."),
        scheduled_for=None,
    )


def scheduled_with(delivery: Delivery) -> QuerySet[Delivery]:
    """The scheduled mails of ``delivery``'s invoice: the patient's, the other recipients'
    and the practitioner's copy leave (or are cancelled) together."""
    return Delivery.objects.filter(
        practitioner_id=delivery.practitioner_id,
        invoice_id=delivery.invoice_id,
        status__in=lifecycle.CANCELLABLE,
    )


def _cancel(rows: QuerySet[Delivery]) -> list[int]:
    return lifecycle.transition(
        rows.filter(status__in=lifecycle.CANCELLABLE),
        to=DeliveryStatus.CANCELLED,
        text=gettext_noop("Invio programmato annullato dal professionista."),
        changes={"scheduled_for": None},
    )


def cancel_scheduled_invoice(*, delivery: Delivery) -> list[int]:
    """Cancel every scheduled mail of ``delivery``'s invoice (patient, other recipients,
    copy); returns the ids cancelled. Nothing left to cancel is :class:`ActionNotAllowed`."""
    moved = _cancel(scheduled_with(delivery))
    if not moved:
        raise ActionNotAllowed(delivery.status)
    return moved


def send_invoice_now(*, delivery: Delivery) -> list[int]:
    """Every scheduled mail of ``delivery``'s invoice leaves at once; returns their ids."""
    now = timezone.now()
    moved = lifecycle.transition(
        scheduled_with(delivery),
        to=DeliveryStatus.QUEUED,
        text=gettext_noop("Invio anticipato dal professionista: messa in coda."),
        changes={
            "next_attempt_at": None,
            "lease_expires_at": None,
            "queued_at": now,
            "scheduled_for": None,
        },
        now=now,
    )
    if not moved:
        raise ActionNotAllowed(delivery.status)
    publish.publish_ids_on_commit(moved)
    return moved


def reactivate_address(*, practitioner: Practitioner, address: str) -> int:
    """Remove ``address`` from the practitioner's suppressed addresses; returns how many
    entries were removed."""
    deleted, _rows = SuppressedAddress.objects.filter(
        practitioner=practitioner, address__iexact=address.strip()
    ).delete()
    return deleted


def _smtp_rows(practitioner_id: int, statuses: Sequence[str]) -> QuerySet[Delivery]:
    return Delivery.objects.filter(
        practitioner_id=practitioner_id, channel=Channel.SMTP, status__in=statuses
    )


def hold_pending(*, practitioner_id: int) -> int:
    """Hold every personal-SMTP row of the practitioner still waiting to be sent (the
    mailbox is broken). Rows a worker is sending are left to it."""
    moved = lifecycle.transition(
        _smtp_rows(practitioner_id, (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED)),
        to=DeliveryStatus.HELD,
        text=gettext_noop("Trattenuta: la casella SMTP personale va corretta prima dell'invio."),
        changes={"next_attempt_at": None},
    )
    return len(moved)


def hold_without_mailbox(*, practitioner_id: int) -> int:
    """The mailbox was deleted: every personal-SMTP row still waiting to leave, scheduled
    ones included, is held until the practitioner configures a mailbox again or chooses
    Smart Mail. A scheduled row keeps its time for when it is released."""
    moved = lifecycle.transition(
        _smtp_rows(
            practitioner_id,
            (DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED, DeliveryStatus.SCHEDULED),
        ),
        to=DeliveryStatus.HELD,
        text=gettext_noop(
            "Trattenuta: la casella SMTP personale è stata eliminata. Configurala di nuovo "
            "oppure invia con Smart Mail."
        ),
        changes={"next_attempt_at": None},
    )
    return len(moved)


def resume_held(*, practitioner_id: int) -> int:
    """The mailbox works again: its held rows go back to the queue, or wait for their time
    when they were scheduled for later. Returns how many."""
    now = timezone.now()
    later = lifecycle.transition(
        _smtp_rows(practitioner_id, (DeliveryStatus.HELD,)).filter(scheduled_for__gt=now),
        to=DeliveryStatus.SCHEDULED,
        text=gettext_noop(
            "La casella funziona di nuovo: la fattura partirà all'orario programmato."
        ),
        changes={"next_attempt_at": None},
        now=now,
    )
    moved = lifecycle.transition(
        _smtp_rows(practitioner_id, (DeliveryStatus.HELD,)),
        to=DeliveryStatus.QUEUED,
        text=gettext_noop("La casella funziona di nuovo: invio ripreso."),
        changes={"queued_at": now, "next_attempt_at": None, "scheduled_for": None},
        now=now,
    )
    publish.publish_ids_on_commit(moved)
    return len(moved) + len(later)


def follow_mailbox_health(*, practitioner_id: int, health: Health | None) -> None:
    """What the outbox does when the mailbox's health changed (:mod:`emailsettings.mailbox.state`):
    a working mailbox releases its held invoices, a broken one holds what is still waiting."""
    if health is Health.OK:
        resume_held(practitioner_id=practitioner_id)
    elif health is Health.BROKEN:
        hold_pending(practitioner_id=practitioner_id)
