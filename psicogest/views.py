"""Host pages: the invoice list and invoice detail, scoped to the logged-in practitioner."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from .models import Invoice


@login_required
def invoice_list(request: HttpRequest) -> HttpResponse:
    invoices = Invoice.objects.owned_by(request.user).select_related("patient")  # type: ignore[arg-type]
    page = Paginator(invoices, 50).get_page(request.GET.get("page"))
    return render(request, "psicogest/invoice_list.html", {"page": page})


@login_required
def invoice_detail(request: HttpRequest, pk: int) -> HttpResponse:
    invoice = get_object_or_404(
        Invoice.objects.owned_by(request.user).select_related("patient"),  # type: ignore[arg-type]
        pk=pk,
    )
    return render(request, "psicogest/invoice_detail.html", {"invoice": invoice})


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
