"""Section "Configurazione SMTP personale" of the settings page, and the channel choice
(Smart Mail or the personal mailbox).

Save and delete the mailbox, choose the channel, and a JSON endpoint that proposes the
provider from an email address. "Verifica connessione" and "Invia una mail di prova" live
in the network layer's views and fill the ``#smtp-actions`` area of the section.
Every query is scoped with ``owned_by(request.user)``. The save view is the only one that
receives the password: it is marked ``sensitive_post_parameters``, so an error report never
carries it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_POST

from emailsettings.crypto import mask
from emailsettings.exceptions import DecryptionError
from emailsettings.forms.smtp import ChannelForm, SmtpAccountForm
from emailsettings.guidance.account import last_error_advice, security_label
from emailsettings.mailbox import oauth, presets
from emailsettings.mailbox.autodetect import detect_provider
from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    EmailSettings,
    Phase,
    SmtpAccount,
)
from emailsettings.outbox.actions import hold_without_mailbox
from emailsettings.report import invoices_and_emails
from emailsettings.views.cards import card_message, refuse, refused_data


def _account(request: HttpRequest) -> SmtpAccount | None:
    return SmtpAccount.objects.owned_by(request.user).first()  # type: ignore[arg-type]


def _email_settings(request: HttpRequest) -> EmailSettings | None:
    return EmailSettings.objects.owned_by(request.user).first()  # type: ignore[arg-type]


@sensitive_variables("password")
def _redacted(text: str, account: SmtpAccount) -> str:
    """The server's reply as shown to the user, with the stored password blanked out should a
    server ever echo it."""
    if not text or not account.has_password:
        return text
    try:
        password = account.get_password()
    except DecryptionError:
        return text
    return text.replace(password, mask(password)) if password else text


# Invoices waiting to leave through the mailbox; once it is deleted the outbox holds them
# ("Nessuna casella SMTP personale configurata") until the practitioner decides — a
# scheduled one when its time comes.
WAITING_FOR_MAILBOX = (
    DeliveryStatus.QUEUED,
    DeliveryStatus.DEFERRED,
    DeliveryStatus.HELD,
    DeliveryStatus.SCHEDULED,
)


def waiting_for_mailbox(request: HttpRequest) -> tuple[int, int]:
    """How many invoices, and how many emails, wait to leave through the mailbox."""
    counts = (
        Delivery.objects.owned_by(request.user)  # type: ignore[arg-type]
        .filter(channel=Channel.SMTP, status__in=WAITING_FOR_MAILBOX)
        .aggregate(invoices=Count("invoice", distinct=True), emails=Count("pk"))
    )
    return counts["invoices"], counts["emails"]


def waiting_text(waiting: tuple[int, int]) -> str:
    invoices, emails = waiting
    return invoices_and_emails(invoices=invoices, emails=emails) if invoices else ""


def presets_data() -> dict[str, Any]:
    """What smtp.js needs, rendered with ``json_script`` (no inline script: CSP)."""
    return {
        "presets": {preset.key: preset.as_json() for preset in presets.available_presets()},
        "custom": presets.CUSTOM_KEY,
        # Preset → the configured provider whose "Accedi con …" button it shows.
        "oauth": {
            key: provider.key
            for provider in oauth.configured_providers()
            for key in provider.presets
        },
        # Translated here: the script has no message catalogue of its own.
        "messages": {
            "suggest": _("Ti suggeriamo: %(provider)s"),
            "guess": _(
                "Ti suggeriamo: %(provider)s (ipotesi: %(host)s, porta %(port)s). Controlla i "
                "dati indicati dal tuo provider."
            ),
            "applied": _("Impostazioni di %(provider)s applicate."),
        },
    }


def _first_time(request: HttpRequest) -> dict[str, Any]:
    """A new mailbox starts from the practitioner's address and name, on "Altro provider"
    with its usual settings (587, STARTTLS); the page then proposes the provider."""
    user = request.user
    custom = presets.get_preset(presets.CUSTOM_KEY)
    return {
        "email": user.email,  # type: ignore[union-attr]
        "preset": presets.CUSTOM_KEY,
        "port": custom.port if custom else 587,
        "security": custom.security if custom else "starttls",
        "sender_name": user.display_name,  # type: ignore[union-attr]
    }


def section_context(request: HttpRequest, **overrides: Any) -> dict[str, Any]:
    account = _account(request)
    form = overrides.get("smtp_form")
    if form is None and (refused := refused_data(request, "smtp")):
        data, password_typed = refused
        # Its own instance: validating a ModelForm writes the typed values into it, and the
        # page shows the saved configuration beside the form.
        form = SmtpAccountForm(
            data,
            instance=_account(request),
            password_retyped=password_typed,
            practitioner_id=request.user.pk,
        )
        form.is_valid()
    if form is None:
        form = SmtpAccountForm(instance=account, initial={} if account else _first_time(request))
    email_settings = _email_settings(request)
    channel_form = overrides.get("channel_form")
    if channel_form is None and (refused_channel := refused_data(request, "channel")):
        channel_form = ChannelForm(
            refused_channel[0], instance=_email_settings(request), account=account
        )
        channel_form.is_valid()
    if channel_form is None:
        channel_form = ChannelForm(
            instance=email_settings,
            account=account,
            initial={} if email_settings else {"channel": Channel.SMART_MAIL},
        )
    last_error = dict(account.last_error) if account and account.last_error else {}
    if last_error and account:
        last_error["reply"] = _redacted(str(last_error.get("reply") or ""), account)
        phase = str(last_error.get("phase") or "")
        last_error["phase_label"] = Phase(phase).label if phase in Phase.values else phase
    selected_preset = form["preset"].value()
    oauth_section = oauth_context(account, selected_preset=selected_preset)
    tip = last_error_advice(account)
    suggested = tip.suggest_oauth if tip else ""
    return {
        **oauth_section,
        # The "Accedi con …" button the advice proposes, when that provider is configured.
        "smtp_advice_oauth": next(
            (b for b in oauth_section["smtp_oauth_buttons"] if b["key"] == suggested), None
        ),
        "smtp_account": account,
        "smtp_form": form,
        # The preset the form shows now (a failed POST keeps the submitted one).
        "smtp_selected_preset": presets.get_preset(form["preset"].value()),
        "smtp_presets_data": presets_data(),
        "smtp_last_error": last_error,
        "smtp_advice": tip,
        "channel_form": channel_form,
        "channel": email_settings.channel if email_settings else Channel.SMART_MAIL,
        "smtp_channel_active": bool(email_settings and email_settings.channel == Channel.SMTP),
        "smtp_waiting": waiting_text(waiting_for_mailbox(request)) if account else "",
        "smtp_account_security": security_label(account.security) if account else "",
    }


def oauth_context(account: SmtpAccount | None, *, selected_preset: str) -> dict[str, Any]:
    """The "Accedi con …" buttons of the configured providers (each shown for its presets,
    with the preset it connects), and "Collegato come …" for a connected mailbox."""
    buttons = [
        {
            "key": provider.key,
            "label": provider.button,
            "presets": " ".join(provider.presets),
            "preset": selected_preset
            if selected_preset in provider.presets
            else provider.presets[0],
            "shown": selected_preset in provider.presets,
        }
        for provider in oauth.configured_providers()
    ]
    connected = (
        oauth.get_provider(account.oauth_provider) if account and account.uses_oauth else None
    )
    return {
        "smtp_oauth_buttons": buttons,
        # The selected preset connects through a configured provider (usable without password).
        "smtp_selected_oauth": any(button["shown"] for button in buttons),
        "smtp_oauth_connected": connected,
    }


def _section_url(anchor: str = "smtp") -> str:
    return reverse("emailsettings:settings") + "#" + anchor


@sensitive_post_parameters("password")
@login_required
@require_POST
def save_mailbox(request: HttpRequest) -> HttpResponse:
    account = _account(request) or SmtpAccount(practitioner=request.user)  # type: ignore[misc]
    form = SmtpAccountForm(request.POST, instance=account, practitioner_id=request.user.pk)
    if not form.is_valid():
        card_message(
            request,
            "smtp",
            messages.ERROR,
            _("Configurazione SMTP non salvata: correggi i campi segnalati."),
        )
        return refuse(request, "smtp", request.POST)
    form.save()
    card_message(
        request,
        "smtp",
        messages.SUCCESS,
        _('Configurazione SMTP salvata. Premi "Verifica connessione" per provarla.'),
    )
    return redirect(_section_url())


def switch_to_smart_mail(request: HttpRequest) -> int:
    """The mailbox can no longer send: invoices leave with Smart Mail (1 when switched)."""
    return (
        EmailSettings.objects.owned_by(request.user)  # type: ignore[arg-type]
        .filter(channel=Channel.SMTP)
        .update(channel=Channel.SMART_MAIL)
    )


@login_required
@require_POST
def delete_mailbox(request: HttpRequest) -> HttpResponse:
    waiting = waiting_for_mailbox(request)
    account = _account(request)
    if account is not None and account.uses_oauth:
        # Revoked at the provider first (a call to it: outside the transaction).
        oauth.disconnect_mailbox(account=account)
    with transaction.atomic():
        deleted, _rows = SmtpAccount.objects.owned_by(request.user).delete()  # type: ignore[arg-type]
        switched = switch_to_smart_mail(request)
        if deleted:
            # As the confirmation promised: what waited for the mailbox is held, scheduled
            # invoices too, until the practitioner decides.
            hold_without_mailbox(practitioner_id=request.user.pk)  # type: ignore[arg-type]
    if deleted:
        card_message(request, "smtp", messages.SUCCESS, _("Configurazione SMTP eliminata."))
    if switched:
        card_message(request, "smtp", messages.INFO, _("Le fatture ora partono con Smart Mail."))
    if deleted and waiting[0]:
        card_message(
            request,
            "smtp",
            messages.WARNING,
            ngettext(
                "%(count)s in coda per la casella resta trattenuta: inviala con Smart "
                "Mail dall'Elenco invii email, oppure configura di nuovo la casella.",
                "%(count)s in coda per la casella restano trattenute: inviale con Smart "
                "Mail dall'Elenco invii email, oppure configura di nuovo la casella.",
                waiting[0],
            )
            % {"count": waiting_text(waiting)},
        )
    return redirect(_section_url())


@login_required
@require_POST
def save_channel(request: HttpRequest) -> HttpResponse:
    email_settings = _email_settings(request) or EmailSettings(practitioner=request.user)  # type: ignore[misc]
    form = ChannelForm(request.POST, instance=email_settings, account=_account(request))
    if not form.is_valid():
        card_message(request, "channel", messages.ERROR, _("Modalità di invio non cambiata."))
        return refuse(request, "channel", request.POST)
    form.save()
    if form.cleaned_data["channel"] == Channel.SMTP:
        card_message(
            request,
            "channel",
            messages.SUCCESS,
            _("Le fatture partiranno dalla tua casella (SMTP personale)."),
        )
    else:
        card_message(
            request, "channel", messages.SUCCESS, _("Le fatture partiranno con Smart Mail.")
        )
    return redirect(_section_url("channel"))


@login_required
@require_GET
@never_cache
def autodetect(request: HttpRequest) -> JsonResponse:
    """Propose the provider for ``?email=``: domain table, then MX, else a marked guess."""
    email = request.GET.get("email", "").strip()
    try:
        validate_email(email)
    except ValidationError:
        return JsonResponse({"error": _("Indirizzo email non valido.")}, status=400)
    detection = detect_provider(email)
    preset = presets.get_preset(detection.preset_key)
    return JsonResponse(
        {
            "preset_key": detection.preset_key,
            "label": str(preset.label) if preset else "",
            "host": detection.host,
            "port": detection.port,
            "security": detection.security,
            "guessed": detection.guessed,
            "source": detection.source,
            "usable": preset.usable if preset else True,
            "login_notes": str(preset.login_notes) if preset else "",
        }
    )
