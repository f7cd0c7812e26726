"""Secure links: the token never stored, the second factor, throttling then locking, expiry
after EMAILSETTINGS_SECURE_LINK_DAYS, revoking, the download on the timeline; and the pages:
nothing revealed before the factor, an unknown token and another practitioner's delivery are
404."""

from __future__ import annotations

import datetime
import re

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from emailsettings.models import DeliveryEvent, EventKind, SecureLink
from emailsettings.outbox import securelink
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.outbox.securelink import LinkState
from emailsettings.outbox.worker import send_batch
from psicogest.models import InvoiceDelivery
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = pytest.mark.django_db

CODICE_FISCALE = "RSSMRA80A01H501U"
BIRTH_DATE = datetime.date(1980, 1, 1)


@pytest.fixture(autouse=True)
def anymail_backend(settings):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    settings.EMAILSETTINGS_SMART_MAIL_RATE_PER_MINUTE = 0
    settings.EMAILSETTINGS_SITE_URL = "http://testserver"
    mail.outbox = []


def send_link(practitioner, **card):
    patient = PatientFactory(
        practitioner=practitioner,
        first_name="Paolo",
        last_name="Verdi",
        codice_fiscale=CODICE_FISCALE,
        invoice_delivery=InvoiceDelivery.SECURE_LINK,
        **card,
    )
    invoice = InvoiceFactory(patient=patient, number="12/2026")
    delivery = queue_invoice_email(invoice)
    send_batch(delivery_ids=[delivery.pk])
    [url] = re.findall(r"http://testserver(/email/scarica/[0-9a-f]{64}/)", mail.outbox[-1].body)
    return delivery, url


def token_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


def test_only_the_hash_of_the_token_is_stored(practitioner):
    delivery, url = send_link(practitioner)
    link = SecureLink.objects.get(delivery=delivery)
    assert token_of(url) not in repr(link.__dict__)
    assert securelink.find_link(token_of(url)) == link
    assert securelink.find_link("0" * 64) is None
    assert securelink.find_link("not-a-token") is None


@pytest.mark.parametrize(
    ("card", "right", "wrong"),
    [
        ({"birth_date": BIRTH_DATE}, "01/01/1980", "02/01/1980"),
        ({"birth_date": BIRTH_DATE}, "1980-01-01", "1980-01-02"),
        ({}, "501u", "501A"),
        ({}, " 501U ", "H501"),
    ],
)
def test_the_second_factor(practitioner, card, right, wrong):
    delivery, _url = send_link(practitioner, **card)
    link = SecureLink.objects.get(delivery=delivery)

    assert securelink.check_factor(link=link, value=wrong) == (False, LinkState.OPEN)
    assert securelink.check_factor(link=link, value=right) == (True, LinkState.OPEN)
    link.refresh_from_db()
    assert link.failed_attempts == 0


def test_wrong_factors_are_throttled_then_lock_the_link(practitioner):
    delivery, _url = send_link(practitioner, birth_date=BIRTH_DATE)
    link = SecureLink.objects.get(delivery=delivery)
    start = timezone.now()

    with time_machine.travel(start, tick=False) as traveller:
        assert securelink.check_factor(link=link, value="1990-01-01")[1] == LinkState.OPEN
        assert securelink.check_factor(link=link, value="1990-01-02")[1] == LinkState.OPEN
        assert securelink.check_factor(link=link, value="1990-01-03")[1] == LinkState.WAIT
        # While it waits, even the right answer is not looked at.
        assert securelink.check_factor(link=link, value="1980-01-01") == (False, LinkState.WAIT)
        traveller.shift(datetime.timedelta(seconds=61))
        assert securelink.check_factor(link=link, value="1990-01-04")[1] == LinkState.WAIT
        traveller.shift(datetime.timedelta(seconds=61))
        assert securelink.check_factor(link=link, value="1990-01-05")[1] == LinkState.LOCKED
        traveller.shift(datetime.timedelta(days=1))
        assert securelink.check_factor(link=link, value="1980-01-01") == (
            False,
            LinkState.LOCKED,
        )
    assert DeliveryEvent.objects.filter(
        delivery=delivery, kind=EventKind.SECURE_LINK, text__contains="bloccato"
    ).exists()


def test_the_link_expires_after_the_configured_days(practitioner, settings):
    settings.EMAILSETTINGS_SECURE_LINK_DAYS = 45
    delivery, _url = send_link(practitioner, birth_date=BIRTH_DATE)
    link = SecureLink.objects.get(delivery=delivery)
    assert link.expires_at - link.created_at == datetime.timedelta(days=45)

    with time_machine.travel(link.created_at + datetime.timedelta(days=44, hours=23)):
        assert securelink.state(link) == LinkState.OPEN
    with time_machine.travel(link.created_at + datetime.timedelta(days=45, seconds=1)):
        assert securelink.state(link) == LinkState.EXPIRED
        assert securelink.check_factor(link=link, value="1980-01-01") == (
            False,
            LinkState.EXPIRED,
        )


def test_the_page_reveals_nothing_before_the_factor_then_serves_the_pdf(client, practitioner):
    delivery, url = send_link(practitioner, birth_date=BIRTH_DATE)

    page = client.get(url)
    content = page.content.decode()
    assert page.status_code == 200
    for secret in ("Paolo", "Verdi", "12/2026", "1.234,56", "1234", CODICE_FISCALE):
        assert secret not in content
    assert "data di nascita" in content.lower()
    assert "scaricata" in content
    assert page["Referrer-Policy"] == "same-origin"
    assert "no-store" in page["Cache-Control"]
    assert "default-src 'self'" in page["Content-Security-Policy"]

    wrong = client.post(url, {"fattore": "1990-01-01"})
    assert wrong.status_code == 200
    assert "Tentativi rimasti: 4" in wrong.content.decode()

    right = client.post(url, {"fattore": "1980-01-01"})
    assert right.status_code == 200
    assert right["Content-Type"] == "application/pdf"
    with delivery.invoice.pdf.open("rb") as handle:
        assert b"".join(right.streaming_content) == handle.read()
    link = SecureLink.objects.get(delivery=delivery)
    assert link.downloaded_at is not None and link.downloads == 1
    event = DeliveryEvent.objects.get(delivery=delivery, kind=EventKind.SECURE_LINK)
    assert event.display_text.startswith("Fattura scaricata dal paziente il ")


def test_an_unknown_token_is_404(client, practitioner):
    assert client.get(reverse("emailsettings:secure_link", args=["f" * 64])).status_code == 404
    assert client.get(reverse("emailsettings:secure_link", args=["abc"])).status_code == 404


def test_revoke_and_send_a_new_link(client, practitioner):
    delivery, url = send_link(practitioner, birth_date=BIRTH_DATE)
    client.force_login(practitioner)
    detail = client.get(reverse("emailsettings:delivery", args=[delivery.pk])).content.decode()
    assert "Revoca il link" in detail and "non ancora" in detail

    response = client.post(
        reverse("emailsettings:secure_link_revoke", args=[delivery.pk]), {"nuovo": "1"}
    )

    assert response.status_code == 302
    client.logout()
    gone = client.get(url)
    assert gone.status_code == 410
    assert "revocato" in gone.content.decode()
    new = delivery.resends.get()
    assert new.protection == InvoiceDelivery.SECURE_LINK
    send_batch(delivery_ids=[new.pk])
    [new_url] = re.findall(r"http://testserver(/email/scarica/[0-9a-f]{64}/)", mail.outbox[-1].body)
    assert new_url != url
    assert client.get(new_url).status_code == 200


def test_another_practitioners_delivery_is_404(client, practitioner, other_practitioner):
    delivery, _url = send_link(practitioner, birth_date=BIRTH_DATE)
    client.force_login(other_practitioner)

    assert client.get(reverse("emailsettings:delivery", args=[delivery.pk])).status_code == 404
    revoke = client.post(reverse("emailsettings:secure_link_revoke", args=[delivery.pk]))
    assert revoke.status_code == 404
    assert SecureLink.objects.get(delivery=delivery).revoked_at is None
