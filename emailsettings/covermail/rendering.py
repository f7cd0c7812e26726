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
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from emailsettings.covermail.keywords import ALIASES, KEYWORDS, KEYWORDS_BY_NAME
from emailsettings.models import EmailSettings
from psicogest.formatting import format_number

if TYPE_CHECKING:
    from psicogest.models import Invoice, Practitioner

SUBJECT_MAX_LENGTH = 200
BODY_MAX_LENGTH = 20_000
# Problems listed one by one under an editor; the rest are counted ("… e altri 12").
MAX_REPORTED_PROBLEMS = 10
# A keyword is a short identifier: what a placeholder holds beyond this is never looked at
# (no suggestion, no search for the closing brace), so each "$" costs a bounded amount.
_MAX_KEYWORD_LENGTH = 64

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

# Characters that end a line somewhere (str.splitlines, RFC 5322 headers) or are otherwise
# control characters: none may appear in a subject, and none may reach a header from a value.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# In the body, tab and line breaks are text; other control characters are not.
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
# Django/Jinja syntax ("{{ … }}", "{% … %}"), which this language does not have: typed by
# habit, never meant literally in a cover mail. Found by _foreign_syntax, a linear scan: a
# lazy ".*?" over the text is quadratic on a run of "{{" without "}}".
_FOREIGN_PAIRS = {"{{": "}}", "{%": "%}"}
# Bounded repetitions keep every pattern linear in the length of the text.
_FORMAT_FIELD = re.compile(r"(?<![{$])\{\s{0,16}([A-Za-z_][A-Za-z0-9_]{0,63})\s{0,16}\}(?!\})")


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
    if len(lowered) > _MAX_KEYWORD_LENGTH:
        return None
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
    window = text[start : start + length]
    piece = window.splitlines()[0] if window else ""
    return piece + ("…" if len(text) - start > len(piece) else "")


def _foreign_syntax(text: str) -> list[tuple[int, int]]:
    """The (start, end) of each "{{ … }}" and "{% … %}", left to right, not overlapping.

    Each search starts where the previous one ended, and an opener that never closes is not
    searched for again (no later one can close either): linear in the length of the text."""
    found: list[tuple[int, int]] = []
    next_open = {opener: text.find(opener) for opener in _FOREIGN_PAIRS}
    while True:
        waiting = [(start, opener) for opener, start in next_open.items() if start != -1]
        if not waiting:
            return found
        start, opener = min(waiting)
        close = text.find(_FOREIGN_PAIRS[opener], start + 2)
        if close == -1:
            next_open[opener] = -1
            continue
        end = close + 2
        found.append((start, end))
        for other, position in next_open.items():
            if position != -1 and position < end:
                next_open[other] = text.find(other, end)


def _placeholder_key(text: str, position: int) -> str:
    """What was written at an invalid "$" (up to the closing brace or the line end, within a
    bounded window): two placeholders written the same way are one problem."""
    window = text[position : position + _MAX_KEYWORD_LENGTH + 3]
    if not window.startswith("${"):
        return window[:12]
    close = window.find("}")
    piece = window[: close + 1] if close != -1 else window
    return piece.splitlines()[0] if piece else piece


def _invalid_placeholder_error(text: str, position: int) -> ValidationError:
    # A bounded window: a keyword is short, so what lies further never changes the message.
    rest = text[position + 1 : position + 2 + _MAX_KEYWORD_LENGTH + 1]
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


def length_error(text: str, *, subject: bool = False) -> ValidationError | None:
    """The error of a subject or body longer than its limit, else None. Checked before any
    pattern looks at the text, so an oversized post costs one ``len()``."""
    if subject and len(text) > SUBJECT_MAX_LENGTH:
        return ValidationError(
            _("L'oggetto può avere al massimo %(max)s caratteri (ora ne ha %(len)s).")
            % {"max": format_number(SUBJECT_MAX_LENGTH), "len": format_number(len(text))},
            code="subject_too_long",
        )
    if not subject and len(text) > BODY_MAX_LENGTH:
        return ValidationError(
            _("Il testo può avere al massimo %(max)s caratteri (ora ne ha %(len)s).")
            % {"max": format_number(BODY_MAX_LENGTH), "len": format_number(len(text))},
            code="body_too_long",
        )
    return None


def _unknown_keyword_error(written: str, name: str) -> ValidationError:
    return ValidationError(
        _with_suggestion(
            _("«%(written)s» non è una parola chiave valida.") % {"written": written}, name
        ),
        code="unknown_keyword",
    )


def _foreign_syntax_error(written: str, inner: str) -> ValidationError:
    return ValidationError(
        _with_suggestion(
            _("«%(written)s» non è supportato: le parole chiave si scrivono ${parola_chiave}.")
            % {"written": written},
            inner.strip("{}% "),
        ),
        code="foreign_syntax",
    )


def _missing_dollar_error(written: str, keyword: str) -> ValidationError:
    return ValidationError(
        _("«%(written)s» manca del simbolo $. Forse intendevi ${%(keyword)s}?")
        % {"written": written, "keyword": keyword},
        code="missing_dollar",
    )


class _Problems:
    """The keyword problems of one template: the first ``MAX_REPORTED_PROBLEMS`` distinct
    ones with their message, the others only counted (their message, with its suggestion,
    is never built)."""

    def __init__(self) -> None:
        self.errors: list[ValidationError] = []
        self.seen: set[str] = set()
        self.more = 0

    def add(self, key: str, build: Callable[[], ValidationError]) -> None:
        if key in self.seen:
            return
        self.seen.add(key)
        if len(self.errors) < MAX_REPORTED_PROBLEMS:
            self.errors.append(build())
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.seen)


def template_errors(text: str, *, subject: bool = False) -> list[ValidationError]:
    """Every problem of a template, in the order they appear; empty when it is valid.

    A text over its length limit gets that one error (nothing else is looked at); otherwise
    at most ``MAX_REPORTED_PROBLEMS`` keyword problems are listed and the rest counted."""
    too_long = length_error(text, subject=subject)
    if too_long is not None:
        return [too_long]
    errors: list[ValidationError] = []
    if subject:
        if _CONTROL.search(text):
            errors.append(
                ValidationError(
                    _("L'oggetto deve stare su una sola riga, senza caratteri di controllo."),
                    code="subject_control",
                )
            )
    elif _BODY_CONTROL.search(text):
        errors.append(
            ValidationError(
                _("Il testo contiene caratteri di controllo non ammessi."),
                code="body_control",
            )
        )

    problems = _Problems()
    for match in _PATTERN.finditer(text):
        name = match.group("named") or match.group("braced")
        if match.group("escaped") is not None:
            continue
        if name is not None:
            if name in KEYWORDS_BY_NAME:
                continue
            written = match.group(0)
            problems.add("keyword:" + name, partial(_unknown_keyword_error, written, name))
            continue
        position = match.start("invalid") - 1
        problems.add(
            "invalid:" + _placeholder_key(text, position),
            partial(_invalid_placeholder_error, text, position),
        )

    for start, end in _foreign_syntax(text):
        written = text[start : min(end, start + 40)]
        inner = text[start + 2 : min(end - 2, start + 2 + _MAX_KEYWORD_LENGTH + 1)]
        problems.add(f"foreign:{start}", partial(_foreign_syntax_error, written, inner))
    for match in _FORMAT_FIELD.finditer(text):
        if match.group(1) in KEYWORDS_BY_NAME:
            written, keyword = match.group(0), match.group(1)
            problems.add(
                f"format:{match.start()}", partial(_missing_dollar_error, written, keyword)
            )

    errors.extend(problems.errors)
    if problems.more:
        errors.append(
            ValidationError(
                ngettext(
                    "… e altro %(count)s problema con le parole chiave.",
                    "… e altri %(count)s problemi con le parole chiave.",
                    problems.more,
                )
                % {"count": format_number(problems.more)},
                code="more_problems",
            )
        )
    if problems:
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
    body = _BODY_CONTROL.sub("", body_template)
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
