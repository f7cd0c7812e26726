"""Which language version of the cover mail a patient receives.

Italian is the default and always exists (the practitioner's text or the default one); a
patient whose card says English (``Patient.language``) receives the English version when the
practitioner wrote one (``EmailSettings.subject_template_en``/``body_template_en``), otherwise
the Italian. Payment reminders follow the same rule per level (``covermail.reminders``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from emailsettings.covermail.reminders import texts_for
from emailsettings.covermail.rendering import cover_mail_templates_for
from emailsettings.models import EmailSettings, ReminderLevel
from psicogest.models import Language

if TYPE_CHECKING:
    from psicogest.models import Patient, Practitioner


@dataclass(frozen=True)
class Texts:
    subject: str
    body: str
    language: str


def english_cover_mail(practitioner: Practitioner) -> tuple[str, str]:
    """The practitioner's English (subject, body), ("", "") when none."""
    row = (
        EmailSettings.objects.filter(practitioner=practitioner)
        .values_list("subject_template_en", "body_template_en")
        .first()
    )
    return row or ("", "")


class PracticeTexts:
    """A practitioner's cover texts, each language read once (on first use) for a whole
    batch of invoices instead of once an invoice."""

    def __init__(self, practitioner: Practitioner) -> None:
        self.practitioner = practitioner

    @cached_property
    def italian(self) -> tuple[str, str]:
        return cover_mail_templates_for(self.practitioner)

    @cached_property
    def english(self) -> tuple[str, str]:
        return english_cover_mail(self.practitioner)


def cover_mail_texts(
    *, practitioner: Practitioner, patient: Patient, practice: PracticeTexts | None = None
) -> Texts:
    """The cover mail ``patient`` receives: English when their card says so and an English
    text exists, else Italian. ``practice``: the texts already read for this batch."""
    practice = practice or PracticeTexts(practitioner)
    if patient.language == Language.EN:
        subject, body = practice.english
        if subject.strip() and body.strip():
            return Texts(subject=subject, body=body, language=Language.EN)
    subject, body = practice.italian
    return Texts(subject=subject, body=body, language=Language.IT)


def mail_language(*, practitioner: Practitioner, patient: Patient, reminder_level: int = 0) -> str:
    """The language a mail to ``patient`` is written in (its invoice cover mail, or the
    payment reminder of ``reminder_level``): what the product adds to it (the protection
    notice) follows it."""
    if patient.language != Language.EN:
        return Language.IT
    if reminder_level:
        level = ReminderLevel.objects.filter(
            rules__practitioner=practitioner, level=reminder_level
        ).first()
        if level is None:
            return Language.IT
        return texts_for(level=level, patient=patient, iban=False).language
    return cover_mail_texts(practitioner=practitioner, patient=patient).language
