"""The cover-mail template language rendered: keywords, Italian formats, escaping, and the
stored templates."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from emailsettings.covermail.keywords import KEYWORDS, format_amount, format_date
from emailsettings.covermail.rendering import (
    DEFAULT_BODY,
    DEFAULT_SUBJECT,
    SUBJECT_MAX_LENGTH,
    cover_mail_templates_for,
    render_cover_mail,
    restore_default_cover_mail,
    save_cover_mail,
)
from emailsettings.covermail.validation import validate_template
from emailsettings.models import EmailSettings
from psicogest.models import Salutation, Title
from tests.factories import InvoiceFactory, PatientFactory, PractitionerFactory


def build_invoice(**patient_fields):
    practitioner = PractitionerFactory.build(
        title=Title.DOTTSSA, first_name="Maria", last_name="Rossi", practice_name="Studio Rossi"
    )
    fields = {"salutation": "Gentile", "first_name": "Giulia", "last_name": "Bianchi"}
    fields.update(patient_fields)
    patient = PatientFactory.build(practitioner=practitioner, **fields)
    return InvoiceFactory.build(
        patient=patient,
        practitioner=practitioner,
        number="12/2026",
        issue_date=datetime.date(2026, 11, 2),
        due_date=datetime.date(2026, 12, 2),
        total=Decimal("1234.56"),
        pdf=None,
    )


def render(body: str, subject: str = "Oggetto", **patient_fields):
    return render_cover_mail(
        subject_template=subject, body_template=body, invoice=build_invoice(**patient_fields)
    )


# --- keywords -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "salutation", [value for value, _label in Salutation.choices] + ["Alla cortese attenzione di"]
)
def test_each_keyword_for_a_person_with_each_salutation(salutation):
    mail = render(
        "${saluto}|${nome}|${cognome}|${nominativo}|${numero_fattura}|${data_fattura}|"
        "${scadenza}|${importo}|${professionista}|${studio}",
        salutation=salutation,
    )
    assert mail.text == (
        f"{salutation}|Giulia|Bianchi|Giulia Bianchi|12/2026|02/11/2026|02/12/2026|"
        "€ 1.234,56|Dott.ssa Maria Rossi|Studio Rossi"
    )
    assert mail.warnings == []


def test_each_keyword_for_a_company():
    mail = render(
        "${saluto} ${nominativo},|${nome}|${cognome}|${importo}",
        salutation="Spett.le",
        first_name="",
        last_name="",
        company_name="Acme S.r.l.",
    )
    assert mail.text == "Spett.le Acme S.r.l.,|||€ 1.234,56"
    # The company has no first and last name: the preview says so.
    assert "questo paziente non ha un nome impostato" in mail.warnings
    assert "questo paziente non ha un cognome impostato" in mail.warnings


def test_nominativo_is_company_even_when_a_contact_name_is_set():
    mail = render("${nominativo}", first_name="Mario", last_name="Verdi", company_name="Acme Spa")
    assert mail.text == "Acme Spa"


def test_every_keyword_is_documented_for_the_panel():
    names = [keyword.name for keyword in KEYWORDS]
    assert names == [
        "saluto",
        "nome",
        "cognome",
        "nominativo",
        "numero_fattura",
        "data_fattura",
        "scadenza",
        "importo",
        "professionista",
        "studio",
        # Payment reminders' own: shown in their panel only.
        "giorni_ritardo",
        "importo_da_pagare",
        "iban",
    ]
    for keyword in KEYWORDS:
        assert str(keyword.label) and str(keyword.description) and str(keyword.empty_warning)


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (Decimal("0"), "€ 0,00"),
        (Decimal("70"), "€ 70,00"),
        (Decimal("1234.56"), "€ 1.234,56"),
        (Decimal("1234567.891"), "€ 1.234.567,89"),
        (Decimal("999.995"), "€ 1.000,00"),
    ],
)
def test_amounts_are_in_italian_format(amount, expected):
    assert format_amount(amount) == expected


def test_dates_are_day_month_year_and_empty_without_a_due_date():
    assert format_date(datetime.date(2026, 1, 5)) == "05/01/2026"
    invoice = build_invoice()
    invoice.due_date = None
    mail = render_cover_mail(
        subject_template="x", body_template="Scadenza: ${scadenza}.", invoice=invoice
    )
    assert mail.text == "Scadenza:."
    assert mail.warnings == ["questa fattura non ha una data di scadenza"]


def test_empty_salutation_renders_as_nothing_and_warns():
    mail = render("${saluto} ${nominativo},\nciao", salutation="")
    assert mail.text == "Giulia Bianchi,\nciao"
    assert mail.warnings == ["questo paziente non ha un saluto impostato"]


def test_both_syntaxes_and_double_dollar():
    mail = render("$nome ${cognome} costa $$10, $${nome} resta", subject="$$ ${nome}")
    assert mail.text == "Giulia Bianchi costa $10, ${nome} resta"
    assert mail.subject == "$ Giulia"


def test_default_templates_render_a_complete_italian_mail():
    mail = render_cover_mail(
        subject_template=DEFAULT_SUBJECT, body_template=DEFAULT_BODY, invoice=build_invoice()
    )
    assert mail.subject == "Fattura n. 12/2026 del 02/11/2026"
    assert mail.text.startswith("Gentile Giulia Bianchi,\n")
    # "le invio", not "in allegato": with a secure link nothing is attached.
    assert "le invio la fattura n. 12/2026 del 02/11/2026 di € 1.234,56." in mail.text
    assert "02/12/2026" in mail.text
    assert mail.text.rstrip().endswith("Cordiali saluti,\nDott.ssa Maria Rossi\nStudio Rossi")
    validate_template(DEFAULT_SUBJECT, subject=True)
    validate_template(DEFAULT_BODY)


# --- escaping and injection ---------------------------------------------------------------


def test_markup_in_a_patient_name_is_escaped_in_html_and_unchanged_in_text():
    mail = render("${saluto} ${nome},", first_name="<script>alert('x')</script>")
    assert mail.text == "Gentile <script>alert('x')</script>,"
    assert "<script>" not in mail.html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in mail.html


def test_html_part_turns_line_breaks_into_paragraphs_and_br():
    mail = render("Riga uno\nriga due\n\nSecondo paragrafo & <b>fine</b>")
    paragraphs = re.findall(r"<p>(.*?)</p>", mail.html, flags=re.DOTALL)
    assert paragraphs == [
        "Riga uno<br>\nriga due",
        "Secondo paragrafo &amp; &lt;b&gt;fine&lt;/b&gt;",
    ]
    assert mail.html.startswith("<!DOCTYPE html>")


def test_html_part_has_a_simple_accessible_layout_without_remote_content():
    html = render("Gentile paziente,\n\nin allegato la fattura.").html
    # Italian and readable in any client: a sans-serif font at 16 px, inline on the column
    # (clients may drop <style>) and in a <style> rule for paragraphs (Outlook needs it), in a
    # 600 px column of a layout table.
    assert '<html lang="it"' in html
    assert 'role="article" aria-roledescription="email"' in html
    assert html.count('role="presentation"') == 2
    assert "max-width:600px" in html and 'width="600"' in html
    font = "font-family:Arial,Helvetica,sans-serif;font-size:16px;line-height:1.5;"
    assert f'<td style="{font}' in html
    assert f"<style>p{{margin:0 0 16px 0;{font}" in html
    assert "<p>Gentile paziente,</p>" in html
    for remote in ("http:", "https:", "<img", "src=", "url(", "<link", "@import"):
        assert remote not in html


@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n", "\x0b", "\x0c", "\u2028", "\x85", "\t"])
def test_control_characters_in_values_never_reach_the_subject(separator):
    mail = render(
        "${nome}",
        subject="Fattura per ${nome} ${cognome}",
        first_name=f"Giulia{separator}Bcc: spia@example.test",
    )
    assert mail.subject == "Fattura per Giulia Bcc: spia@example.test Bianchi"
    for char in "\r\n\x0b\x0c\u2028\x85":
        assert char not in mail.subject
    assert "\r" not in mail.text and "\x0b" not in mail.text


def test_subject_is_cut_to_the_limit_with_a_warning():
    mail = render("x", subject="${nominativo}", company_name="A" * 300)
    assert len(mail.subject) == SUBJECT_MAX_LENGTH
    assert any("200 caratteri" in warning for warning in mail.warnings)


@pytest.mark.parametrize(
    "template",
    [
        "${__class__}",
        "{{ settings.SECRET_KEY }}",
        "{0.__class__}",
        "{nome.__class__}",
        "{% debug %}",
        "${invoice.patient}",
        "%(nome)s",
    ],
)
def test_code_like_text_is_never_evaluated_only_shown_literally(template):
    mail = render(template)
    assert mail.text == template
    assert "class '" not in mail.html
    assert "django" not in mail.text.lower()


# --- stored templates ---------------------------------------------------------------------


def test_templates_default_until_saved_and_after_restore(practitioner):
    assert cover_mail_templates_for(practitioner) == (DEFAULT_SUBJECT, DEFAULT_BODY)
    save_cover_mail(
        practitioner=practitioner,
        subject_template="Fattura ${numero_fattura}",
        body_template="Ciao",
    )
    assert cover_mail_templates_for(practitioner) == ("Fattura ${numero_fattura}", "Ciao")
    restore_default_cover_mail(practitioner=practitioner)
    assert cover_mail_templates_for(practitioner) == (DEFAULT_SUBJECT, DEFAULT_BODY)
    assert EmailSettings.objects.filter(practitioner=practitioner).count() == 1


def test_saving_an_invalid_template_saves_nothing(practitioner):
    with pytest.raises(ValidationError) as excinfo:
        save_cover_mail(
            practitioner=practitioner, subject_template="Fattura", body_template="${salutoo}"
        )
    assert "body_template" in excinfo.value.message_dict
    assert not EmailSettings.objects.filter(practitioner=practitioner).exists()


def test_templates_are_per_practitioner(practitioner, other_practitioner):
    save_cover_mail(practitioner=practitioner, subject_template="Mia", body_template="Mio")
    assert cover_mail_templates_for(other_practitioner) == (DEFAULT_SUBJECT, DEFAULT_BODY)


def test_render_with_a_saved_invoice(practitioner):
    invoice = InvoiceFactory(
        patient=PatientFactory(practitioner=practitioner, salutation="Egregio", first_name="Paolo")
    )
    mail = render_cover_mail(
        subject_template=DEFAULT_SUBJECT, body_template=DEFAULT_BODY, invoice=invoice
    )
    assert mail.text.startswith(f"Egregio Paolo {invoice.patient.last_name},")
    assert practitioner.display_name in mail.text
