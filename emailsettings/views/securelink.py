"""The patient's download page of a secure link (no login: the token and a second factor),
and the practitioner's "revoke" and "revoke and send a new link" on the delivery page.

The page shows nothing of the invoice (no name, no amount, no number) before the second
factor is right; then it answers with the PDF itself. It loads only this site's stylesheet
(the Content-Security-Policy says so), is not cached, sends a Referer only to itself and asks search
engines to stay away. An unknown token is a 404, like another practitioner's delivery id on
the practitioner's side.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from emailsettings.covermail.message import attachment_name
from emailsettings.covermail.protection import CODICE_FISCALE_FACTOR_LENGTH, second_factor_kind
from emailsettings.exceptions import ActionNotAllowed, InvalidRecipient
from emailsettings.models import Delivery
from emailsettings.outbox import actions, securelink
from emailsettings.outbox.securelink import LinkState
from psicogest.formatting import format_time

# HTTP status of the page for each state of the link.
_STATUS = {
    LinkState.OPEN: 200,
    LinkState.WAIT: 429,
    LinkState.LOCKED: 403,
    LinkState.EXPIRED: 410,
    LinkState.REVOKED: 410,
}


def _private(response: HttpResponseBase) -> HttpResponseBase:
    # same-origin, not no-referrer: with no-referrer the browser posts the form with
    # "Origin: null", which the CSRF check refuses; nothing here links elsewhere anyway.
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Cache-Control"] = "no-store"
    return response


@never_cache
@sensitive_post_parameters("fattore")
@require_http_methods(["GET", "POST"])
def download(request: HttpRequest, token: str) -> HttpResponseBase:
    link = securelink.find_link(token)
    if link is None:
        raise Http404("No such link")
    error = ""
    current = securelink.state(link)
    if request.method == "POST" and current == LinkState.OPEN:
        right, current = securelink.check_factor(link=link, value=request.POST.get("fattore", ""))
        link.refresh_from_db()
        if right:
            securelink.record_download(link=link)
            invoice = link.delivery.invoice
            if not invoice.pdf:
                raise Http404("No PDF")
            return _private(
                FileResponse(
                    invoice.pdf.open("rb"),
                    as_attachment=True,
                    content_type="application/pdf",
                    filename=attachment_name(invoice.number),
                )
            )
        if current == LinkState.OPEN:
            error = _("Il dato inserito non è corretto. Tentativi rimasti: %(count)d.") % {
                "count": securelink.attempts_left(link)
            }
    kind = second_factor_kind(link.delivery.patient)
    context = {
        "state": str(current),
        "error": error,
        "kind": kind,
        "cf_length": CODICE_FISCALE_FACTOR_LENGTH,
        "retry_after": format_time(link.retry_after),
    }
    response = render(request, "emailsettings/secure_link.html", context, status=_STATUS[current])
    return _private(response)


@login_required
@require_POST
def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Revoke the delivery's link; with ``nuovo`` also send the invoice again with a new one."""
    delivery = get_object_or_404(Delivery.objects.owned_by(request.user), pk=pk)  # type: ignore[arg-type]
    try:
        securelink.revoke(delivery=delivery)
    except ActionNotAllowed:
        messages.error(request, _("Questo invio non ha un link sicuro attivo."))
        return redirect("emailsettings:delivery", pk=delivery.pk)
    if not request.POST.get("nuovo"):
        messages.success(request, _("Link revocato: la pagina di download non si apre più."))
        return redirect("emailsettings:delivery", pk=delivery.pk)
    try:
        created = actions.resend(delivery=delivery)
    except (ActionNotAllowed, InvalidRecipient) as err:
        messages.error(
            request,
            _("Link revocato, ma non è stato possibile inviarne uno nuovo: %(reason)s")
            % {"reason": str(err)},
        )
        return redirect("emailsettings:delivery", pk=delivery.pk)
    messages.success(request, _("Link revocato; un nuovo link è in invio."))
    return redirect("emailsettings:delivery", pk=created.pk)
