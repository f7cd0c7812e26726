"""Every host page requires login and shows only the practitioner's own rows."""

import pytest
from django.urls import reverse

from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url_name", ["invoices", "emailsettings:settings", "emailsettings:deliveries"]
)
def test_pages_require_login(client, url_name):
    response = client.get(reverse(url_name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_navigation_is_italian_by_default(logged_client):
    body = logged_client.get(reverse("emailsettings:settings")).content.decode()
    assert '<html lang="it">' in body
    for label in ("Fatture", "Impostazioni email", "Elenco invii email"):
        assert label in body


def test_english_is_available(logged_client):
    response = logged_client.post(reverse("set_language"), {"language": "en", "next": "/fatture/"})
    assert response.status_code == 302
    body = logged_client.get(reverse("invoices")).content.decode()
    assert '<html lang="en">' in body


def test_invoice_list_shows_only_own_invoices(logged_client, practitioner, other_practitioner):
    mine = InvoiceFactory(number="7/2026", patient=PatientFactory(practitioner=practitioner))
    InvoiceFactory(number="99/2026", patient=PatientFactory(practitioner=other_practitioner))
    body = logged_client.get(reverse("invoices")).content.decode()
    assert mine.number in body
    assert "99/2026" not in body


@pytest.mark.parametrize("url_name", ["invoice", "invoice_pdf"])
def test_another_practitioners_invoice_is_404(logged_client, other_practitioner, url_name):
    theirs = InvoiceFactory(patient=PatientFactory(practitioner=other_practitioner))
    assert logged_client.get(reverse(url_name, args=[theirs.pk])).status_code == 404


def test_invoice_pdf_downloads_for_its_owner(logged_client, practitioner):
    invoice = InvoiceFactory(number="3/2026", patient=PatientFactory(practitioner=practitioner))
    response = logged_client.get(reverse("invoice_pdf", args=[invoice.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"%PDF-")
    assert "fattura-3-2026.pdf" in response["Content-Disposition"]


def test_another_practitioners_delivery_is_404(logged_client, other_practitioner):
    from emailsettings.models import Delivery

    invoice = InvoiceFactory(patient=PatientFactory(practitioner=other_practitioner))
    delivery = Delivery.objects.create(
        practitioner=other_practitioner,
        invoice=invoice,
        patient=invoice.patient,
        channel="smart_mail",
        recipient="x@example.test",
        subject="s",
        message_id="<x@test>",
    )
    url = reverse("emailsettings:delivery", args=[delivery.pk])
    assert logged_client.get(url).status_code == 404


def test_pages_send_security_headers(logged_client):
    response = logged_client.get(reverse("invoices"))
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"


def test_login_with_email_and_password(client, practitioner):
    response = client.post(
        reverse("login"), {"username": practitioner.email, "password": "password-di-prova"}
    )
    assert response.status_code == 302
    assert client.get(reverse("invoices")).status_code == 200


def test_pages_are_italian_even_when_the_browser_asks_for_english(logged_client):
    response = logged_client.get(reverse("invoices"), HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    assert '<html lang="it">' in response.content.decode()
    assert response["Content-Language"] == "it"


def test_pages_warn_when_no_worker_has_run_recently(logged_client):
    import datetime

    from django.utils import timezone

    from psicogest.models import WorkerHeartbeat

    warning = "Il servizio di invio non risponde"
    assert warning in logged_client.get(reverse("invoices")).content.decode()

    WorkerHeartbeat.objects.create(hostname="w1", seen_at=timezone.now())
    assert warning not in logged_client.get(reverse("invoices")).content.decode()

    WorkerHeartbeat.objects.filter(hostname="w1").update(
        seen_at=timezone.now() - datetime.timedelta(minutes=10)
    )
    assert warning in logged_client.get(reverse("invoices")).content.decode()


def test_the_new_texts_of_the_settings_page_are_translated(logged_client, settings):
    logged_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    body = logged_client.get(reverse("emailsettings:settings")).content.decode()
    assert '<html lang="en">' in body
    for text in ("It goes into the body now.", "Unsaved changes", "No mailbox"):
        assert text in body, text
