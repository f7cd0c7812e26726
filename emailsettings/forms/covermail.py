"""The cover-mail editor form: subject and body templates, validated by ``covermail.validation``."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from emailsettings.covermail.validation import validate_template


class CoverMailForm(forms.Form):
    """Subject and body of the cover mail. Lengths, line rules and keywords are checked by
    ``validation.validate_template`` so the messages are the same everywhere: the length
    first, so an oversized post gets one error and no pattern runs over it."""

    subject_template = forms.CharField(
        label=_("Oggetto"),
        widget=forms.TextInput(attrs={"autocomplete": "off", "class": "covermail-editor"}),
    )
    body_template = forms.CharField(
        label=_("Testo"),
        widget=forms.Textarea(attrs={"rows": 14, "class": "covermail-editor"}),
    )

    def clean_subject_template(self) -> str:
        subject: str = self.cleaned_data["subject_template"]
        validate_template(subject, subject=True)
        return subject

    def clean_body_template(self) -> str:
        body: str = self.cleaned_data["body_template"].replace("\r\n", "\n")
        validate_template(body)
        return body
