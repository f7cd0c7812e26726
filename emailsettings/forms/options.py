"""The sending options: how patients receive their invoices unless their card says otherwise
(attached, password-protected PDF, secure link), a copy of every invoice mail to the
practitioner, and the sending window (the days and hours during which the outbox releases
their invoices)."""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.utils.dates import WEEKDAYS
from django.utils.translation import gettext_lazy as _

from emailsettings.models import EmailSettings
from psicogest.models import INVOICE_DELIVERY_HELP, InvoiceDelivery

WEEKDAYS_DEFAULT = ["0", "1", "2", "3", "4"]


class SendingOptionsForm(forms.ModelForm):
    invoice_delivery = forms.ChoiceField(
        label=_("Come ricevono le fatture i pazienti"),
        # Missing from the post (an older page): the attachment, as before the choice.
        required=False,
        choices=InvoiceDelivery.choices,
        initial=InvoiceDelivery.ATTACHMENT,
        widget=forms.RadioSelect,
        help_text=_("Vale per i pazienti la cui scheda non sceglie diversamente."),
    )
    copy_to_self = forms.BooleanField(
        label=_("Ricevi una copia di ogni fattura inviata"),
        required=False,
        help_text=_(
            "Una mail separata al tuo indirizzo, uguale a quella del paziente: mai in copia "
            "(Cc o Ccn), così il paziente non vede il tuo indirizzo né altri."
        ),
    )
    window_enabled = forms.BooleanField(
        label=_("Invia solo in una fascia oraria"),
        required=False,
        help_text=_(
            "Le fatture inviate o programmate fuori fascia partono all'apertura successiva."
        ),
    )
    window_days = forms.MultipleChoiceField(
        label=_("Giorni"),
        required=False,
        choices=[(str(day), name) for day, name in WEEKDAYS.items()],
        widget=forms.CheckboxSelectMultiple,
    )
    window_start = forms.TimeField(
        label=_("Dalle"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        error_messages={"invalid": _("Scrivi l'ora come 08:00.")},
    )
    window_end = forms.TimeField(
        label=_("Alle"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        error_messages={"invalid": _("Scrivi l'ora come 20:00.")},
    )

    class Meta:
        model = EmailSettings
        fields = ("invoice_delivery", "copy_to_self")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            row = self.instance
            self.initial["window_enabled"] = bool(row.window_days)
            self.initial["window_days"] = list(row.window_days) or WEEKDAYS_DEFAULT
            self.initial["window_start"] = row.window_start or datetime.time(8, 0)
            self.initial["window_end"] = row.window_end or datetime.time(20, 0)

    @property
    def invoice_delivery_help(self) -> dict[str, str]:
        return {key: str(text) for key, text in INVOICE_DELIVERY_HELP.items()}

    def clean_invoice_delivery(self) -> str:
        return self.cleaned_data.get("invoice_delivery") or InvoiceDelivery.ATTACHMENT

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        if not cleaned.get("window_enabled"):
            return cleaned
        if not cleaned.get("window_days"):
            self.add_error("window_days", _("Scegli almeno un giorno di invio."))
        start, end = cleaned.get("window_start"), cleaned.get("window_end")
        if start is None and "window_start" not in self.errors:
            self.add_error("window_start", _("Scegli l'ora di inizio."))
        if end is None and "window_end" not in self.errors:
            self.add_error("window_end", _("Scegli l'ora di fine."))
        if start is not None and end is not None and start >= end:
            self.add_error("window_end", _("L'ora di fine deve essere dopo l'ora di inizio."))
        return cleaned

    def save(self, commit: bool = True) -> EmailSettings:
        row: EmailSettings = super().save(commit=False)
        if self.cleaned_data.get("window_enabled"):
            row.window_days = "".join(sorted(self.cleaned_data["window_days"]))
            row.window_start = self.cleaned_data["window_start"]
            row.window_end = self.cleaned_data["window_end"]
        else:
            row.window_days, row.window_start, row.window_end = "", None, None
        if commit:
            row.save()
        return row
