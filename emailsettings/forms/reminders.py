"""The payment reminders' forms: the rules, one form per level (its texts validated like the
cover mail's), and the pause of one invoice's reminders."""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from emailsettings.covermail.validation import validate_template
from emailsettings.models import ReminderLevel, ReminderRules


def normalize_iban(value: str) -> str:
    """ "it60 x054…" → "IT60X054…"; ``ValidationError`` unless it looks like an IBAN (country,
    check digits, up to 30 letters and digits) with a valid ISO 13616 check (mod 97)."""
    iban = "".join(value.split()).upper()
    if not iban:
        return ""
    if not (15 <= len(iban) <= 34 and iban[:2].isalpha() and iban[2:4].isdigit()) or not (
        iban.isalnum() and iban.isascii()
    ):
        raise forms.ValidationError(
            _("Scrivi un IBAN valido, ad esempio IT60X0542811101000000123456.")
        )
    digits = "".join(str(int(char, 36)) for char in iban[4:] + iban[:4])
    if int(digits) % 97 != 1:
        raise forms.ValidationError(_("Questo IBAN non è valido: controlla le cifre."))
    return iban


class ReminderRulesForm(forms.ModelForm):
    # The practitioner's profile field, edited here because reminders quote it (${iban}).
    iban = forms.CharField(
        label=_("IBAN per i pagamenti"),
        required=False,
        max_length=42,
        help_text=_("Dal tuo profilo: i testi predefiniti lo indicano per il bonifico."),
    )

    class Meta:
        model = ReminderRules
        fields = ("enabled", "minimum_amount", "attach_invoice")
        help_texts = {
            "minimum_amount": _(
                "Le fatture con un importo da pagare più basso non sono sollecitate."
            ),
            "attach_invoice": _(
                "Il PDF va con il sollecito come il paziente riceve le fatture (allegato, "
                "protetto o link sicuro)."
            ),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        if not self.is_bound and self.instance.practitioner_id:
            self.initial["iban"] = self.instance.practitioner.iban

    def clean_iban(self) -> str:
        return normalize_iban(self.cleaned_data.get("iban") or "")


class ReminderLevelForm(forms.ModelForm):
    """One level: when, and its texts. An empty English text means "use the Italian one"."""

    class Meta:
        model = ReminderLevel
        fields = (
            "enabled",
            "days",
            "subject_template",
            "body_template",
            "subject_template_en",
            "body_template_en",
        )
        help_texts = {
            "days": _("Dopo la scadenza; un numero negativo per un promemoria prima."),
        }
        widgets = {
            "subject_template": forms.TextInput(
                attrs={"autocomplete": "off", "class": "reminder-editor"}
            ),
            "body_template": forms.Textarea(attrs={"rows": 10, "class": "reminder-editor"}),
            "subject_template_en": forms.TextInput(
                attrs={"autocomplete": "off", "class": "reminder-editor"}
            ),
            "body_template_en": forms.Textarea(attrs={"rows": 6, "class": "reminder-editor"}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.fields["subject_template"].required = True
        self.fields["body_template"].required = True

    def _template(self, name: str, *, subject: bool) -> str:
        value: str = (self.cleaned_data.get(name) or "").replace("\r\n", "\n")
        if value.strip():
            validate_template(value, subject=subject)
        return value

    def clean_subject_template(self) -> str:
        return self._template("subject_template", subject=True)

    def clean_body_template(self) -> str:
        return self._template("body_template", subject=False)

    def clean_subject_template_en(self) -> str:
        return self._template("subject_template_en", subject=True)

    def clean_body_template_en(self) -> str:
        return self._template("body_template_en", subject=False)


class PauseForm(forms.Form):
    """«Sospendi i solleciti»: until a date (included), and why."""

    until = forms.DateField(
        label=_("Fino al"), widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    reason = forms.CharField(label=_("Motivo"), max_length=200, required=False)

    def clean_until(self) -> datetime.date:
        until: datetime.date = self.cleaned_data["until"]
        today = timezone.localdate()
        if until < today:
            raise forms.ValidationError(_("Scegli una data da oggi in poi."))
        if until > today + datetime.timedelta(days=366):
            raise forms.ValidationError(_("Al massimo un anno."))
        return until
