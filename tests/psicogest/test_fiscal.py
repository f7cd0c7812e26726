"""The codice fiscale on the patient card: normalised, and checked to its check character."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from psicogest.fiscal import normalize_codice_fiscale, validate_codice_fiscale


@pytest.mark.parametrize(
    "code",
    [
        "RSSMRA80A01H501U",  # Mario Rossi, 1 January 1980, Rome
        "rssmra80a01h501u",  # typed in lower case
        "RSS MRA 80A01 H501U",  # typed with spaces
        "BNCGLI85T41F205X",  # a woman (day + 40), Milan
    ],
)
def test_a_valid_codice_fiscale_passes(code):
    validate_codice_fiscale(code)


@pytest.mark.parametrize(
    "code",
    [
        "RSSMRA80A01H501A",  # wrong check character
        "RSSMRA80A01H501",  # 15 characters
        "RSSMRA80Z01H501U",  # no month Z
        "12345678901",  # a company's partita IVA, not a person's code
        "",
    ],
)
def test_an_invalid_codice_fiscale_is_refused(code):
    with pytest.raises(ValidationError) as info:
        validate_codice_fiscale(code)
    assert info.value.code == "invalid_codice_fiscale"


def test_the_stored_form_is_upper_case_without_spaces():
    assert normalize_codice_fiscale(" rss-mra 80a01h501u ") == "RSSMRA80A01H501U"
