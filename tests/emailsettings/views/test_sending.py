"""Sending invoices from the host UI: the confirmation page, the POST that queues, and the
progress page with its JSON endpoint. The deliveries are created by the real
``emailsettings.outbox`` service; no worker runs here (see tests/browser for that)."""

from __future__ import annotations

import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from emailsettings.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    EmailSettings,
    MailboxStatus,
    SmtpAccount,
    SuppressedAddress,
)
from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory

CONFIRM_URL = reverse("emailsettings:send_confirm")
PROGRESS_URL = reverse("emailsettings:send_progress")
PROGRESS_DATA_URL = reverse("emailsettings:send_progress_data")


def confirm(*invoices) -> str:
    return CONFIRM_URL + "?" + "&".join(f"fattura={invoice.pk}" for invoice in invoices)


def post_data(*invoices) -> dict[str, list[str]]:
    return {"fattura": [str(invoice.pk) for invoice in invoices]}


def batch_ids(location: str) -> list[int]:
    parts = urlsplit(location)
    assert parts.path == PROGRESS_URL
    return [int(pk) for pk in parse_qs(parts.query)["invii"][0].split(",")]


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def invoice(practitioner):
    patient = PatientFactory(
        practitioner=practitioner,
        first_name="Anna",
        last_name="Russo",
        email="anna.russo@example.test",
    )
    return InvoiceFactory(patient=patient, number="7/2026", issue_date=datetime.date(2026, 3, 9))


@pytest.fixture
def second_invoice(practitioner):
    patient = PatientFactory(
        practitioner=practitioner,
        first_name="Luca",
        last_name="Verdi",
        email="luca.verdi@example.test",
    )
    return InvoiceFactory(patient=patient, number="8/2026")


@pytest.fixture
def no_email_invoice(practitioner):
    patient = PatientFactory(
        practitioner=practitioner, first_name="Paolo", last_name="Senzamail", email=""
    )
    return InvoiceFactory(patient=patient, number="9/2026")


@pytest.fixture
def foreign_invoice(other_practitioner):
    return InvoiceFactory(patient=PatientFactory(practitioner=other_practitioner))


# --- confirmation page ----------------------------------------------------------------------


@pytest.mark.django_db
def test_confirmation_shows_recipient_channel_and_rendered_subject(logged_client, invoice):
    response = logged_client.get(confirm(invoice))
    assert response.status_code == 200
    content = response.content.decode()
    assert "anna.russo@example.test" in content
    assert "Smart Mail" in content
    assert "Fattura n. 7/2026 del 09/03/2026" in content
    assert "Invia 1 fattura" in content
    assert Delivery.objects.count() == 0, "showing the confirmation sends nothing"


@pytest.mark.django_db
def test_confirmation_shows_the_personal_smtp_channel_when_chosen(
    logged_client, practitioner, invoice
):
    EmailSettings.objects.create(practitioner=practitioner, channel=Channel.SMTP)
    # Chosen but no mailbox configured yet: the service sends with Smart Mail, and says so.
    assert logged_client.get(confirm(invoice)).context["channel"] == Channel.SMART_MAIL
    SmtpAccount.objects.create(
        practitioner=practitioner,
        email="studio@example.test",
        host="127.0.0.1",
        port=1025,
        security="starttls",
        username="studio@example.test",
    )
    response = logged_client.get(confirm(invoice))
    assert "SMTP personale" in response.content.decode()
    assert response.context["channel"] == Channel.SMTP


@pytest.mark.django_db
def test_confirmation_uses_the_practitioners_saved_subject(logged_client, practitioner, invoice):
    EmailSettings.objects.create(
        practitioner=practitioner, subject_template="Ricevuta ${numero_fattura} per ${nome}"
    )
    response = logged_client.get(confirm(invoice))
    assert "Ricevuta 7/2026 per Anna" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("email", "expected_in_message"),
    [("", "non ha un indirizzo email"), ("non-un-indirizzo", "non è valido")],
    ids=["missing", "invalid"],
)
def test_patient_without_valid_email_is_listed_as_not_sendable(
    logged_client, practitioner, invoice, email, expected_in_message
):
    bad = InvoiceFactory(
        patient=PatientFactory(practitioner=practitioner, last_name="Problema", email=email),
        number="10/2026",
    )
    response = logged_client.get(confirm(invoice, bad))
    assert response.status_code == 200
    refused = response.context["refused"]
    assert [row.invoice for row in refused] == [bad]
    assert expected_in_message in refused[0].problem
    assert [row.invoice for row in response.context["sendable"]] == [invoice]
    content = response.content.decode()
    assert "1 fattura non può essere inviata" in content
    assert escape(refused[0].problem) in content
    if email:
        assert f"«{email}»" in content
    assert "Le altre fatture possono essere inviate comunque." in content
    # Only the sendable invoice is in the form that POSTs.
    assert f'name="fattura" value="{invoice.pk}"' in content
    assert f'name="fattura" value="{bad.pk}"' not in content


@pytest.mark.django_db
def test_posting_only_an_invoice_without_email_is_refused_and_creates_nothing(
    logged_client, no_email_invoice
):
    response = logged_client.post(CONFIRM_URL, post_data(no_email_invoice), follow=True)
    assert Delivery.objects.count() == 0
    assert response.redirect_chain[0][0] == confirm(no_email_invoice)
    [message] = messages_of(response)
    assert message.startswith("Nessuna delle fatture selezionate può essere inviata.")
    assert "9/2026" in message and "Paolo Senzamail non ha un indirizzo email" in message


@pytest.mark.django_db
def test_posting_a_mixed_selection_sends_the_valid_ones_and_says_which_were_not(
    logged_client, invoice, no_email_invoice
):
    response = logged_client.post(CONFIRM_URL, post_data(invoice, no_email_invoice), follow=True)
    assert response.status_code == 200
    delivery = Delivery.objects.get()
    assert delivery.invoice == invoice
    assert not Delivery.objects.filter(invoice=no_email_invoice).exists()
    texts = messages_of(response)
    assert any("1 fattura non è stata inviata" in text and "9/2026" in text for text in texts)
    assert "1 fattura messa in coda per l'invio." in texts


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("email", "pec"),
    [
        ("anna@pec.it", ""),
        ("anna@postecert.it", ""),
        ("anna@cert.legalmail.it", ""),
        ("anna@legalmail.example.it", "anna@legalmail.example.it"),
    ],
    ids=["aruba-pec", "poste-pec", "legalmail-pec", "pec-on-patient-card"],
)
def test_pec_recipient_gets_a_warning(logged_client, practitioner, email, pec):
    invoice = InvoiceFactory(
        patient=PatientFactory(practitioner=practitioner, email=email, pec=pec)
    )
    response = logged_client.get(confirm(invoice))
    content = response.content.decode()
    assert "gli indirizzi PEC potrebbero rifiutare la posta ordinaria" in content
    assert "data-pec-warning" in content
    assert [row.invoice for row in response.context["sendable"]] == [invoice]


@pytest.mark.django_db
def test_suppressed_recipient_is_flagged_before_sending(logged_client, practitioner, invoice):
    SuppressedAddress.objects.create(
        practitioner=practitioner, address="Anna.Russo@example.test", reason="bounce"
    )
    response = logged_client.get(confirm(invoice))
    [row] = response.context["sendable"]
    assert row.suppressed
    assert "Indirizzo sospeso dopo un rimbalzo" in response.content.decode()


@pytest.mark.django_db
def test_broken_mailbox_is_announced_on_the_confirmation(logged_client, practitioner, invoice):
    EmailSettings.objects.create(practitioner=practitioner, channel=Channel.SMTP)
    SmtpAccount.objects.create(
        practitioner=practitioner,
        email="studio@example.test",
        host="127.0.0.1",
        port=1025,
        security="starttls",
        username="studio@example.test",
        status=MailboxStatus.BROKEN,
    )
    content = logged_client.get(confirm(invoice)).content.decode()
    assert "le fatture resteranno trattenute" in content


@pytest.mark.django_db
def test_ordinary_recipient_gets_no_pec_warning(logged_client, invoice):
    content = logged_client.get(confirm(invoice)).content.decode()
    assert "PEC potrebbero rifiutare" not in content


@pytest.mark.django_db
def test_empty_or_malformed_selection_goes_back_to_the_list_with_a_message(logged_client):
    response = logged_client.get(CONFIRM_URL, follow=True)
    assert response.redirect_chain[-1][0] == reverse("invoices")
    assert messages_of(response) == ["Seleziona almeno una fattura da inviare."]
    response = logged_client.get(CONFIRM_URL + "?fattura=abc", follow=True)
    assert messages_of(response) == ["Selezione non valida."]


# --- scoping, login, CSRF -------------------------------------------------------------------


@pytest.mark.django_db
def test_another_practitioners_invoice_is_not_found(logged_client, invoice, foreign_invoice):
    assert logged_client.get(confirm(foreign_invoice)).status_code == 404
    assert logged_client.get(confirm(invoice, foreign_invoice)).status_code == 404
    response = logged_client.post(CONFIRM_URL, post_data(invoice, foreign_invoice))
    assert response.status_code == 404
    assert Delivery.objects.count() == 0


@pytest.mark.django_db
def test_pages_require_login(client, invoice):
    for url in (confirm(invoice), PROGRESS_URL + "?invii=1", PROGRESS_DATA_URL + "?invii=1"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    response = client.post(CONFIRM_URL, post_data(invoice))
    assert response.status_code == 302
    assert Delivery.objects.count() == 0


@pytest.mark.django_db
def test_sending_requires_the_csrf_token(practitioner, invoice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(practitioner)
    response = client.post(CONFIRM_URL, post_data(invoice))
    assert response.status_code == 403
    assert Delivery.objects.count() == 0

    page = client.get(confirm(invoice))
    token = page.context["csrf_token"]
    response = client.post(CONFIRM_URL, {**post_data(invoice), "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert Delivery.objects.count() == 1


@pytest.mark.django_db
def test_confirmation_is_only_get_or_post(logged_client, invoice):
    assert logged_client.put(confirm(invoice)).status_code == 405


# --- sending --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_post_queues_and_redirects_to_the_progress_of_that_batch(
    logged_client, practitioner, invoice, second_invoice
):
    response = logged_client.post(CONFIRM_URL, post_data(invoice, second_invoice))
    assert response.status_code == 302
    ids = batch_ids(response["Location"])
    deliveries = Delivery.objects.filter(pk__in=ids)
    assert {d.invoice for d in deliveries} == {invoice, second_invoice}
    assert all(d.practitioner == practitioner for d in deliveries)
    assert all(d.status == DeliveryStatus.QUEUED for d in deliveries)
    assert {d.recipient for d in deliveries} == {
        "anna.russo@example.test",
        "luca.verdi@example.test",
    }

    page = logged_client.get(response["Location"])
    assert page.status_code == 200
    content = page.content.decode()
    assert escape("2 fatture messe in coda per l'invio.") in content
    assert "Invio in corso" in content
    assert 'data-count="in_flight">2<' in content
    assert reverse("emailsettings:deliveries") in content
    assert "js/sending.js" in content


@pytest.mark.django_db
def test_double_submit_creates_one_delivery_per_invoice(logged_client, invoice):
    first = logged_client.post(CONFIRM_URL, post_data(invoice))
    second = logged_client.post(CONFIRM_URL, post_data(invoice))
    assert first.status_code == second.status_code == 302
    assert Delivery.objects.filter(invoice=invoice).count() == 1
    assert batch_ids(first["Location"]) == batch_ids(second["Location"])


# --- progress -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_progress_data_counts_only_the_batch(
    logged_client, practitioner, invoice, second_invoice, foreign_invoice
):
    from emailsettings.outbox.queueing import queue_invoice_email

    outside = queue_invoice_email(
        InvoiceFactory(patient=PatientFactory(practitioner=practitioner), number="99/2026")
    )
    foreign = queue_invoice_email(foreign_invoice)
    response = logged_client.post(CONFIRM_URL, post_data(invoice, second_invoice))
    ids = batch_ids(response["Location"])
    assert outside.pk not in ids

    query = ",".join(str(pk) for pk in [*ids, foreign.pk])
    data = logged_client.get(PROGRESS_DATA_URL + "?invii=" + query).json()
    assert data["total"] == 2
    assert data["in_flight"] == 2 and data["queued"] == 2
    assert data["sent"] == data["failed"] == 0
    assert data["done"] is False
    assert sorted(row["id"] for row in data["deliveries"]) == sorted(ids)

    Delivery.objects.filter(pk=ids[0]).update(status=DeliveryStatus.SENT)
    Delivery.objects.filter(pk=ids[1]).update(status=DeliveryStatus.FAILED)
    data = logged_client.get(PROGRESS_DATA_URL + "?invii=" + query).json()
    assert (data["total"], data["in_flight"], data["sent"], data["failed"]) == (2, 0, 1, 1)
    assert data["done"] is True
    states = {row["id"]: row for row in data["deliveries"]}
    assert states[ids[0]]["label"] == "inviata"
    assert states[ids[1]]["tone"] == "err"

    page = logged_client.get(PROGRESS_URL + "?invii=" + query).content.decode()
    assert "1 fattura inviata; 1 fattura non riuscita" in page
    assert "Invio completato" not in page
    assert foreign.recipient not in page

    Delivery.objects.filter(pk=ids[1]).update(status=DeliveryStatus.SENT)
    data = logged_client.get(PROGRESS_DATA_URL + "?invii=" + query).json()
    assert data["done_text"] == "Invio completato: 2 fatture inviate."


@pytest.mark.django_db
def test_progress_never_says_completed_when_nothing_was_sent(logged_client, practitioner):
    """0 sent, 1 held: the page says the invoice is held and links to the mailbox."""
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    delivery = DeliveryFactory(invoice=invoice, status=DeliveryStatus.HELD)
    page = logged_client.get(PROGRESS_URL + f"?invii={delivery.pk}").content.decode()
    assert "Invio completato" not in page
    assert "1 fattura trattenuta: la casella va corretta." in page
    assert "Correggi la casella in Impostazioni email" in page


@pytest.mark.django_db
@pytest.mark.parametrize("email", ["anna@speciale.it", "anna@specchio.example.it"])
def test_an_ordinary_address_is_not_taken_for_pec(logged_client, practitioner, email):
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner, email=email))
    content = logged_client.get(confirm(invoice)).content.decode()
    assert "data-pec-warning" not in content


@pytest.mark.django_db
def test_progress_of_another_practitioners_deliveries_is_not_found(logged_client, foreign_invoice):
    from emailsettings.outbox.queueing import queue_invoice_email

    foreign = queue_invoice_email(foreign_invoice)
    for url in (PROGRESS_URL, PROGRESS_DATA_URL):
        assert logged_client.get(f"{url}?invii={foreign.pk}").status_code == 404
        assert logged_client.get(f"{url}?invii=abc").status_code == 404
        assert logged_client.get(url).status_code == 404


@pytest.mark.django_db
def test_progress_data_is_not_cached(logged_client, invoice):
    response = logged_client.post(CONFIRM_URL, post_data(invoice))
    data = logged_client.get(response["Location"].replace(PROGRESS_URL, PROGRESS_DATA_URL))
    assert "no-cache" in data["Cache-Control"] or "max-age=0" in data["Cache-Control"]


@pytest.mark.django_db
def test_confirmation_warns_about_a_missing_salutation(logged_client, practitioner):
    """The mail would start "Chiara Gallo,": the page says so for that invoice, with the
    way to the patient card."""
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner, salutation=""))
    content = logged_client.get(confirm(invoice)).content.decode()
    assert "data-mail-warning" in content
    assert "Questo paziente non ha un saluto impostato" in content
    assert f"/pazienti/{invoice.patient_id}/modifica/" in content


@pytest.mark.django_db
def test_progress_says_why_a_row_failed(logged_client, practitioner):
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    delivery = DeliveryFactory(
        invoice=invoice,
        status=DeliveryStatus.FAILED,
        channel="smart_mail",
        last_error_class="bounced",
        last_error_text="550 5.1.1 user unknown",
    )
    page = logged_client.get(PROGRESS_URL + f"?invii={delivery.pk}").content.decode()
    assert "Rimbalzata: il destinatario non accetta il messaggio" in page
    data = logged_client.get(PROGRESS_DATA_URL + f"?invii={delivery.pk}").json()
    assert data["deliveries"][0]["error"].startswith("Rimbalzata")
