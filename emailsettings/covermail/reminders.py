"""What a payment reminder ("sollecito") says: the default texts of each level, the texts a
practitioner saved (in Italian, and optionally in English), and which one a patient gets.

The texts use the cover-mail language (``${keyword}``, validated by
:mod:`emailsettings.covermail.validation` and rendered by
:mod:`emailsettings.covermail.rendering`), with the keywords reminders need:
``${giorni_ritardo}``, ``${importo_da_pagare}``, ``${scadenza}``, ``${iban}``.

The defaults are courteous at the first level and firmer after; none is a formal notice
("messa in mora"): that is the practitioner's decision and letter. To change a default: edit
``DEFAULT_TEXTS`` (the subject, then the body) and its rendering test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from emailsettings.covermail.rendering import RenderedMail, render_cover_mail
from emailsettings.models import ReminderLevel
from psicogest.models import Language

if TYPE_CHECKING:
    from psicogest.models import Invoice, Patient

# The IBAN paragraph of the defaults, only for a practitioner whose profile has one.
_IBAN_LINE = "Può effettuare il pagamento con bonifico sull'IBAN ${iban}.\n\n"
_SIGNATURE = "Cordiali saluti,\n${professionista}\n${studio}\n"

# level -> (subject, body); "{iban}" marks where the IBAN paragraph goes.
DEFAULT_TEXTS: dict[int, tuple[str, str]] = {
    1: (
        "Promemoria: fattura n. ${numero_fattura} del ${data_fattura}",
        "${saluto} ${nominativo},\n\n"
        "le scrivo per ricordarle che la fattura n. ${numero_fattura} del ${data_fattura}, "
        "con scadenza il ${scadenza}, risulta ancora da saldare per ${importo_da_pagare}.\n\n"
        "{iban}"
        "Se ha già provveduto al pagamento, la prego di non considerare questo messaggio.\n\n"
        "Per qualsiasi chiarimento può rispondere a questa email.\n\n" + _SIGNATURE,
    ),
    2: (
        "Secondo promemoria: fattura n. ${numero_fattura} scaduta il ${scadenza}",
        "${saluto} ${nominativo},\n\n"
        "nonostante il precedente promemoria, la fattura n. ${numero_fattura} del "
        "${data_fattura}, scaduta il ${scadenza} (${giorni_ritardo} giorni fa), risulta ancora "
        "non pagata. L'importo da saldare è di ${importo_da_pagare}.\n\n"
        "{iban}"
        "La invito a provvedere al pagamento nei prossimi giorni. Se il pagamento è già stato "
        "effettuato, o se ci sono difficoltà, mi scriva rispondendo a questa email.\n\n"
        + _SIGNATURE,
    ),
    3: (
        "Sollecito di pagamento: fattura n. ${numero_fattura} scaduta il ${scadenza}",
        "${saluto} ${nominativo},\n\n"
        "la fattura n. ${numero_fattura} del ${data_fattura}, scaduta il ${scadenza}, risulta "
        "ancora non pagata dopo ${giorni_ritardo} giorni, nonostante i precedenti promemoria. "
        "L'importo da saldare è di ${importo_da_pagare}.\n\n"
        "{iban}"
        "Le chiedo di provvedere al pagamento entro dieci giorni da questo messaggio, oppure di "
        "contattarmi per concordare insieme come procedere.\n\n" + _SIGNATURE,
    ),
}

# The rules a practitioner starts with: (level, enabled, days from the due date).
DEFAULT_LEVELS: tuple[tuple[int, bool, int], ...] = ((1, True, 7), (2, True, 21), (3, False, 45))


def default_texts(level: int, *, iban: bool) -> tuple[str, str]:
    """The default (subject, body) of ``level``, with the IBAN paragraph when ``iban``."""
    subject, body = DEFAULT_TEXTS[level]
    return subject, body.replace("{iban}", _IBAN_LINE if iban else "")


@dataclass(frozen=True)
class ReminderTexts:
    """The texts one patient receives for one level, and which version they are."""

    subject: str
    body: str
    language: str  # Language.IT or Language.EN
    is_default: bool


def texts_for(*, level: ReminderLevel, patient: Patient, iban: bool) -> ReminderTexts:
    """The English texts for an English-speaking patient when the practitioner wrote them,
    otherwise the Italian ones (the saved ones, or the default)."""
    if patient.language == Language.EN and level.body_template_en.strip():
        subject_en = level.subject_template_en.strip() or level.subject_template
        if subject_en.strip():
            return ReminderTexts(
                subject=subject_en,
                body=level.body_template_en,
                language=Language.EN,
                is_default=False,
            )
    default_subject, default_body = default_texts(level.level, iban=iban)
    return ReminderTexts(
        subject=level.subject_template or default_subject,
        body=level.body_template or default_body,
        language=Language.IT,
        is_default=not (level.subject_template or level.body_template),
    )


def render_reminder(*, level: ReminderLevel, invoice: Invoice) -> tuple[RenderedMail, str]:
    """The reminder of ``level`` for ``invoice`` as its patient receives it, and the
    language of the version used."""
    texts = texts_for(
        level=level, patient=invoice.patient, iban=bool(invoice.practitioner.iban.strip())
    )
    rendered = render_cover_mail(
        subject_template=texts.subject, body_template=texts.body, invoice=invoice
    )
    return rendered, texts.language
