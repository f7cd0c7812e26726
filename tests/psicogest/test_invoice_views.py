"""The host's invoice pages ("Fatture"): scoping, and the entry points to sending by email."""

from __future__ import annotations

import pytest
from django.urls import reverse

from emailsettings.models import Delivery, DeliveryStatus
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db

LIST_URL = reverse("invoices")
CONFIRM_URL = reverse("emailsettings:send_confirm")


@pytest.fixture
def invoice(practitioner):
    patient = PatientFactory(
        practitioner=practitioner, first_name="Anna", last_name="Russo", email="anna@example.test"
    )
    return InvoiceFactory(patient=patient, number="7/2026")


def test_list_shows_only_own_invoices_with_a_checkbox_and_a_send_action_each(
    logged_client, invoice, other_practitioner
):
    foreign = InvoiceFactory(
        patient=PatientFactory(practitioner=other_practitioner, last_name="Estraneo"),
        number="55/2026",
    )
    response = logged_client.get(LIST_URL)
    assert response.status_code == 200
    content = response.content.decode()
    assert "7/2026" in content and "Anna Russo" in content
    assert "55/2026" not in content and "Estraneo" not in content
    assert f'name="fattura" value="{invoice.pk}"' in content
    assert f'name="fattura" value="{foreign.pk}"' not in content
    assert f'href="{CONFIRM_URL}?fattura={invoice.pk}"' in content
    assert "Invia per email" in content
    assert "Invia le selezionate" in content
    assert f'action="{CONFIRM_URL}"' in content
    assert "js/sending.js" in content
    assert "<script>" not in content, "no inline script (CSP)"


def test_list_checkbox_values_are_plain_ids_for_large_numbers(logged_client, practitioner):
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner), id=123456)
    content = logged_client.get(LIST_URL).content.decode()
    assert f'value="{invoice.pk}"' in content
    assert "123.456" not in content


def test_list_shows_the_latest_delivery_status_of_each_invoice(logged_client, invoice):
    from emailsettings.outbox.queueing import queue_invoice_email

    delivery = queue_invoice_email(invoice)
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENT)
    content = logged_client.get(LIST_URL).content.decode()
    assert reverse("emailsettings:delivery", args=[delivery.pk]) in content
    assert ">inviata<" in content


def test_list_requires_login(client):
    response = client.get(LIST_URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_detail_offers_sending_and_lists_the_invoices_deliveries(logged_client, invoice):
    from emailsettings.outbox.queueing import queue_invoice_email

    delivery = queue_invoice_email(invoice)
    response = logged_client.get(reverse("invoice", args=[invoice.pk]))
    assert response.status_code == 200
    content = response.content.decode()
    assert f'href="{CONFIRM_URL}?fattura={invoice.pk}"' in content
    assert "Invia per email" in content
    assert reverse("emailsettings:delivery", args=[delivery.pk]) in content
    assert "anna@example.test" in content


def test_another_practitioners_invoice_is_not_found(logged_client, other_practitioner):
    foreign = InvoiceFactory(patient=PatientFactory(practitioner=other_practitioner))
    assert logged_client.get(reverse("invoice", args=[foreign.pk])).status_code == 404
    assert logged_client.get(reverse("invoice_pdf", args=[foreign.pk])).status_code == 404
