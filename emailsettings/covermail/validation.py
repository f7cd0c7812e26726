"""Checking a cover-mail template: the syntax, its limits, and the Italian error messages.

Syntax: ``${keyword}`` or ``$keyword``, ``$$`` for a literal ``$``; only the names in
``keywords.KEYWORDS`` are valid. ``PLACEHOLDER_PATTERN`` (``string.Template``'s pattern) is
the one reading of that syntax, shared with ``rendering``, which fills what this module
accepts. Each problem is a ``ValidationError`` with a code, naming what was written, the
closest valid keyword ("Forse intendevi ${saluto}?") and the list of valid ones.

Checking is linear in the length of the text: the length limit comes first (one ``len()``),
every pattern is bounded, and at most ``MAX_REPORTED_PROBLEMS`` problems get a message. To
catch a new kind of mistake, add its error builder and find it in ``template_errors``.

Public API:

* ``validate_template(text, *, subject=False)`` raises ``ValidationError``;
* ``template_errors(text, *, subject=False)`` and ``length_error(...)`` for the editor;
* ``suggest_keyword(name)`` and ``keyword_list()``.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Callable
from functools import partial

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from emailsettings.covermail.keywords import ALIASES, KEYWORDS, KEYWORDS_BY_NAME
from psicogest.formatting import format_number

SUBJECT_MAX_LENGTH = 200
BODY_MAX_LENGTH = 20_000
# Problems listed one by one under an editor; the rest are counted ("… e altri 12").
MAX_REPORTED_PROBLEMS = 10
# A keyword is a short identifier: what a placeholder holds beyond this is never looked at
# (no suggestion, no search for the closing brace), so each "$" costs a bounded amount.
_MAX_KEYWORD_LENGTH = 64

# Characters that end a line somewhere (str.splitlines, RFC 5322 headers) or are otherwise
# control characters: none may appear in a subject, and none may reach a header from a value.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# In the body, tab and line breaks are text; other control characters are not.
BODY_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
# Django/Jinja syntax ("{{ … }}", "{% … %}"), which this language does not have: typed by
# habit, never meant literally in a cover mail. Found by _foreign_syntax, a linear scan: a
# lazy ".*?" over the text is quadratic on a run of "{{" without "}}".
_FOREIGN_PAIRS = {"{{": "}}", "{%": "%}"}
# Bounded repetitions keep every pattern linear in the length of the text.
_FORMAT_FIELD = re.compile(r"(?<![{$])\{\s{0,16}([A-Za-z_][A-Za-z0-9_]{0,63})\s{0,16}\}(?!\})")


class _CoverTemplate(string.Template):
    """``string.Template`` syntax; only its pattern is used, substitution is in ``rendering``."""


PLACEHOLDER_PATTERN = _CoverTemplate.pattern


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
        if CONTROL_CHARACTERS.search(text):
            errors.append(
                ValidationError(
                    _("L'oggetto deve stare su una sola riga, senza caratteri di controllo."),
                    code="subject_control",
                )
            )
    elif BODY_CONTROL_CHARACTERS.search(text):
        errors.append(
            ValidationError(
                _("Il testo contiene caratteri di controllo non ammessi."),
                code="body_control",
            )
        )

    problems = _Problems()
    for match in PLACEHOLDER_PATTERN.finditer(text):
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
