"""Login throttling with django-axes: what the project adds to it.

axes counts failed logins by the combination of the login name and the client address
(``AXES_LOCKOUT_PARAMETERS``) and refuses a locked combination before the password is checked,
on ``/accesso/`` and ``/admin/login/`` alike. This module holds the three hooks the settings
point axes to:

* ``LoginThrottleBackend``: axes' check, first in ``AUTHENTICATION_BACKENDS``;
* ``client_ip``: the address counted (``AXES_CLIENT_IP_CALLABLE``), ``REMOTE_ADDR`` unless the
  operator declares trusted reverse proxies (``PSICOGEST_TRUSTED_PROXY_COUNT``);
* ``lockout_response``: the login page that was asked for, with the Italian lock-out message
  (``AXES_LOCKOUT_CALLABLE``).

The operator unlocks with axes' commands (``manage.py axes_reset``, ``axes_reset_username``,
``axes_reset_ip``) or by deleting the access attempt in the admin.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Any

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext, ngettext


class LoginThrottleBackend(AxesStandaloneBackend):
    """Refuses a locked-out login name and address before any password is checked.

    A call without a request (Django's test client ``login()``, a script) has no client
    address to count: it goes on to the next backend unthrottled. Every login form passes
    its request.
    """

    def authenticate(  # type: ignore[override]
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def client_ip(request: HttpRequest) -> str | None:
    """The client address a login attempt is counted against.

    With ``PSICOGEST_TRUSTED_PROXY_COUNT`` = N > 0, the N-th entry from the right of
    ``X-Forwarded-For``: each trusted proxy appends the address it received the request from,
    so that entry was written by the outermost trusted proxy and the entries to its left
    (which the client can send itself) are never read. A header with fewer entries, or an
    entry that is not an address, falls back to ``REMOTE_ADDR``.
    """
    remote = request.META.get("REMOTE_ADDR") or None
    trusted = int(getattr(settings, "PSICOGEST_TRUSTED_PROXY_COUNT", 0) or 0)
    if trusted <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    hops = [hop for hop in hops if hop]
    if len(hops) < trusted:
        return remote
    try:
        return str(ipaddress.ip_address(hops[-trusted]))
    except ValueError:
        return remote


def lockout_message() -> str:
    """What a locked-out user reads, with the cool-off in minutes when there is one."""
    cool_off = getattr(settings, "AXES_COOLOFF_TIME", None)
    if cool_off:
        minutes = max(1, math.ceil(cool_off.total_seconds() / 60))
        return ngettext(
            "Troppi tentativi di accesso non riusciti. Per sicurezza l'accesso a questo account "
            "da questa rete è sospeso per %(minutes)d minuto dall'ultimo tentativo: riprova più "
            "tardi o chiedi all'amministratore di sbloccarlo.",
            "Troppi tentativi di accesso non riusciti. Per sicurezza l'accesso a questo account "
            "da questa rete è sospeso per %(minutes)d minuti dall'ultimo tentativo: riprova più "
            "tardi o chiedi all'amministratore di sbloccarlo.",
            minutes,
        ) % {"minutes": minutes}
    return gettext(
        "Troppi tentativi di accesso non riusciti. Per sicurezza l'accesso a questo account da "
        "questa rete è sospeso: chiedi all'amministratore di sbloccarlo."
    )


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """The login page the user posted to (the site's or the admin's), re-rendered with the
    lock-out message as the form's error, with axes' status (429)."""
    message = lockout_message()
    context = getattr(original_response, "context_data", None)
    if isinstance(original_response, TemplateResponse) and context and "form" in context:
        template = original_response.template_name
        context = dict(context)
    else:
        template = "registration/login.html"
        context = {"form": AuthenticationForm(request), "next": ""}
    form = context["form"]
    form.errors[NON_FIELD_ERRORS] = form.error_class([message], error_class="nonfield")
    context["lockout_message"] = message
    response = TemplateResponse(
        request, template, context, status=getattr(settings, "AXES_HTTP_RESPONSE_CODE", 429)
    )
    return response.render()
