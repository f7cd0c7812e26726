"""The "Impostazioni email" page: it gathers the sections, each built by its own module."""

from __future__ import annotations

import base64
import functools
import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from emailsettings.covermail.rendering import HTML_PART_STYLES
from emailsettings.limits import smart_mail_quota
from emailsettings.mailbox.oauth import with_consent_pages
from emailsettings.views import covermail, options, reading, senderdomain, smtp
from emailsettings.views.cards import messages_by_card


def render_settings_page(
    request: HttpRequest, *, status: int = 200, **section_overrides: Any
) -> HttpResponse:
    """Render the whole settings page; a section's bound form with errors can be passed in
    (e.g. ``covermail_form=form``) so a failed POST keeps what the user typed."""
    context: dict[str, Any] = {}
    context.update(covermail.section_context(request, **section_overrides))
    context.update(smtp.section_context(request, **section_overrides))
    context.update(senderdomain.section_context(request, **section_overrides))
    context.update(reading.section_context(request))
    context.update(options.section_context(request, **section_overrides))
    context["smart_mail_quota"] = smart_mail_quota(practitioner=request.user)  # type: ignore[arg-type]
    context["card_messages"], context["page_messages"] = messages_by_card(request)
    response = render(request, "emailsettings/settings.html", context, status=status)
    policy = getattr(settings, "CONTENT_SECURITY_POLICY", "")
    if policy:
        response["Content-Security-Policy"] = with_consent_pages(with_mail_styles(policy))
    return response


@functools.cache
def _mail_style_sources() -> str:
    hashes = (hashlib.sha256(style.encode()).digest() for style in HTML_PART_STYLES)
    return " ".join(f"'sha256-{base64.b64encode(digest).decode()}'" for digest in hashes)


def with_mail_styles(policy: str) -> str:
    """``policy`` allowing the HTML part's own style attributes, and only those: the preview
    iframe (``srcdoc``) inherits the page's policy, which otherwise blocks inline styles."""
    if "style-src 'self'" not in policy:
        return policy
    return policy.replace(
        "style-src 'self'", f"style-src 'self' 'unsafe-hashes' {_mail_style_sources()}", 1
    )


@login_required
def settings_page(request: HttpRequest) -> HttpResponse:
    return render_settings_page(request)
