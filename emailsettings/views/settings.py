"""The "Impostazioni email" page: it gathers the sections, each built by its own module."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ..limits import smart_mail_quota
from . import covermail, senderdomain, smtp
from .cards import messages_by_card


def render_settings_page(
    request: HttpRequest, *, status: int = 200, **section_overrides: Any
) -> HttpResponse:
    """Render the whole settings page; a section's bound form with errors can be passed in
    (e.g. ``covermail_form=form``) so a failed POST keeps what the user typed."""
    context: dict[str, Any] = {}
    context.update(covermail.section_context(request, **section_overrides))
    context.update(smtp.section_context(request, **section_overrides))
    context.update(senderdomain.section_context(request, **section_overrides))
    context["smart_mail_quota"] = smart_mail_quota(practitioner=request.user)  # type: ignore[arg-type]
    context["card_messages"], context["page_messages"] = messages_by_card(request)
    return render(request, "emailsettings/settings.html", context, status=status)


@login_required
def settings_page(request: HttpRequest) -> HttpResponse:
    return render_settings_page(request)
