"""Host pages: the invoice list and invoice detail, scoped to the logged-in practitioner.

Both offer "Invia per email"; the confirmation, the sending and the progress page are the
email module's (``emailsettings.views.sending``).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from .models import Invoice


@login_required
def invoice_list(request: HttpRequest) -> HttpResponse:
    from emailsettings.models import Delivery, DeliveryStatus

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
