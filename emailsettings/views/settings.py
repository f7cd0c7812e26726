"""The "Impostazioni email" page: it gathers the sections, each built by its own module, in
steps a practitioner can take one at a time («Testo», «Come inviare», «La tua casella», «Il tuo
dominio»), each at its own URL, under a checklist of what is set and what the patient will see.

``/impostazioni/`` shows every step (with JavaScript, one at a time); ``/impostazioni/<step>/``
shows one, without JavaScript too. To add a step: an entry in :data:`STEPS`, its cards'
templates in ``settings.html``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from emailsettings.covermail.identity import smart_mail_identity, smtp_identity
from emailsettings.covermail.rendering import HTML_PART_STYLES
from emailsettings.limits import smart_mail_quota
from emailsettings.mailbox.oauth import with_consent_pages
from emailsettings.models import Channel, EmailSettings, MailboxStatus, SenderDomain, SmtpAccount
from emailsettings.views import covermail, options, reading, senderdomain, smtp
from emailsettings.views.cards import messages_by_card


@dataclass(frozen=True)
class Step:
    """One step of the settings page: its URL part, its title and the cards it holds."""

    slug: str
    title: Any
    cards: tuple[str, ...]


STEPS = (
    Step("testo", gettext_lazy("Testo"), ("covermail",)),
    Step("invio", gettext_lazy("Come inviare"), ("channel", "options")),
    Step("casella", gettext_lazy("La tua casella"), ("smtp",)),
    Step("dominio", gettext_lazy("Il tuo dominio"), ("sender_domain",)),
)


def checklist(request: HttpRequest) -> dict[str, Any]:
    """What is set, step by step, and what the patient will see: the From line and the mode."""
    user: Any = request.user
    saved = EmailSettings.objects.filter(practitioner=user).first()
    account = SmtpAccount.objects.filter(practitioner=user).first()
    domain = SenderDomain.objects.filter(practitioner=user).first()
    smtp_chosen = bool(saved and saved.channel == Channel.SMTP and account)
    verified = bool(domain and domain.verified_at)
    identity = (
        smtp_identity(account, user)
        if smtp_chosen and account
        else smart_mail_identity(user, own_domain_verified=verified)
    )
    custom_text = bool(saved and (saved.subject_template or saved.body_template))
    if account is None:
        mailbox, mailbox_ok = _("non configurata (facoltativa)"), None
    else:
        mailbox = f"{account.email} — {MailboxStatus(account.status).label}"
        mailbox_ok = account.status == MailboxStatus.OK
    items = {
        "testo": (
            _("testo personalizzato") if custom_text else _("testo predefinito di PsicoGest"),
            True,
        ),
        "invio": (
            _("dalla tua casella (SMTP personale)") if smtp_chosen else _("Smart Mail"),
            True,
        ),
        "casella": (mailbox, mailbox_ok),
        "dominio": (
            _("%(domain)s verificato") % {"domain": domain.domain}
            if verified and domain
            else _("non verificato: le fatture partono «via PsicoGest»"),
            verified,
        ),
    }
    return {
        "steps": [
            {
                "slug": step.slug,
                "title": step.title,
                "url": reverse("emailsettings:settings_step", args=[step.slug]),
                "state": items[step.slug][0],
                "ok": items[step.slug][1],
            }
            for step in STEPS
        ],
        "from_line": identity.from_header,
        "reply_to": identity.reply_to,
        "mode": _("La tua casella") if smtp_chosen else _("Smart Mail"),
    }


def render_settings_page(
    request: HttpRequest, *, status: int = 200, step: str = "", **section_overrides: Any
) -> HttpResponse:
    """Render the settings page, every step or only ``step``; a section's bound form with
    errors can be passed in (e.g. ``covermail_form=form``) so a failed POST keeps what the user
    typed."""
    context: dict[str, Any] = {"checklist": checklist(request), "current_step": step}
    context["shown"] = {s.slug for s in STEPS if not step or s.slug == step}
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


@login_required
def settings_step(request: HttpRequest, step: str) -> HttpResponse:
    if step not in {s.slug for s in STEPS}:
        raise Http404("No such step")
    return render_settings_page(request, step=step)
