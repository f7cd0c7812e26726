"""The sent-email report ("Elenco invii email"): list, detail, live refresh, CSV export and
the actions (resend, retry now, send with Smart Mail, reactivate an address, bulk retry).

Views stay thin: queries live in emailsettings.report, actions in
emailsettings.outbox.actions. Every query goes through ``owned_by(request.user)``: another
practitioner's id is a 404.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import get_template
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from emailsettings import report
from emailsettings.backchannel import pec
from emailsettings.exceptions import ActionNotAllowed, AddressUnchanged, InvalidRecipient
from emailsettings.forms.ids import parse_id
from emailsettings.forms.report import DeliveryFilterForm
from emailsettings.models import (
    Delivery,
    DeliveryStatus,
    PecReceipt,
    RecipientRole,
    SecureLink,
    SuppressedAddress,
)
from emailsettings.outbox import actions, lifecycle, reputationhold, securelink
from emailsettings.views.espsuppression import reactivate_at_esp


def _query_without(params: QueryDict, *names: str) -> QueryDict:
    query = params.copy()
    for name in names:
        query.pop(name, None)
    return query


def _status_link(params: QueryDict, status: str) -> str:
    query = _query_without(params, "status", "page")
    query.setlist("status", [status])
    return query.urlencode()


def _counters(params: QueryDict, filters: report.ReportFilters, counts: dict[str, int]) -> dict:
    labels = dict(DeliveryStatus.choices)
    return {
        "counters": [
            {
                "status": status,
                "label": labels[status],
                "count": count,
                "tone": report.status_tone(status),
                "link": _status_link(params, status),
                "active": status in filters.statuses,
            }
            for status, count in counts.items()
        ],
        "period_total": sum(counts.values()),
    }


@login_required
@require_GET
def delivery_list(request: HttpRequest) -> HttpResponse:
    form = DeliveryFilterForm(request.GET)
    filters = form.filters()
    counts = report.status_counts(practitioner=request.user, filters=filters)
    total = report.matching_total(counts=counts, filters=filters)
    deliveries = report.filter_deliveries(practitioner=request.user, filters=filters)
    page = report.paginate(
        deliveries=deliveries,
        total=total,
        per_page=form.page_size(),
        page_number=request.GET.get("page"),
    )
    rows = report.build_rows(deliveries=page.object_list, practitioner=request.user)
    # Only asked when the period shows nothing: is this a new user (explain how to send)?
    has_any = bool(rows) or Delivery.objects.owned_by(request.user).exists()  # type: ignore[arg-type]
    checkboxes = {checkbox.data["value"]: checkbox for checkbox in form["status"]}
    context = {
        **_counters(request.GET, filters, counts),
        "form": form,
        "status_groups": [
            {"label": label, "checkboxes": [checkboxes[s] for s in statuses if s in checkboxes]}
            for label, statuses in report.STATUS_GROUPS
        ],
        "active_filters": len(filters.statuses) + bool(filters.channel) + bool(filters.q),
        "filters": filters,
        "page": page,
        "rows": rows,
        "has_any": has_any,
        "any_in_flight": any(row.in_flight for row in rows),
        "any_bulk": any(row.can_bulk_retry for row in rows),
        "legend": report.legend(),
        "query": _query_without(request.GET, "page").urlencode(),
        "export_query": _query_without(request.GET, "page", "per_page").urlencode(),
        "has_filters": bool(filters.statuses or filters.channel or filters.q),
        "current_url": request.get_full_path(),
    }
    return render(request, "emailsettings/delivery_list.html", context)


@login_required
@require_GET
def delivery_detail(request: HttpRequest, pk: int) -> HttpResponse:
    delivery = get_object_or_404(
        Delivery.objects.owned_by(request.user).select_related(  # type: ignore[arg-type]
            "resend_of", "invoice__patient"
        ),
        pk=pk,
    )
    row = report.build_rows(deliveries=[delivery], practitioner=request.user)[0]
    events = list(delivery.events.all())
    resends = list(delivery.resends.order_by("created_at", "id").only("id", "created_at", "status"))
    suppressed = (
        SuppressedAddress.objects.owned_by(request.user)  # type: ignore[arg-type]
        .filter(address__iexact=delivery.recipient)
        .first()
    )
    back = _back_to_list(request, request.GET.get("next", ""))
    receipts = list(delivery.receipts.only("id", "kind", "issued_at", "signer"))
    link = SecureLink.objects.filter(delivery=delivery).first()
    for receipt in receipts:
        receipt.label = pec.label(receipt.kind)  # type: ignore[attr-defined]
    together = (
        list(actions.scheduled_with(delivery).order_by("pk").only("id", "role", "recipient"))
        if delivery.status == DeliveryStatus.SCHEDULED
        else []
    )
    context = {
        "delivery": delivery,
        # The invoice's scheduled mails that one «Annulla» / «Invia ora» covers.
        "scheduled_together": together,
        "receipts": receipts,
        "pec_summary": pec.summary(receipts),
        "patient_url": _patient_url(delivery),
        "row": row,
        "events": events,
        "resends": resends,
        "suppressed": suppressed,
        "back": back,
        "can_reactivate": suppressed is not None,
        "secure_link": link,
        "secure_link_state": str(securelink.state(link)) if link is not None else "",
        **report.offered_actions(delivery),
        "can_fix_address": delivery.status in lifecycle.RESENDABLE
        and delivery.role != RecipientRole.COPY
        and actions.needs_address_fix(delivery),
    }
    return render(request, "emailsettings/delivery_detail.html", context)


def _back_to_list(request: HttpRequest, value: str) -> str:
    """The report page (with its filters) to go back to: only a list URL of this site."""
    if not url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ) or not value.startswith(reverse("emailsettings:deliveries")):
        return reverse("emailsettings:deliveries")
    return value


def _detail_url(request: HttpRequest, pk: int) -> str:
    """The detail page after an action, keeping the way back to the filtered list."""
    back = _back_to_list(request, request.POST.get("next", ""))
    url = reverse("emailsettings:delivery", args=[pk])
    if back == reverse("emailsettings:deliveries"):
        return url
    return url + "?" + urlencode({"next": back})


def _patient_url(delivery: Delivery) -> str:
    """Where the patient's address is corrected: the patient page when the host has one."""
    from django.urls import NoReverseMatch

    try:
        return reverse("patient_edit", args=[delivery.patient_id])
    except NoReverseMatch:
        return reverse("invoice", args=[delivery.invoice_id])


@login_required
@require_GET
def deliveries_refresh(request: HttpRequest) -> JsonResponse:
    """The rows whose state changed among those the page shows (``?r=<id>:<version>``),
    each re-rendered, and which of them are still in flight."""
    known = report.parse_refresh_request(request.GET.getlist("r"))
    changed = report.changed_deliveries(practitioner=request.user, known=known)
    rows = report.build_rows(deliveries=changed, practitioner=request.user)
    list_url = reverse("emailsettings:deliveries")
    next_url = request.GET.get("next", "")
    if not next_url.startswith(list_url):
        next_url = list_url
    # Rendered without the request: context processors would run (and query) once per row.
    row_template = get_template("emailsettings/_delivery_row.html")
    payload: dict[str, Any] = {
        "now": timezone.now().isoformat(),
        "rows": [
            {
                "id": row.delivery.pk,
                "status": row.delivery.status,
                "in_flight": row.in_flight,
                "version": row.version,
                "html": row_template.render({"row": row, "current_url": next_url}),
            }
            for row in rows
        ],
    }
    if rows:
        # The counters of the page's own filters (read from its URL) moved too.
        params = QueryDict(urlsplit(next_url).query)
        filters = DeliveryFilterForm(params).filters()
        counts = report.status_counts(practitioner=request.user, filters=filters)
        payload["counters_html"] = get_template("emailsettings/_delivery_counters.html").render(
            _counters(params, filters, counts)
        )
    return JsonResponse(payload)


@login_required
@require_GET
def deliveries_export(request: HttpRequest) -> StreamingHttpResponse:
    filters = DeliveryFilterForm(request.GET).filters()
    lines = report.iter_csv_rows(practitioner=request.user, filters=filters)
    response = StreamingHttpResponse(
        (line.encode("utf-8") for line in lines), content_type="text/csv; charset=utf-8"
    )
    stamp = timezone.localtime().strftime("%Y-%m-%d")
    response["Content-Disposition"] = f'attachment; filename="invii-email-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response


# --- actions -----------------------------------------------------------------------------


def _owned_delivery(request: HttpRequest, pk: int) -> Delivery:
    return get_object_or_404(
        Delivery.objects.owned_by(request.user).defer("body_text", "body_html"),  # type: ignore[arg-type]
        pk=pk,
    )


def _not_allowed(request: HttpRequest, delivery: Delivery, action: str) -> None:
    if action == "retry_now" and reputationhold.is_held_by_suspension(delivery):
        message = _(
            "Smart Mail è sospeso per il tuo account: riprovare non serve, la fattura "
            "resterebbe trattenuta. Inviala subito con la tua casella personale dalla pagina "
            "«Reputazione Smart Mail», oppure partirà quando Smart Mail sarà riattivato."
        )
    elif action == "retry_now" and delivery.status == DeliveryStatus.HELD:
        message = _(
            "La tua casella SMTP risulta ancora da correggere: correggila in «Impostazioni "
            "email» oppure invia questa fattura con Smart Mail."
        )
    else:
        message = _("Questa azione non è possibile per un invio nello stato «%(status)s».") % {
            "status": delivery.get_status_display()
        }
    messages.error(request, message)


def _run_action(request: HttpRequest, pk: int, action: str, success: str) -> HttpResponse:
    delivery = _owned_delivery(request, pk)
    service: Any = getattr(actions, action)
    try:
        result = service(delivery=delivery)
    except ActionNotAllowed:
        _not_allowed(request, delivery, action)
        return redirect(_detail_url(request, delivery.pk))
    except InvalidRecipient as err:  # the patient's address is missing or invalid now
        messages.error(request, str(err))
        return redirect(_detail_url(request, delivery.pk))
    messages.success(request, success)
    target = result if isinstance(result, Delivery) else delivery
    return redirect(_detail_url(request, target.pk))


@login_required
@require_POST
def delivery_resend(request: HttpRequest, pk: int) -> HttpResponse:
    return _run_action(
        request, pk, "resend", _("Nuovo invio creato: la fattura è di nuovo in coda.")
    )


@login_required
@require_POST
def delivery_retry(request: HttpRequest, pk: int) -> HttpResponse:
    return _run_action(request, pk, "retry_now", _("L'invio è di nuovo in coda."))


@login_required
@require_POST
def delivery_smart_mail(request: HttpRequest, pk: int) -> HttpResponse:
    return _run_action(
        request,
        pk,
        "send_with_smart_mail",
        _("L'invio partirà con Smart Mail invece che dalla tua casella."),
    )


def _invoice_action(
    request: HttpRequest, pk: int, *, one: str, whole: str, success: str, success_one: str
) -> HttpResponse:
    """A scheduled invoice's action: by default for all its mails (patient, other
    recipients, copy); ``solo=questo`` for this recipient alone."""
    delivery = _owned_delivery(request, pk)
    if request.POST.get("solo") == "questo":
        return _run_action(request, pk, one, success_one)
    service: Any = getattr(actions, whole)
    try:
        moved = service(delivery=delivery)
    except ActionNotAllowed:
        _not_allowed(request, delivery, one)
        return redirect(_detail_url(request, delivery.pk))
    messages.success(
        request,
        success
        % {
            "number": delivery.invoice_number,
            "what": ngettext("%(n)d email", "%(n)d email", len(moved)) % {"n": len(moved)},
        },
    )
    return redirect(_detail_url(request, delivery.pk))


@login_required
@require_POST
def delivery_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    return _invoice_action(
        request,
        pk,
        one="cancel_scheduled",
        whole="cancel_scheduled_invoice",
        success=_(
            "Invio programmato annullato: la fattura %(number)s non partirà per nessun "
            "destinatario (%(what)s)."
        ),
        success_one=_("Invio programmato annullato per questo destinatario."),
    )


@login_required
@require_POST
def delivery_send_now(request: HttpRequest, pk: int) -> HttpResponse:
    return _invoice_action(
        request,
        pk,
        one="send_now",
        whole="send_invoice_now",
        success=_("La fattura %(number)s è in coda e parte subito (%(what)s)."),
        success_one=_("L'email a questo destinatario è in coda e parte subito."),
    )


@login_required
@require_POST
def delivery_fix_address(request: HttpRequest, pk: int) -> HttpResponse:
    """«Correggi l'indirizzo»: the corrected address goes on the patient card and the invoice
    is sent again to it; the refused address again is refused here, with the reason."""
    delivery = _owned_delivery(request, pk)
    address = request.POST.get("indirizzo", "")
    try:
        created = actions.fix_address_and_resend(delivery=delivery, address=address)
    except AddressUnchanged:
        messages.error(
            request,
            _(
                "È lo stesso indirizzo che è stato rifiutato: scrivi quello corretto (se serve, "
                "chiedilo al paziente)."
            ),
        )
        return redirect(_detail_url(request, delivery.pk) + "#correggi")
    except InvalidRecipient as err:
        messages.error(request, str(err))
        return redirect(_detail_url(request, delivery.pk) + "#correggi")
    except ActionNotAllowed:
        _not_allowed(request, delivery, "resend")
        return redirect(_detail_url(request, delivery.pk))
    messages.success(
        request,
        _(
            "Indirizzo corretto nella scheda del paziente: la fattura è di nuovo in coda "
            "per %(address)s."
        )
        % {"address": created.recipient},
    )
    return redirect(_detail_url(request, created.pk))


@login_required
@require_POST
def delivery_reactivate(request: HttpRequest, pk: int) -> HttpResponse:
    delivery = _owned_delivery(request, pk)
    actions.reactivate_address(
        practitioner=request.user,  # type: ignore[arg-type]
        address=delivery.recipient,
    )
    reactivate_at_esp(request, delivery)
    messages.success(
        request,
        _("L'indirizzo %(address)s è di nuovo attivo: ora puoi reinviare.")
        % {"address": delivery.recipient},
    )
    return redirect(_detail_url(request, delivery.pk))


@login_required
@require_POST
def deliveries_bulk_retry(request: HttpRequest) -> HttpResponse:
    """Resend the selected failed rows; a value that is not an id of the practitioner's
    deliveries is a 404."""
    ids: set[int] = set()
    for value in request.POST.getlist("ids"):
        pk = parse_id(value)
        if pk is None:
            raise Http404
        ids.add(pk)
    deliveries = list(
        Delivery.objects.owned_by(request.user)  # type: ignore[arg-type]
        .filter(pk__in=ids)
        .defer("body_text", "body_html")
    )
    if len(deliveries) != len(ids):
        raise Http404
    done = skipped = unchanged = 0
    for delivery in deliveries:
        if delivery.status not in report.BULK_RETRYABLE:
            skipped += 1
            continue
        try:
            actions.resend(delivery=delivery, same_address=False)
        except AddressUnchanged:
            unchanged += 1
        except (ActionNotAllowed, InvalidRecipient):
            skipped += 1
        else:
            done += 1
    if done:
        messages.success(request, _("Invii rimessi in coda: %(n)d.") % {"n": done})
    if unchanged:
        messages.warning(
            request,
            ngettext(
                "%(n)d invio non riprovato: il suo indirizzo è stato rifiutato e non è "
                "cambiato. Aprilo e usa «Correggi l'indirizzo».",
                "%(n)d invii non riprovati: i loro indirizzi sono stati rifiutati e non sono "
                "cambiati. Aprili e usa «Correggi l'indirizzo».",
                unchanged,
            )
            % {"n": unchanged},
        )
    if skipped:
        messages.warning(request, _("Invii non riprovati: %(n)d.") % {"n": skipped})
    if not ids:
        messages.warning(request, _("Seleziona almeno un invio non riuscito."))
    back = request.POST.get("next", "")
    if not back.startswith(reverse("emailsettings:deliveries")) or not (
        url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()})
    ):
        back = reverse("emailsettings:deliveries")
    return HttpResponseRedirect(back)


@login_required
@require_GET
def pec_receipt(request: HttpRequest, pk: int, receipt_pk: int) -> HttpResponse:
    """A PEC receipt as received (``.eml``), only for the practitioner it belongs to."""
    receipt = get_object_or_404(
        PecReceipt.objects.owned_by(request.user),  # type: ignore[arg-type]
        pk=receipt_pk,
        delivery_id=pk,
    )
    response = HttpResponse(bytes(receipt.raw), content_type="message/rfc822")
    # "8/2026" → ricevuta-accettazione-8-2026.eml, as the invoice's fattura-8-2026.pdf.
    number = re.sub(r"[^A-Za-z0-9._-]+", "-", receipt.delivery.invoice_number).strip("-.")
    number = number or str(pk)
    response["Content-Disposition"] = f'attachment; filename="ricevuta-{receipt.kind}-{number}.eml"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
