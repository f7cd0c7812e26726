"""Template context shared by every page: the broken-mailbox banner, and on the settings
page of a development install the notice that the tracking webhooks are unprotected."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from emailsettings.mailbox.oauth import get_provider
from emailsettings.models import MailboxStatus, Reputation, ReputationState, SmtpAccount


def mailbox_banner(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    account = (
        SmtpAccount.objects.filter(practitioner=user, status=MailboxStatus.BROKEN)
        .only("id", "email", "last_error", "status", "auth_method", "oauth_provider")
        .first()
    )
    reconnect = ""
    if account is not None and account.needs_reconnect:
        provider = get_provider(account.oauth_provider)
        reconnect = str(provider.label) if provider else ""
    return {
        "broken_mailbox": account,
        # "Ricollega il tuo account Google": the provider's name, when that is the problem.
        "reconnect_provider": reconnect,
        "webhooks_unprotected": _webhooks_unprotected(request),
    }


def _webhooks_unprotected(request: HttpRequest) -> bool:
    """Development without ``ANYMAIL_WEBHOOK_SECRET`` (production refuses to start so)."""
    from django.conf import settings

    match = getattr(request, "resolver_match", None)
    if match is None or match.view_name != "emailsettings:settings":
        return False
    return not getattr(settings, "ANYMAIL", {}).get("WEBHOOK_SECRET")


def reputation_banner(request: HttpRequest) -> dict[str, Any]:
    """*A rischio* or *sospeso*: the Smart Mail reputation banner (one indexed read)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    state = (
        Reputation.objects.filter(practitioner=user)
        .exclude(state=ReputationState.REGULAR)
        .values_list("state", flat=True)
        .first()
    )
    return {"reputation_state": state or ""}
