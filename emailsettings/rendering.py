"""The cover-mail template language: validation, rendering and the stored templates.

Syntax: ``${keyword}`` or ``$keyword``, ``$$`` for a literal ``$``. Substitution is done with
``string.Template``'s pattern against the whitelist in ``keywords.KEYWORDS`` only: the
practitioner's text never reaches the Django template engine or ``str.format``, so it
cannot read object attributes or settings.

Public API (relied on by the sending pipeline):

* ``validate_template(text, *, subject=False)`` raises ``ValidationError``;
* ``render_cover_mail(*, subject_template, body_template, invoice) -> RenderedMail``;
* ``cover_mail_templates_for(practitioner) -> (subject, body)``, ``DEFAULT_SUBJECT``,
  ``DEFAULT_BODY``;
* ``save_cover_mail(...)`` and ``restore_default_cover_mail(...)`` for the settings page.
"""

from __future__ import annotations

import difflib
import html
import re
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from psicogest.formatting import format_number

from .keywords import ALIASES, KEYWORDS, KEYWORDS_BY_NAME
from .models import EmailSettings

if TYPE_CHECKING:
    from psicogest.models import Invoice, Practitioner

SUBJECT_MAX_LENGTH = 200
BODY_MAX_LENGTH = 20_000

DEFAULT_SUBJECT = "Fattura n. ${numero_fattura} del ${data_fattura}"
DEFAULT_BODY = """\
${saluto} ${nominativo},

in allegato la fattura n. ${numero_fattura} del ${data_fattura} di ${importo}.
Il pagamento è da effettuare entro il ${scadenza}.

Per qualsiasi chiarimento può rispondere a questa email.

Cordiali saluti,
${professionista}
${studio}
"""

# Characters that end a line somewhere (str.splitlines, RFC 5322 headers) or are otherwise
# control characters: none may appear in a subject, and none may reach a header from a value.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# In the body, tab and line breaks are text; other control characters are not.
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
# Django/Jinja syntax, which this language does not have: typed by habit, never meant
# literally in a cover mail.
_FOREIGN_SYNTAX = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_FORMAT_FIELD = re.compile(r"(?<![{$])\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}(?!\})")


class _CoverTemplate(string.Template):
    """``string.Template`` syntax; only its pattern is used, substitution is done here."""


_PATTERN = _CoverTemplate.pattern


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


# --- validation ----------------------------------------------------------------------------


def keyword_list() -> str:
    return ", ".join(keyword.placeholder for keyword in KEYWORDS)


def suggest_keyword(name: str) -> str | None:
    """The valid keyword closest to what was typed, or None when nothing is close."""
    lowered = name.strip().lower()
    if lowered in KEYWORDS_BY_NAME:
        return lowered
    if lowered in ALIASES:
        return ALIASES[lowered]
    for part in reversed(re.split(r"[.\s]+", lowered)):
        if part in KEYWORDS_BY_NAME:
            return part
        if part in ALIASES:
            return ALIASES[part]
    candidates = list(KEYWORDS_BY_NAME) + list(ALIASES)
    matches = difflib.get_close_matches(lowered, candidates, n=1, cutoff=0.6)
    if matches:
        return ALIASES.get(matches[0], matches[0])
    # "$nomeX" is read as the keyword "nomeX": suggest the keyword it starts with.
    for keyword in sorted(KEYWORDS_BY_NAME, key=len, reverse=True):
        if lowered.startswith(keyword):
            return keyword
    return None


def _with_suggestion(message: str, name: str) -> str:
    suggestion = suggest_keyword(name)
    if suggestion:
        return message + " " + _("Forse intendevi ${%(keyword)s}?") % {"keyword": suggestion}
    return message


def _snippet(text: str, start: int, length: int = 24) -> str:
    piece = text[start : start + length].splitlines()[0] if text[start:] else ""
    return piece + ("…" if len(text) - start > len(piece) else "")


def _invalid_placeholder_error(text: str, position: int) -> ValidationError:
    rest = text[position + 1 :]
    if not rest.startswith("{"):
        return ValidationError(
            _(
                "Il simbolo $ da solo non è valido (in «%(snippet)s»): per scrivere il "
                "simbolo del dollaro usa $$, per una parola chiave ${parola_chiave}."
            )
            % {"snippet": _snippet(text, position, 12)},
            code="lone_dollar",
        )
    close = rest.find("}")
    line_end = min((i for i in (rest.find("\n"), rest.find("\r")) if i != -1), default=-1)
    if close == -1 or (line_end != -1 and line_end < close):
        inner = rest[1:line_end] if line_end != -1 else rest[1:]
        return ValidationError(
            _with_suggestion(
                _("«%(snippet)s» non è chiuso: manca la parentesi graffa «}».")
                % {"snippet": _snippet(text, position)},
                inner,
            ),
            code="malformed",
        )
    inner = rest[1:close]
    written = "${" + inner + "}"
    if not inner.strip():
        return ValidationError(
            _("«${}» è vuoto: scrivi il nome di una parola chiave tra le graffe."),
            code="empty_keyword",
        )
    if "." in inner:
        return ValidationError(
            _with_suggestion(
                _("«%(written)s» non è ammesso: le parole chiave non hanno punti né attributi.")
                % {"written": written},
                inner,
            ),
            code="dotted_keyword",
        )
    if inner.strip() in KEYWORDS_BY_NAME:
        return ValidationError(
            _("«%(written)s» contiene spazi: scrivi ${%(keyword)s}.")
            % {"written": written, "keyword": inner.strip()},
            code="malformed",
        )
    return ValidationError(
        _with_suggestion(
            _("«%(written)s» non è una parola chiave valida.") % {"written": written}, inner
        ),
        code="unknown_keyword",
    )


def template_errors(text: str, *, subject: bool = False) -> list[ValidationError]:
    """Every problem of a template, in the order they appear; empty when it is valid."""
    errors: list[ValidationError] = []
    if subject:
        if _CONTROL.search(text):
            errors.append(
                ValidationError(
                    _("L'oggetto deve stare su una sola riga, senza caratteri di controllo."),
                    code="subject_control",
                )
            )
        if len(text) > SUBJECT_MAX_LENGTH:
            errors.append(
                ValidationError(
                    _("L'oggetto può avere al massimo %(max)s caratteri (ora ne ha %(len)s).")
                    % {"max": format_number(SUBJECT_MAX_LENGTH), "len": format_number(len(text))},
                    code="subject_too_long",
                )
            )
    else:
        if _BODY_CONTROL.search(text):
            errors.append(
                ValidationError(
                    _("Il testo contiene caratteri di controllo non ammessi."),
                    code="body_control",
                )
            )
        if len(text) > BODY_MAX_LENGTH:
            errors.append(
                ValidationError(
                    _("Il testo può avere al massimo %(max)s caratteri (ora ne ha %(len)s).")
                    % {"max": format_number(BODY_MAX_LENGTH), "len": format_number(len(text))},
                    code="body_too_long",
                )
            )

    keyword_problem = False
    seen: set[str] = set()
    for match in _PATTERN.finditer(text):
        name = match.group("named") or match.group("braced")
        if match.group("escaped") is not None:
            continue
        if name is not None:
            if name in KEYWORDS_BY_NAME or name in seen:
                continue
            seen.add(name)
            keyword_problem = True
            errors.append(
                ValidationError(
                    _with_suggestion(
                        _("«%(written)s» non è una parola chiave valida.")
                        % {"written": match.group(0)},
                        name,
                    ),
                    code="unknown_keyword",
                )
            )
            continue
        error = _invalid_placeholder_error(text, match.start("invalid") - 1)
        if str(error.message) not in seen:
            seen.add(str(error.message))
            keyword_problem = True
            errors.append(error)

    for match in _FOREIGN_SYNTAX.finditer(text):
        keyword_problem = True
        errors.append(
            ValidationError(
                _with_suggestion(
                    _(
                        "«%(written)s» non è supportato: le parole chiave si scrivono "
                        "${parola_chiave}."
                    )
                    % {"written": match.group(0)[:40]},
                    match.group(0).strip("{}% "),
                ),
                code="foreign_syntax",
            )
        )
    for match in _FORMAT_FIELD.finditer(text):
        if match.group(1) in KEYWORDS_BY_NAME:
            keyword_problem = True
            errors.append(
                ValidationError(
                    _("«%(written)s» manca del simbolo $. Forse intendevi ${%(keyword)s}?")
                    % {"written": match.group(0), "keyword": match.group(1)},
                    code="missing_dollar",
                )
            )

    if keyword_problem:
        errors.append(
            ValidationError(
                _("Parole chiave valide: %(keywords)s.") % {"keywords": keyword_list()},
                code="valid_keywords",
            )
        )
    return errors


def validate_template(text: str, *, subject: bool = False) -> None:
    """Raise ``ValidationError`` listing every problem of a subject or body template."""
    errors = template_errors(text, subject=subject)
    if errors:
        raise ValidationError(errors)


# --- rendering -----------------------------------------------------------------------------


def _one_line(value: str) -> str:
    """A value with every control and line-separator character turned into one space."""
    return re.sub(r"\s+", " ", _CONTROL.sub(" ", value)).strip()


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

    return _PATTERN.sub(replace, template)


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
    body = _BODY_CONTROL.sub("", body_template)
    text = _close_gaps(_substitute(body.replace("\r\n", "\n").replace("\r", "\n"), values, used))

    warnings = [
        str(keyword.empty_warning)
        for keyword in KEYWORDS
        if keyword.name in used and not values[keyword.name]
    ]
    if len(subject) > SUBJECT_MAX_LENGTH:
        subject = subject[: SUBJECT_MAX_LENGTH - 1].rstrip() + "…"
        warnings.append(
            _("l'oggetto supera i %(max)d caratteri ed è stato accorciato")
            % {"max": SUBJECT_MAX_LENGTH}
        )
    unknown = sorted(
        {
            match.group("named") or match.group("braced")
            for match in _PATTERN.finditer(subject_template + "\n" + body_template)
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
        ) % {"names": ", ".join("${" + name + "}" for name in unknown)}
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
