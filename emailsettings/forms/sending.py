"""Forms for sending invoices: which invoices to send (the list's checkboxes, the confirm
page's hidden fields) and which deliveries the progress page follows.

Both carry only ids; the views resolve them through ``owned_by(request.user)``.
"""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from emailsettings.forms.ids import parse_id
from emailsettings.outbox.schedule import MAX_DAYS_AHEAD

# One confirmation covers at most this many invoices: a month's batch with room to spare,
# while the page and the progress URL stay small.
MAX_BATCH_SIZE = 500


class IdListWidget(forms.MultipleHiddenInput):
    """Reads repeated parameters (``?fattura=1&fattura=2``) and comma-separated values."""

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[str]:
        values = data.getlist(name) if hasattr(data, "getlist") else data.get(name) or []
        if isinstance(values, str):
            values = [values]
        return [part for value in values for part in str(value).split(",") if part.strip()]


class IdListField(forms.Field):
    """A non-empty list of distinct positive integer ids, in the order given."""

    widget = IdListWidget
    default_error_messages = {
        "invalid": _("Selezione non valida."),
        "too_many": ngettext_lazy(
            "Puoi inviare al massimo %(max)d fattura alla volta.",
            "Puoi inviare al massimo %(max)d fatture alla volta.",
            "max",
        ),
    }

    def __init__(self, *, max_count: int = MAX_BATCH_SIZE, **kwargs: Any) -> None:
        self.max_count = max_count
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> list[int]:
        if not value:
            return []
        ids: list[int] = []
        for item in value:
            number = parse_id(str(item).strip())
            if number is None:
                raise ValidationError(self.error_messages["invalid"], code="invalid")
            if number not in ids:
                ids.append(number)
        if not ids:
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        if len(ids) > self.max_count:
            raise ValidationError(
                self.error_messages["too_many"], code="too_many", params={"max": self.max_count}
            )
        return ids


class InvoiceSelectionForm(forms.Form):
    """The invoices chosen for sending: GET from the list, POST from the confirmation."""

    fattura = IdListField(
        error_messages={"required": _("Seleziona almeno una fattura da inviare.")},
    )


class DeliveryBatchForm(forms.Form):
    """The deliveries created by one send, followed by the progress page."""

    invii = IdListField(
        max_count=MAX_BATCH_SIZE,
        error_messages={"required": _("Nessun invio da seguire.")},
    )


class LocalDateTimeField(forms.DateTimeField):
    """A local date and time, left naive: whether the clocks repeat or skip that hour (the
    autumn and spring changes) is the form's question, not a parse error."""

    def to_python(self, value: Any) -> datetime.datetime | None:  # type: ignore[override]
        if value in self.empty_values:
            return None
        if isinstance(value, datetime.datetime):
            return timezone.make_naive(value) if timezone.is_aware(value) else value
        for fmt in self.input_formats:
            try:
                return datetime.datetime.strptime(str(value).strip(), fmt)
            except (TypeError, ValueError):
                continue
        raise ValidationError(self.error_messages["invalid"], code="invalid")


# The two occurrences of an hour the clocks repeat.
FIRST, SECOND = "prima", "seconda"


def _exists(moment: datetime.datetime) -> bool:
    """Whether the wall time of ``moment`` (aware) happens at all: in the hour the clocks skip
    it comes back as another time."""
    back = moment.astimezone(datetime.UTC).astimezone(moment.tzinfo)
    return back.replace(tzinfo=None, fold=0) == moment.replace(tzinfo=None, fold=0)


class ScheduleForm(forms.Form):
    """When the confirmed invoices leave: now, or at a date and time ("Invia il …")."""

    NOW = "ora"
    LATER = "programma"

    quando = forms.ChoiceField(
        label=_("Quando"),
        # Missing (an older page, a script): at once.
        required=False,
        choices=[(NOW, _("Invia subito")), (LATER, _("Invia il…"))],
        initial=NOW,
        widget=forms.RadioSelect,
        error_messages={"invalid_choice": _("Scegli se inviare subito o a una data.")},
    )
    invia_il = LocalDateTimeField(
        label=_("Data e ora di invio"),
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%d/%m/%Y %H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        error_messages={
            "invalid": _("Scrivi data e ora come 25/12/2026 09:30."),
        },
    )
    # Only asked when the chosen time happens twice (the night the clocks go back).
    ora_ripetuta = forms.ChoiceField(
        label=_("Quale delle due?"),
        required=False,
        choices=[
            (FIRST, _("la prima, ancora con l'ora legale")),
            (SECOND, _("la seconda, già con l'ora solare")),
        ],
        widget=forms.RadioSelect,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        now = timezone.localtime()
        self.fields["invia_il"].widget.attrs["min"] = now.strftime("%Y-%m-%dT%H:%M")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        typed = (self.data.get("invia_il") or "").strip()
        if cleaned.get("quando") == self.NOW and typed:
            # Never send now what was meant for later (the page's script picks the option
            # as soon as a date is typed; without it, ask).
            self.add_error(
                "invia_il",
                _("Hai scritto una data: scegli «Invia il…» oppure cancella la data."),
            )
            return cleaned
        if cleaned.get("quando") != self.LATER:
            cleaned["send_at"] = None
            return cleaned
        when = cleaned.get("invia_il")
        if when is None:
            if "invia_il" not in self.errors:
                self.add_error("invia_il", _("Scegli la data e l'ora di invio."))
            return cleaned
        when = self._aware(when, cleaned.get("ora_ripetuta") or "")
        if when is None:
            return cleaned
        now = timezone.now()
        if when <= now:
            self.add_error("invia_il", _("Scegli una data e un'ora future."))
        elif when > now + datetime.timedelta(days=MAX_DAYS_AHEAD):
            self.add_error(
                "invia_il",
                _("Puoi programmare l'invio al massimo %(days)d giorni avanti.")
                % {"days": MAX_DAYS_AHEAD},
            )
        cleaned["send_at"] = when
        return cleaned

    @property
    def repeats_hour(self) -> bool:
        """Whether the page should ask which of the two (it asked, or has to)."""
        return "ora_ripetuta" in self.errors or bool(self.data.get("ora_ripetuta"))

    def _aware(self, when: datetime.datetime, which: str) -> datetime.datetime | None:
        """``when`` in the practice's time zone; None (with the error) when it is an hour
        the clocks skip, or one they repeat and the practitioner has not said which."""
        zone = timezone.get_current_timezone()
        first = when.replace(tzinfo=zone, fold=0)
        second = when.replace(tzinfo=zone, fold=1)
        values = {"time": when.strftime("%H:%M"), "date": when.strftime("%d/%m/%Y")}
        if not _exists(first):
            self.add_error(
                "invia_il",
                _(
                    "Il %(date)s le %(time)s non esistono (si passa all'ora legale): scegli "
                    "un'ora dalle 03:00."
                )
                % values,
            )
            return None
        if first.utcoffset() != second.utcoffset():
            if which not in (FIRST, SECOND):
                self.add_error(
                    "ora_ripetuta",
                    _(
                        "Il %(date)s le %(time)s vengono due volte (si torna all'ora solare): "
                        "scegli quale."
                    )
                    % values,
                )
                return None
            return first if which == FIRST else second
        return first
