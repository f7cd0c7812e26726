"""The cover-mail section of "Impostazioni email": save, restore, preview, isolation."""

from __future__ import annotations

import datetime

import pytest
from django.test import Client
from django.urls import reverse

from emailsettings.covermail.rendering import (
    DEFAULT_BODY,
    DEFAULT_SUBJECT,
    cover_mail_templates_for,
)
from emailsettings.models import EmailSettings
from tests.factories import InvoiceFactory, PatientFactory

SETTINGS_URL = reverse("emailsettings:settings")
SAVE_URL = reverse("emailsettings:covermail_save")
RESTORE_URL = reverse("emailsettings:covermail_restore")
PREVIEW_URL = reverse("emailsettings:covermail_preview")


@pytest.fixture
def invoice(practitioner):
    patient = PatientFactory(
        practitioner=practitioner, salutation="Gentile Sig.ra", first_name="Anna", last_name="Russo"
    )
    return InvoiceFactory(patient=patient, number="7/2026", issue_date=datetime.date(2026, 3, 9))


def assert_refused(response, anchor: str) -> None:
    """A refused save goes back to the settings page (post/redirect/get): the browser never
    stays on the POST URL; the errors show on the page it lands on."""
    assert response.redirect_chain == [(SETTINGS_URL + anchor, 302)]
    assert response.status_code == 200


def test_page_shows_default_texts_keywords_and_preview_of_latest_invoice(logged_client, invoice):
    older = InvoiceFactory(
        patient=PatientFactory(practitioner=invoice.practitioner, first_name="Vecchio"),
        issue_date=datetime.date(2025, 1, 1),
    )
    response = logged_client.get(SETTINGS_URL)
    assert response.status_code == 200
    content = response.content.decode()
    form = response.context["covermail_form"]
    assert form["subject_template"].value() == DEFAULT_SUBJECT
    assert form["body_template"].value() == DEFAULT_BODY
    for keyword in ("${saluto}", "${nominativo}", "${importo}", "${professionista}"):
        assert keyword in content
    assert "Dalla scheda paziente" in content
    assert response.context["covermail_preview_invoice"] == invoice
    assert "Gentile Sig.ra Anna Russo," in response.context["covermail_preview"].text
    assert f'<option value="{older.pk}"' in content
    assert "Fattura 7/2026 del 09/03/2026 – Anna Russo" in content


def test_page_without_invoices_explains_the_preview(logged_client):
    response = logged_client.get(SETTINGS_URL)
    assert response.status_code == 200
    assert "Non hai ancora fatture" in response.content.decode()


def test_save_stores_templates_and_redirects(logged_client, practitioner):
    response = logged_client.post(
        SAVE_URL,
        {"subject_template": "Fattura ${numero_fattura}", "body_template": "${saluto},\r\nciao"},
    )
    assert response.status_code == 302
    assert response["Location"].endswith(SETTINGS_URL + "#covermail")
    assert cover_mail_templates_for(practitioner) == (
        "Fattura ${numero_fattura}",
        "${saluto},\nciao",
    )
    page = logged_client.get(SETTINGS_URL).content.decode()
    assert "Mail di accompagnamento salvata." in page


def test_invalid_save_shows_error_with_suggestion_keeps_text_and_saves_nothing(
    logged_client, practitioner
):
    response = logged_client.post(
        SAVE_URL,
        {"subject_template": "Fattura ${numero}", "body_template": "${salutoo} caro"},
        follow=True,
    )
    assert_refused(response, "#covermail")
    content = response.content.decode()
    assert "Forse intendevi ${saluto}?" in content
    assert "Forse intendevi ${numero_fattura}?" in content
    assert "Parole chiave valide:" in content
    assert "${salutoo} caro</textarea>" in content
    assert 'value="Fattura ${numero}"' in content
    assert not EmailSettings.objects.filter(practitioner=practitioner).exists()


def test_empty_fields_are_required(logged_client, practitioner):
    response = logged_client.post(
        SAVE_URL, {"subject_template": "  ", "body_template": ""}, follow=True
    )
    assert_refused(response, "#covermail")
    assert not EmailSettings.objects.filter(practitioner=practitioner).exists()


def test_restore_default(logged_client, practitioner):
    logged_client.post(SAVE_URL, {"subject_template": "Mio", "body_template": "Mio testo"})
    response = logged_client.post(RESTORE_URL)
    assert response.status_code == 302
    assert cover_mail_templates_for(practitioner) == (DEFAULT_SUBJECT, DEFAULT_BODY)


def test_preview_renders_without_saving(logged_client, practitioner, invoice):
    response = logged_client.post(
        PREVIEW_URL,
        {
            "invoice": invoice.pk,
            "subject_template": "Fattura ${numero_fattura} per ${cognome}",
            "body_template": "${saluto} <b>${nome}</b>\n\nSaluti",
        },
    )
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    data = response.json()
    assert data["valid"] is True
    assert data["errors"] == {}
    assert data["subject"] == "Fattura 7/2026 per Russo"
    assert data["text"] == "Gentile Sig.ra <b>Anna</b>\n\nSaluti"
    assert "<p>Gentile Sig.ra &lt;b&gt;Anna&lt;/b&gt;</p>" in data["html"]
    assert data["warnings"] == []
    assert not EmailSettings.objects.filter(practitioner=practitioner).exists()


def test_preview_reports_errors_and_warnings(logged_client, invoice):
    invoice.patient.salutation = ""
    invoice.patient.save()
    data = logged_client.post(
        PREVIEW_URL,
        {
            "invoice": invoice.pk,
            "subject_template": "Ciao",
            "body_template": "${saluto} ${salutoo}",
        },
    ).json()
    assert data["valid"] is False
    assert "Forse intendevi ${saluto}?" in " ".join(data["errors"]["body_template"])
    assert "questo paziente non ha un saluto impostato" in data["warnings"]


def test_preview_warns_when_the_text_names_the_kind_of_care(logged_client, invoice):
    data = logged_client.post(
        PREVIEW_URL,
        {
            "invoice": invoice.pk,
            "subject_template": "Fattura seduta del ${data_fattura}",
            "body_template": "${saluto} ${nominativo},\nle invio la fattura della consulenza "
            "psicologica.",
        },
    ).json()
    assert data["valid"] is True
    [warning] = [w for w in data["warnings"] if "tipo di prestazione" in w]
    assert "«seduta»" in warning and "«consulenza»" in warning and "«psicologica»" in warning


def test_preview_of_another_practitioners_invoice_is_404(logged_client, other_practitioner):
    foreign = InvoiceFactory(
        patient=PatientFactory(practitioner=other_practitioner, first_name="Segreto")
    )
    response = logged_client.post(
        PREVIEW_URL,
        {"invoice": foreign.pk, "subject_template": "${nome}", "body_template": "${nome}"},
    )
    assert response.status_code == 404
    assert b"Segreto" not in response.content


@pytest.mark.parametrize("invoice_id", ["", "abc", "999999"])
def test_preview_of_a_missing_invoice_is_404(logged_client, invoice_id):
    response = logged_client.post(
        PREVIEW_URL, {"invoice": invoice_id, "subject_template": "x", "body_template": "y"}
    )
    assert response.status_code == 404


def test_page_never_lists_another_practitioners_invoices(logged_client, other_practitioner):
    foreign = InvoiceFactory(
        patient=PatientFactory(practitioner=other_practitioner, first_name="Segreto")
    )
    content = logged_client.get(SETTINGS_URL).content.decode()
    assert "Segreto" not in content
    # The invoice picker offers none of theirs (other inputs may share the value's digits).
    assert f'<option value="{foreign.pk}"' not in content


def test_saving_does_not_touch_another_practitioners_templates(
    logged_client, practitioner, other_practitioner
):
    EmailSettings.objects.create(
        practitioner=other_practitioner, subject_template="Suo", body_template="Suo testo"
    )
    logged_client.post(SAVE_URL, {"subject_template": "Mio", "body_template": "Mio testo"})
    logged_client.post(RESTORE_URL)
    assert cover_mail_templates_for(other_practitioner) == ("Suo", "Suo testo")


@pytest.mark.parametrize("url", [SAVE_URL, RESTORE_URL, PREVIEW_URL])
def test_post_only(logged_client, url):
    assert logged_client.get(url).status_code == 405


@pytest.mark.parametrize("url", [SETTINGS_URL, SAVE_URL, RESTORE_URL, PREVIEW_URL])
def test_login_required(client, db, url):
    response = client.post(url, {"subject_template": "x", "body_template": "y"})
    assert response.status_code == 302
    assert "/accesso/" in response["Location"]


@pytest.mark.parametrize("url", [SAVE_URL, RESTORE_URL, PREVIEW_URL])
def test_csrf_is_enforced(practitioner, invoice, url):
    client = Client(enforce_csrf_checks=True)
    client.force_login(practitioner)
    data = {"invoice": invoice.pk, "subject_template": "Rubato", "body_template": "Rubato"}
    assert client.post(url, data).status_code == 403
    assert not EmailSettings.objects.filter(practitioner=practitioner).exists()

    # With the token from the page, the same request goes through.
    client.get(SETTINGS_URL)
    token = client.cookies["csrftoken"].value
    response = client.post(url, data, headers={"X-CSRFToken": token})
    assert response.status_code in (200, 302)


def test_the_settings_page_allows_exactly_the_mail_styles_for_its_preview(logged_client):
    import base64
    import hashlib

    from emailsettings.covermail.rendering import HTML_PART_STYLES

    policy = logged_client.get(SETTINGS_URL)["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-hashes' 'sha256-" in policy
    assert "'unsafe-inline'" not in policy
    for style in HTML_PART_STYLES:
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    # Other pages keep the plain policy.
    assert "unsafe-hashes" not in logged_client.get(reverse("invoices"))["Content-Security-Policy"]
