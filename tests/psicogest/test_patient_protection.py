"""The patient card's "Come riceve le fatture": the codice fiscale checked to its check
character, the practitioner's own PDF password stored encrypted and shown only to them, and
what each mode needs."""

from __future__ import annotations

import pytest
from django.urls import reverse

from emailsettings.models import EmailSettings
from psicogest.models import InvoiceDelivery, Patient, PdfPasswordSource
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def patient(practitioner):
    return PatientFactory(practitioner=practitioner, first_name="Chiara", last_name="Gallo")


def post(client, patient, **changes):
    data = {
        "salutation_choice": "Gentile",
        "first_name": "Chiara",
        "last_name": "Gallo",
        "email": patient.email,
        "codice_fiscale": "",
        "birth_date": "",
        "invoice_delivery": "",
        "pdf_password_source": PdfPasswordSource.CODICE_FISCALE,
        "pdf_password": "",
        **changes,
    }
    return client.post(reverse("patient_edit", args=[patient.pk]), data)


def test_the_card_offers_the_three_modes_each_explained(logged_client, patient):
    content = logged_client.get(reverse("patient_edit", args=[patient.pk])).content.decode()
    for label in ("PDF allegato", "PDF protetto da password", "Link sicuro"):
        assert label in content
    assert "Come nelle impostazioni email" in content
    assert "AES-256" in content and "45 giorni" in content


def test_a_valid_codice_fiscale_is_stored_upper_case(logged_client, patient):
    response = post(logged_client, patient, codice_fiscale="rssmra80a01h501u")
    assert response.status_code == 302
    assert Patient.objects.get(pk=patient.pk).codice_fiscale == "RSSMRA80A01H501U"


def test_a_codice_fiscale_with_a_wrong_check_character_is_refused(logged_client, patient):
    response = post(logged_client, patient, codice_fiscale="RSSMRA80A01H501A")
    assert response.status_code == 400
    assert "carattere di controllo" in response.content.decode()
    assert Patient.objects.get(pk=patient.pk).codice_fiscale == ""


@pytest.mark.parametrize(
    ("changes", "field_text"),
    [
        ({"invoice_delivery": InvoiceDelivery.PROTECTED_PDF}, "è la password del PDF protetto"),
        (
            {
                "invoice_delivery": InvoiceDelivery.PROTECTED_PDF,
                "pdf_password_source": PdfPasswordSource.CUSTOM,
            },
            "Scrivi la password del PDF protetto",
        ),
        ({"invoice_delivery": InvoiceDelivery.SECURE_LINK}, "scrivi almeno uno dei due"),
    ],
)
def test_each_mode_asks_for_what_it_needs(logged_client, patient, changes, field_text):
    response = post(logged_client, patient, **changes)
    assert response.status_code == 400
    assert field_text in response.content.decode()


def test_the_practitioners_password_is_stored_encrypted_and_shown_back_only_to_them(
    logged_client, patient, client, other_practitioner
):
    response = post(
        logged_client,
        patient,
        invoice_delivery=InvoiceDelivery.PROTECTED_PDF,
        pdf_password_source=PdfPasswordSource.CUSTOM,
        pdf_password="Girasole-2026",
    )
    assert response.status_code == 302
    stored = Patient.objects.get(pk=patient.pk)
    assert stored.invoice_delivery == InvoiceDelivery.PROTECTED_PDF
    assert "Girasole" not in stored.pdf_password_encrypted
    assert stored.get_pdf_password() == "Girasole-2026"
    page = logged_client.get(reverse("patient_edit", args=[patient.pk])).content.decode()
    assert 'value="Girasole-2026"' in page
    # Another practitioner does not even find the card.
    client.force_login(other_practitioner)
    assert client.get(reverse("patient_edit", args=[patient.pk])).status_code == 404


def test_the_password_is_bound_to_its_patient(patient, practitioner):
    from emailsettings.crypto import DecryptionError

    patient.set_pdf_password("Girasole-2026")
    patient.save()
    other = PatientFactory(practitioner=practitioner)
    other.pdf_password_encrypted = patient.pdf_password_encrypted
    with pytest.raises(DecryptionError):
        other.get_pdf_password()


def test_the_practice_default_is_chosen_in_the_sending_options(logged_client, practitioner):
    response = logged_client.post(
        reverse("emailsettings:options_save"),
        {"invoice_delivery": InvoiceDelivery.SECURE_LINK},
    )
    assert response.status_code == 302
    row = EmailSettings.objects.get(practitioner=practitioner)
    assert row.invoice_delivery == InvoiceDelivery.SECURE_LINK
    page = logged_client.get(reverse("emailsettings:settings")).content.decode()
    assert "Come ricevono le fatture i pazienti" in page
