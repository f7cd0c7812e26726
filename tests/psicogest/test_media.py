"""Invoice PDFs are patient data: never served from /media/ (not even in development), only
through the invoice's PDF page, to the practitioner who owns the invoice."""

from __future__ import annotations

import importlib

import pytest
from django.urls import clear_url_caches, reverse

import psicogest.urls
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(params=[False, True], ids=["production", "development"])
def debug_urls(request, settings):
    """The URL configuration as built with DEBUG off and on (it is built at import)."""
    settings.DEBUG = request.param
    importlib.reload(psicogest.urls)
    clear_url_caches()
    yield request.param
    settings.DEBUG = False
    importlib.reload(psicogest.urls)
    clear_url_caches()


@pytest.fixture
def invoice(practitioner):
    return InvoiceFactory(patient=PatientFactory(practitioner=practitioner))


def media_url(invoice) -> str:
    return "/media/" + invoice.pdf.name


def test_the_pdf_file_is_not_served_from_media(debug_urls, client, practitioner, invoice):
    assert invoice.pdf.storage.exists(invoice.pdf.name)
    assert media_url(invoice).startswith("/media/invoices/")
    assert client.get(media_url(invoice)).status_code == 404  # not logged in
    client.force_login(practitioner)
    assert client.get(media_url(invoice)).status_code == 404  # not even to its owner


def test_the_owner_downloads_the_pdf_from_the_invoice_page(
    debug_urls, client, practitioner, invoice
):
    client.force_login(practitioner)
    response = client.get(reverse("invoice_pdf", args=[invoice.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert b"".join(response.streaming_content).startswith(b"%PDF")
    assert "fattura-" in response["Content-Disposition"]


def test_another_practitioner_gets_404_for_the_pdf(client, other_practitioner, invoice):
    client.force_login(other_practitioner)
    assert client.get(reverse("invoice_pdf", args=[invoice.pk])).status_code == 404


def test_the_pdf_page_needs_login(client, invoice):
    response = client.get(reverse("invoice_pdf", args=[invoice.pk]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_an_invoice_without_pdf_is_404(client, practitioner):
    invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner), pdf=None)
    client.force_login(practitioner)
    assert client.get(reverse("invoice_pdf", args=[invoice.pk])).status_code == 404


def test_pages_link_the_pdf_view_never_media(client, practitioner, invoice):
    client.force_login(practitioner)
    for url in (reverse("invoices"), reverse("invoice", args=[invoice.pk])):
        page = client.get(url).content.decode()
        assert "/media/" not in page
