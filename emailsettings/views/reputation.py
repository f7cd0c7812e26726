"""The page «Reputazione Smart Mail»: the practitioner's state with its numbers, what it
means and what to do, and — when Smart Mail is suspended for them — the held invoices and
the one button that sends them through their own working mailbox. The practitioner's own
rows only."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from emailsettings.exceptions import ActionNotAllowed
from emailsettings.guidance.reputation import COMPLAINTS, state_advice
from emailsettings.models import Reputation, ReputationState
from emailsettings.outbox import reputationhold


def page_context(practitioner_id: int) -> dict[str, Any]:
    row = Reputation.objects.filter(practitioner_id=practitioner_id).first()
    state = row.state if row is not None else ReputationState.REGULAR
    advice = None
    if row is not None and state != ReputationState.REGULAR:
        advice = state_advice(
            state=state,
            reason=row.reason,
            count=row.complained if row.reason == COMPLAINTS else row.bounced,
            recipients=row.recipients,
            days=row.window_days,
        )
    held = reputationhold.held_rows(practitioner_id=practitioner_id)
    return {
        "reputation": row,
        "state": state,
        "state_label": ReputationState(state).label,
        "suspended": state == ReputationState.SUSPENDED,
        "advice": advice,
        "held_count": held.count(),
        "mailbox": reputationhold.working_mailbox(practitioner_id=practitioner_id),
    }


@login_required
def reputation_page(request: HttpRequest) -> HttpResponse:
    context = page_context(request.user.pk)  # type: ignore[arg-type]
    return render(request, "emailsettings/reputation.html", context)


@login_required
@require_POST
def send_held_with_mailbox(request: HttpRequest) -> HttpResponse:
    try:
        count = reputationhold.send_held_with_mailbox(
            practitioner_id=request.user.pk  # type: ignore[arg-type]
        )
    except ActionNotAllowed:
        messages.error(
            request,
            _("La tua casella personale non è pronta: verificala nelle impostazioni email."),
        )
        return redirect("emailsettings:reputation")
    messages.success(
        request,
        ngettext(
            "%(count)d fattura messa in coda con la tua casella.",
            "%(count)d fatture messe in coda con la tua casella.",
            count,
        )
        % {"count": count},
    )
    return redirect("emailsettings:reputation")
