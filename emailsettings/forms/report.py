"""The report's filter form: it reads the query string (bookmarkable, back button works)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from emailsettings.models import Channel, DeliveryStatus
from emailsettings.report import DEFAULT_PAGE_SIZE, PAGE_SIZES, Period, ReportFilters


class DeliveryFilterForm(forms.Form):
    status = forms.MultipleChoiceField(
        label=_("Stato"),
        choices=DeliveryStatus.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    channel = forms.ChoiceField(
        label=_("Canale"), choices=[("", _("Tutti"))] + list(Channel.choices), required=False
    )
    kind = forms.ChoiceField(
        label=_("Tipo"),
        choices=[
            ("", _("Tutti")),
            ("invoice", _("Fatture")),
            ("reminder", _("Solleciti")),
            ("1", _("Sollecito 1")),
            ("2", _("Sollecito 2")),
            ("3", _("Sollecito 3")),
        ],
        required=False,
    )
    period = forms.ChoiceField(label=_("Periodo"), choices=Period.CHOICES, required=False)
    # Date inputs exchange ISO dates whatever the active language's format.
    date_from = forms.DateField(
        label=_("Dal"),
        required=False,
        input_formats=["%Y-%m-%d", "%d/%m/%Y"],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    date_to = forms.DateField(
        label=_("Al"),
        required=False,
        input_formats=["%Y-%m-%d", "%d/%m/%Y"],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    q = forms.CharField(
        label=_("Cerca"),
        required=False,
        max_length=100,
        strip=True,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": _("Destinatario, paziente o n. fattura")}
        ),
    )
    per_page = forms.TypedChoiceField(
        label=_("Righe per pagina"),
        choices=[(size, str(size)) for size in PAGE_SIZES],
        coerce=int,
        required=False,
        empty_value=None,
    )

    def __init__(self, data: Any = None, *args: Any, **kwargs: Any) -> None:
        if data is not None and not data.get("period"):
            # Without a period in the URL the default applies, and the select must show it
            # (or the next submit would silently switch to the first option).
            data = data.copy()
            data["period"] = (
                Period.CUSTOM if data.get("date_from") or data.get("date_to") else Period.DEFAULT
            )
        super().__init__(data, *args, **kwargs)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", _("La data finale viene prima di quella iniziale."))
        return data

    def filters(self) -> ReportFilters:
        """The valid part of what was asked; an invalid field falls back to its default."""
        if not hasattr(self, "cleaned_data"):
            self.is_valid()
        data = self.cleaned_data
        period = data.get("period") or Period.DEFAULT
        custom = period == Period.CUSTOM and "date_to" not in self.errors
        return ReportFilters(
            statuses=tuple(data.get("status") or ()),
            channel=data.get("channel") or "",
            period=period,
            date_from=data.get("date_from") if custom else None,
            date_to=data.get("date_to") if custom else None,
            q=data.get("q") or "",
            kind=data.get("kind") or "",
        )

    def page_size(self) -> int:
        if not hasattr(self, "cleaned_data"):
            self.is_valid()
        return int(self.cleaned_data.get("per_page") or DEFAULT_PAGE_SIZE)
