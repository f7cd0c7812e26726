"""Sending invoices from the host's invoice list: the confirmation page (GET shows what will
go out, POST queues it), then the progress page of that batch with its JSON endpoint.

The batch is the list of delivery ids in the progress URL; every lookup goes through
``owned_by(request.user)``, so another practitioner's ids are simply not found. Creating the
deliveries is ``emailsettings.outbox.queue_invoice_emails`` (idempotent for a double click
or a re-submitted form); these views only choose, confirm and show.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models.functions import Lower
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from emailsettings.covermail.protection import practice_default, protection_for
from emailsettings.covermail.rendering import cover_mail_templates_for, render_cover_mail
from emailsettings.exceptions import InvalidRecipient
from emailsettings.forms.sending import DeliveryBatchForm, InvoiceSelectionForm, ScheduleForm
from emailsettings.mailbox.presets import is_pec_address
from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    MailboxStatus,
    RecipientRole,
    SmtpAccount,
    SuppressedAddress,
)
from emailsettings.outbox.outage import broker_reachable
from emailsettings.outbox.queueing import (
    copy_address,
    invoice_recipients,
    queue_invoice_batch,
    sending_mailbox,
)
from emailsettings.outbox.recipientcheck import RecipientWarning, address_warnings
from emailsettings.outbox.schedule import release_time, sending_window
from emailsettings.report import (
    delivery_meaning,
    error_advice,
    invoices_and_emails,
    is_in_flight,
    smtp_preset_key,
    status_tone,
)
from psicogest.formatting import format_long_datetime
from psicogest.models import Invoice, InvoiceDelivery

# How the progress page groups the statuses of a batch.
SENT_STATUSES = frozenset({DeliveryStatus.SENT, DeliveryStatus.DELIVERED})
FAILED_STATUSES = frozenset(
    {
        DeliveryStatus.FAILED,
        DeliveryStatus.BOUNCED,
        DeliveryStatus.COMPLAINED,
        DeliveryStatus.SUPPRESSED,
    }
)
ATTENTION_STATUSES = frozenset({DeliveryStatus.HELD, DeliveryStatus.UNKNOWN})


@dataclass(frozen=True)
class SendRow:
    """One invoice on the confirmation page."""

    invoice: Invoice
    recipient: str
    subject: str
    problem: str
    pec_warning: bool
    suppressed: bool = False
    # The card's other recipients: each gets its own message.
    others: tuple[str, ...] = ()
    # What the rendered cover mail lacks for this patient ("non ha un saluto impostato").
    warnings: tuple[str, ...] = ()
    # Is this the right address? (changed, typo, shared, no mail server): needs a tick.
    address_warnings: tuple[RecipientWarning, ...] = ()
    # How the invoice will travel (InvoiceDelivery label).
    protection: str = ""

    @property
    def sendable(self) -> bool:
        return not self.problem


def _first_error(form: Any) -> str:
    for errors in form.errors.values():
        return str(errors[0])
    return _("Selezione non valida.")


def _owned_invoices(request: HttpRequest, ids: Sequence[int]) -> list[Invoice]:
    """The chosen invoices in the order given; any id not owned by the user is a 404."""
    found = {
        invoice.pk: invoice
        for invoice in Invoice.objects.owned_by(request.user)  # type: ignore[arg-type]
        .select_related("patient", "practitioner")
        .filter(pk__in=ids)
    }
    if len(found) != len(ids):
        raise Http404("Invoice not found")
    return [found[pk] for pk in ids]


def _is_pec(recipient: str, invoice: Invoice) -> bool:
    """A PEC address: the patient's PEC field, or a PEC provider's domain (the presets')."""
    pec = (invoice.patient.pec or "").strip().lower()
    return (bool(pec) and pec == recipient.strip().lower()) or is_pec_address(recipient)


def _rows(request: HttpRequest, invoices: Sequence[Invoice]) -> list[SendRow]:
    """Each invoice with its recipient and subject, or why it cannot be sent."""
    subject_template, body_template = cover_mail_templates_for(request.user)  # type: ignore[arg-type]
    addresses = [invoice.patient.invoice_recipient.lower() for invoice in invoices]
    suppressed = set(
        SuppressedAddress.objects.owned_by(request.user)  # type: ignore[arg-type]
        .annotate(lowered=Lower("address"))
        .filter(lowered__in=addresses)
        .values_list("lowered", flat=True)
    )
    default = practice_default(request.user)  # type: ignore[arg-type]
    protections = dict(InvoiceDelivery.choices)
    rows = []
    for invoice in invoices:
        others: tuple[str, ...] = ()
        try:
            first, *rest = invoice_recipients(invoice)
            recipient, problem = first.address, ""
            others = tuple(entry.address for entry in rest)
        except InvalidRecipient as err:
            recipient, problem = invoice.patient.invoice_recipient, str(err)
        subject, warnings = "", tuple[str, ...]()
        checks: list[RecipientWarning] = []
        if not problem:
            rendered = render_cover_mail(
                subject_template=subject_template, body_template=body_template, invoice=invoice
            )
            subject, warnings = rendered.subject, tuple(rendered.warnings)
            checks = address_warnings(
                practitioner=invoice.practitioner, address=recipient, patient=invoice.patient
            )
            for other in others:
                checks += address_warnings(
                    practitioner=invoice.practitioner,
                    address=other,
                    patient=invoice.patient,
                    history=False,
                )
        rows.append(
            SendRow(
                invoice=invoice,
                recipient=recipient,
                subject=subject,
                problem=problem,
                pec_warning=not problem and _is_pec(recipient, invoice),
                suppressed=not problem and recipient.lower() in suppressed,
                others=others,
                warnings=warnings,
                address_warnings=tuple(checks),
                protection=str(protections[protection_for(invoice.patient, default=default)]),
            )
        )
    return rows


def _channel(request: HttpRequest) -> tuple[str, SmtpAccount | None]:
    """The channel the mails will take, as the sending service decides it."""
    account = sending_mailbox(request.user)  # type: ignore[arg-type]
    return (Channel.SMTP, account) if account is not None else (Channel.SMART_MAIL, None)


def confirm_url(invoice_ids: Sequence[int]) -> str:
    return (
        reverse("emailsettings:send_confirm")
        + "?"
        + urlencode({"fattura": invoice_ids}, doseq=True)
    )


def progress_url(delivery_ids: Sequence[int]) -> str:
    query = urlencode({"invii": ",".join(str(pk) for pk in delivery_ids)})
    return reverse("emailsettings:send_progress") + "?" + query


@login_required
@require_http_methods(["GET", "POST"])
def send_confirm(request: HttpRequest) -> HttpResponse:
    """GET: what would be sent, and what cannot be. POST: queue the sendable invoices."""
    form = InvoiceSelectionForm(request.POST if request.method == "POST" else request.GET)
    if not form.is_valid():
        messages.error(request, _first_error(form))
        return redirect("invoices")
    invoices = _owned_invoices(request, form.cleaned_data["fattura"])
    rows = _rows(request, invoices)
    if request.method == "POST":
        schedule = ScheduleForm(request.POST)
        unconfirmed = _unconfirmed(request, rows)
        if not schedule.is_valid() or unconfirmed:
            # Shown again with the error and the selection: nothing is lost.
            return _confirm_page(request, rows, schedule, status=400, unconfirmed=unconfirmed)
        return _send(request, rows, send_at=schedule.cleaned_data["send_at"])
    return _confirm_page(request, rows, ScheduleForm())


def _unconfirmed(request: HttpRequest, rows: list[SendRow]) -> set[int]:
    """The invoices whose address warnings were not ticked "the address is right"."""
    ticked = set(request.POST.getlist("conferma_indirizzo"))
    return {
        row.invoice.pk
        for row in rows
        if row.sendable and row.address_warnings and str(row.invoice.pk) not in ticked
    }


def _confirm_page(
    request: HttpRequest,
    rows: list[SendRow],
    schedule: ScheduleForm,
    *,
    status: int = 200,
    unconfirmed: set[int] | None = None,
) -> HttpResponse:
    sendable = [row for row in rows if row.sendable]
    channel, account = _channel(request)
    window = sending_window(request.user)  # type: ignore[arg-type]
    release = release_time(window=window, send_at=None)
    copy_to = copy_address(request.user)  # type: ignore[arg-type]
    # Each invoice: the patient, the card's other recipients and the practitioner's copy.
    emails = sum(1 + len(row.others) + bool(copy_to) for row in sendable)
    return render(
        request,
        "emailsettings/send_confirm.html",
        {
            "sendable": sendable,
            "refused": [row for row in rows if not row.sendable],
            "channel": channel,
            "channel_label": Channel(channel).label,
            "mailbox": account,
            "mailbox_broken": account is not None and account.status == MailboxStatus.BROKEN,
            "pec_count": sum(row.pec_warning for row in sendable),
            "schedule_form": schedule,
            "window_text": window.describe() if window else "",
            "window_release": format_long_datetime(release) if release else "",
            "copy_to": copy_to,
            "what_leaves": invoices_and_emails(invoices=len(sendable), emails=emails),
            "address_warning_count": sum(bool(row.address_warnings) for row in sendable),
            "unconfirmed": unconfirmed or set(),
            "ticked": set(request.POST.getlist("conferma_indirizzo")),
        },
        status=status,
    )


def _send(
    request: HttpRequest, rows: list[SendRow], *, send_at: datetime.datetime | None
) -> HttpResponse:
    sendable = [row.invoice for row in rows if row.sendable]
    refused = [row for row in rows if not row.sendable]
    if not sendable:
        messages.error(
            request,
            _("Nessuna delle fatture selezionate può essere inviata. %(reasons)s")
            % {"reasons": " ".join(row.problem for row in refused)},
        )
        return redirect(confirm_url([row.invoice.pk for row in rows]))
    try:
        deliveries = queue_invoice_batch(sendable, send_at=send_at)
    except InvalidRecipient as err:
        messages.error(request, _("Nessuna fattura è stata inviata. %(reason)s") % {"reason": err})
        return redirect(confirm_url([row.invoice.pk for row in rows]))
    if refused:
        messages.warning(
            request,
            ngettext(
                "%(count)d fattura non è stata inviata. %(reasons)s",
                "%(count)d fatture non sono state inviate. %(reasons)s",
                len(refused),
            )
            % {
                "count": len(refused),
                "reasons": " ".join(row.problem for row in refused),
            },
        )
    scheduled = [d.scheduled_for for d in deliveries if d.status == DeliveryStatus.SCHEDULED]
    what = invoices_and_emails(invoices=len(sendable), emails=len(deliveries))
    if scheduled:
        messages.success(
            request,
            ngettext(
                "%(what)s programmata: partirà %(when)s.",
                "%(what)s programmate: partiranno %(when)s.",
                len(sendable),
            )
            % {"what": what, "when": format_long_datetime(min(filter(None, scheduled)))},
        )
    else:
        messages.success(
            request,
            ngettext(
                "%(what)s messa in coda per l'invio.",
                "%(what)s messe in coda per l'invio.",
                len(sendable),
            )
            % {"what": what},
        )
    return redirect(progress_url([delivery.pk for delivery in deliveries]))


def _batch(request: HttpRequest, *, related: bool = False) -> list[Delivery]:
    """The deliveries named in the URL that belong to the user; none at all is a 404."""
    form = DeliveryBatchForm(request.GET)
    if not form.is_valid():
        raise Http404("No batch")
    queryset = Delivery.objects.owned_by(request.user).filter(  # type: ignore[arg-type]
        pk__in=form.cleaned_data["invii"]
    )
    if related:
        queryset = queryset.select_related("invoice", "patient")
    deliveries = list(queryset.order_by("pk"))
    if not deliveries:
        raise Http404("No batch")
    return deliveries


def _row_error(delivery: Delivery, preset_key: str | None) -> str:
    """Why a finished row did not go (one plain sentence), "" otherwise."""
    if is_in_flight(delivery.status) or delivery.status in SENT_STATUSES:
        return ""
    error, _detail = error_advice(
        delivery=delivery, preset_key=preset_key if delivery.channel == Channel.SMTP else None
    )
    return error


def progress_summary(deliveries: Sequence[Delivery]) -> dict[str, Any]:
    """Counts of a batch by outcome, and each delivery's current status (with why, for the
    rows that did not go)."""
    by_status = Counter(delivery.status for delivery in deliveries)
    preset_key = (
        smtp_preset_key(practitioner=deliveries[0].practitioner_id)
        if deliveries and any(d.channel == Channel.SMTP for d in deliveries)
        else None
    )
    in_flight = sum(n for status, n in by_status.items() if is_in_flight(status))
    invoices = len({delivery.invoice_id for delivery in deliveries})
    return {
        # The invoice is the unit; its emails (other recipients, the copy) in brackets.
        "total": invoices,
        "emails": len(deliveries),
        "emails_note": (
            ngettext("(%(n)d email)", "(%(n)d email)", len(deliveries)) % {"n": len(deliveries)}
            if len(deliveries) != invoices
            else ""
        ),
        "in_flight": in_flight,
        "queued": by_status[DeliveryStatus.QUEUED],
        "sent": sum(by_status[status] for status in SENT_STATUSES),
        "failed": sum(by_status[status] for status in FAILED_STATUSES),
        "attention": sum(by_status[status] for status in ATTENTION_STATUSES),
        "done": in_flight == 0,
        "done_text": _done_text(deliveries),
        "held": by_status[DeliveryStatus.HELD],
        "deliveries": [
            {
                "id": delivery.pk,
                "status": delivery.status,
                "label": str(DeliveryStatus(delivery.status).label),
                "role": str(RecipientRole(delivery.role).label),
                "meaning": delivery_meaning(delivery),
                "tone": status_tone(delivery.status),
                "error": _row_error(delivery, preset_key),
            }
            for delivery in deliveries
        ],
    }


def _done_text(deliveries: Sequence[Delivery]) -> str:
    """What a finished batch did, in one sentence, counting invoices (and their emails when
    they differ): never "completed" when nothing went."""

    def count(statuses: frozenset[str] | set[str]) -> tuple[int, str]:
        rows = [delivery for delivery in deliveries if delivery.status in statuses]
        invoices = len({delivery.invoice_id for delivery in rows})
        return invoices, invoices_and_emails(invoices=invoices, emails=len(rows)) if rows else ""

    scheduled, scheduled_text = count({DeliveryStatus.SCHEDULED})
    sent, sent_text = count(SENT_STATUSES)
    held, held_text = count({DeliveryStatus.HELD})
    failed, failed_text = count(FAILED_STATUSES)
    unknown, unknown_text = count({DeliveryStatus.UNKNOWN})
    parts = []
    if scheduled:
        parts.append(
            ngettext(
                "%(what)s programmata: la trovi nell'elenco invii, dove puoi annullarla",
                "%(what)s programmate: le trovi nell'elenco invii, dove puoi annullarle",
                scheduled,
            )
            % {"what": scheduled_text}
        )
    if sent:
        parts.append(ngettext("%(what)s inviata", "%(what)s inviate", sent) % {"what": sent_text})
    if held:
        parts.append(
            ngettext(
                "%(what)s trattenuta: la casella va corretta",
                "%(what)s trattenute: la casella va corretta",
                held,
            )
            % {"what": held_text}
        )
    if failed:
        parts.append(
            ngettext(
                "%(what)s non riuscita: il motivo è nell'elenco invii",
                "%(what)s non riuscite: il motivo è nell'elenco invii",
                failed,
            )
            % {"what": failed_text}
        )
    if unknown:
        parts.append(
            ngettext(
                "%(what)s con esito sconosciuto, da verificare",
                "%(what)s con esito sconosciuto, da verificare",
                unknown,
            )
            % {"what": unknown_text}
        )
    if not parts:
        return _("Nessuna fattura inviata.")
    if sent and not (held or failed or unknown or scheduled):
        return _("Invio completato: %(what)s.") % {"what": parts[0]}
    return "; ".join(parts) + "."


@never_cache
@login_required
@require_GET
def send_progress(request: HttpRequest) -> HttpResponse:
    deliveries = _batch(request, related=True)
    summary = _with_pause(progress_summary(deliveries))
    states = {row["id"]: row for row in summary["deliveries"]}
    return render(
        request,
        "emailsettings/send_progress.html",
        {
            "summary": summary,
            "rows": [(delivery, states[delivery.pk]) for delivery in deliveries],
            "data_url": reverse("emailsettings:send_progress_data")
            + "?"
            + urlencode({"invii": ",".join(str(delivery.pk) for delivery in deliveries)}),
        },
    )


@never_cache
@login_required
@require_GET
def send_progress_data(request: HttpRequest) -> JsonResponse:
    return JsonResponse(_with_pause(progress_summary(_batch(request))))


def _with_pause(summary: dict[str, Any]) -> dict[str, Any]:
    """``paused``: invoices wait in the queue while the broker does not answer (they leave
    once it is back; the page says so instead of looking stuck)."""
    summary["paused"] = bool(summary["queued"]) and not broker_reachable()
    return summary
