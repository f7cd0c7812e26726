"""Host pages: the invoice list and invoice detail, and the patient card editor, scoped to
the logged-in practitioner (another practitioner's row is a 404).

The invoice pages offer "Invia per email"; the confirmation, the sending and the progress page
are the email module's (``emailsettings.views.sending``). Pages that ask to fix a patient's
data link to ``patient_edit`` with ``?next=`` to come back.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from emailsettings.models import Delivery, DeliveryStatus
from emailsettings.outbox.recipientcheck import RecipientWarning, address_warnings
from psicogest.forms import PatientForm
from psicogest.models import Invoice, Patient
from psicogest.payments import mark_paid, mark_unpaid


@login_required
def invoice_list(request: HttpRequest) -> HttpResponse:
    latest = Delivery.objects.owned_by(request.user).filter(invoice=OuterRef("pk"))  # type: ignore[arg-type]
    latest = latest.order_by("-created_at", "-id")
    invoices = (
        Invoice.objects.owned_by(request.user)  # type: ignore[arg-type]
        .select_related("patient")
        .annotate(
            latest_delivery_id=Subquery(latest.values("pk")[:1]),
            latest_delivery_status=Subquery(latest.values("status")[:1]),
        )
    )
    page = Paginator(invoices, 50).get_page(request.GET.get("page"))
    labels = dict(DeliveryStatus.choices)
    for invoice in page.object_list:
        status = invoice.latest_delivery_status
        invoice.latest_delivery_label = str(labels.get(status, "")) if status else ""
    return render(request, "psicogest/invoice_list.html", {"page": page})


@login_required
def invoice_detail(request: HttpRequest, pk: int) -> HttpResponse:
    invoice = get_object_or_404(
        Invoice.objects.owned_by(request.user).select_related("patient"),  # type: ignore[arg-type]
        pk=pk,
    )
    deliveries = invoice.deliveries.filter(practitioner=request.user).order_by("-created_at", "-id")
    return render(
        request,
        "psicogest/invoice_detail.html",
        {"invoice": invoice, "deliveries": deliveries[:20]},
    )


@login_required
def invoice_pdf(request: HttpRequest, pk: int) -> FileResponse:
    invoice = get_object_or_404(Invoice.objects.owned_by(request.user), pk=pk)  # type: ignore[arg-type]
    if not invoice.pdf:
        raise Http404
    return FileResponse(
        invoice.pdf.open("rb"),
        content_type="application/pdf",
        filename=f"fattura-{invoice.number.replace('/', '-')}.pdf",
    )


@login_required
@require_POST
def invoice_paid(request: HttpRequest, pk: int) -> HttpResponse:
    """«Segna come pagata» (``paid=0``: «Segna come non pagata»), back to where it was asked."""
    invoice = get_object_or_404(Invoice.objects.owned_by(request.user), pk=pk)  # type: ignore[arg-type]
    if request.POST.get("paid", "1") == "0":
        mark_unpaid(invoice=invoice)
        messages.success(
            request, _("Fattura %(number)s segnata come non pagata.") % {"number": invoice.number}
        )
    else:
        mark_paid(invoice=invoice)
        messages.success(
            request,
            _("Fattura %(number)s segnata come pagata: non riceverà solleciti.")
            % {"number": invoice.number},
        )
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("invoice", pk=invoice.pk)


def _address_warnings(patient: Patient) -> list[RecipientWarning]:
    """The confirmation page's address checks, for the addresses of a saved card."""
    warnings = address_warnings(
        practitioner=patient.practitioner, address=patient.invoice_recipient, patient=patient
    )
    for other in patient.extra_recipients:
        warnings += address_warnings(
            practitioner=patient.practitioner, address=other, patient=patient, history=False
        )
    return warnings


def _next_url(request: HttpRequest) -> str:
    """Where to go back after the patient card: ``next`` when it is a page of this site."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("invoices")


@login_required
@sensitive_post_parameters("pdf_password")
@require_http_methods(["GET", "POST"])
def patient_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """The patient card: salutation, names, email and PEC."""
    patient = get_object_or_404(Patient.objects.owned_by(request.user), pk=pk)  # type: ignore[arg-type]
    back = _next_url(request)
    if request.method == "POST":
        form = PatientForm(request.POST, instance=patient)
        if form.is_valid():
            patient = form.save()
            messages.success(
                request, _("Scheda di %(name)s salvata.") % {"name": patient.display_name}
            )
            addresses = {"email", "pec", "invoice_address", "extra_emails"}
            if addresses.intersection(form.changed_data):
                warnings = _address_warnings(patient)
                if warnings:
                    # Back to the card itself, so the warnings are read where they are fixed.
                    for warning in warnings:
                        messages.warning(request, warning.text)
                    return redirect(
                        reverse("patient_edit", args=[patient.pk]) + "?" + urlencode({"next": back})
                    )
            return redirect(back)
        status = 400
    else:
        form = PatientForm(instance=patient)
        status = 200
    return render(
        request,
        "psicogest/patient_form.html",
        {"form": form, "patient": patient, "back": back},
        status=status,
    )
