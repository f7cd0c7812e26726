"""The payment reminders' forms: the rules, one form per level (its texts validated like the
cover mail's), and the pause of one invoice's reminders."""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from emailsettings.covermail.rendering import validate_template
from emailsettings.models import ReminderLevel, ReminderRules


class ReminderRulesForm(forms.ModelForm):
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
