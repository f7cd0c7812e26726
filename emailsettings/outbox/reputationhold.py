"""What a Smart Mail suspension does to the outbox: the practitioner's Smart Mail rows are
held (``held`` with the ``reputation_hold`` class — not failed, nothing is lost), sent through
their own mailbox in one click, or released when the operator lifts the suspension.

The worker asks :func:`hold_if_suspended` before it claims a batch's first Smart Mail row,
so a suspension decided while rows were queued stops them at claim time; every change is a
:func:`~emailsettings.outbox.lifecycle.transition` with its event. Rows of the
practitioner's own mailbox are never touched: the guard protects the platform's ESP account
only.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_noop

from emailsettings.covermail.identity import smtp_identity
from emailsettings.exceptions import ActionNotAllowed
from emailsettings.failures import NO_FAILURE_COLUMNS, ErrorClass, Failure
from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    MailboxStatus,
    SmtpAccount,
)
from emailsettings.outbox import lifecycle, publish
from emailsettings.smartmail import reputation

S = DeliveryStatus

HELD_TEXT = gettext_noop(
    "Trattenuta: Smart Mail è sospeso per questo account per troppi rimbalzi o "
    "segnalazioni. Puoi inviarla con la tua casella."
)


def _waiting_smart_mail(practitioner_id: int) -> QuerySet[Delivery]:
    return Delivery.objects.filter(
        practitioner_id=practitioner_id,
        channel=Channel.SMART_MAIL,
        status__in=(S.QUEUED, S.DEFERRED),
    )


def held_rows(*, practitioner_id: int) -> QuerySet[Delivery]:
    """The practitioner's Smart Mail rows held by the suspension."""
    return Delivery.objects.filter(
        practitioner_id=practitioner_id,
        channel=Channel.SMART_MAIL,
        status=S.HELD,
        last_error_class=ErrorClass.REPUTATION_HOLD,
    )


def is_held_by_suspension(delivery: Delivery) -> bool:
    """A Smart Mail row held by the suspension while it still stands: queueing it again
    would only see it held again at claim time. It leaves through the own mailbox
    (:func:`send_held_with_mailbox`) or when the operator lifts the suspension."""
    return (
        delivery.status == S.HELD
        and delivery.channel == Channel.SMART_MAIL
        and delivery.last_error_class == ErrorClass.REPUTATION_HOLD
        and reputation.is_suspended(practitioner_id=delivery.practitioner_id)
    )


def hold_smart_mail(*, practitioner_id: int) -> int:
    """Hold every Smart Mail row of the practitioner still waiting to leave; rows a worker
    is sending are left to it. Returns how many were held."""
    moved = lifecycle.transition(
        _waiting_smart_mail(practitioner_id),
        to=S.HELD,
        text=HELD_TEXT,
        failure=Failure(phase="", error_class=ErrorClass.REPUTATION_HOLD, reply=HELD_TEXT),
        changes={"next_attempt_at": None, "lease_expires_at": None},
    )
    return len(moved)


def hold_if_suspended(*, practitioner_id: int) -> bool:
    """The worker's check before a batch's Smart Mail rows: when the practitioner is
    suspended, their waiting Smart Mail rows are held and the batch sends none of them."""
    if not reputation.is_suspended(practitioner_id=practitioner_id):
        return False
    hold_smart_mail(practitioner_id=practitioner_id)
    return True


def release_held(*, practitioner_id: int) -> int:
    """The suspension is lifted: the held Smart Mail rows go back to the queue."""
    now = timezone.now()
    moved = lifecycle.transition(
        held_rows(practitioner_id=practitioner_id),
        to=S.QUEUED,
        text=gettext_noop("Sospensione di Smart Mail revocata: invio ripreso."),
        changes={**NO_FAILURE_COLUMNS, "queued_at": now, "next_attempt_at": None},
        now=now,
    )
    publish.publish_ids_on_commit(moved)
    return len(moved)


def working_mailbox(*, practitioner_id: int) -> SmtpAccount | None:
    """The practitioner's own mailbox when it works (verified, not broken)."""
    return SmtpAccount.objects.filter(
        practitioner_id=practitioner_id, status=MailboxStatus.OK
    ).first()


def send_held_with_mailbox(*, practitioner_id: int) -> int:
    """The practitioner's one click: every held Smart Mail row leaves through their own,
    working mailbox (From their own address, same Message-ID). Returns how many."""
    account = working_mailbox(practitioner_id=practitioner_id)
    if account is None:
        raise ActionNotAllowed("no working mailbox")
    identity = smtp_identity(account, account.practitioner)
    now = timezone.now()
    moved = lifecycle.transition(
        held_rows(practitioner_id=practitioner_id),
        to=S.QUEUED,
        text=gettext_noop(
            "Il professionista ha scelto di inviarla con la propria casella (Smart Mail sospeso)."
        ),
        changes={
            **NO_FAILURE_COLUMNS,
            "channel": Channel.SMTP,
            "from_header": identity.from_header[:300],
            "reply_to": identity.reply_to[:300],
            "queued_at": now,
            "next_attempt_at": None,
        },
        now=now,
    )
    publish.publish_ids_on_commit(moved)
    return len(moved)
