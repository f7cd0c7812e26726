"""The sent-email report ("Elenco invii email") and its detail page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from ..models import Delivery


@login_required
def delivery_list(request: HttpRequest) -> HttpResponse:
    deliveries = Delivery.objects.owned_by(request.user)  # type: ignore[arg-type]
    page = Paginator(deliveries, 50).get_page(request.GET.get("page"))
    return render(request, "emailsettings/delivery_list.html", {"page": page})


@login_required
def delivery_detail(request: HttpRequest, pk: int) -> HttpResponse:
    delivery = get_object_or_404(Delivery.objects.owned_by(request.user), pk=pk)  # type: ignore[arg-type]
    return render(request, "emailsettings/delivery_detail.html", {"delivery": delivery})
