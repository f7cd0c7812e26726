"""The "Leggi le risposte dalla casella" option of the personal mailbox (bounce reading).

Same credentials as SMTP; the IMAP server comes from the provider (``presets.IMAP_SERVERS``)
unless typed. Nothing is looked up on save: the guarded connection checks the destination
at every read (:mod:`emailsettings.mailbox.imap`), and a refusal shows on the card as the reason of
the last read.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from emailsettings import conf
from emailsettings.forms.smtp import HOSTNAME_RE, SECURITY_CHOICES, is_ip_literal
from emailsettings.mailbox import presets
from emailsettings.mailbox.imap import IMAP_PORTS
from emailsettings.models import SmtpAccount


class MailboxReadingForm(forms.ModelForm):
    imap_security = forms.ChoiceField(label=_("Sicurezza IMAP"), choices=SECURITY_CHOICES)

    class Meta:
        model = SmtpAccount
        fields = ("imap_enabled", "sent_copy", "imap_host", "imap_port", "imap_security")
        help_texts = {
            "imap_enabled": _(
                "PsicoGest legge la posta in arrivo (e la cartella spam) della casella solo "
                "per riconoscere gli avvisi di mancata consegna delle fatture inviate negli "
                "ultimi giorni. Non segna nulla come letto, non sposta e non cancella "
                "messaggi, e non conserva le altre mail."
            ),
            "sent_copy": _(
                "Dopo l'invio PsicoGest mette una copia di ogni mail nella cartella della posta "
                "inviata della casella, come fa il tuo programma di posta."
            ),
            "imap_host": _("Lascia vuoto per usare il server del tuo provider."),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        known = presets.imap_server(self.instance.preset)
        preset = presets.get_preset(self.instance.preset)
        if preset is not None and preset.family == "google":
            # Gmail files what its SMTP server sends by itself: a copy would be a duplicate.
            del self.fields["sent_copy"]
        self.fields["imap_host"].required = False
        if known:
            self.fields["imap_host"].widget.attrs["placeholder"] = known[0]
        for name in self.fields:
            self.fields[name].widget.attrs.setdefault("id", f"id_reading_{name}")

    def clean_imap_host(self) -> str:
        host: str = (self.cleaned_data.get("imap_host") or "").strip().rstrip(".").lower()
        if host and not (HOSTNAME_RE.match(host) or is_ip_literal(host)):
            raise ValidationError(
                _("Scrivi solo il nome del server, ad es. imap.esempio.it."), code="invalid"
            )
        return host

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        port = cleaned.get("imap_port")
        if port and port not in IMAP_PORTS and not conf.allow_private_smtp_hosts():
            self.add_error("imap_port", _("Porta non consentita: usa 993 (SSL/TLS) o 143."))
        if port == 993 and cleaned.get("imap_security") == "starttls":
            self.add_error("imap_security", _("La porta 993 usa SSL/TLS."))
        known = presets.imap_server(self.instance.preset)
        if cleaned.get("imap_enabled") and not cleaned.get("imap_host") and not known:
            self.add_error(
                "imap_host", _("Indica il server IMAP: il tuo provider non è tra quelli noti.")
            )
        return cleaned
