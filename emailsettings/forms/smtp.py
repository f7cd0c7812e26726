"""Forms of the "Configurazione SMTP personale" section and of the channel choice.

The password field never renders its value back; left empty, it keeps the stored password,
so the host or username can be changed without retyping it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from .. import presets
from ..models import Channel, EmailSettings, Security, SmtpAccount

# RFC 1123 host name; IP literals are parsed with ipaddress. The destination check
# (emailsettings.smtp.check_destination) decides whether the address may be used.
HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# The security modes as the form shows them: no port in the label (the port is its own field).
SECURITY_CHOICES: list[tuple[str, str]] = [
    (Security.STARTTLS.value, "STARTTLS"),
    (Security.SSL.value, "SSL/TLS"),
]


def security_label(value: str) -> str:
    return dict(SECURITY_CHOICES).get(value, value)


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

    def __init__(self, *args: Any, password_retyped: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The form comes back after a refused save in which a password had been typed: it
        # is never kept, so it has to be typed again.
        self.password_retyped = password_retyped
        self.fields["preset"].choices = presets.preset_choices()  # type: ignore[attr-defined]
        self.fields["username"].required = False
        self.fields["host"].required = True
        if self.instance.pk and self.instance.has_password:
            self.fields["password"].widget.attrs["placeholder"] = _("•••• salvata")
            self.fields["password"].help_text = _("Lascia vuoto per mantenere la password salvata.")
        for name in ("email", "preset", "host", "port", "security", "username", "password"):
            self.fields[name].widget.attrs.setdefault("id", f"id_smtp_{name}")
        self.fields["sender_name"].widget.attrs.setdefault("id", "id_smtp_sender_name")

    def clean_preset(self) -> str:
        key: str = self.cleaned_data["preset"]
        preset = presets.get_preset(key)
        if preset is None:
            raise ValidationError(_("Provider sconosciuto."), code="invalid")
        if not preset.usable:
            raise ValidationError(
                _(
                    "%(provider)s non consente l'invio con password da un server: usa Smart "
                    "Mail come modalità di invio."
                ),
                code="unusable",
                params={"provider": preset.label},
            )
        return key

    def clean_host(self) -> str:
        host: str = self.cleaned_data["host"].strip().rstrip(".").lower()
        if not (HOSTNAME_RE.match(host) or _is_ip_literal(host)):
            raise ValidationError(
                _("Scrivi solo il nome del server, ad es. smtp.esempio.it."), code="invalid"
            )
        return host

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
        if not cleaned.get("password") and not self.instance.has_password:
            self.add_error(
                "password",
                _("Per sicurezza la password non viene conservata: scrivila di nuovo.")
                if self.password_retyped
                else _("Inserisci la password della casella."),
            )
        return cleaned

    def _check_destination(self, host: str, port: int) -> None:
        # Imported here: the network layer lives in emailsettings.smtp.
        from ..smtp import check_destination

        try:
            check_destination(host, port)
        except ValidationError as err:
            self.add_error("host", err)

    def save(self, commit: bool = True) -> SmtpAccount:
        account: SmtpAccount = super().save(commit=False)
        password = self.cleaned_data.get("password")
        changed = bool(password) or any(name in self.changed_data for name in CONNECTION_FIELDS)
        if password:
            account.set_password(password)
        if changed:
            from ..mailbox import forget_checks

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
        if channel == Channel.SMTP and (self.account is None or not self.account.has_password):
            raise ValidationError(
                _(
                    "Per inviare dalla tua casella configura prima l'SMTP personale qui sotto "
                    "e salvalo."
                ),
                code="no_mailbox",
            )
        return channel
