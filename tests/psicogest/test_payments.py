"""«Segna come pagata»: the invoice's payment state, per practitioner, by POST only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from psicogest.models import Invoice
from psicogest.payments import mark_paid, mark_unpaid
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice(practitioner):
    return InvoiceFactory(patient=PatientFactory(practitioner=practitioner), number="8/2026")


def test_an_invoice_is_unpaid_until_marked_and_partial_payments_leave_an_amount_due(invoice):
    assert not invoice.is_paid and invoice.amount_due == Decimal("1234.56")
    invoice.amount_paid = Decimal("234.56")
    assert not invoice.is_paid and invoice.amount_due == Decimal("1000.00")
    mark_paid(invoice=invoice)
    invoice.refresh_from_db()
    assert invoice.is_paid and invoice.paid_at is not None and invoice.amount_due == 0
    mark_unpaid(invoice=invoice)
    invoice.refresh_from_db()
    assert not invoice.is_paid and invoice.amount_due == Decimal("1234.56")


def test_list_and_detail_offer_segna_come_pagata_and_the_post_marks_it(logged_client, invoice):
    list_page = logged_client.get(reverse("invoices")).content.decode()
    url = reverse("invoice_paid", args=[invoice.pk])
    assert "Segna come pagata" in list_page and f'action="{url}"' in list_page
    detail = logged_client.get(reverse("invoice", args=[invoice.pk])).content.decode()
    assert "Segna come pagata" in detail and "da pagare" in detail
    response = logged_client.post(url, {"next": reverse("invoices")})
    assert response.status_code == 302 and response.url == reverse("invoices")
    invoice.refresh_from_db()
    assert invoice.paid_at is not None
    list_page = logged_client.get(reverse("invoices")).content.decode()
    assert f'action="{url}"' not in list_page and "pagata" in list_page
    detail = logged_client.get(reverse("invoice", args=[invoice.pk])).content.decode()
    assert "Segna come non pagata" in detail
    logged_client.post(url, {"paid": "0"})
    invoice.refresh_from_db()
    assert invoice.paid_at is None


def test_another_practitioners_invoice_is_a_404_and_get_is_refused(
    logged_client, practitioner, other_practitioner
):
    foreign = InvoiceFactory(patient=PatientFactory(practitioner=other_practitioner))
    assert logged_client.post(reverse("invoice_paid", args=[foreign.pk])).status_code == 404
    assert Invoice.objects.get(pk=foreign.pk).paid_at is None
    own = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
    assert logged_client.get(reverse("invoice_paid", args=[own.pk])).status_code == 405


def test_the_post_needs_the_csrf_token(practitioner, invoice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(practitioner)
    response = client.post(reverse("invoice_paid", args=[invoice.pk]))
    assert response.status_code == 403
    invoice.refresh_from_db()
    assert invoice.paid_at is None


def test_next_to_another_site_is_ignored(logged_client, invoice):
    response = logged_client.post(
        reverse("invoice_paid", args=[invoice.pk]), {"next": "https://evil.test/"}
    )
    assert response.url == reverse("invoice", args=[invoice.pk])
