"""The keywords of the cover-mail template language: ``${saluto}``, ``${importo}``, …

Each keyword is data: a name, the Italian label and one-line description shown in the panel
beside the editor, the warning shown in the preview when its value is empty, where the value
comes from (the patient card, the invoice, the practitioner's profile: the preview links to
the patient card when a patient value is missing), and a function of the invoice that returns
the value as plain text.

To add a keyword: append a ``Keyword`` to ``KEYWORDS`` (the name must be a lowercase Python
identifier), write its value function here, and add a rendering test. The panel, the
validation and the suggestions pick it up from this tuple.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

# The formats of the whole product: the mail says "€ 1.234,56" as the pages do.
from psicogest.formatting import format_amount, format_date

if TYPE_CHECKING:
    from psicogest.models import Invoice


@dataclass(frozen=True)
class Keyword:
    """One placeholder the practitioner may use in the subject or body."""

    name: str
    label: str | Promise
    description: str | Promise
    empty_warning: str | Promise
    source: Literal["patient", "invoice", "profile"]
    value: Callable[[Invoice], str]
    # Shown in the payment reminders' panel only (valid everywhere: a cover mail that uses
    # one gets its value too).
    reminder: bool = False

    @property
    def placeholder(self) -> str:
        return "${" + self.name + "}"


def _days_late(invoice: Invoice) -> str:
    """Whole days since the due date, in the practice's calendar; "0" before it."""
    if invoice.due_date is None:
        return ""
    return str(max(0, (timezone.localdate() - invoice.due_date).days))


def _full_name(invoice: Invoice) -> str:
    patient = invoice.patient
    return " ".join(part for part in (patient.first_name, patient.last_name) if part)


KEYWORDS: tuple[Keyword, ...] = (
    Keyword(
        name="saluto",
        label=_("Saluto"),
        description=_("Dalla scheda paziente: Gentile, Spett.le, Egregio, …"),
        empty_warning=_("questo paziente non ha un saluto impostato"),
        source="patient",
        value=lambda invoice: invoice.patient.salutation,
    ),
    Keyword(
        name="nome",
        label=_("Nome"),
        description=_("Dalla scheda paziente: il nome."),
        empty_warning=_("questo paziente non ha un nome impostato"),
        source="patient",
        value=lambda invoice: invoice.patient.first_name,
    ),
    Keyword(
        name="cognome",
        label=_("Cognome"),
        description=_("Dalla scheda paziente: il cognome."),
        empty_warning=_("questo paziente non ha un cognome impostato"),
        source="patient",
        value=lambda invoice: invoice.patient.last_name,
    ),
    Keyword(
        name="nominativo",
        label=_("Nominativo"),
        description=_(
            "Dalla scheda paziente: nome e cognome, oppure la ragione sociale per le aziende."
        ),
        empty_warning=_("questo paziente non ha né nome e cognome né ragione sociale"),
        source="patient",
        value=lambda invoice: invoice.patient.company_name or _full_name(invoice),
    ),
    Keyword(
        name="numero_fattura",
        label=_("Numero fattura"),
        description=_("Dalla fattura: il numero, ad esempio 12/2026."),
        empty_warning=_("questa fattura non ha un numero"),
        source="invoice",
        value=lambda invoice: invoice.number,
    ),
    Keyword(
        name="data_fattura",
        label=_("Data fattura"),
        description=_("Dalla fattura: la data di emissione (gg/mm/aaaa)."),
        empty_warning=_("questa fattura non ha una data"),
        source="invoice",
        value=lambda invoice: format_date(invoice.issue_date),
    ),
    Keyword(
        name="scadenza",
        label=_("Scadenza"),
        description=_("Dalla fattura: la data di scadenza del pagamento (gg/mm/aaaa)."),
        empty_warning=_("questa fattura non ha una data di scadenza"),
        source="invoice",
        value=lambda invoice: format_date(invoice.due_date),
    ),
    Keyword(
        name="importo",
        label=_("Importo"),
        description=_("Dalla fattura: il totale, ad esempio € 1.234,56."),
        empty_warning=_("questa fattura non ha un importo"),
        source="invoice",
        value=lambda invoice: format_amount(invoice.total),
    ),
    Keyword(
        name="professionista",
        label=_("Professionista"),
        description=_("Dal tuo profilo: titolo, nome e cognome (Dott.ssa Maria Rossi)."),
        empty_warning=_("nel tuo profilo mancano nome e cognome"),
        source="profile",
        value=lambda invoice: invoice.practitioner.display_name,
    ),
    Keyword(
        name="studio",
        label=_("Studio"),
        description=_("Dal tuo profilo: il nome dello studio."),
        empty_warning=_("nel tuo profilo manca il nome dello studio"),
        source="profile",
        value=lambda invoice: invoice.practitioner.practice_name,
    ),
    Keyword(
        name="giorni_ritardo",
        label=_("Giorni di ritardo"),
        description=_("Per i solleciti: i giorni passati dalla scadenza (0 se non è scaduta)."),
        empty_warning=_("questa fattura non ha una data di scadenza"),
        source="invoice",
        value=_days_late,
        reminder=True,
    ),
    Keyword(
        name="importo_da_pagare",
        label=_("Importo da pagare"),
        description=_("Per i solleciti: quanto resta da pagare, tolti gli acconti ricevuti."),
        empty_warning=_("questa fattura non ha un importo"),
        source="invoice",
        value=lambda invoice: format_amount(invoice.amount_due),
        reminder=True,
    ),
    Keyword(
        name="iban",
        label=_("IBAN"),
        description=_("Dal tuo profilo: l'IBAN su cui ricevi i pagamenti."),
        empty_warning=_("nel tuo profilo manca l'IBAN"),
        source="profile",
        value=lambda invoice: invoice.practitioner.iban,
        reminder=True,
    ),
)

# The cover mail's panel: the keywords that make sense for an invoice just issued.
COVER_MAIL_KEYWORDS: tuple[Keyword, ...] = tuple(k for k in KEYWORDS if not k.reminder)

KEYWORDS_BY_NAME: dict[str, Keyword] = {keyword.name: keyword for keyword in KEYWORDS}

# Names people type by habit (English field names, Django-like names), mapped to the keyword
# they most likely meant; used only to improve "forse intendevi …?" suggestions.
ALIASES: dict[str, str] = {
    "salutation": "saluto",
    "saluti": "saluto",
    "name": "nome",
    "first_name": "nome",
    "firstname": "nome",
    "last_name": "cognome",
    "lastname": "cognome",
    "surname": "cognome",
    "full_name": "nominativo",
    "display_name": "nominativo",
    "ragione_sociale": "nominativo",
    "azienda": "nominativo",
    "paziente": "nominativo",
    "cliente": "nominativo",
    "number": "numero_fattura",
    "numero": "numero_fattura",
    "fattura": "numero_fattura",
    "date": "data_fattura",
    "data": "data_fattura",
    "issue_date": "data_fattura",
    "due_date": "scadenza",
    "total": "importo",
    "totale": "importo",
    "amount": "importo",
    "dottore": "professionista",
    "dottoressa": "professionista",
    "practice_name": "studio",
    "ritardo": "giorni_ritardo",
    "giorni": "giorni_ritardo",
    "days_late": "giorni_ritardo",
    "residuo": "importo_da_pagare",
    "da_pagare": "importo_da_pagare",
    "amount_due": "importo_da_pagare",
    "conto": "iban",
    "bank": "iban",
}
