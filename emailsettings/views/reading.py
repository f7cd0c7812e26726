"""Saving the "Leggi le risposte dalla casella" option of the personal mailbox."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from emailsettings.forms.reading import MailboxReadingForm
from emailsettings.mailbox import presets
from emailsettings.models import SmtpAccount
from emailsettings.views.cards import card_message, card_url, refuse, refused_data


def section_context(request: HttpRequest) -> dict[str, Any]:
    account = SmtpAccount.objects.owned_by(request.user).first()  # type: ignore[arg-type]
    if account is None:
        return {"reading_form": None}
    refused = refused_data(request, "reading")
    form = MailboxReadingForm(refused[0] if refused else None, instance=account, prefix="reading")
    if refused:
        form.is_valid()
    known = presets.imap_server(account.preset)
    if account.imap_host:
        server = f"{account.imap_host}:{account.imap_port}"
    elif known:
        server = f"{known[0]}:{known[1]}"
        # The port shown is the one of the server used (e.g. the local test server's IMAP
        # side), not the model's default; the host stays the field's placeholder.
        if not form.is_bound:
            form.initial["imap_port"] = known[1]
    else:
        server = ""
    return {"reading_form": form, "reading_account": account, "reading_server": server}


@login_required
@require_POST
def save_reading(request: HttpRequest) -> HttpResponse:
    account = SmtpAccount.objects.owned_by(request.user).first()  # type: ignore[arg-type]
    if account is None:
        raise Http404
    form = MailboxReadingForm(request.POST, instance=account, prefix="reading")
    if not form.is_valid():
        card_message(request, "smtp", messages.ERROR, _("Lettura della casella non salvata."))
        return refuse(request, "reading", request.POST)
    reading = form.save(commit=False)
    # A new server or a new choice: read at the next pass, with a clean slate.
    reading.imap_next_read_at = None
    reading.imap_failures = 0
    reading.imap_error = ""
    reading.save(
        update_fields=[
            "imap_enabled",
            "sent_copy",
            "imap_host",
            "imap_port",
            "imap_security",
            "imap_next_read_at",
            "imap_failures",
            "imap_error",
            "updated_at",
        ]
    )
    if reading.imap_enabled:
        text = _("PsicoGest leggerà gli avvisi di mancata consegna dalla tua casella.")
    else:
        text = _("PsicoGest non legge più la tua casella.")
    card_message(request, "smtp", messages.SUCCESS, text)
    return redirect(card_url("smtp"))
