"""Payment reminders ("solleciti"): which invoices get one, which level, on which day; the
reminder deliveries; and the check that stops one at the moment it would leave.

A reminder is a delivery of a kind (``Delivery.reminder_level`` ≥ 1), one per recipient,
through the same outbox as the invoice mail: channels, quotas, fairness, retries and the
report are the same. The beat job (:func:`create_due_reminders`) runs every few minutes;
each run creates the reminders due *today* once the practitioner's window has opened.

The rules, in one place (:func:`plan`):

* a level is due ``days`` after (before, when negative) the invoice's due date;
* reminders leave on working days only (Monday to Friday, never on an Italian public
  holiday), in the practitioner's sending window (office hours without one);
* levels only go up, each at most once: the cap is the number of levels;
* a day missed (the system was down, or the level fell on a holiday) is caught up once, on
  the next working day, with the highest level due by then; never two levels in one day and
  at most one reminder per invoice a week (``MIN_DAYS_BETWEEN``);
* none for an invoice that is paid, under the minimum amount, paused, whose patient asked
  for none, whose last mail bounced or was refused, or whose address is suppressed
  (:func:`stop_reason`). The worker asks :func:`stop_reason_at_send` again right before it
  sends: an invoice marked paid a minute earlier gets no reminder.
"""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from emailsettings.covermail.message import header_value, new_message_id
from emailsettings.covermail.protection import practice_default, protection_for
from emailsettings.covermail.reminders import DEFAULT_LEVELS, render_reminder
from emailsettings.exceptions import InvalidRecipient
from emailsettings.models import (
    Delivery,
    DeliveryStatus,
    RecipientRole,
    ReminderLevel,
    ReminderRules,
    ReminderSkip,
    SuppressedAddress,
)
from emailsettings.outbox import lifecycle, publish
from emailsettings.outbox.queueing import (
    Recipient,
    channel_choice,
    copy_address,
    invoice_recipients,
)
from emailsettings.outbox.schedule import (
    SendingWindow,
    is_working_day,
    next_working_day,
    reminder_window,
)
from psicogest.formatting import format_date
from psicogest.models import Invoice, InvoiceDelivery, Practitioner

logger = logging.getLogger(__name__)

# At most one reminder per invoice in this many days.
MIN_DAYS_BETWEEN = 7
# "In arrivo" looks this far ahead.
UPCOMING_DAYS = 14
# The invoice's last mail to the patient ended like this: the address must be fixed first.
_REFUSED = (
    DeliveryStatus.BOUNCED,
    DeliveryStatus.COMPLAINED,
    DeliveryStatus.FAILED,
    DeliveryStatus.SUPPRESSED,
)


# --- the rules ---------------------------------------------------------------------------


def rules_for(practitioner: Practitioner) -> ReminderRules:
    """The practitioner's rules (off until turned on), created with the default levels."""
    rules, created = ReminderRules.objects.get_or_create(practitioner=practitioner)
    if created or not rules.levels.exists():
        ReminderLevel.objects.bulk_create(
            [
                ReminderLevel(rules=rules, level=level, enabled=enabled, days=days)
                for level, enabled, days in DEFAULT_LEVELS
            ],
            ignore_conflicts=True,
        )
    return rules


@dataclass(frozen=True)
class Step:
    level: int
    days: int


def steps_of(rules: ReminderRules) -> list[Step]:
    """The enabled levels, in order."""
    return [Step(row.level, row.days) for row in rules.levels.all() if row.enabled]


# --- when --------------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """What already happened to one invoice's reminders."""

    used: frozenset[int] = frozenset()  # levels sent, on their way, stopped or skipped
    last_sent: datetime.date | None = None  # the day of the last reminder not cancelled


@dataclass(frozen=True)
class Planned:
    level: int
    day: datetime.date


def plan(
    *,
    due_date: datetime.date,
    steps: Sequence[Step],
    history: History,
    from_day: datetime.date,
    window: SendingWindow | None = None,
) -> Planned | None:
    """The next reminder of an invoice due on ``due_date``: the first working day on or
    after ``from_day`` when a level is due and the last reminder is a week old, and the
    highest level due by that day. ``None`` once every level is used (the cap)."""
    top = max(history.used, default=0)
    remaining = sorted((step for step in steps if step.level > top), key=lambda s: s.level)
    if not remaining:
        return None
    day = max(from_day, due_date + datetime.timedelta(days=remaining[0].days))
    if history.last_sent is not None:
        day = max(day, history.last_sent + datetime.timedelta(days=MIN_DAYS_BETWEEN))
    day = next_working_day(day, window)
    level = max(s.level for s in remaining if due_date + datetime.timedelta(days=s.days) <= day)
    return Planned(level=level, day=day)


def histories(invoice_ids: Iterable[int]) -> dict[int, History]:
    """Each invoice's :class:`History`, in two queries."""
    ids = list(invoice_ids)
    used: dict[int, set[int]] = defaultdict(set)
    last: dict[int, datetime.date] = {}
    rows = (
        Delivery.objects.filter(invoice_id__in=ids, reminder_level__gt=0)
        .values("invoice_id", "reminder_level", "status")
        .annotate(latest=Max("created_at"))
    )
    for row in rows:
        used[row["invoice_id"]].add(row["reminder_level"])
        if row["status"] != DeliveryStatus.CANCELLED:
            day = timezone.localdate(row["latest"])
            last[row["invoice_id"]] = max(day, last.get(row["invoice_id"], day))
    for invoice_id, level in ReminderSkip.objects.filter(invoice_id__in=ids).values_list(
        "invoice_id", "level"
    ):
        used[invoice_id].add(level)
    return {pk: History(used=frozenset(used.get(pk, ())), last_sent=last.get(pk)) for pk in ids}


# --- stopping ----------------------------------------------------------------------------


def stop_reason(
    invoice: Invoice,
    *,
    rules: ReminderRules,
    today: datetime.date,
    suppressed: set[str] | None = None,
    last_status: str | None = None,
) -> str:
    """Why ``invoice`` gets no reminder now (Italian), "" when nothing stops it.
    ``suppressed``: the practitioner's suppressed addresses (lower case), read when not
    given; ``last_status``: the status of the invoice's last mail to the patient."""
    patient = invoice.patient
    if invoice.is_paid:
        return _("la fattura è pagata")
    if invoice.due_date is None:
        return _("la fattura non ha una data di scadenza")
    if invoice.amount_due < (rules.minimum_amount or Decimal(0)):
        return _("l'importo da pagare è sotto il minimo delle regole")
    if patient.no_reminders:
        return _("nella scheda paziente è scelto «non inviare solleciti»")
    if invoice.reminders_paused_until is not None and invoice.reminders_paused_until >= today:
        return _("solleciti sospesi fino al %(day)s") % {
            "day": format_date(invoice.reminders_paused_until)
        }
    address = patient.invoice_recipient.lower()
    if not address:
        return _("il paziente non ha un indirizzo email")
    if suppressed is None:
        suppressed = {
            a.lower()
            for a in SuppressedAddress.objects.filter(
                practitioner_id=invoice.practitioner_id
            ).values_list("address", flat=True)
        }
    if address in suppressed:
        return _("l'indirizzo del paziente è sospeso: correggilo o riattivalo")
    if last_status is None:
        last_status = (
            Delivery.objects.filter(invoice=invoice, role=RecipientRole.PATIENT)
            .exclude(status=DeliveryStatus.CANCELLED)
            .order_by("-created_at", "-id")
            .values_list("status", flat=True)
            .first()
        )
    if last_status in _REFUSED:
        return _("l'ultima email a questo paziente non è stata consegnata: correggi l'indirizzo")
    return ""


def stop_reason_at_send(delivery: Delivery) -> str:
    """For a reminder about to leave: why it must not (read now from the database), or ""."""
    if not delivery.reminder_level:
        return ""
    invoice = (
        Invoice.objects.select_related("patient", "practitioner").filter(pk=delivery.invoice_id)
    ).first()
    if invoice is None:
        return _("la fattura non esiste più")
    rules = ReminderRules.objects.filter(practitioner_id=invoice.practitioner_id).first()
    if rules is None or not rules.enabled:
        return _("i solleciti sono stati disattivati")
    last_status = (
        Delivery.objects.filter(invoice=invoice, role=RecipientRole.PATIENT)
        .exclude(pk=delivery.pk)
        .exclude(status=DeliveryStatus.CANCELLED)
        .exclude(reminder_level=0, status__in=lifecycle.PENDING)
        .order_by("-created_at", "-id")
        .values_list("status", flat=True)
        .first()
    )
    return stop_reason(
        invoice, rules=rules, today=timezone.localdate(), last_status=last_status or ""
    )


def cancel_at_send(delivery: Delivery, *, reason: str) -> list[int]:
    """The claimed reminder does not leave: ``cancelled``, with the reason on its timeline."""
    return lifecycle.transition(
        Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING),
        to=DeliveryStatus.CANCELLED,
        text=lifecycle.EventText(
            gettext_noop("Sollecito non inviato: %(reason)s."), {"reason": reason}
        ),
        changes={"lease_expires_at": None},
    )


# --- creating the day's reminders ----------------------------------------------------------


def _candidates(
    practitioner: Practitioner, *, today: datetime.date, steps: Sequence[Step]
) -> QuerySet[Invoice]:
    first = min(step.days for step in steps)
    return (
        Invoice.objects.filter(
            practitioner=practitioner,
            paid_at__isnull=True,
            due_date__isnull=False,
            due_date__lte=today - datetime.timedelta(days=first),
            patient__no_reminders=False,
        )
        .filter(Q(reminders_paused_until__isnull=True) | Q(reminders_paused_until__lt=today))
        .select_related("patient", "practitioner")
        .order_by("due_date", "pk")
    )


def _last_statuses(invoice_ids: Sequence[int]) -> dict[int, str]:
    result: dict[int, str] = {}
    rows = (
        Delivery.objects.filter(invoice_id__in=list(invoice_ids), role=RecipientRole.PATIENT)
        .exclude(status=DeliveryStatus.CANCELLED)
        .order_by("invoice_id", "created_at", "id")
        .values_list("invoice_id", "status")
    )
    for invoice_id, status in rows:
        result[invoice_id] = status  # the latest wins
    return result


@dataclass(frozen=True)
class Due:
    """One reminder to come (the "In arrivo" page), or to create now."""

    invoice: Invoice
    level: int
    day: datetime.date
    channel: str


def due_reminders(
    *, practitioner: Practitioner, now: datetime.datetime, days: int = 0
) -> list[Due]:
    """The practitioner's reminders due from today to ``days`` ahead (0: today's only), in
    the order they will leave. Empty while reminders are off."""
    rules = ReminderRules.objects.filter(practitioner=practitioner, enabled=True).first()
    if rules is None:
        return []
    steps = steps_of(rules)
    if not steps:
        return []
    window = reminder_window(practitioner)
    today = timezone.localdate(now)
    # Past today's window: the first day anything can still leave is the next one.
    local = timezone.localtime(now)
    start = today if local.time() < window.end else today + datetime.timedelta(days=1)
    last_day = today + datetime.timedelta(days=days)
    invoices = list(_candidates(practitioner, today=last_day, steps=steps))
    if not invoices:
        return []
    ids = [invoice.pk for invoice in invoices]
    history = histories(ids)
    statuses = _last_statuses(ids)
    suppressed = {
        a.lower()
        for a in SuppressedAddress.objects.filter(practitioner=practitioner).values_list(
            "address", flat=True
        )
    }
    pending = set(
        Delivery.objects.filter(invoice_id__in=ids, status__in=lifecycle.PENDING).values_list(
            "invoice_id", flat=True
        )
    )
    channel = channel_choice(practitioner).channel
    result = []
    for invoice in invoices:
        if invoice.pk in pending and not days:
            continue  # a mail for it is still on its way: never a reminder beside it
        if stop_reason(
            invoice,
            rules=rules,
            today=today,
            suppressed=suppressed,
            last_status=statuses.get(invoice.pk, ""),
        ):
            continue
        assert invoice.due_date is not None  # the candidates have one
        planned = plan(
            due_date=invoice.due_date,
            steps=steps,
            history=history[invoice.pk],
            from_day=start,
            window=window,
        )
        if planned is None or planned.day > last_day:
            continue
        result.append(Due(invoice=invoice, level=planned.level, day=planned.day, channel=channel))
    result.sort(key=lambda due: (due.day, due.invoice.due_date or due.day, due.invoice.pk))
    return result


def create_due_reminders(*, now: datetime.datetime | None = None) -> list[Delivery]:
    """The beat job: for each practitioner with reminders on whose window is open on a
    working day, the reminders due today, one delivery per recipient, published on commit.
    Running it again the same day creates nothing more."""
    now = now or timezone.now()
    created: list[Delivery] = []
    for rules in ReminderRules.objects.filter(enabled=True).select_related("practitioner"):
        practitioner = rules.practitioner
        window = reminder_window(practitioner)
        if not is_working_day(timezone.localdate(now), window) or not window.contains(now):
            continue
        for due in due_reminders(practitioner=practitioner, now=now):
            try:
                created += create_reminder(invoice=due.invoice, level=due.level, now=now)
            except InvalidRecipient as err:
                logger.info("Invoice %s gets no reminder: %s", due.invoice.pk, type(err).__name__)
    return created


def create_reminder(
    *, invoice: Invoice, level: int, now: datetime.datetime | None = None
) -> list[Delivery]:
    """The reminder of ``level`` for ``invoice``: one row per recipient (the patient, the
    card's other recipients, the practitioner's copy when asked for), in one transaction,
    published on commit. Nothing when that level was already created (another run won)."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            Invoice.objects.select_for_update()
            .select_related("patient", "practitioner")
            .get(pk=invoice.pk)
        )
        if level in histories([locked.pk])[locked.pk].used:
            return []
        rules = rules_for(locked.practitioner)
        level_row = rules.levels.get(level=level)
        practitioner = locked.practitioner
        default_protection = practice_default(practitioner)
        recipients = invoice_recipients(
            locked, copy_to=copy_address(practitioner), default_protection=default_protection
        )
        choice = channel_choice(practitioner)
        suppressed = {
            a.lower()
            for a in SuppressedAddress.objects.filter(practitioner=practitioner).values_list(
                "address", flat=True
            )
        }
        rendered, _language = render_reminder(level=level_row, invoice=locked)
        entries = []
        for recipient in recipients:
            delivery = _reminder_row(
                invoice=locked,
                recipient=recipient,
                level=level,
                subject=rendered.subject,
                text=rendered.text,
                html=rendered.html,
                with_invoice=rules.attach_invoice,
                protection=(
                    InvoiceDelivery.ATTACHMENT
                    if recipient.role == RecipientRole.COPY
                    else protection_for(locked.patient, default=default_protection)
                ),
                now=now,
            )
            delivery.channel = choice.channel
            delivery.from_header = choice.identity.from_header[:300]
            delivery.reply_to = choice.identity.reply_to[:300]
            delivery.message_id = new_message_id(choice.identity.envelope_from)
            entries.append((delivery, choice.held, recipient.address.lower() in suppressed))
        rows = lifecycle.create(entries)
        publish.publish_queued_on_commit(rows)
    return rows


def _reminder_row(
    *,
    invoice: Invoice,
    recipient: Recipient,
    level: int,
    subject: str,
    text: str,
    html: str,
    with_invoice: bool,
    protection: str,
    now: datetime.datetime,
) -> Delivery:
    return Delivery(
        practitioner=invoice.practitioner,
        invoice=invoice,
        patient=invoice.patient,
        recipient=recipient.address,
        role=recipient.role,
        reminder_level=level,
        with_invoice=with_invoice,
        protection=protection,
        patient_name=header_value(invoice.patient.display_name)[:200],
        invoice_number=header_value(invoice.number)[:20],
        subject=header_value(subject)[:300],
        body_text=text,
        body_html=html,
        created_at=now,
        queued_at=now,
    )


# --- the practitioner's hand ---------------------------------------------------------------


def skip_level(*, invoice: Invoice, level: int) -> ReminderSkip:
    """«Salta»: this level is not sent for ``invoice``; the next one follows its rule."""
    skip, _created = ReminderSkip.objects.get_or_create(
        invoice=invoice, level=level, defaults={"practitioner_id": invoice.practitioner_id}
    )
    return skip


def pause(*, invoice: Invoice, until: datetime.date | None, reason: str) -> Invoice:
    """«Sospendi»: no reminder for ``invoice`` until ``until`` (included); ``None`` resumes."""
    invoice.reminders_paused_until = until
    invoice.reminders_pause_reason = reason.strip()[:200] if until else ""
    invoice.save(update_fields=["reminders_paused_until", "reminders_pause_reason"])
    return invoice
