"""Forms of the "Configurazione SMTP personale" section and of the channel choice.

The password field never renders its value back; left empty, it keeps the stored password,
so the host or username can be changed without retyping it, and it is masked in error
reports (``sensitive_variables``).

Saving looks the host up (:func:`emailsettings.mailbox.guard.check_destination`): at most
``LOOKUP_RATE_LIMIT_COUNT`` look-ups per practitioner in ``LOOKUP_RATE_LIMIT_WINDOW``
seconds, and the answer for the same host and port is reused for ``LOOKUP_RESULT_SECONDS``
(the page shown after a refused save validates the form again). Every refused destination
gets the same message, so the form tells nothing about internal names.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from django import forms
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables

from emailsettings import conf
from emailsettings.guidance.account import SECURITY_LABELS
from emailsettings.limits import (
    fixed_window_retry_after,
    retry_after_text,
    within_fixed_window,
)
from emailsettings.mailbox import presets
from emailsettings.mailbox.oauth import provider_for_preset
from emailsettings.mailbox.smtp import check_destination
from emailsettings.mailbox.state import forget_checks
from emailsettings.models import Channel, EmailSettings, Security, SmtpAccount

# RFC 1123 host name; IP literals are parsed with ipaddress. The destination check
# (emailsettings.mailbox.guard.check_destination) decides whether the address may be used.
HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# Host look-ups on save, per practitioner: a few corrections of a typo fit, a scan does not.
LOOKUP_RATE_LIMIT_COUNT = 10
LOOKUP_RATE_LIMIT_WINDOW = 600
LOOKUP_RESULT_SECONDS = 30

# Control and line-separator characters: a sender name is one line of a header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def lookup_rate_key(practitioner_id: int) -> str:
    return f"emailsettings:smtp-host-lookups:{practitioner_id}"


def _lookup_result_key(practitioner_id: int, host: str, port: int) -> str:
    allow = int(conf.allow_private_smtp_hosts())
    return f"emailsettings:smtp-host-lookup:{practitioner_id}:{allow}:{port}:{host}"


# The security modes as the form shows them (see guidance.account.SECURITY_LABELS).
SECURITY_CHOICES: list[tuple[str, str]] = list(SECURITY_LABELS.items())


# Changing one of these makes the last verification meaningless.
CONNECTION_FIELDS = ("email", "host", "port", "security", "username")


class SmtpAccountForm(forms.ModelForm):
    preset = forms.ChoiceField(label=_("Provider"), choices=())
    security = forms.ChoiceField(label=_("Sicurezza"), choices=SECURITY_CHOICES)
    port = forms.IntegerField(label=_("Porta"), min_value=1, max_value=65535)
    password = forms.CharField(
        label=_("Password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=_("La password viene conservata cifrata e non viene mai mostrata."),
    )

    class Meta:
        model = SmtpAccount
        fields = ("email", "preset", "host", "port", "security", "username", "sender_name")
        widgets = {
            "email": forms.EmailInput(attrs={"autocomplete": "email"}),
            "host": forms.TextInput(
                attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"}
            ),
            "username": forms.TextInput(
                attrs={"autocomplete": "username", "spellcheck": "false", "autocapitalize": "off"}
            ),
        }
        help_texts = {
            "sender_name": _("Il nome che i pazienti vedono come mittente, ad es. Dott.ssa Rossi."),
            "username": _("Di solito è l'indirizzo email completo."),
        }

    field_order = (
        "email",
        "preset",
        "host",
        "port",
        "security",
        "username",
        "password",
        "sender_name",
    )

    def __init__(
        self,
        *args: Any,
        password_retyped: bool = False,
        practitioner_id: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # Whose look-ups are counted (the instance's owner when not given).
        self.practitioner_id = practitioner_id or self.instance.practitioner_id
        # The form comes back after a refused save in which a password had been typed: it
        # is never kept, so it has to be typed again.
        self.password_retyped = password_retyped
        self.fields["preset"].choices = presets.preset_choices()  # type: ignore[attr-defined]
        self.fields["username"].required = False
        self.fields["host"].required = True
        if self.instance.pk and self.instance.has_password:
            self.fields["password"].widget.attrs["placeholder"] = _("•••• salvata")
            self.fields["password"].help_text = _("Lascia vuoto per mantenere la password salvata.")
        elif self.instance.pk and self.instance.uses_oauth:
            self.fields["password"].help_text = _(
                "La casella è collegata con l'accesso del provider: lascia vuoto. Una password "
                "scritta qui sostituisce il collegamento."
            )
        for name in ("email", "preset", "host", "port", "security", "username", "password"):
            self.fields[name].widget.attrs.setdefault("id", f"id_smtp_{name}")
        self.fields["sender_name"].widget.attrs.setdefault("id", "id_smtp_sender_name")

    def clean_preset(self) -> str:
        key: str = self.cleaned_data["preset"]
        preset = presets.get_preset(key)
        if preset is None:
            raise ValidationError(_("Provider sconosciuto."), code="invalid")
        if not preset.usable and not self._keeps_oauth(key):
            raise ValidationError(
                _(
                    "%(provider)s non consente l'invio con password da un server: usa Smart "
                    "Mail come modalità di invio."
                ),
                code="unusable",
                params={"provider": preset.label},
            )
        return key

    def _keeps_oauth(self, preset_key: str | None) -> bool:
        """An OAuth mailbox saved without a password, on a preset its provider serves."""
        if not (self.instance.uses_oauth and self.instance.has_credentials):
            return False
        if self.data.get("password"):
            return False
        provider = provider_for_preset(preset_key)
        return provider is not None and provider.key == self.instance.oauth_provider

    def clean_host(self) -> str:
        host: str = self.cleaned_data["host"].strip().rstrip(".").lower()
        if not (HOSTNAME_RE.match(host) or is_ip_literal(host)):
            raise ValidationError(
                _("Scrivi solo il nome del server, ad es. smtp.esempio.it."), code="invalid"
            )
        return host

    def clean_sender_name(self) -> str:
        name: str = self.cleaned_data.get("sender_name") or ""
        if _CONTROL.search(name):
            raise ValidationError(
                _(
                    "Il nome del mittente deve stare su una sola riga, senza caratteri di "
                    "controllo."
                ),
                code="sender_name_control",
            )
        return name

    @sensitive_variables("cleaned")
    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        key = cleaned.get("preset")
        port = cleaned.get("port")
        security = cleaned.get("security")
        host = cleaned.get("host")
        if port is not None:
            if key != presets.LOCAL_KEY and port not in presets.ALLOWED_PORTS:
                self.add_error(
                    "port",
                    ValidationError(
                        _("Porta non consentita: usa 465, 587, 2525 o 25."), code="port"
                    ),
                )
            elif port == 465 and security == Security.STARTTLS:
                self.add_error(
                    "security", _("La porta 465 usa SSL/TLS: scegli SSL/TLS o la porta 587.")
                )
            elif port == 587 and security == Security.SSL:
                self.add_error(
                    "security", _("La porta 587 usa STARTTLS: scegli STARTTLS o la porta 465.")
                )
        if host and port is not None and not self.has_error("port"):
            self._check_destination(host, port)
        if not cleaned.get("username") and cleaned.get("email"):
            cleaned["username"] = cleaned["email"]
        if not cleaned.get("password") and self._keeps_oauth(key):
            # The login comes from the provider's identity, not from a typed field.
            cleaned["email"] = cleaned["username"] = self.instance.email
        elif not cleaned.get("password") and not self.instance.has_password:
            self.add_error(
                "password",
                _("Per sicurezza la password non viene conservata: scrivila di nuovo.")
                if self.password_retyped
                else _("Inserisci la password della casella."),
            )
        return cleaned

    def _check_destination(self, host: str, port: int) -> None:
        # Imported here: the network layer lives in emailsettings.mailbox.smtp.
        if self.practitioner_id is None:  # not tied to a practitioner: nothing to count
            try:
                check_destination(host, port)
            except ValidationError as err:
                self.add_error("host", err)
            return
        result_key = _lookup_result_key(self.practitioner_id, host, port)
        result = cache.get(result_key)
        if not isinstance(result, dict):
            rate_key = lookup_rate_key(self.practitioner_id)
            if not within_fixed_window(
                rate_key, limit=LOOKUP_RATE_LIMIT_COUNT, window=LOOKUP_RATE_LIMIT_WINDOW
            ):
                seconds = fixed_window_retry_after(rate_key, window=LOOKUP_RATE_LIMIT_WINDOW)
                self.add_error(
                    "host",
                    ValidationError(
                        gettext(
                            "Hai già fatto controllare il server SMTP %(count)s volte negli "
                            "ultimi 10 minuti: aspetta prima di salvare di nuovo, %(retry)s."
                        )
                        % {"count": LOOKUP_RATE_LIMIT_COUNT, "retry": retry_after_text(seconds)},
                        code="rate_limited",
                    ),
                )
                return
            try:
                check_destination(host, port)
            except ValidationError as err:
                result = {"message": str(err.message), "code": err.code}
            else:
                result = {}
            cache.set(result_key, result, timeout=LOOKUP_RESULT_SECONDS)
        if result:
            self.add_error("host", ValidationError(result["message"], code=result["code"]))

    @sensitive_variables("password")
    def save(self, commit: bool = True) -> SmtpAccount:
        account: SmtpAccount = super().save(commit=False)
        password = self.cleaned_data.get("password")
        changed = bool(password) or any(name in self.changed_data for name in CONNECTION_FIELDS)
        if password:
            account.clear_oauth()
            account.set_password(password)
        if changed:
            forget_checks(account)
        if commit:
            account.save()
        return account


class ChannelForm(forms.ModelForm):
    channel = forms.ChoiceField(
        label=_("Modalità di invio"), choices=Channel.choices, widget=forms.RadioSelect
    )

    class Meta:
        model = EmailSettings
        fields = ("channel",)

    def __init__(self, *args: Any, account: SmtpAccount | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.account = account

    def clean_channel(self) -> str:
        channel: str = self.cleaned_data["channel"]
        if channel == Channel.SMTP and (self.account is None or not self.account.has_credentials):
            raise ValidationError(
                _(
                    "Per inviare dalla tua casella configura prima l'SMTP personale qui sotto "
                    "e salvalo."
                ),
                code="no_mailbox",
            )
        return channel
