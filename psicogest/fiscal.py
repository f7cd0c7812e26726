"""The Italian codice fiscale of a patient: normalised and checked (check digit included).

The check is python-codicefiscale's: the 16-character pattern, the encoded birth date and
the last character, computed from the other fifteen (omocodia letters included). Temporary
11-digit codes are not accepted: a patient's card carries the personal 16-character code,
which is what an Italian invoice to a private patient shows.
"""

from __future__ import annotations

from codicefiscale import codicefiscale
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

CODICE_FISCALE_LENGTH = 16


def normalize_codice_fiscale(value: str) -> str:
    """Upper case, without the spaces and dashes people type in it."""
    return "".join(char for char in (value or "") if char.isalnum()).upper()


def validate_codice_fiscale(value: str) -> None:
    """Raise ``ValidationError`` unless ``value`` is a valid codice fiscale."""
    code = normalize_codice_fiscale(value)
    if len(code) != CODICE_FISCALE_LENGTH or not codicefiscale.is_valid(code):
        raise ValidationError(
            _(
                "Il codice fiscale non è valido: controlla i 16 caratteri (l'ultimo è un "
                "carattere di controllo calcolato dagli altri)."
            ),
            code="invalid_codice_fiscale",
        )
