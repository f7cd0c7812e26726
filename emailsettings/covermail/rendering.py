"""Rendering a cover-mail template for one invoice, and the practitioner's stored templates.

Substitution uses ``validation.PLACEHOLDER_PATTERN`` (``string.Template``'s pattern) against
the whitelist in ``keywords.KEYWORDS`` only: the practitioner's text never reaches the Django
template engine or ``str.format``, so it cannot read object attributes or settings. Checking a
template (its errors and suggestions) lives in ``validation``.

Public API (relied on by the sending pipeline):

* ``render_cover_mail(*, subject_template, body_template, invoice) -> RenderedMail``;
* ``text_to_html(text)`` and ``HTML_PART_STYLES``, the HTML part and its styles;
* ``care_words(text)``, the words that name the kind of care;
* ``cover_mail_templates_for(practitioner) -> (subject, body)``, ``DEFAULT_SUBJECT``,
  ``DEFAULT_BODY``;
* ``save_cover_mail(...)`` and ``restore_default_cover_mail(...)`` for the settings page.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from emailsettings.covermail.keywords import KEYWORDS
from emailsettings.covermail.validation import (
    BODY_CONTROL_CHARACTERS,
    BODY_MAX_LENGTH,
    CONTROL_CHARACTERS,
    MAX_REPORTED_PROBLEMS,
    PLACEHOLDER_PATTERN,
    SUBJECT_MAX_LENGTH,
    template_errors,
)
from emailsettings.models import EmailSettings
from psicogest.formatting import format_number

if TYPE_CHECKING:
    from psicogest.models import Invoice, Practitioner

DEFAULT_SUBJECT = "Fattura n. ${numero_fattura} del ${data_fattura}"
DEFAULT_BODY = """\
${saluto} ${nominativo},

le invio la fattura n. ${numero_fattura} del ${data_fattura} di ${importo}.
Il pagamento è da effettuare entro il ${scadenza}.

Per qualsiasi chiarimento può rispondere a questa email.

Cordiali saluti,
${professionista}
${studio}
"""


@dataclass
class RenderedMail:
    """A cover mail rendered for one invoice: what the patient receives."""

    subject: str
    text: str
    html: str
    warnings: list[str] = field(default_factory=list)
    # The warning (one of ``warnings``) about keywords left as written, "" when none: the
    # editor already shows them as errors, so the preview can leave it out.
    unknown_warning: str = ""


# --- rendering -----------------------------------------------------------------------------


def _one_line(value: str) -> str:
    """A value with every control and line-separator character turned into one space."""
    return re.sub(r"\s+", " ", CONTROL_CHARACTERS.sub(" ", value)).strip()


# Marks where an empty value was substituted, so the space around it can be dropped
# ("${saluto} ${nominativo}" → "Mario Rossi", not " Mario Rossi"). Templates and values
# never contain NUL: control characters are removed from both before substitution.
_EMPTY = "\x00"


def _substitute(template: str, values: dict[str, str], used: set[str]) -> str:
    """Fill known keywords; anything else (unknown, malformed) stays as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped") is not None:
            return "$"
        name = match.group("named") or match.group("braced")
        if name is not None and name in values:
            used.add(name)
            return values[name] or _EMPTY
        return match.group(0)

    return PLACEHOLDER_PATTERN.sub(replace, template)


def _close_gaps(text: str) -> str:
    """Drop the marks of empty values with the one space that would be left dangling."""
    text = re.sub(r"(?m)^(?:\x00[ \t]*)+", "", text)
    text = re.sub(r"[ \t]+\x00+(?=[ \t,.;:!?)]|$)", "", text, flags=re.MULTILINE)
    return text.replace(_EMPTY, "")


# The HTML part's look. Inline on the containers, because mail clients drop or rewrite
# <style> (Gmail in some views), and in one <style> rule for the paragraphs, which Outlook's
# Word engine needs (it does not let <p> inherit a table cell's font): one column of at most
# 600 px in a layout table (what Outlook for Windows lays out reliably), a sans-serif system
# font at 16 px with 1.5 line height, dark text on white (contrast above 12:1). No remote
# images, fonts or links.
_FONT = "font-family:Arial,Helvetica,sans-serif;font-size:16px;line-height:1.5;color:#1d2433;"
_STYLE_SHEET = f"p{{margin:0 0 16px 0;{_FONT}}}"
_STYLE_BODY = "margin:0;padding:0;background-color:#ffffff;"
_STYLE_OUTER = "border-collapse:collapse;background-color:#ffffff;"
_STYLE_OUTER_CELL = "padding:24px 16px;"
_STYLE_COLUMN = "border-collapse:collapse;width:100%;max-width:600px;"
# Every style of the HTML part (the <style> rule and the style attributes): the settings page
# allows exactly these, by hash, in its Content-Security-Policy, so that the preview shows the
# mail as it is sent.
HTML_PART_STYLES = (
    _STYLE_SHEET,
    _FONT,
    _STYLE_BODY,
    _STYLE_OUTER,
    _STYLE_OUTER_CELL,
    _STYLE_COLUMN,
)


def text_to_html(text: str) -> str:
    """A plain-text body as a small, accessible HTML document: blank lines separate
    paragraphs, single line breaks become ``<br>``, and all text is escaped."""
    normalized = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", normalized) if p.strip()]
    body = "\n".join(
        "<p>" + "<br>\n".join(html.escape(line) for line in paragraph.split("\n")) + "</p>"
        for paragraph in paragraphs
    )
    return (
        '<!DOCTYPE html>\n<html lang="it" dir="ltr">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light">\n'
        '<meta name="supported-color-schemes" content="light">\n'
        f"<style>{_STYLE_SHEET}</style>\n"
        "</head>\n"
        f'<body style="{_STYLE_BODY}">\n'
        f'<div role="article" aria-roledescription="email" lang="it" dir="ltr" style="{_FONT}">\n'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0"'
        f' style="{_STYLE_OUTER}">\n'
        f'<tr><td align="left" style="{_STYLE_OUTER_CELL}">\n'
        '<table role="presentation" width="600" cellpadding="0" cellspacing="0" border="0"'
        f' style="{_STYLE_COLUMN}">\n'
        f'<tr><td style="{_FONT}">\n{body}\n</td></tr>\n'
        "</table>\n</td></tr>\n</table>\n</div>\n</body>\n</html>\n"
    )


def _name_list(names: list[str]) -> str:
    """ "${a}, ${b}" for the first ``MAX_REPORTED_PROBLEMS`` names, then how many more."""
    shown = ", ".join("${" + name + "}" for name in names[:MAX_REPORTED_PROBLEMS])
    more = len(names) - MAX_REPORTED_PROBLEMS
    if more <= 0:
        return shown
    return (
        shown
        + " "
        + ngettext("e un'altra", "e altre %(count)s", more) % {"count": format_number(more)}
    )


# Words that say what kind of care the invoice is for: health data once they reach a mail
# (Cass. n. 2367/2018 for "consulenza psichiatrica"). Word beginnings, case-insensitive.
_CARE_WORDS = re.compile(
    r"\b(?:psicoterap\w*|psicolog\w*|psichiatr\w*|psicodiagnos\w*|psicanal\w*"
    r"|psicoanal\w*|neuropsic\w*|sedut[ae]|terapi[ae]\w*|terapeutic\w*|consulenz[ae]"
    r"|colloqu\w*|counsel\w*|diagnos\w*|trattament\w*|riabilitazion\w*|emdr|ipnos\w*"
    r"|sostegno psicologico|supporto psicologico|prestazion[ei] sanitari[ae])\b",
    re.IGNORECASE,
)
_KEYWORD_SPANS = re.compile(r"\$\{[^}\n]{0,64}\}|\$[A-Za-z_][A-Za-z0-9_]{0,64}")


def care_words(text: str) -> list[str]:
    """The words of ``text`` (keywords left out: ``${studio}`` is not the practitioner's
    wording) that name the kind of care, each once, in lower case."""
    found: list[str] = []
    for match in _CARE_WORDS.finditer(
        _KEYWORD_SPANS.sub(" ", text[: BODY_MAX_LENGTH + SUBJECT_MAX_LENGTH + 1])
    ):
        word = match.group(0).lower()
        if word not in found:
            found.append(word)
    return found


def render_cover_mail(
    *, subject_template: str, body_template: str, invoice: Invoice
) -> RenderedMail:
    """Render the subject, the text part and the HTML part of the cover mail for one invoice.

    Never raises on a bad template: unknown keywords are left as written (templates are
    validated when saved). The subject is one line of at most ``SUBJECT_MAX_LENGTH``
    characters; ``warnings`` says, in Italian, which used keywords are empty for this
    invoice and what was changed.
    """
    raw_values = {keyword.name: str(keyword.value(invoice) or "") for keyword in KEYWORDS}
    values = {name: _one_line(value) for name, value in raw_values.items()}
    used: set[str] = set()

    subject = _one_line(_close_gaps(_substitute(_one_line(subject_template), values, used)))
    body = BODY_CONTROL_CHARACTERS.sub("", body_template)
    text = _close_gaps(_substitute(body.replace("\r\n", "\n").replace("\r", "\n"), values, used))

    warnings = [
        str(keyword.empty_warning)
        for keyword in KEYWORDS
        if keyword.name in used and not values[keyword.name]
    ]
    if care := care_words(subject_template + "\n" + body_template):
        warnings.append(
            _(
                "l'oggetto o il testo nomina il tipo di prestazione (%(words)s): chi vede la "
                "mail capisce che il paziente è in cura. Scrivi solo «fattura», numero e data."
            )
            % {"words": ", ".join(f"«{word}»" for word in care)}
        )
    if len(subject) > SUBJECT_MAX_LENGTH:
        subject = subject[: SUBJECT_MAX_LENGTH - 1].rstrip() + "…"
        warnings.append(
            _("l'oggetto supera i %(max)d caratteri ed è stato accorciato")
            % {"max": SUBJECT_MAX_LENGTH}
        )
    unknown = sorted(
        {
            match.group("named") or match.group("braced")
            for match in PLACEHOLDER_PATTERN.finditer(subject_template + "\n" + body_template)
            if (match.group("named") or match.group("braced"))
            and (match.group("named") or match.group("braced")) not in values
        }
    )
    unknown_warning = ""
    if unknown:
        unknown_warning = ngettext(
            "la parola chiave %(names)s non esiste ed è rimasta com'è",
            "le parole chiave %(names)s non esistono e sono rimaste com'erano",
            len(unknown),
        ) % {"names": _name_list(unknown)}
        warnings.append(unknown_warning)
    return RenderedMail(
        subject=subject,
        text=text,
        html=text_to_html(text),
        warnings=warnings,
        unknown_warning=unknown_warning,
    )


# --- the stored templates ------------------------------------------------------------------


def cover_mail_templates_for(practitioner: Practitioner) -> tuple[str, str]:
    """The practitioner's saved (subject, body), each falling back to the default."""
    row = (
        EmailSettings.objects.filter(practitioner=practitioner)
        .values_list("subject_template", "body_template")
        .first()
    )
    subject, body = row or ("", "")
    return (subject or DEFAULT_SUBJECT, body or DEFAULT_BODY)


def save_cover_mail(
    *, practitioner: Practitioner, subject_template: str, body_template: str
) -> EmailSettings:
    """Validate and store the practitioner's templates; raises ``ValidationError``."""
    errors: dict[str, list[ValidationError]] = {}
    if subject_errors := template_errors(subject_template, subject=True):
        errors["subject_template"] = subject_errors
    if body_errors := template_errors(body_template):
        errors["body_template"] = body_errors
    if errors:
        raise ValidationError(errors)
    settings_row, _created = EmailSettings.objects.get_or_create(practitioner=practitioner)
    settings_row.subject_template = subject_template
    settings_row.body_template = body_template
    settings_row.save(update_fields=["subject_template", "body_template", "updated_at"])
    return settings_row


def restore_default_cover_mail(*, practitioner: Practitioner) -> EmailSettings:
    """Go back to the default texts (stored as empty: "use the default")."""
    settings_row, _created = EmailSettings.objects.get_or_create(practitioner=practitioner)
    settings_row.subject_template = ""
    settings_row.body_template = ""
    settings_row.save(update_fields=["subject_template", "body_template", "updated_at"])
    return settings_row
