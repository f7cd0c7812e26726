"""Ids from request data are parsed one way (``emailsettings.forms.ids.parse_id``): ASCII
digits within ``bigint``. "²" (``str.isdigit()`` but not ``int()``) used to be a 500 on bulk
retry, refresh, send confirmation and progress; "١" (``int()`` reads it as 1) named a row.
Now neither is an id: a 404 where an id is required, the list's message on the send
confirmation, ignored by the report's refresh (which ignores junk)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from emailsettings.forms.ids import MAX_ID, parse_id
from emailsettings.models import Delivery
from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory

CONFIRM_URL = reverse("emailsettings:send_confirm")
PROGRESS_URLS = [
    reverse("emailsettings:send_progress"),
    reverse("emailsettings:send_progress_data"),
]
REFRESH_URL = reverse("emailsettings:deliveries_refresh")
BULK_RETRY_URL = reverse("emailsettings:deliveries_bulk_retry")
LIST_URL = reverse("emailsettings:deliveries")

NOT_IDS = [
    "²",  # superscript two: isdigit() but int() refuses it
    "١",  # Arabic-Indic one: int() reads 1
    "１",  # fullwidth one
    "۳",  # Extended Arabic-Indic three
    "",
    "0",
    "-1",
    "+1",
    " 1",
    "1 ",
    "1_000",
    "1.0",
    "0x1",
    "abc",
    str(MAX_ID + 1),
    "9" * 30,
]


def unicode_digits(pk: int, zero: str = "\u0660") -> str:
    """The id written in another script's decimal digits (Arabic-Indic by default)."""
    return "".join(chr(ord(zero) + int(digit)) for digit in str(pk))


@pytest.mark.parametrize("value", NOT_IDS)
def test_not_an_id(value):
    assert parse_id(value) is None


@pytest.mark.parametrize(
    ("value", "expected"), [("1", 1), ("42", 42), ("007", 7), (str(MAX_ID), MAX_ID)]
)
def test_an_id(value, expected):
    assert parse_id(value) == expected


@pytest.mark.parametrize("value", [None, 42, b"42", ["42"]])
def test_only_strings_are_parsed(value):
    assert parse_id(value) is None


# --- the endpoints ---------------------------------------------------------------------------


@pytest.fixture
def invoice(practitioner):
    return InvoiceFactory(patient=PatientFactory(practitioner=practitioner))


@pytest.fixture
def failed(invoice):
    return DeliveryFactory(invoice=invoice, status="failed")


BAD = ["²", "١", "9" * 30]


@pytest.mark.django_db
@pytest.mark.parametrize("value", BAD)
def test_bulk_retry_with_a_value_that_is_no_id_is_404(logged_client, failed, value):
    response = logged_client.post(BULK_RETRY_URL, {"ids": [str(failed.pk), value]})
    assert response.status_code == 404
    assert not Delivery.objects.filter(resend_of=failed).exists()


@pytest.mark.django_db
def test_bulk_retry_does_not_read_an_id_in_other_digits(logged_client, failed):
    response = logged_client.post(BULK_RETRY_URL, {"ids": [unicode_digits(failed.pk)]})
    assert response.status_code == 404
    assert not Delivery.objects.filter(resend_of=failed).exists()
    # The same id in ASCII digits is resent.
    response = logged_client.post(BULK_RETRY_URL, {"ids": [str(failed.pk)]})
    assert response.status_code == 302
    assert Delivery.objects.filter(resend_of=failed).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("value", BAD)
def test_refresh_ignores_a_value_that_is_no_id(logged_client, failed, value):
    response = logged_client.get(REFRESH_URL, {"r": [f"{value}:stale"], "next": LIST_URL})
    assert response.status_code == 200
    assert response.json()["rows"] == []


@pytest.mark.django_db
def test_refresh_does_not_read_an_id_in_other_digits(logged_client, failed):
    other = logged_client.get(REFRESH_URL, {"r": [f"{unicode_digits(failed.pk)}:stale"]})
    assert other.json()["rows"] == []
    ascii_digits = logged_client.get(REFRESH_URL, {"r": [f"{failed.pk}:stale"]})
    assert [row["id"] for row in ascii_digits.json()["rows"]] == [failed.pk]


@pytest.mark.django_db
@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("method", ["get", "post"])
def test_send_confirmation_with_a_value_that_is_no_id_goes_back_with_a_message(
    logged_client, invoice, method, value
):
    send = getattr(logged_client, method)
    response = send(CONFIRM_URL, {"fattura": [str(invoice.pk), value]}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("invoices")
    assert [str(m) for m in response.context["messages"]] == ["Selezione non valida."]
    assert Delivery.objects.count() == 0


@pytest.mark.django_db
def test_send_confirmation_does_not_read_an_id_in_other_digits(logged_client, invoice):
    response = logged_client.get(CONFIRM_URL, {"fattura": unicode_digits(invoice.pk)})
    assert response.status_code == 302
    assert response["Location"] == reverse("invoices")
    assert logged_client.get(CONFIRM_URL, {"fattura": str(invoice.pk)}).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("url", PROGRESS_URLS)
@pytest.mark.parametrize("value", BAD)
def test_progress_with_a_value_that_is_no_id_is_404(logged_client, invoice, url, value):
    from emailsettings.outbox.queueing import queue_invoice_email

    delivery = queue_invoice_email(invoice)
    assert logged_client.get(url, {"invii": f"{delivery.pk},{value}"}).status_code == 404
    assert logged_client.get(url, {"invii": unicode_digits(delivery.pk)}).status_code == 404
    assert logged_client.get(url, {"invii": str(delivery.pk)}).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/fatture/²/",
        "/fatture/١/",
        "/fatture/١/pdf/",
        "/pazienti/١/modifica/",
        "/email/invii/١/",
        f"/fatture/{'9' * 30}/",
        f"/fatture/{'9' * 30}/pdf/",
        f"/pazienti/{'9' * 30}/modifica/",
        f"/email/invii/{'9' * 30}/",
    ],
)
def test_pages_with_an_id_in_the_path_answer_404(logged_client, url):
    assert logged_client.get(url).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["²", "١", "9" * 30])
def test_invoice_list_page_number_that_is_no_number_shows_a_page(logged_client, invoice, page):
    assert logged_client.get(reverse("invoices"), {"page": page}).status_code == 200
