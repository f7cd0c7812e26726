"""Section "Opzioni di invio" of the settings page: a copy of every invoice mail to the
practitioner, and the sending window."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from emailsettings.forms.options import SendingOptionsForm
from emailsettings.models import EmailSettings
from emailsettings.outbox.schedule import window_of
from emailsettings.views.cards import card_message, card_url, refuse, refused_data


def _settings_row(request: HttpRequest) -> EmailSettings:
    row = EmailSettings.objects.owned_by(request.user).first()  # type: ignore[arg-type]
    return row or EmailSettings(practitioner=request.user)  # type: ignore[misc]


def section_context(request: HttpRequest, **overrides: Any) -> dict[str, Any]:
    form = overrides.get("options_form")
    row = _settings_row(request)
    if form is None and (refused := refused_data(request, "options")):
        form = SendingOptionsForm(refused[0], instance=row)
        form.is_valid()
    if form is None:
        form = SendingOptionsForm(instance=row)
    window = window_of(row)
    return {
        "options_form": form,
        "options_window": window.describe() if window else "",
        "options_copy_address": request.user.email,  # type: ignore[union-attr]
    }


@login_required
@require_POST
def save_options(request: HttpRequest) -> HttpResponse:
    form = SendingOptionsForm(request.POST, instance=_settings_row(request))
    if not form.is_valid():
        card_message(
            request, "options", messages.ERROR, _("Opzioni di invio non salvate: correggi i campi.")
        )
        return refuse(request, "options", request.POST)
    row = form.save()
    window = window_of(row)
    text = _("Opzioni di invio salvate.")
    if window:
        text += " " + _("Le fatture partiranno solo %(window)s.") % {"window": window.describe()}
    card_message(request, "options", messages.SUCCESS, text)
    return redirect(card_url("options"))
