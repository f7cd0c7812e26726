""" "Accedi con Google / Microsoft" in the "Configurazione SMTP personale" card.

:func:`start` (POST, CSRF-protected) sends the practitioner to the provider's consent page
with a fresh ``state``, PKCE verifier and nonce kept in their session; :func:`callback`
takes them back: the pending flow is removed from the session before anything else (a
code or ``state`` works once), must belong to the logged-in practitioner and be recent,
and its ``state`` must match. Only then is the code exchanged (with the verifier) and the
mailbox connected. :func:`disconnect` ("Scollega") forgets the tokens. No token reaches a
page, a message, a log or the session.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_POST

from emailsettings import conf
from emailsettings.exceptions import OAuthFlowError, RateLimited
from emailsettings.health.verify import VERIFY, start_check
from emailsettings.mailbox import oauth
from emailsettings.models import SmtpAccount
from emailsettings.views.cards import card_message, card_url
from emailsettings.views.smtp import switch_to_smart_mail

SESSION_KEY = "emailsettings:oauth-flow"


def _account(request: HttpRequest) -> SmtpAccount | None:
    return SmtpAccount.objects.owned_by(request.user).first()  # type: ignore[arg-type]


@sensitive_post_parameters("password")
@login_required
@require_POST
def start(request: HttpRequest, provider_key: str) -> HttpResponse:
    provider = oauth.get_provider(provider_key)
    if provider is None or not provider.configured:
        raise Http404
    preset = request.POST.get("preset", "")
    if preset not in provider.presets:
        preset = provider.presets[0]
    account = _account(request)
    hint = account.email if account is not None else request.user.email  # type: ignore[union-attr]
    authorization = oauth.start_authorization(provider=provider, login_hint=hint)
    request.session[SESSION_KEY] = {
        "provider": provider.key,
        "preset": preset,
        "practitioner": request.user.pk,
        "state": authorization.state,
        "code_verifier": authorization.code_verifier,
        "nonce": authorization.nonce,
        "started": time.time(),
    }
    return redirect(authorization.url)


@sensitive_variables("pending", "code")
@login_required
@require_GET
@never_cache
def callback(request: HttpRequest) -> HttpResponse:
    # Popped first: whatever happens next, this state and verifier are never used again.
    pending = request.session.pop(SESSION_KEY, None)
    try:
        provider, preset = _check_pending(request, pending)
    except OAuthFlowError as err:
        card_message(request, "smtp", messages.ERROR, str(err))
        return redirect(card_url("smtp"))
    assert isinstance(pending, dict)
    error = request.GET.get("error", "")
    code = request.GET.get("code", "")
    if error or not code:
        text = (
            _("Accesso annullato: la casella non è stata collegata.")
            if error == "access_denied"
            else _("%(provider)s non ha concesso l'accesso: riprova.")
            % {"provider": provider.label}
        )
        card_message(request, "smtp", messages.ERROR, text)
        return redirect(card_url("smtp"))
    try:
        grant = oauth.exchange_code(
            provider=provider,
            code=code,
            code_verifier=str(pending["code_verifier"]),
            nonce=str(pending["nonce"]),
        )
    except OAuthFlowError as err:
        card_message(request, "smtp", messages.ERROR, str(err))
        return redirect(card_url("smtp"))
    with transaction.atomic():
        account = _account(request) or SmtpAccount(practitioner=request.user)  # type: ignore[misc]
        oauth.connect_mailbox(account=account, provider=provider, preset_key=preset, grant=grant)
    card_message(
        request,
        "smtp",
        messages.SUCCESS,
        _("Collegato come %(email)s.") % {"email": account.email},
    )
    _verify_soon(request, account)
    return redirect(card_url("smtp"))


def _check_pending(request: HttpRequest, pending: Any) -> tuple[oauth.Provider, str]:
    """The provider and preset of the flow the callback ends; :class:`OAuthFlowError` when
    there is none, it is another practitioner's or too old, or ``state`` does not match."""
    expired = OAuthFlowError(
        _("Il collegamento non è più valido (scaduto o già usato): premi di nuovo il pulsante.")
    )
    if not isinstance(pending, dict) or pending.get("practitioner") != request.user.pk:
        raise expired
    state = request.GET.get("state", "")
    if not state or not secrets.compare_digest(state, str(pending.get("state", ""))):
        raise expired
    started = pending.get("started")
    if not isinstance(started, int | float) or (
        time.time() - started > conf.oauth_flow_max_age_seconds()
    ):
        raise expired
    provider = oauth.get_provider(str(pending.get("provider", "")))
    if provider is None or not provider.configured:
        raise expired
    return provider, str(pending.get("preset", provider.presets[0]))


def _verify_soon(request: HttpRequest, account: SmtpAccount) -> None:
    """A new connection is checked at once: when it works, held invoices start again."""
    try:
        start_check(account=account, kind=VERIFY)
    except RateLimited:
        card_message(
            request,
            "smtp",
            messages.INFO,
            _('Premi "Verifica connessione" tra qualche minuto per provare la casella.'),
        )


@login_required
@require_POST
def disconnect(request: HttpRequest) -> HttpResponse:
    account = _account(request)
    if account is None or not account.uses_oauth:
        return redirect(card_url("smtp"))
    email = account.email
    # The revocation is a call to the provider: no transaction around it.
    oauth.disconnect_mailbox(account=account)
    switched = switch_to_smart_mail(request)
    card_message(
        request,
        "smtp",
        messages.SUCCESS,
        _("Casella %(email)s scollegata: PsicoGest non può più inviare da qui.") % {"email": email},
    )
    if switched:
        card_message(request, "smtp", messages.INFO, _("Le fatture ora partono con Smart Mail."))
    return redirect(card_url("smtp"))
