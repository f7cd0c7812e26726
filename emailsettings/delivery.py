"""The delivery outbox: queueing invoice mails, sending them, and the report's actions.

The database is the source of truth; Celery only executes. The life of a row:

1. :func:`queue_invoice_emails` validates the recipients and, in one transaction, creates the
   ``Delivery`` rows (``queued``, with the rendered cover mail, From/Reply-To and a stable
   Message-ID) and their first event, then publishes the send tasks on commit. A broker
   error is logged and the rows simply stay ``queued``.
2. :func:`send_batch` (the ``emailsettings.send_deliveries`` task) claims each row with a
   conditional ``UPDATE`` (``queued``/due ``deferred`` → ``sending``, one winner, with a
   lease), records ``data_sent`` just before the message data can reach the server, sends
   outside any transaction and records the outcome with the server's reply.
3. :func:`sweep` (beat) re-publishes rows ``queued`` for too long, moves due ``deferred``
   rows back to ``queued``, and settles rows whose worker died: before ``data_sent`` they
   are retried with the same Message-ID, after it they become ``unknown`` (never re-sent
   without the practitioner's choice).

Report actions: :func:`resend`, :func:`retry_now`, :func:`send_with_smart_mail`,
:func:`reactivate_address`; :func:`resume_held` once the mailbox works again.
"""

from __future__ import annotations

import datetime
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from . import conf, limits
from .exceptions import ActionNotAllowed, InvalidRecipient
from .identity import Identity, smart_mail_identity, smtp_identity
from .messages import build_message, header_value, invoice_pdf, new_message_id
from .models import (
    IN_FLIGHT_STATUSES,
    Channel,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EmailSettings,
    EventKind,
    MailboxStatus,
    Phase,
    SmtpAccount,
    SuppressedAddress,
)

if TYPE_CHECKING:
    from psicogest.models import Invoice, Practitioner

    from .senders import Outcome

logger = logging.getLogger(__name__)

SEND_TASK = "emailsettings.send_deliveries"
# A second request for the same invoice returns the pending delivery (double click).
PENDING_STATUSES = (*IN_FLIGHT_STATUSES, DeliveryStatus.HELD)
RESENDABLE = (
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.FAILED,
    DeliveryStatus.BOUNCED,
    DeliveryStatus.COMPLAINED,
    DeliveryStatus.UNKNOWN,
    DeliveryStatus.SUPPRESSED,
)
RETRYABLE = (DeliveryStatus.DEFERRED, DeliveryStatus.HELD, DeliveryStatus.QUEUED)
SMART_MAIL_FALLBACK = (DeliveryStatus.HELD, DeliveryStatus.DEFERRED, DeliveryStatus.FAILED)
FINISHED_STATUSES = (
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.FAILED,
    DeliveryStatus.BOUNCED,
    DeliveryStatus.COMPLAINED,
    DeliveryStatus.SUPPRESSED,
    DeliveryStatus.UNKNOWN,
)


# --- recipients ------------------------------------------------------------------------------


def check_recipient(invoice: Invoice) -> str:
    """The patient's address for ``invoice``, or :class:`InvalidRecipient` saying why not."""
    patient = invoice.patient
    name = header_value(patient.display_name) or _("il paziente")
    address = (patient.email or "").strip()
    if not address:
        raise InvalidRecipient(
            _(
                "La fattura %(number)s non può essere inviata: %(name)s non ha un indirizzo "
                "email. Aggiungilo nella scheda paziente."
            )
            % {"number": invoice.number, "name": name}
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
            % {"number": invoice.number, "name": name}
        )
    return address


# --- queueing --------------------------------------------------------------------------------


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


def _new_delivery(
    *, invoice: Invoice, recipient: str, choice: _ChannelChoice, suppressed: bool
) -> Delivery:
    from .rendering import cover_mail_templates_for, render_cover_mail

    practitioner = invoice.practitioner
    subject_template, body_template = cover_mail_templates_for(practitioner)
    rendered = render_cover_mail(
        subject_template=subject_template, body_template=body_template, invoice=invoice
    )
    status = DeliveryStatus.QUEUED
    if suppressed:
        status = DeliveryStatus.SUPPRESSED
    elif choice.held:
        status = DeliveryStatus.HELD
    now = timezone.now()
    return Delivery(
        practitioner=practitioner,
        invoice=invoice,
        patient=invoice.patient,
        channel=choice.channel,
        status=status,
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


def _first_event_text(delivery: Delivery) -> str:
    if delivery.status == DeliveryStatus.SUPPRESSED:
        return _(
            "Non inviata: l'indirizzo è sospeso dopo un rimbalzo o una segnalazione. "
            "Riattivalo per inviare di nuovo."
        )
    if delivery.status == DeliveryStatus.HELD:
        return _("Trattenuta: la casella SMTP personale va corretta prima dell'invio.")
    return _("Messa in coda.")


def queue_invoice_email(invoice: Invoice) -> Delivery:
    """Queue one invoice mail; see :func:`queue_invoice_emails`."""
    return queue_invoice_emails([invoice])[0]


def queue_invoice_emails(invoices: Iterable[Invoice]) -> list[Delivery]:
    """Queue the cover mail with the PDF of each invoice to its patient.

    Raises :class:`InvalidRecipient` (nothing is created) when any patient has no valid
    address. An invoice with a delivery still pending, or created in the last
    ``EMAILSETTINGS_DUPLICATE_WINDOW_SECONDS``, gets that delivery back instead of a new one:
    a double click sends once. :func:`resend` is the explicit way to send again.
    """
    invoices = list(invoices)
    if not invoices:
        return []
    recipients = {invoice.pk: check_recipient(invoice) for invoice in invoices}
    return _create_deliveries(invoices=invoices, recipients=recipients)


def _create_deliveries(
    *,
    invoices: Sequence[Invoice],
    recipients: dict[int, str],
    resend_of: Delivery | None = None,
) -> list[Delivery]:
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
            recent = recent.filter(created_at__gt=resend_of.created_at, status__in=PENDING_STATUSES)
        else:
            recent = recent.filter(Q(status__in=PENDING_STATUSES) | Q(created_at__gte=window_start))
        existing: dict[int, Delivery] = {}
        for delivery in recent:
            existing[delivery.invoice_id] = delivery  # the latest wins

        choices: dict[int, _ChannelChoice] = {}
        suppressed: dict[int, set[str]] = {}
        fresh: list[Delivery] = []
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
            delivery = _new_delivery(
                invoice=current,
                recipient=recipient,
                choice=choices[owner.pk],
                suppressed=recipient.lower() in suppressed[owner.pk],
            )
            delivery.resend_of = resend_of
            fresh.append(delivery)
            existing[invoice.pk] = delivery
            result.append(delivery)
        if fresh:
            Delivery.objects.bulk_create(fresh)
            DeliveryEvent.objects.bulk_create(
                DeliveryEvent(
                    delivery=delivery,
                    created_at=now,
                    kind=EventKind.QUEUED,
                    status=delivery.status,
                    text=_first_event_text(delivery),
                )
                for delivery in fresh
            )
            to_send = [
                (delivery.pk, delivery.practitioner_id, delivery.channel)
                for delivery in fresh
                if delivery.status == DeliveryStatus.QUEUED
            ]
            if to_send:
                transaction.on_commit(lambda: enqueue(to_send))
    return result


# --- publishing ------------------------------------------------------------------------------


def _batches(rows: Iterable[tuple[int, int, str]]) -> list[list[int]]:
    """Delivery ids grouped by practitioner and channel, at most ``batch_size`` each: one
    task, and one SMTP connection, per batch."""
    groups: OrderedDict[tuple[int, str], list[int]] = OrderedDict()
    for pk, practitioner_id, channel in rows:
        groups.setdefault((practitioner_id, channel), []).append(pk)
    size = conf.batch_size()
    return [ids[i : i + size] for ids in groups.values() for i in range(0, len(ids), size)]


def enqueue(rows: Iterable[tuple[int, int, str]]) -> int:
    """Publish send tasks for ``(id, practitioner_id, channel)`` rows; returns how many
    tasks went out. A broker failure is logged: the rows stay ``queued`` for the sweeper."""
    from psicogest.celery import app

    published = 0
    batches = _batches(rows)
    for index, ids in enumerate(batches):
        try:
            app.send_task(SEND_TASK, args=[ids])
        except Exception as err:  # any broker error: the sweeper publishes them later
            left = sum(len(batch) for batch in batches[index:])
            logger.warning(
                "Broker unavailable, %s deliveries stay queued for the sweeper: %s",
                left,
                type(err).__name__,
            )
            # Each failed publish waits on the connection timeout: do not pay it per batch.
            break
        published += 1
    return published


def _enqueue_ids(ids: Iterable[int]) -> None:
    rows = list(
        Delivery.objects.filter(pk__in=list(ids))
        .order_by("id")
        .values_list("pk", "practitioner_id", "channel")
    )
    if rows:
        enqueue(rows)


# --- sending ---------------------------------------------------------------------------------


@dataclass
class BatchResult:
    """What one batch did (for the benchmark and the logs)."""

    outcomes: dict[int, str] = field(default_factory=dict)
    sessions_opened: int = 0
    handed_over: list[int] = field(default_factory=list)


def _waiting(pk: int, now: datetime.datetime) -> Any:
    """The row ``pk`` if it is waiting to be sent: ``queued``, or ``deferred`` and due."""
    return Delivery.objects.filter(pk=pk).filter(
        Q(status=DeliveryStatus.QUEUED)
        | Q(status=DeliveryStatus.DEFERRED, next_attempt_at__lte=now)
    )


def _claim(pk: int) -> Delivery | None:
    """``queued`` (or due ``deferred``) → ``sending`` with a lease; ``None`` if another
    worker has it, or it is no longer waiting to be sent."""
    now = timezone.now()
    claimed = _waiting(pk, now).update(
        status=DeliveryStatus.SENDING,
        phase=Phase.CONNECT,
        attempts=F("attempts") + 1,
        lease_expires_at=now + datetime.timedelta(seconds=conf.lease_seconds()),
        next_attempt_at=None,
        updated_at=now,
    )
    if not claimed:
        return None
    return Delivery.objects.select_related("invoice", "practitioner").get(pk=pk)


def _defer_for_quota(pk: int, quota: limits.Quota) -> bool:
    """The Smart Mail daily quota is used up: the row waits, unsent, until it frees up.

    Not an attempt (``attempts`` is not incremented and no ESP is contacted) and never a
    failure: the row stays ``deferred`` however long the quota lasts, and
    ``quota_wait_until`` restarts the retry max-age clock (see :func:`_record`) so that a
    temporary error right after a long quota wait still gets the full retry window.
    """
    now = timezone.now()
    resets_at = quota.resets_at or now
    text = limits.quota_wait_text(quota)
    with transaction.atomic():
        moved = _waiting(pk, now).update(
            status=DeliveryStatus.DEFERRED,
            next_attempt_at=resets_at,
            quota_wait_until=resets_at,
            lease_expires_at=None,
            last_error_class="rate_limited",
            last_error_code=None,
            last_error_enhanced="",
            last_error_text=text,
            updated_at=now,
        )
        if moved:
            DeliveryEvent.objects.create(
                delivery_id=pk,
                created_at=now,
                kind=EventKind.ATTEMPT,
                status=DeliveryStatus.DEFERRED,
                text=text,
            )
    return bool(moved)


def _smart_mail_quota(practitioner_id: int, *, lock: bool = False) -> limits.Quota:
    from psicogest.models import Practitioner

    practitioners = Practitioner.objects.only("pk", "date_joined")
    if lock:
        practitioners = practitioners.select_for_update()
    return limits.smart_mail_quota(practitioner=practitioners.get(pk=practitioner_id))


def _claim_within_quota(pk: int, practitioner_id: int) -> tuple[Delivery | None, bool]:
    """Claim a Smart Mail row if the daily quota allows it: ``(delivery, False)``; over
    quota the row is deferred instead: ``(None, True)``. The practitioner's row lock makes
    check-and-claim atomic across the workers sending for the same practitioner."""
    with transaction.atomic():
        quota = _smart_mail_quota(practitioner_id, lock=True)
        if quota.exhausted:
            return None, _defer_for_quota(pk, quota)
        return _claim(pk), False


def _mark_data_sent(delivery: Delivery) -> None:
    Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING).update(
        phase=Phase.DATA_SENT, updated_at=timezone.now()
    )
    delivery.phase = Phase.DATA_SENT


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with ±20 % jitter: base, 2×base, 4×base… capped."""
    base = conf.retry_base_seconds()
    delay = min(conf.retry_max_delay_seconds(), base * (2 ** max(0, attempts - 1)))
    return delay * random.uniform(0.8, 1.2)


def _event_text(outcome: Outcome) -> str:
    defaults: dict[str, str] = {
        DeliveryStatus.SENT: _("Accettata dal server."),
        DeliveryStatus.UNKNOWN: _("Esito sconosciuto."),
    }
    return outcome.text or defaults.get(outcome.status, "")


def _record(delivery: Delivery, outcome: Outcome) -> str:
    """Store the attempt's outcome and its event; returns the row's new status."""
    now = timezone.now()
    status = outcome.status
    fields: dict[str, Any] = {
        "phase": outcome.phase or delivery.phase,
        "lease_expires_at": None,
        "updated_at": now,
        "last_error_class": outcome.error_class[:40],
        "last_error_code": outcome.code if status != DeliveryStatus.SENT else None,
        "last_error_enhanced": outcome.enhanced[:20] if status != DeliveryStatus.SENT else "",
        "last_error_text": outcome.text if status != DeliveryStatus.SENT else "",
    }
    event_text = _event_text(outcome)
    if status == DeliveryStatus.SENT:
        fields.update(sent_at=now, last_error_class="")
        if outcome.esp_message_id:
            fields["esp_message_id"] = outcome.esp_message_id
    elif status == DeliveryStatus.DEFERRED:
        delay = backoff_seconds(delivery.attempts)
        next_at = now + datetime.timedelta(seconds=delay)
        # Time spent waiting for the Smart Mail daily quota does not count toward the max age.
        started = max(delivery.created_at, delivery.quota_wait_until or delivery.created_at)
        if (next_at - started).total_seconds() > conf.retry_max_age_seconds():
            status = DeliveryStatus.FAILED
            fields["last_error_class"] = outcome.error_class or "expired"
            event_text = _("Tentativi esauriti: %(reply)s") % {"reply": outcome.text}
        else:
            fields["next_attempt_at"] = next_at
            event_text = _("%(reply)s — nuovo tentativo tra %(seconds)d secondi.") % {
                "reply": outcome.text or _("Errore temporaneo"),
                "seconds": round(delay),
            }
    fields["status"] = status
    with transaction.atomic():
        updated = Delivery.objects.filter(
            pk=delivery.pk,
            attempts=delivery.attempts,
            status__in=(DeliveryStatus.SENDING, DeliveryStatus.UNKNOWN),
        ).update(**fields)
        if not updated:
            # The lease ran out and the sweeper re-queued the row for another worker.
            logger.warning(
                "Delivery %s changed hands; outcome %s not recorded", delivery.pk, status
            )
            return ""
        DeliveryEvent.objects.create(
            delivery=delivery,
            created_at=now,
            kind=EventKind.ATTEMPT,
            status=status,
            phase=(outcome.phase or "")[:20],
            reply_code=outcome.code,
            enhanced_code=outcome.enhanced[:20],
            text=event_text,
        )
        if status == DeliveryStatus.SENT:
            from psicogest.models import Invoice

            Invoice.objects.filter(pk=delivery.invoice_id).update(last_emailed_at=now)
    return status


def _mark_mailbox_broken(practitioner_id: int, outcome: Outcome) -> None:
    now = timezone.now()
    SmtpAccount.objects.filter(practitioner_id=practitioner_id).update(
        status=MailboxStatus.BROKEN,
        last_error_at=now,
        last_error={
            "phase": outcome.phase,
            "code": outcome.code,
            "enhanced": outcome.enhanced,
            "error_class": outcome.error_class,
            "reply": outcome.text,
        },
        updated_at=now,
    )
    hold_pending(practitioner_id=practitioner_id)


def _move_rows(rows: Any, *, status: str, text: str, **changes: Any) -> list[int]:
    """Move the rows of ``rows`` (a Delivery queryset) not locked by a worker to ``status``,
    with one ACTION event each; returns their ids."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(rows.select_for_update(skip_locked=True).values_list("pk", flat=True))
        if ids:
            Delivery.objects.filter(pk__in=ids).update(status=status, updated_at=now, **changes)
            DeliveryEvent.objects.bulk_create(
                DeliveryEvent(
                    delivery_id=pk, created_at=now, kind=EventKind.ACTION, status=status, text=text
                )
                for pk in ids
            )
    return ids


def hold_pending(*, practitioner_id: int) -> int:
    """Hold every personal-SMTP row of the practitioner still waiting to be sent."""
    pending = Delivery.objects.filter(
        practitioner_id=practitioner_id,
        channel=Channel.SMTP,
        status__in=(DeliveryStatus.QUEUED, DeliveryStatus.DEFERRED),
    )
    text = _("Trattenuta: la casella SMTP personale va corretta prima dell'invio.")
    return len(_move_rows(pending, status=DeliveryStatus.HELD, text=text, next_attempt_at=None))


def _defer_unreached(ids: Sequence[int], outcome: Outcome) -> None:
    """The server could not be reached for this batch: the rows not yet tried wait too."""
    if not ids:
        return
    now = timezone.now()
    next_at = now + datetime.timedelta(seconds=backoff_seconds(1))
    with transaction.atomic():
        moved = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(pk__in=list(ids), status=DeliveryStatus.QUEUED)
            .values_list("pk", flat=True)
        )
        Delivery.objects.filter(pk__in=moved).update(
            status=DeliveryStatus.DEFERRED,
            next_attempt_at=next_at,
            last_error_class=outcome.error_class[:40],
            last_error_code=outcome.code,
            last_error_enhanced=outcome.enhanced[:20],
            last_error_text=outcome.text,
            updated_at=now,
        )
        DeliveryEvent.objects.bulk_create(
            DeliveryEvent(
                delivery_id=pk,
                created_at=now,
                kind=EventKind.ATTEMPT,
                status=DeliveryStatus.DEFERRED,
                phase=outcome.phase[:20],
                reply_code=outcome.code,
                enhanced_code=outcome.enhanced[:20],
                text=_("Server non raggiungibile per questo gruppo di invii: %(reply)s")
                % {"reply": outcome.text},
            )
            for pk in moved
        )


class _Senders:
    """The senders of one practitioner's batch, opened lazily per channel."""

    def __init__(self, practitioner_id: int) -> None:
        self.practitioner_id = practitioner_id
        self._smart: Any = None
        self._smtp: Any = None
        self.account_missing = False

    def smart_mail(self) -> Any:
        from .senders import SmartMailSender

        if self._smart is None:
            self._smart = SmartMailSender(
                bucket=limits.smart_mail_bucket(practitioner_id=self.practitioner_id)
            )
        return self._smart

    def smtp(self) -> Any:
        from .senders import SmtpSender

        if self._smtp is None and not self.account_missing:
            account = SmtpAccount.objects.filter(practitioner_id=self.practitioner_id).first()
            if account is None:
                self.account_missing = True
                return None
            self._smtp = SmtpSender(account=account)
        return self._smtp

    @property
    def sessions_opened(self) -> int:
        return self._smtp.sessions_opened if self._smtp is not None else 0

    def close(self) -> None:
        for sender in (self._smart, self._smtp):
            if sender is not None:
                try:
                    sender.close()
                except Exception:  # closing never changes an outcome
                    logger.info("Closing a sender failed", exc_info=True)


def send_batch(*, delivery_ids: Sequence[int]) -> BatchResult:
    """Send the given deliveries (normally one practitioner's, one channel's); rows that are
    not waiting to be sent (already claimed, sent, held…) are skipped."""
    result = BatchResult()
    deadline = time.monotonic() + conf.batch_time_budget_seconds()
    rows = list(
        Delivery.objects.filter(pk__in=list(delivery_ids))
        .order_by("id")
        .values_list("pk", "practitioner_id", "channel")
    )
    groups: OrderedDict[int, list[tuple[int, str]]] = OrderedDict()
    for pk, practitioner_id, channel in rows:
        groups.setdefault(practitioner_id, []).append((pk, channel))
    for practitioner_id, items in groups.items():
        _send_group(practitioner_id, items, deadline=deadline, result=result)
    if result.handed_over:
        _enqueue_ids(result.handed_over)
    return result


def _send_group(
    practitioner_id: int,
    items: list[tuple[int, str]],
    *,
    deadline: float,
    result: BatchResult,
) -> None:
    senders = _Senders(practitioner_id)
    # Once the mailbox is broken or unreachable, the batch's other SMTP rows share that fate
    # without another connection attempt: held (hold_pending) or deferred.
    smtp_blocked = False
    try:
        for index, (pk, channel) in enumerate(items):
            remaining = [item[0] for item in items[index:]]
            if time.monotonic() > deadline:
                result.handed_over.extend(remaining)
                return
            if channel == Channel.SMTP:
                if smtp_blocked:
                    continue
                sender = senders.smtp()
                if sender is not None and sender.account.status == MailboxStatus.BROKEN:
                    hold_pending(practitioner_id=practitioner_id)
                    smtp_blocked = True
                    continue
                if sender is not None and not _wait_for_token(sender, deadline):
                    result.handed_over.extend(remaining)
                    return
                delivery = _claim(pk)
            else:
                # Smart Mail: the daily quota first (no token spent on a row that waits),
                # then the practitioner's pace, then check-and-claim under the quota.
                quota = _smart_mail_quota(practitioner_id)
                if quota.exhausted:
                    if _defer_for_quota(pk, quota):
                        result.outcomes[pk] = DeliveryStatus.DEFERRED
                    continue
                if not _wait_for_token(senders.smart_mail(), deadline):
                    result.handed_over.extend(remaining)
                    return
                delivery, quota_deferred = _claim_within_quota(pk, practitioner_id)
                if quota_deferred:
                    result.outcomes[pk] = DeliveryStatus.DEFERRED
            if delivery is None:
                continue
            outcome = _attempt(delivery, senders)
            result.outcomes[pk] = _record(delivery, outcome) or outcome.status
            if outcome.mailbox_broken:
                _mark_mailbox_broken(practitioner_id, outcome)
                smtp_blocked = True
            elif outcome.session_failed:
                _defer_unreached(
                    [other for other, ch in items[index + 1 :] if ch == Channel.SMTP], outcome
                )
                smtp_blocked = True
    finally:
        result.sessions_opened += senders.sessions_opened
        senders.close()


def _wait_for_token(sender: Any, deadline: float) -> bool:
    """Wait for the mailbox's rate limit; ``False`` if that would pass the batch's deadline."""
    while True:
        wait = sender.pace()
        if wait <= 0:
            return True
        if time.monotonic() + wait > deadline:
            return False
        time.sleep(min(wait, 5.0))


def _attempt(delivery: Delivery, senders: _Senders) -> Outcome:
    from .senders import Outcome

    if delivery.channel == Channel.SMTP:
        sender = senders.smtp()
        if sender is None:
            return Outcome(
                status=DeliveryStatus.HELD,
                phase=Phase.CONNECT,
                text=_("Nessuna casella SMTP personale configurata."),
                error_class="connection_failed",
            )
    else:
        sender = senders.smart_mail()
    body_missing = delivery.body_purged_at is not None or not (
        delivery.body_text or delivery.body_html
    )
    if body_missing:
        _rerender(delivery)
    message = build_message(delivery, pdf=invoice_pdf(delivery.invoice))
    return sender.send(delivery, message, on_data_sent=lambda: _mark_data_sent(delivery))


def _rerender(delivery: Delivery) -> None:
    from .rendering import cover_mail_templates_for, render_cover_mail

    subject_template, body_template = cover_mail_templates_for(delivery.practitioner)
    rendered = render_cover_mail(
        subject_template=subject_template, body_template=body_template, invoice=delivery.invoice
    )
    delivery.body_text, delivery.body_html = rendered.text, rendered.html


# --- the sweeper -----------------------------------------------------------------------------


@dataclass
class SweepResult:
    requeued_after_crash: int = 0
    unknown: int = 0
    due: int = 0
    stale: int = 0


def sweep(*, limit: int = 5000) -> SweepResult:
    """Settle expired leases, wake due retries, re-publish forgotten rows."""
    result = SweepResult()
    now = timezone.now()
    to_publish: list[int] = []

    expired = list(
        Delivery.objects.filter(status=DeliveryStatus.SENDING, lease_expires_at__lt=now)
        .order_by("lease_expires_at")
        .values_list("pk", "phase", "attempts")[:limit]
    )
    for pk, phase, attempts in expired:
        gone_out = phase == Phase.DATA_SENT
        new_status = DeliveryStatus.UNKNOWN if gone_out else DeliveryStatus.QUEUED
        with transaction.atomic():
            changed = Delivery.objects.filter(
                pk=pk, status=DeliveryStatus.SENDING, attempts=attempts, lease_expires_at__lt=now
            ).update(status=new_status, lease_expires_at=None, queued_at=now, updated_at=now)
            if not changed:
                continue
            DeliveryEvent.objects.create(
                delivery_id=pk,
                created_at=now,
                kind=EventKind.ATTEMPT,
                status=new_status,
                phase=phase,
                text=(
                    _(
                        "L'invio si è interrotto dopo che il messaggio era stato consegnato al "
                        "server: potrebbe essere arrivato. Non viene reinviato automaticamente."
                    )
                    if gone_out
                    else _("L'invio si è interrotto prima del messaggio: verrà ritentato.")
                ),
            )
        if gone_out:
            result.unknown += 1
        else:
            result.requeued_after_crash += 1
            to_publish.append(pk)

    due = list(
        Delivery.objects.filter(status=DeliveryStatus.DEFERRED, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    if due:
        result.due = Delivery.objects.filter(
            pk__in=due, status=DeliveryStatus.DEFERRED, next_attempt_at__lte=now
        ).update(status=DeliveryStatus.QUEUED, queued_at=now, updated_at=now)
        to_publish.extend(due)

    cutoff = now - datetime.timedelta(seconds=conf.stale_queued_seconds())
    stale = list(
        Delivery.objects.filter(status=DeliveryStatus.QUEUED, queued_at__lt=cutoff)
        .order_by("queued_at")
        .values_list("pk", flat=True)[:limit]
    )
    if stale:
        # Bumping queued_at re-publishes each forgotten row at most once per period.
        result.stale = Delivery.objects.filter(
            pk__in=stale, status=DeliveryStatus.QUEUED, queued_at__lt=cutoff
        ).update(queued_at=now)
        to_publish.extend(stale)

    if to_publish:
        _enqueue_ids(to_publish)
    return result


def purge_bodies() -> int:
    """Drop the message bodies of finished deliveries older than the retention period; the
    delivery record stays."""
    cutoff = timezone.now() - datetime.timedelta(days=conf.body_retention_days())
    return Delivery.objects.filter(
        status__in=FINISHED_STATUSES, created_at__lt=cutoff, body_purged_at__isnull=True
    ).update(body_text="", body_html="", body_purged_at=timezone.now())


# --- the report's actions --------------------------------------------------------------------


def _action_event(delivery: Delivery, status: str, text: str) -> None:
    DeliveryEvent.objects.create(delivery=delivery, kind=EventKind.ACTION, status=status, text=text)


def _requeue(delivery: Delivery, *, allowed: Sequence[str], text: str, **changes: Any) -> Delivery:
    now = timezone.now()
    with transaction.atomic():
        updated = Delivery.objects.filter(pk=delivery.pk, status__in=allowed).update(
            status=DeliveryStatus.QUEUED,
            next_attempt_at=None,
            lease_expires_at=None,
            queued_at=now,
            updated_at=now,
            **changes,
        )
        if not updated:
            raise ActionNotAllowed(delivery.status)
        _action_event(delivery, DeliveryStatus.QUEUED, text)
        pk = delivery.pk
        transaction.on_commit(lambda: _enqueue_ids([pk]))
    delivery.refresh_from_db()
    return delivery


def retry_now(*, delivery: Delivery) -> Delivery:
    """A deferred (or held) row goes back to the queue at once, same Message-ID."""
    if delivery.status not in RETRYABLE:
        raise ActionNotAllowed(delivery.status)
    if (
        delivery.status == DeliveryStatus.HELD
        and delivery.channel == Channel.SMTP
        and SmtpAccount.objects.filter(
            practitioner_id=delivery.practitioner_id, status=MailboxStatus.BROKEN
        ).exists()
    ):
        raise ActionNotAllowed(delivery.status)
    return _requeue(
        delivery, allowed=RETRYABLE, text=_("Nuovo tentativo richiesto dal professionista.")
    )


def send_with_smart_mail(*, delivery: Delivery) -> Delivery:
    """The practitioner's explicit choice: send this personal-SMTP row with Smart Mail."""
    if delivery.channel != Channel.SMTP or delivery.status not in SMART_MAIL_FALLBACK:
        raise ActionNotAllowed(delivery.status)
    identity = smart_mail_identity(delivery.practitioner)
    return _requeue(
        delivery,
        allowed=SMART_MAIL_FALLBACK,
        text=_("Il professionista ha scelto di inviarla con Smart Mail."),
        channel=Channel.SMART_MAIL,
        fallback_to_smart_mail=True,
        from_header=identity.from_header[:300],
        reply_to=identity.reply_to[:300],
    )


def resend(*, delivery: Delivery) -> Delivery:
    """A new delivery of the same invoice (new Message-ID, current patient address and cover
    mail); the original row stays as it was."""
    if delivery.status not in RESENDABLE:
        raise ActionNotAllowed(delivery.status)
    invoice = delivery.invoice
    recipient = check_recipient(invoice)
    created = _create_deliveries(
        invoices=[invoice], recipients={invoice.pk: recipient}, resend_of=delivery
    )[0]
    if created.resend_of_id == delivery.pk and created.created_at >= delivery.created_at:
        _action_event(delivery, delivery.status, _("Reinvio richiesto dal professionista."))
    return created


def reactivate_address(*, practitioner: Practitioner, address: str) -> int:
    """Remove ``address`` from the practitioner's suppressed addresses; returns how many
    entries were removed."""
    deleted, _rows = SuppressedAddress.objects.filter(
        practitioner=practitioner, address__iexact=address.strip()
    ).delete()
    return deleted


def resume_held(*, practitioner: Practitioner) -> int:
    """The mailbox works again: its held rows go back to the queue. Returns how many."""
    held = Delivery.objects.filter(
        practitioner=practitioner, channel=Channel.SMTP, status=DeliveryStatus.HELD
    )
    ids = _move_rows(
        held,
        status=DeliveryStatus.QUEUED,
        text=_("La casella funziona di nuovo: invio ripreso."),
        queued_at=timezone.now(),
        next_attempt_at=None,
    )
    if ids:
        transaction.on_commit(lambda: _enqueue_ids(ids))
    return len(ids)


# --- ESP tracking (Smart Mail) ---------------------------------------------------------------

# Later news never overrides worse news: a complaint stays a complaint.
_TRACKING_RANK = {
    DeliveryStatus.SENT: 1,
    DeliveryStatus.UNKNOWN: 1,
    DeliveryStatus.DELIVERED: 2,
    DeliveryStatus.BOUNCED: 3,
    DeliveryStatus.COMPLAINED: 4,
}
_TRACKING_STATUS = {
    "delivered": DeliveryStatus.DELIVERED,
    "bounced": DeliveryStatus.BOUNCED,
    "complained": DeliveryStatus.COMPLAINED,
}


def record_tracking_event(
    *,
    event_type: str,
    delivery_id: str | None,
    esp_message_id: str | None,
    description: str = "",
    mta_response: str = "",
    occurred_at: datetime.datetime | None = None,
) -> Delivery | None:
    """Apply an ESP webhook event (anymail's normalised ``event_type``) to its delivery,
    found by the ``delivery_id`` metadata or the ESP's message id. Bounces and complaints
    suppress the address for the practitioner. Returns the delivery, or ``None`` if unknown
    or the event type is not tracked (opens and clicks are off)."""
    status = _TRACKING_STATUS.get(event_type)
    if status is None:
        return None
    lookup = Delivery.objects.all()
    if delivery_id and str(delivery_id).isdigit():
        delivery = lookup.filter(pk=int(delivery_id)).first()
    elif esp_message_id:
        delivery = lookup.filter(esp_message_id=str(esp_message_id)[:255]).first()
    else:
        delivery = None
    if delivery is None:
        logger.info("Tracking event %s for an unknown delivery", event_type)
        return None
    now = occurred_at or timezone.now()
    text = header_value(" ".join(part for part in (description, mta_response) if part))[:1000]
    with transaction.atomic():
        current = Delivery.objects.select_for_update().get(pk=delivery.pk)
        rank = _TRACKING_RANK.get(current.status)
        if rank is not None and _TRACKING_RANK[status] > rank:
            current.status = status
            fields = ["status", "updated_at"]
            if status != DeliveryStatus.DELIVERED:
                current.last_error_class = event_type
                current.last_error_text = text
                fields += ["last_error_class", "last_error_text"]
            current.save(update_fields=fields)
        DeliveryEvent.objects.create(
            delivery=current, created_at=now, kind=EventKind.WEBHOOK, status=status, text=text
        )
        if status in (DeliveryStatus.BOUNCED, DeliveryStatus.COMPLAINED):
            SuppressedAddress.objects.get_or_create(
                practitioner_id=current.practitioner_id,
                address=current.recipient.lower(),
                defaults={"reason": event_type},
            )
    return current
