"""Forms of the host pages: the patient card ("scheda paziente")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

from psicogest.fiscal import normalize_codice_fiscale
from psicogest.models import (
    INVOICE_DELIVERY_HELP,
    MAX_EXTRA_RECIPIENTS,
    InvoiceAddress,
    InvoiceDelivery,
    Language,
    Patient,
    PdfPasswordSource,
    Salutation,
)

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

    codice_fiscale = forms.CharField(
        label=_("Codice fiscale"),
        required=False,
        max_length=24,
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "characters"}
        ),
        help_text=_("Facoltativo. Serve per il PDF protetto (è la password) e per il link sicuro."),
    )
    birth_date = forms.DateField(
        label=_("Data di nascita"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        input_formats=["%Y-%m-%d", "%d/%m/%Y"],
        help_text=_("Facoltativa. Il link sicuro la chiede al paziente prima del download."),
        error_messages={"invalid": _("Scrivi la data come 31/12/1980.")},
    )
    invoice_delivery = forms.ChoiceField(
        label=_("Come riceve le fatture"),
        required=False,
        choices=[("", _("Come nelle impostazioni email")), *InvoiceDelivery.choices],
        widget=forms.RadioSelect,
    )
    pdf_password_source = forms.ChoiceField(
        label=_("Password del PDF protetto"),
        required=False,
        choices=PdfPasswordSource.choices,
        initial=PdfPasswordSource.CODICE_FISCALE,
        widget=forms.RadioSelect,
        help_text=_("La password non è mai scritta nella mail: la mail dice solo quale usare."),
    )
    pdf_password = forms.CharField(
        label=_("La tua password per questo paziente"),
        required=False,
        max_length=64,
        strip=True,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        help_text=_(
            "Solo se hai scelto una tua password: consegnala al paziente di persona. La vedi "
            "solo tu, qui."
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
        fields = (
            "first_name",
            "last_name",
            "company_name",
            "email",
            "pec",
            "invoice_address",
            "codice_fiscale",
            "birth_date",
            "invoice_delivery",
            "pdf_password_source",
            "language",
            "no_reminders",
        )
        labels = {
            "first_name": _("Nome"),
            "last_name": _("Cognome"),
            "company_name": _("Ragione sociale"),
        }
        help_texts = {
            "company_name": _("Solo per le aziende: sostituisce nome e cognome nella mail."),
            "language": _(
                "Riceve i testi in inglese che hai scritto; dove mancano, quelli in italiano."
            ),
            "no_reminders": _("Nessun sollecito di pagamento automatico a questo paziente."),
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
        "codice_fiscale",
        "birth_date",
        "invoice_delivery",
        "pdf_password_source",
        "pdf_password",
        "language",
        "no_reminders",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        # A form that does not send it (an older page, a script) keeps Italian.
        self.fields["language"].required = False
        current = self.instance.salutation if self.instance.pk else ""
        if not self.is_bound:
            if current and current not in Salutation.values:
                self.initial["salutation_choice"] = OTHER_SALUTATION
                self.initial["salutation_other"] = current
            else:
                self.initial["salutation_choice"] = current
            self.initial["extra_emails"] = "\n".join(self.instance.extra_recipients)
            if self.instance.pk and self.instance.has_pdf_password:
                self.initial["pdf_password"] = self.instance.get_pdf_password()

    @property
    def invoice_delivery_help(self) -> dict[str, str]:
        return {key: str(text) for key, text in INVOICE_DELIVERY_HELP.items()}

    def clean_codice_fiscale(self) -> str:
        return normalize_codice_fiscale(self.cleaned_data.get("codice_fiscale") or "")

    def clean_pdf_password_source(self) -> str:
        return self.cleaned_data.get("pdf_password_source") or PdfPasswordSource.CODICE_FISCALE

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

    def clean_language(self) -> str:
        return self.cleaned_data.get("language") or Language.IT

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
        self._check_protection(cleaned)
        names = (cleaned.get(name, "").strip() for name in ("first_name", "last_name"))
        if not any(names) and not (cleaned.get("company_name") or "").strip():
            raise ValidationError(
                _("Scrivi nome e cognome, oppure la ragione sociale per un'azienda."),
                code="no_name",
            )
        return cleaned

    def _check_protection(self, cleaned: dict[str, Any]) -> None:
        """What the chosen delivery needs is on the card: a password for a protected PDF, a
        date of birth or a codice fiscale for a secure link."""
        mode = cleaned.get("invoice_delivery") or ""
        source = cleaned.get("pdf_password_source") or PdfPasswordSource.CODICE_FISCALE
        if mode == InvoiceDelivery.PROTECTED_PDF:
            if source == PdfPasswordSource.CODICE_FISCALE and not cleaned.get("codice_fiscale"):
                if "codice_fiscale" not in self.errors:
                    self.add_error(
                        "codice_fiscale",
                        _("Scrivi il codice fiscale: è la password del PDF protetto."),
                    )
            if source == PdfPasswordSource.CUSTOM and not cleaned.get("pdf_password"):
                self.add_error("pdf_password", _("Scrivi la password del PDF protetto."))
        if mode == InvoiceDelivery.SECURE_LINK and not (
            cleaned.get("birth_date") or cleaned.get("codice_fiscale")
        ):
            if "birth_date" not in self.errors and "codice_fiscale" not in self.errors:
                self.add_error(
                    "birth_date",
                    _(
                        "Il link sicuro chiede la data di nascita o le ultime cifre del codice "
                        "fiscale: scrivi almeno uno dei due."
                    ),
                )
        password = cleaned.get("pdf_password") or ""
        if password and len(password) < 6:
            self.add_error("pdf_password", _("Usa almeno 6 caratteri."))

    def save(self, commit: bool = True) -> Patient:
        patient: Patient = super().save(commit=False)
        patient.salutation = self.cleaned_data["salutation"]
        patient.extra_emails = self.cleaned_data.get("extra_emails") or []
        if commit:
            patient.save()
            # Bound to the patient's id: set once the row exists.
            patient.set_pdf_password(self.cleaned_data.get("pdf_password") or "")
            patient.save(update_fields=["pdf_password_encrypted"])
        return patient
