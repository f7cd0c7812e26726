"""Forms of the host pages: the patient card ("scheda paziente")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

from psicogest.models import MAX_EXTRA_RECIPIENTS, InvoiceAddress, Patient, Salutation

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise as StrOrPromise

# The salutation select's "other" entry: the text typed in ``salutation_other`` is used.
OTHER_SALUTATION = "__other__"
# What the email pipeline refuses in an address even when the email validator accepts it
# (quoted local parts, lists): better said here than at send time.
_FORBIDDEN_IN_ADDRESS = '<>",; '


def _check_address(value: str) -> str:
    address = value.strip()
    if not address:
        return ""
    if any(ord(char) < 32 or char in _FORBIDDEN_IN_ADDRESS for char in address):
        raise ValidationError(
            _("Scrivi un solo indirizzo, senza spazi né virgolette, ad es. nome@esempio.it."),
            code="invalid",
        )
    validate_email(address)
    local, _at, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def _address_field(label: StrOrPromise, help_text: StrOrPromise) -> forms.CharField:
    # A CharField, so that "one address only" is said before the generic email validator.
    return forms.CharField(
        label=label,
        help_text=help_text,
        required=False,
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )


class PatientForm(forms.ModelForm):
    """Salutation, names, email and PEC of one patient: what the cover mail and the sending
    pipeline read."""

    email = _address_field(_("Email"), _("L'indirizzo a cui partono le fatture."))
    pec = _address_field(
        _("PEC"),
        _(
            "Facoltativa. Un indirizzo PEC potrebbe rifiutare la posta ordinaria: scegli qui "
            "sotto a quale indirizzo partono le fatture."
        ),
    )
    invoice_address = forms.ChoiceField(
        label=_("Invia le fatture a"),
        # Missing from the post (an older page): the email, as before the choice existed.
        required=False,
        choices=InvoiceAddress.choices,
        initial=InvoiceAddress.EMAIL,
        widget=forms.RadioSelect,
        help_text=_("Per un paziente con email e PEC: l'indirizzo a cui partono le fatture."),
    )
    extra_emails = forms.CharField(
        label=_("Altri destinatari"),
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
        help_text=_(
            "Facoltativi, uno per riga (ad es. un genitore, chi paga la fattura): ognuno "
            "riceve la sua mail, senza vedere gli altri indirizzi."
        ),
    )

    salutation_choice = forms.ChoiceField(
        label=_("Saluto"),
        required=False,
        choices=[
            ("", _("Nessun saluto")),
            *Salutation.choices,
            (OTHER_SALUTATION, _("Altro (scrivilo qui sotto)")),
        ],
        help_text=_(
            "Apre la mail di accompagnamento, prima del nome (la parola chiave ${saluto})."
        ),
    )
    salutation_other = forms.CharField(
        label=_("Altro saluto"),
        required=False,
        max_length=40,
        help_text=_("Solo se hai scelto «Altro», ad es. Gentile Dott."),
    )

    class Meta:
        model = Patient
        fields = ("first_name", "last_name", "company_name", "email", "pec", "invoice_address")
        labels = {
            "first_name": _("Nome"),
            "last_name": _("Cognome"),
            "company_name": _("Ragione sociale"),
        }
        help_texts = {
            "company_name": _("Solo per le aziende: sostituisce nome e cognome nella mail."),
        }

    field_order = (
        "salutation_choice",
        "salutation_other",
        "first_name",
        "last_name",
        "company_name",
        "email",
        "pec",
        "invoice_address",
        "extra_emails",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        current = self.instance.salutation if self.instance.pk else ""
        if not self.is_bound:
            if current and current not in Salutation.values:
                self.initial["salutation_choice"] = OTHER_SALUTATION
                self.initial["salutation_other"] = current
            else:
                self.initial["salutation_choice"] = current
            self.initial["extra_emails"] = "\n".join(self.instance.extra_recipients)

    def clean_email(self) -> str:
        return _check_address(self.cleaned_data.get("email") or "")

    def clean_pec(self) -> str:
        return _check_address(self.cleaned_data.get("pec") or "")

    def clean_invoice_address(self) -> str:
        return self.cleaned_data.get("invoice_address") or InvoiceAddress.EMAIL

    def clean_extra_emails(self) -> list[str]:
        text = self.cleaned_data.get("extra_emails") or ""
        addresses: list[str] = []
        for line in text.replace(",", "\n").replace(";", "\n").splitlines():
            if not line.strip():
                continue
            try:
                address = _check_address(line)
            except ValidationError as err:
                raise ValidationError(
                    _("«%(address)s» non è un indirizzo valido: scrivi un indirizzo per riga."),
                    code="invalid",
                    params={"address": line.strip()[:254]},
                ) from err
            if address.lower() not in (known.lower() for known in addresses):
                addresses.append(address)
        if len(addresses) > MAX_EXTRA_RECIPIENTS:
            raise ValidationError(
                _("Puoi aggiungere al massimo %(max)d altri destinatari."),
                code="too_many",
                params={"max": MAX_EXTRA_RECIPIENTS},
            )
        return addresses

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        if cleaned.get("invoice_address") == InvoiceAddress.PEC and not cleaned.get("pec"):
            if "pec" not in self.errors:
                self.add_error(
                    "pec",
                    _("Scrivi l'indirizzo PEC, oppure scegli di inviare le fatture all'email."),
                )
        choice = cleaned.get("salutation_choice", "")
        other = (cleaned.get("salutation_other") or "").strip()
        if choice == OTHER_SALUTATION:
            if not other:
                self.add_error("salutation_other", _("Scrivi il saluto da usare."))
            cleaned["salutation"] = other
        else:
            cleaned["salutation"] = choice
        names = (cleaned.get(name, "").strip() for name in ("first_name", "last_name"))
        if not any(names) and not (cleaned.get("company_name") or "").strip():
            raise ValidationError(
                _("Scrivi nome e cognome, oppure la ragione sociale per un'azienda."),
                code="no_name",
            )
        return cleaned

    def save(self, commit: bool = True) -> Patient:
        patient: Patient = super().save(commit=False)
        patient.salutation = self.cleaned_data["salutation"]
        patient.extra_emails = self.cleaned_data.get("extra_emails") or []
        if commit:
            patient.save()
        return patient
