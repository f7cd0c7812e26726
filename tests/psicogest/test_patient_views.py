"""The patient card editor (``patient_edit``): the one place to fix what the cover mail and
the sending pipeline read from a patient, linked from every page that asks to fix it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from psicogest.models import Patient
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def patient(practitioner):
    return PatientFactory(
        practitioner=practitioner,
        salutation="",
        first_name="Chiara",
        last_name="Gallo",
        email="",
    )


def edit_url(patient, next_url: str | None = None) -> str:
    url = reverse("patient_edit", args=[patient.pk])
    return f"{url}?next={next_url}" if next_url else url


def form_data(**changes):
    data = {
        "salutation_choice": "Gentile Sig.ra",
        "salutation_other": "",
        "first_name": "Chiara",
        "last_name": "Gallo",
        "company_name": "",
        "email": "chiara.gallo@example.test",
        "pec": "",
    }
    data.update(changes)
    return data


def test_the_card_shows_italian_labels_and_the_salutation_choices(logged_client, patient):
    response = logged_client.get(edit_url(patient))
    assert response.status_code == 200
    content = response.content.decode()
    for label in ("Saluto", "Nome", "Cognome", "Ragione sociale", "Email", "PEC"):
        assert f">{label}</label>" in content
    for choice in ("Gentile", "Spett.le", "Egregio", "Cara", "Altro (scrivilo qui sotto)"):
        assert f">{choice}</option>" in content
    assert 'name="csrfmiddlewaretoken"' in content


def test_saving_updates_the_patient_and_goes_back_where_it_came_from(logged_client, patient):
    back = reverse("invoices") + "?page=2"
    response = logged_client.post(edit_url(patient), {**form_data(), "next": back})
    assert response.status_code == 302
    assert response["Location"] == back
    patient.refresh_from_db()
    assert patient.salutation == "Gentile Sig.ra"
    assert patient.email == "chiara.gallo@example.test"
    messages = [str(m) for m in logged_client.get(back).context["messages"]]
    assert "Scheda di Chiara Gallo salvata." in messages


def test_a_free_text_salutation_round_trips(logged_client, patient):
    logged_client.post(
        edit_url(patient),
        form_data(salutation_choice="__other__", salutation_other="Gentile Dott."),
    )
    patient.refresh_from_db()
    assert patient.salutation == "Gentile Dott."
    content = logged_client.get(edit_url(patient)).content.decode()
    assert 'value="__other__" selected' in content
    assert 'value="Gentile Dott."' in content


def test_other_without_text_is_refused(logged_client, patient):
    response = logged_client.post(
        edit_url(patient), form_data(salutation_choice="__other__", salutation_other="")
    )
    assert response.status_code == 400
    assert "Scrivi il saluto da usare." in response.content.decode()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "chiara.gallo", "Inserisci un indirizzo email valido."),
        ("email", "a@b.it, c@d.it", "Scrivi un solo indirizzo"),
        ("email", '"chiara gallo"@example.test', "Scrivi un solo indirizzo"),
        ("pec", "chiara@pec", "Inserisci un indirizzo email valido."),
    ],
)
def test_invalid_addresses_are_refused_and_nothing_is_saved(
    logged_client, patient, field, value, message
):
    response = logged_client.post(edit_url(patient), form_data(**{field: value}))
    assert response.status_code == 400
    assert message in response.content.decode()
    patient.refresh_from_db()
    assert patient.email == "" and patient.salutation == ""


def test_a_patient_needs_a_name_or_a_company(logged_client, patient):
    response = logged_client.post(edit_url(patient), form_data(first_name="", last_name=""))
    assert response.status_code == 400
    assert "Scrivi nome e cognome, oppure la ragione sociale" in response.content.decode()


def test_pec_and_domain_case_are_stored(logged_client, patient):
    logged_client.post(
        edit_url(patient), form_data(email="Chiara@Example.TEST", pec="chiara@PEC.example.it")
    )
    patient.refresh_from_db()
    assert patient.email == "Chiara@example.test"
    assert patient.pec == "chiara@pec.example.it"


def test_another_practitioners_patient_is_404(logged_client, other_practitioner):
    theirs = PatientFactory(practitioner=other_practitioner)
    assert logged_client.get(edit_url(theirs)).status_code == 404
    response = logged_client.post(edit_url(theirs), form_data())
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.email != "chiara.gallo@example.test"


def test_login_is_required(client, patient):
    response = client.get(edit_url(patient))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_csrf_is_enforced(client, practitioner, patient):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(practitioner)
    assert csrf_client.post(edit_url(patient), form_data()).status_code == 403
    assert Patient.objects.get(pk=patient.pk).email == ""


def test_next_to_another_site_is_ignored(logged_client, patient):
    response = logged_client.post(
        edit_url(patient), {**form_data(), "next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("invoices")


def test_invoice_pages_link_to_the_card_when_the_email_is_missing(logged_client, patient):
    invoice = InvoiceFactory(patient=patient)
    list_page = logged_client.get(reverse("invoices")).content.decode()
    assert f'href="{edit_url(patient)}?next=/fatture/"' in list_page
    assert "Aggiungi l'email" in list_page
    detail_url = reverse("invoice", args=[invoice.pk])
    detail = logged_client.get(detail_url).content.decode()
    assert f'href="{edit_url(patient)}?next={detail_url}"' in detail
    assert "Modifica la scheda paziente" in detail
    assert "Nessun indirizzo email" in detail


def test_cover_mail_preview_links_to_the_card_of_a_patient_without_salutation(
    logged_client, patient
):
    invoice = InvoiceFactory(patient=patient)
    settings_page = logged_client.get(reverse("emailsettings:settings")).content.decode()
    assert "Completa la scheda paziente di Chiara Gallo" in settings_page
    preview = logged_client.post(
        reverse("emailsettings:covermail_preview"),
        {
            "invoice": invoice.pk,
            "subject_template": "Fattura",
            "body_template": "${saluto} ${nominativo},",
        },
    ).json()
    assert preview["patient_fix"]["url"].startswith(edit_url(patient) + "?next=")
    assert preview["patient_fix"]["label"] == "Completa la scheda paziente di Chiara Gallo"


def test_no_link_when_only_the_practitioners_profile_is_incomplete(logged_client, practitioner):
    practitioner.practice_name = ""
    practitioner.save()
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    preview = logged_client.post(
        reverse("emailsettings:covermail_preview"),
        {"invoice": invoice.pk, "subject_template": "Fattura", "body_template": "${studio}"},
    ).json()
    assert preview["warnings"] == ["nel tuo profilo manca il nome dello studio"]
    assert preview["patient_fix"] is None
