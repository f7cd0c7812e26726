"""The English version of the cover mail: subject and body, both or neither, validated like
the Italian ones."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from emailsettings.covermail.validation import validate_template


class EnglishCoverMailForm(forms.Form):
    subject_template_en = forms.CharField(
        label=_("Oggetto (inglese)"),
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "class": "reminder-editor"}),
    )
    body_template_en = forms.CharField(
        label=_("Testo (inglese)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 12, "class": "reminder-editor"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    def clean_subject_template_en(self) -> str:
        subject: str = self.cleaned_data.get("subject_template_en") or ""
        if subject.strip():
            validate_template(subject, subject=True)
        return subject

    def clean_body_template_en(self) -> str:
        body: str = (self.cleaned_data.get("body_template_en") or "").replace("\r\n", "\n")
        if body.strip():
            validate_template(body)
        return body

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        subject = (data.get("subject_template_en") or "").strip()
        body = (data.get("body_template_en") or "").strip()
        if bool(subject) != bool(body) and not self.errors:
            raise forms.ValidationError(
                _("Scrivi sia l'oggetto sia il testo in inglese, oppure lasciali vuoti entrambi.")
            )
        return data
