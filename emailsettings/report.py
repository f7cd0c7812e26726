"""The sent-email report ("Elenco invii email"): filters, counters, rows and CSV export.

Everything here is scoped to one practitioner and built to stay fast at 100,000 rows each:
the list reads one page through the ``(practitioner, -created_at, -id)`` index, the counters
are one ``GROUP BY status`` over the chosen period (also giving the paginator its total, so
there is no separate ``COUNT(*)``) — for the whole history, the per-status counters the
database keeps (``DeliveryCount``) —, and the CSV streams ``values_list`` chunks.

To add a column to the CSV, extend ``CSV_HEADER`` and ``_CSV_FIELDS`` together.
"""

from __future__ import annotations

import csv
import datetime
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from emailsettings.failures import ErrorClass
from emailsettings.forms.ids import parse_id
from emailsettings.guidance import advice
from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryCount,
    DeliveryStatus,
    RecipientRole,
    SmtpAccount,
    kind_label,
    stored_counts,
)
from emailsettings.outbox import lifecycle, reputationhold
from emailsettings.outbox.actions import ADDRESS_FAILURES, can_retry_now
from psicogest.formatting import format_datetime, format_long_datetime
from psicogest.models import InvoiceDelivery

PAGE_SIZES = (25, 50, 100)
DEFAULT_PAGE_SIZE = 50
# The refresh endpoint answers for at most one page of rows.
MAX_REFRESH_IDS = max(PAGE_SIZES)


def invoices_and_emails(*, invoices: int, emails: int) -> str:
    """How many invoices and, when it differs, how many emails: «1 fattura (4 email)»."""
    text = ngettext("%(n)d fattura", "%(n)d fatture", invoices) % {"n": invoices}
    if emails != invoices:
        text += " " + ngettext("(%(n)d email)", "(%(n)d email)", emails) % {"n": emails}
    return text


class Period:
    TODAY = "today"
    LAST_7_DAYS = "7d"
    LAST_30_DAYS = "30d"
    THIS_MONTH = "month"
    CUSTOM = "custom"
    ALL = "all"

    CHOICES = (
        (TODAY, gettext_lazy("Oggi")),
        (LAST_7_DAYS, gettext_lazy("Ultimi 7 giorni")),
        (LAST_30_DAYS, gettext_lazy("Ultimi 30 giorni")),
        (THIS_MONTH, gettext_lazy("Questo mese")),
        (CUSTOM, gettext_lazy("Intervallo di date")),
        (ALL, gettext_lazy("Tutto")),
    )
    # Bounded by default so the counters never scan a practitioner's whole history.
    DEFAULT = LAST_30_DAYS


# Plain meaning of each status, for the badge's hover text and the legend. `sent` depends
# on the channel: a personal SMTP server only says it accepted the message.
_MEANINGS: dict[str, Any] = {
    DeliveryStatus.QUEUED: gettext_lazy("in coda"),
    DeliveryStatus.SENDING: gettext_lazy("in invio"),
    DeliveryStatus.DELIVERED: gettext_lazy("consegnata"),
    DeliveryStatus.DEFERRED: gettext_lazy("nuovo tentativo programmato"),
    DeliveryStatus.FAILED: gettext_lazy("non riuscita"),
    DeliveryStatus.BOUNCED: gettext_lazy("rimbalzata: indirizzo inesistente o casella piena"),
    DeliveryStatus.COMPLAINED: gettext_lazy("segnalata come spam dal destinatario"),
    DeliveryStatus.SUPPRESSED: gettext_lazy(
        "non inviata: indirizzo sospeso dopo un rimbalzo o una segnalazione"
    ),
    DeliveryStatus.HELD: gettext_lazy("trattenuta: la tua casella SMTP va corretta"),
    DeliveryStatus.UNKNOWN: gettext_lazy(
        "esito sconosciuto: potrebbe essere partita, controlla prima di reinviare"
    ),
    DeliveryStatus.SCHEDULED: gettext_lazy("partirà all'orario programmato"),
    DeliveryStatus.CANCELLED: gettext_lazy("annullata prima di partire: non è stata inviata"),
}
_SENT_MEANINGS: dict[str, Any] = {
    Channel.SMTP: gettext_lazy("accettata dal tuo provider"),
    Channel.SMART_MAIL: gettext_lazy("accettata dal servizio di invio"),
}

# Badge colour per status: ok (green), info (grey), warn (amber), err (red).
_TONES: dict[str, str] = {
    DeliveryStatus.QUEUED: "info",
    DeliveryStatus.SENDING: "info",
    DeliveryStatus.SENT: "ok",
    DeliveryStatus.DELIVERED: "ok",
    DeliveryStatus.DEFERRED: "warn",
    DeliveryStatus.HELD: "warn",
    DeliveryStatus.UNKNOWN: "warn",
    DeliveryStatus.FAILED: "err",
    DeliveryStatus.BOUNCED: "err",
    DeliveryStatus.COMPLAINED: "err",
    DeliveryStatus.SUPPRESSED: "err",
    DeliveryStatus.SCHEDULED: "info",
    DeliveryStatus.CANCELLED: "info",
}

# The status filter, grouped by what the practitioner does about them.
STATUS_GROUPS: tuple[tuple[Any, tuple[str, ...]], ...] = (
    (
        gettext_lazy("Da sistemare"),
        (
            DeliveryStatus.FAILED,
            DeliveryStatus.BOUNCED,
            DeliveryStatus.COMPLAINED,
            DeliveryStatus.SUPPRESSED,
            DeliveryStatus.HELD,
            DeliveryStatus.UNKNOWN,
        ),
    ),
    (
        gettext_lazy("In corso"),
        (DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED),
    ),
    (gettext_lazy("Riuscite"), (DeliveryStatus.SENT, DeliveryStatus.DELIVERED)),
    (gettext_lazy("Programmate"), (DeliveryStatus.SCHEDULED, DeliveryStatus.CANCELLED)),
)

# Which actions the page offers: the lifecycle's rules (emailsettings.outbox raises
# ActionNotAllowed otherwise).
BULK_RETRYABLE = frozenset({DeliveryStatus.FAILED})


def offered_actions(delivery: Delivery) -> dict[str, bool]:
    return {
        "can_resend": delivery.status in lifecycle.RESENDABLE,
        "can_retry": can_retry_now(delivery),
        "can_smart_mail": lifecycle.can_fall_back(delivery),
        "can_cancel": delivery.status in lifecycle.CANCELLABLE,
        # Held by the Smart Mail suspension: it leaves from the reputation page instead.
        "reputation_held": reputationhold.is_held_by_suspension(delivery),
        # A refused address is fixed on the patient card, not by another channel.
        "fix_patient": delivery.last_error_class
        in (
            ErrorClass.RECIPIENT_REFUSED,
            ErrorClass.ADDRESS_UNSUPPORTED,
            ErrorClass.BOUNCED,
            ErrorClass.ESP_REJECTED,
            ErrorClass.SUPPRESSED,
        ),
    }


def status_meaning(*, status: str, channel: str) -> str:
    """The plain Italian meaning of a status, e.g. "accettata dal tuo provider"."""
    if status == DeliveryStatus.SENT:
        return str(_SENT_MEANINGS.get(channel, _SENT_MEANINGS[Channel.SMART_MAIL]))
    return str(_MEANINGS.get(status, status))


def delivery_meaning(delivery: Delivery) -> str:
    """:func:`status_meaning` of the row; a scheduled row says when it leaves."""
    if delivery.status == DeliveryStatus.SCHEDULED and delivery.scheduled_for:
        return _("programmata per %(when)s") % {
            "when": format_long_datetime(delivery.scheduled_for)
        }
    return status_meaning(status=delivery.status, channel=delivery.channel)


def status_tone(status: str) -> str:
    return _TONES.get(status, "info")


# The legend explains the statuses whose short meaning would only repeat the badge.
_LEGEND: dict[str, Any] = {
    DeliveryStatus.QUEUED: gettext_lazy(
        "aspetta il suo turno: di solito parte entro pochi secondi"
    ),
    DeliveryStatus.SENDING: gettext_lazy("il messaggio sta partendo in questo momento"),
    DeliveryStatus.DELIVERED: gettext_lazy(
        "la consegna è confermata: dal servizio di invio (Smart Mail) o, per un indirizzo PEC, "
        "dalla ricevuta di avvenuta consegna (anche se inviata con la tua casella)"
    ),
    DeliveryStatus.FAILED: gettext_lazy(
        "non è partita e non verrà riprovata da sola: il motivo è in «Ultimo errore»"
    ),
}


def legend() -> list[dict[str, str]]:
    """Every status with its badge label, tone and meaning (both meanings for `sent`), never
    only repeating the label."""
    entries = []
    for value, label in DeliveryStatus.choices:
        if value == DeliveryStatus.SENT:
            meaning = _("%(smtp)s (SMTP personale); %(smart)s (Smart Mail)") % {
                "smtp": _SENT_MEANINGS[Channel.SMTP],
                "smart": _SENT_MEANINGS[Channel.SMART_MAIL],
            }
        else:
            meaning = str(_LEGEND.get(value, _MEANINGS[value]))
        entries.append(
            {"status": value, "label": str(label), "tone": status_tone(value), "meaning": meaning}
        )
    return entries


def is_in_flight(status: str) -> bool:
    return status in lifecycle.IN_FLIGHT


# --- filters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFilters:
    """What the practitioner asked for, already validated (see forms.report)."""

    statuses: tuple[str, ...] = ()
    channel: str = ""
    period: str = Period.DEFAULT
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None
    q: str = ""
    # "" every kind; "invoice" the invoice mails; "reminder" every reminder; "1"-"3" a level.
    kind: str = ""


def period_bounds(
    *, filters: ReportFilters, now: datetime.datetime | None = None
) -> tuple[datetime.datetime | None, datetime.datetime | None]:
    """[start, end) of the period in aware datetimes; days are the practitioner's local days."""
    local_now = timezone.localtime(now or timezone.now())
    tz = local_now.tzinfo

    def day_start(day: datetime.date) -> datetime.datetime:
        return datetime.datetime.combine(day, datetime.time.min, tzinfo=tz)

    today = local_now.date()
    if filters.period == Period.TODAY:
        return day_start(today), None
    if filters.period == Period.LAST_7_DAYS:
        return day_start(today - datetime.timedelta(days=6)), None
    if filters.period == Period.LAST_30_DAYS:
        return day_start(today - datetime.timedelta(days=29)), None
    if filters.period == Period.THIS_MONTH:
        return day_start(today.replace(day=1)), None
    if filters.period == Period.CUSTOM:
        start = day_start(filters.date_from) if filters.date_from else None
        end = day_start(filters.date_to + datetime.timedelta(days=1)) if filters.date_to else None
        return start, end
    return None, None


# An unsuccessful row that was sent again is folded under its successor (shown on its
# detail page): the list and the counters count each invoice's email once.
SUPERSEDABLE = (
    DeliveryStatus.FAILED,
    DeliveryStatus.BOUNCED,
    DeliveryStatus.SUPPRESSED,
    DeliveryStatus.COMPLAINED,
    DeliveryStatus.UNKNOWN,
    DeliveryStatus.CANCELLED,
)


def _superseded() -> Q:
    return Q(status__in=SUPERSEDABLE) & Q(Exists(Delivery.objects.filter(resend_of=OuterRef("pk"))))


def kind_lookup(kind: str) -> dict[str, int]:
    """The ``reminder_level`` condition of a kind filter ("invoice", "reminder", "1"-"3")."""
    if kind == "invoice":
        return {"reminder_level": 0}
    if kind == "reminder":
        return {"reminder_level__gt": 0}
    return {"reminder_level": int(kind)} if kind.isdigit() else {}


def _scoped(
    *, practitioner: Any, filters: ReportFilters, now: datetime.datetime | None
) -> QuerySet[Delivery]:
    """Period, channel and search: everything but the status (the counters split by it);
    superseded failures folded under their successor."""
    deliveries = Delivery.objects.owned_by(practitioner).exclude(_superseded())
    start, end = period_bounds(filters=filters, now=now)
    if start is not None:
        deliveries = deliveries.filter(created_at__gte=start)
    if end is not None:
        deliveries = deliveries.filter(created_at__lt=end)
    if filters.channel:
        deliveries = deliveries.filter(channel=filters.channel)
    if filters.kind:
        deliveries = deliveries.filter(**kind_lookup(filters.kind))
    if filters.q:
        deliveries = deliveries.filter(
            Q(recipient__icontains=filters.q)
            | Q(patient_name__icontains=filters.q)
            | Q(invoice_number__icontains=filters.q)
        )
    return deliveries


def filter_deliveries(
    *, practitioner: Any, filters: ReportFilters, now: datetime.datetime | None = None
) -> QuerySet[Delivery]:
    """The practitioner's deliveries matching the filters, newest first, without bodies."""
    deliveries = _scoped(practitioner=practitioner, filters=filters, now=now)
    if filters.statuses:
        deliveries = deliveries.filter(status__in=filters.statuses)
    return deliveries.defer("body_text", "body_html").order_by("-created_at", "-id")


def status_counts(
    *, practitioner: Any, filters: ReportFilters, now: datetime.datetime | None = None
) -> dict[str, int]:
    """How many deliveries per status in the period (status filter ignored), every status
    present, in the order of DeliveryStatus."""
    start, end = period_bounds(filters=filters, now=now)
    rows: Iterable[tuple[Any, ...]]
    if (
        start is None
        and end is None
        and not filters.q
        and not filters.kind
        and stored_counts_kept()
    ):
        # The whole history: the counters the database keeps (DeliveryCount), a few rows.
        by_status: dict[str, int] = {}
        for (_channel, status), n in stored_counts(
            practitioner_id=practitioner.pk, channel=filters.channel
        ).items():
            by_status[status] = by_status.get(status, 0) + n
        # Less the superseded failures, found from their successors (a few rows, through
        # the partial index "delivery_resent").
        successors = Delivery.objects.owned_by(practitioner).filter(
            resend_of__isnull=False, resend_of__status__in=SUPERSEDABLE
        )
        if filters.channel:
            successors = successors.filter(resend_of__channel=filters.channel)
        superseded = dict(
            successors.order_by()
            .values_list("resend_of__status")
            .annotate(n=Count("resend_of", distinct=True))
            .values_list("resend_of__status", "n")
        )
        rows = [(status, n - superseded.get(status, 0)) for status, n in by_status.items()]
    else:
        rows = (
            _scoped(practitioner=practitioner, filters=filters, now=now)
            .order_by()
            .values_list("status")
            .annotate(n=Count("id"))
        )
    found = {status: int(n or 0) for status, n in rows}
    return {value: found.get(value, 0) for value, _label in DeliveryStatus.choices}


def stored_counts_kept() -> bool:
    """Whether the database keeps ``DeliveryCount`` (its triggers exist on PostgreSQL and
    SQLite: migration ``0015_perf_delivery_counts``)."""
    from django.db import connections

    return connections[DeliveryCount.objects.db].vendor in ("postgresql", "sqlite")


def matching_total(*, counts: dict[str, int], filters: ReportFilters) -> int:
    """The number of filtered rows, derived from the counters (no second COUNT query)."""
    if filters.statuses:
        return sum(counts.get(status, 0) for status in filters.statuses)
    return sum(counts.values())


class CountedPaginator(Paginator):
    """A Paginator told its total up front (from the counters) instead of counting."""

    def __init__(self, object_list: Any, per_page: int, *, count: int) -> None:
        super().__init__(object_list, per_page)
        self._known_count = count

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        return self._known_count


def paginate(
    *, deliveries: QuerySet[Delivery], total: int, per_page: int, page_number: str | None
) -> Page:
    return CountedPaginator(deliveries, per_page, count=total).get_page(page_number)


# --- rows --------------------------------------------------------------------------------


def error_advice(*, delivery: Delivery, preset_key: str | None) -> tuple[str, str]:
    """The last error as (one plain sentence, longer advice); empty strings when none."""
    if not (delivery.last_error_class or delivery.last_error_code or delivery.last_error_text):
        return "", ""
    if delivery.last_error_class == ErrorClass.QUOTA_WAIT:
        # The Smart Mail daily quota (emailsettings.limits): its own sentence says it all.
        return delivery.last_error_text, ""
    result = advice(
        error_class=delivery.last_error_class or ErrorClass.UNKNOWN,
        preset_key=preset_key,
        code=delivery.last_error_code,
        enhanced=delivery.last_error_enhanced,
        reply=delivery.last_error_text,
        channel=delivery.channel,
        after_data=delivery.status == DeliveryStatus.UNKNOWN,
    )
    return (result.title or result.text or delivery.last_error_text), (
        result.text if result.title else ""
    )


def version(delivery: Delivery) -> str:
    """A fingerprint of what a row shows; the refresh endpoint compares it. Not just
    updated_at: a conditional ``UPDATE`` (the worker's claim) does not touch auto_now."""
    stamp = int(delivery.updated_at.timestamp() * 1000) if delivery.updated_at else 0
    return f"{delivery.status}.{delivery.attempts}.{delivery.last_error_code or 0}.{stamp}"


@dataclass
class ReportRow:
    delivery: Delivery
    meaning: str
    tone: str
    in_flight: bool
    version: str
    error: str = ""
    error_detail: str = ""
    can_bulk_retry: bool = False
    # A permanent failure of the address: corrected, not retried («Correggi l'indirizzo»).
    fix_address: bool = False
    # The meaning line under the badge, only when it says more than the badge.
    show_meaning: bool = True
    # Texts looked up once a page, not once a row and cell (the list's rendering cost).
    labels: dict[str, str] = field(default_factory=dict)
    status_label: str = ""
    channel_label: str = ""
    protection_label: str = ""
    role_label: str = ""
    # Links and the date, made once a row in Python rather than by a template tag each.
    detail_url: str = ""
    invoice_url: str = ""
    created_label: str = ""


def column_labels() -> dict[str, str]:
    """The table's column names, repeated in each cell for the phone layout."""
    return {
        "when": _("Data e ora"),
        "patient": _("Paziente"),
        "recipient": _("Destinatario"),
        "invoice": _("Fattura"),
        "kind": _("Tipo"),
        "channel": _("Canale"),
        "status": _("Stato"),
        "attempts": _("Tentativi"),
        "error": _("Ultimo errore"),
        "open": _("Apri il dettaglio"),
        "fix_address": _("Correggi l'indirizzo"),
        "resend": _("reinvio"),
    }


def smtp_preset_key(*, practitioner: Any) -> str | None:
    return (
        SmtpAccount.objects.owned_by(practitioner).values_list("preset", flat=True).first() or None
    )


def build_rows(*, deliveries: Iterable[Delivery], practitioner: Any) -> list[ReportRow]:
    """What a table row shows, for a page of deliveries (at most one extra query: the
    SMTP preset, and only when an SMTP row carries an error)."""
    deliveries = list(deliveries)
    preset_key: str | None = None
    if any(
        d.channel == Channel.SMTP and (d.last_error_class or d.last_error_code) for d in deliveries
    ):
        preset_key = smtp_preset_key(practitioner=practitioner)
    rows = []
    labels = column_labels()
    statuses = {value: str(label) for value, label in DeliveryStatus.choices}
    channels = {value: str(label) for value, label in Channel.choices}
    roles = {value: str(label) for value, label in RecipientRole.choices}
    protections = dict(InvoiceDelivery.choices)
    detail_url, invoice_url = _url_maker("emailsettings:delivery"), _url_maker("invoice")
    for delivery in deliveries:
        error, detail = error_advice(
            delivery=delivery, preset_key=preset_key if delivery.channel == Channel.SMTP else None
        )
        meaning = delivery_meaning(delivery)
        status_label = statuses.get(delivery.status, delivery.status)
        rows.append(
            ReportRow(
                delivery=delivery,
                labels=labels,
                status_label=status_label,
                channel_label=channels.get(delivery.channel, delivery.channel),
                protection_label=str(protections.get(delivery.protection, delivery.protection)),
                role_label=roles.get(delivery.role, delivery.role),
                meaning=meaning,
                show_meaning=meaning != status_label,
                tone=status_tone(delivery.status),
                in_flight=is_in_flight(delivery.status),
                version=version(delivery),
                error=error,
                error_detail=detail,
                can_bulk_retry=delivery.status in BULK_RETRYABLE
                and delivery.last_error_class not in ADDRESS_FAILURES,
                fix_address=delivery.status in lifecycle.RESENDABLE
                and delivery.role != RecipientRole.COPY
                and (
                    delivery.last_error_class in ADDRESS_FAILURES
                    or delivery.status in (DeliveryStatus.BOUNCED, DeliveryStatus.SUPPRESSED)
                ),
                detail_url=detail_url(delivery.pk),
                invoice_url=invoice_url(delivery.invoice_id),
                created_label=format_datetime(delivery.created_at),
            )
        )
    return rows


_URL_PLACEHOLDER = 918273645


def _url_maker(name: str) -> Callable[[int], str]:
    """``reverse(name, args=[pk])`` for many ``pk``: resolved once, then filled in (a
    ``{% url %}`` per row and link was a fifth of the list page's rendering)."""
    pattern = reverse(name, args=[_URL_PLACEHOLDER])
    head, found, tail = pattern.rpartition(str(_URL_PLACEHOLDER))
    if not found:
        return lambda pk: reverse(name, args=[pk])
    return lambda pk: f"{head}{int(pk)}{tail}"


def parse_refresh_request(values: Sequence[str]) -> dict[int, str]:
    """``["12:queued.0.0.1700000000000", …]`` → ``{12: "queued.0…"}``; junk is ignored."""
    known: dict[int, str] = {}
    for value in values[:MAX_REFRESH_IDS]:
        raw_pk, _sep, seen = value.partition(":")
        pk = parse_id(raw_pk)
        if pk is not None:
            known[pk] = seen
    return known


def changed_deliveries(*, practitioner: Any, known: dict[int, str]) -> list[Delivery]:
    """The practitioner's deliveries among ``known`` whose fingerprint differs from the one
    the page shows. Other practitioners' ids are silently absent."""
    if not known:
        return []
    deliveries = (
        Delivery.objects.owned_by(practitioner)
        .filter(pk__in=list(known))
        .defer("body_text", "body_html")
    )
    return [d for d in deliveries if version(d) != known[d.pk]]


# --- CSV ---------------------------------------------------------------------------------

CSV_SEPARATOR = ";"  # what Excel expects with Italian regional settings
_CSV_FIELDS = (
    "created_at",
    "patient_name",
    "recipient",
    "invoice_number",
    "reminder_level",
    "channel",
    "protection",
    "status",
    "attempts",
    "sent_at",
    "last_error_class",
    "last_error_code",
    "last_error_enhanced",
    "last_error_text",
    "message_id",
)


def csv_header() -> list[str]:
    return [
        _("Data e ora"),
        _("Paziente"),
        _("Destinatario"),
        _("Fattura"),
        _("Tipo"),
        _("Canale"),
        _("Protezione"),
        _("Stato"),
        _("Significato"),
        _("Tentativi"),
        _("Accettata il"),
        _("Codice errore"),
        _("Ultimo errore"),
        _("Message-ID"),
    ]


def _local(value: datetime.datetime | None) -> str:
    return timezone.localtime(value).strftime("%d/%m/%Y %H:%M:%S") if value else ""


def _cell(value: str) -> str:
    # A cell starting with = + - @ is a formula for spreadsheet programs (CSV injection).
    if value and value[0] in "=+-@\t\r":
        return "'" + value
    return value


class _Echo:
    def write(self, value: str) -> str:
        return value


def iter_csv_rows(
    *,
    practitioner: Any,
    filters: ReportFilters,
    now: datetime.datetime | None = None,
    chunk_size: int = 2000,
) -> Iterator[str]:
    """The filtered rows as CSV lines (BOM first), streamed in chunks: never the bodies."""
    writer = csv.writer(_Echo(), delimiter=CSV_SEPARATOR, lineterminator="\r\n")
    yield "\ufeff" + writer.writerow(csv_header())
    preset_key = smtp_preset_key(practitioner=practitioner)
    channel_labels = dict(Channel.choices)
    status_labels = dict(DeliveryStatus.choices)
    protection_labels = dict(InvoiceDelivery.choices)
    rows = (
        filter_deliveries(practitioner=practitioner, filters=filters, now=now)
        .values_list(*_CSV_FIELDS)
        .iterator(chunk_size=chunk_size)
    )
    probe = Delivery()
    for (
        created_at,
        patient_name,
        recipient,
        invoice_number,
        reminder_level,
        channel,
        protection,
        status,
        attempts,
        sent_at,
        error_class,
        error_code,
        error_enhanced,
        error_text,
        message_id,
    ) in rows:
        error = ""
        if error_class or error_code or error_text:
            probe.channel = channel
            probe.status = status
            probe.last_error_class = error_class
            probe.last_error_code = error_code
            probe.last_error_enhanced = error_enhanced
            probe.last_error_text = error_text
            error, _detail = error_advice(
                delivery=probe, preset_key=preset_key if channel == Channel.SMTP else None
            )
        code = " ".join(str(part) for part in (error_code, error_enhanced) if part)
        yield writer.writerow(
            [
                _local(created_at),
                _cell(patient_name),
                _cell(recipient),
                _cell(invoice_number),
                kind_label(reminder_level),
                str(channel_labels.get(channel, channel)),
                str(protection_labels.get(protection, protection)),
                str(status_labels.get(status, status)),
                status_meaning(status=status, channel=channel),
                attempts,
                _local(sent_at),
                code,
                _cell(error),
                _cell(message_id),
            ]
        )
