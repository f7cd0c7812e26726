"""Checking the cover-mail template language: what is refused, and the Italian messages with
their "forse intendevi" suggestions."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from emailsettings.covermail.validation import validate_template

# --- what is refused ----------------------------------------------------------------------


@pytest.mark.parametrize("separator", ["\r", "\n", "\x0b", "\x0c", "\u2028", "\x85"])
def test_control_characters_in_the_subject_template_are_rejected(separator):
    with pytest.raises(ValidationError) as excinfo:
        validate_template(f"Fattura{separator}Bcc: x@example.test", subject=True)
    assert "una sola riga" in " ".join(excinfo.value.messages)


@pytest.mark.parametrize(
    "template",
    ["${__class__}", "{{ settings.SECRET_KEY }}", "${invoice.patient.__class__}", "$__init__"],
)
def test_attribute_and_settings_access_is_rejected(template):
    with pytest.raises(ValidationError):
        validate_template(template)


def test_format_style_fields_that_are_not_keywords_are_plain_text():
    validate_template("Importo {0.__class__} in {graffe}")


# --- validation messages ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "${salutoo} ${nome}",
            "«${salutoo}» non è una parola chiave valida. Forse intendevi ${saluto}?",
        ),
        ("$salto", "«$salto» non è una parola chiave valida. Forse intendevi ${saluto}?"),
        ("${Nome}", "Forse intendevi ${nome}?"),
        ("${importi}", "Forse intendevi ${importo}?"),
        ("${salutation}", "Forse intendevi ${saluto}?"),
        ("$nomeX", "«$nomeX» non è una parola chiave valida. Forse intendevi ${nome}?"),
        ("${xyzzy}", "«${xyzzy}» non è una parola chiave valida."),
        ("${patient.salutation}", "«${patient.salutation}» non è ammesso"),
        ("${patient.salutation}", "Forse intendevi ${saluto}?"),
        ("Gentile ${saluto", "«${saluto» non è chiuso: manca la parentesi graffa «}»."),
        ("${nome\n}", "non è chiuso"),
        ("${}", "«${}» è vuoto"),
        ("${ nome }", "«${ nome }» contiene spazi: scrivi ${nome}."),
        ("costa 5 $ al mese", "Il simbolo $ da solo non è valido"),
        ("costa 5 $ al mese", "usa $$"),
        ("{{ saluto }}", "«{{ saluto }}» non è supportato"),
        ("{{ saluto }}", "Forse intendevi ${saluto}?"),
        ("{saluto}", "«{saluto}» manca del simbolo $. Forse intendevi ${saluto}?"),
        ("${salutoo}", "Parole chiave valide: ${saluto}, ${nome}, ${cognome}, ${nominativo},"),
        ("x" * 20_001, "al massimo 20.000 caratteri (ora ne ha 20.001)"),
        ("ciao\x00", "caratteri di controllo"),
    ],
)
def test_body_validation_messages(template, expected):
    with pytest.raises(ValidationError) as excinfo:
        validate_template(template)
    assert expected in "\n".join(excinfo.value.messages)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Fattura\n${numero_fattura}", "L'oggetto deve stare su una sola riga"),
        ("Fattura\t${numero_fattura}", "L'oggetto deve stare su una sola riga"),
        ("x" * 201, "L'oggetto può avere al massimo 200 caratteri (ora ne ha 201)."),
        ("Fattura ${numero}", "Forse intendevi ${numero_fattura}?"),
    ],
)
def test_subject_validation_messages(template, expected):
    with pytest.raises(ValidationError) as excinfo:
        validate_template(template, subject=True)
    assert expected in "\n".join(excinfo.value.messages)


def test_each_unknown_keyword_is_named_once():
    with pytest.raises(ValidationError) as excinfo:
        validate_template("${foo} ${foo} ${bar}")
    messages = excinfo.value.messages
    assert sum("${foo}" in message for message in messages) == 1
    assert any("${bar}" in message for message in messages)


@pytest.mark.parametrize(
    "template", ["", "Testo senza parole chiave", "$$", "${saluto}$nome", "50 $$ e € 20"]
)
def test_valid_templates(template):
    validate_template(template)
