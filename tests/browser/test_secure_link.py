"""A patient opens a secure link in Chromium on a 390 px phone: the link comes from a message
the local SMTP test server really received; nothing of the invoice shows before the second
factor; a wrong factor, throttling, the right one and the downloaded bytes (equal to the
invoice's PDF); the download on the practitioner's timeline; a revoked link, an expired one
(travelling in time, never sleeping), an unknown token and another practitioner's delivery
(404); and not one request to another origin."""

from __future__ import annotations

import datetime
import re
from urllib.parse import urlsplit

import pytest
import time_machine
from django.utils import timezone

from emailsettings.models import Channel, EmailSettings, SecureLink
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.outbox.worker import send_batch
from psicogest.models import InvoiceDelivery
from tests.conftest import login, save_screenshot
from tests.factories import InvoiceFactory, PatientFactory, PractitionerFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
PASSWORD = "password-di-prova"
LINK = re.compile(r"https?://[^\s]+/email/scarica/[0-9a-f]{64}/")


@pytest.fixture
def phone(browser, live_server):
    context = browser.new_context(locale="it-IT", viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15000)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.requests = requests  # type: ignore[attr-defined]
    yield page
    context.close()


@pytest.fixture
def sent(live_server, settings, smtp_server, smtp_account_factory):
    """Two invoices to Paolo Verdi (secure link, date of birth), sent through the
    practitioner's mailbox to the local SMTP test server; the links read from what it got."""
    settings.EMAILSETTINGS_SITE_URL = live_server.url
    practitioner = PractitionerFactory(email="maria@example.test")
    smtp_account_factory(smtp_server, practitioner=practitioner)
    EmailSettings.objects.create(practitioner=practitioner, channel=Channel.SMTP)
    patient = PatientFactory(
        practitioner=practitioner,
        first_name="Paolo",
        last_name="Verdi",
        email="paolo.verdi@example.test",
        codice_fiscale="VRDPLA80A01H501P",
        birth_date=datetime.date(1980, 1, 1),
        invoice_delivery=InvoiceDelivery.SECURE_LINK,
    )
    deliveries = [
        queue_invoice_email(InvoiceFactory(patient=patient, number=number))
        for number in ("12/2026", "13/2026")
    ]
    send_batch(delivery_ids=[delivery.pk for delivery in deliveries])
    links = []
    for received in smtp_server.messages:
        message = received.message
        assert list(message.iter_attachments()) == [], "a secure link carries no attachment"
        text = message.get_body(("plain",)).get_content()
        [url] = LINK.findall(text)
        links.append(url)
    assert len(links) == 2
    return practitioner, deliveries, links


def only_this_origin(page, live_server) -> None:
    origin = urlsplit(live_server.url).netloc
    others = [url for url in page.requests if urlsplit(url).netloc not in (origin, "")]
    assert others == [], others


def test_the_patient_downloads_after_the_second_factor(phone, live_server, sent, tmp_path):
    practitioner, deliveries, links = sent
    page = phone

    page.goto(links[0])
    body = page.locator("body").inner_text()
    assert "Scarica la fattura" in body
    for secret in ("Paolo", "Verdi", "12/2026", "1.234,56", "VRDPLA"):
        assert secret not in page.content()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    save_screenshot(page, "secure-link-1-ask")

    factor = page.get_by_label("La tua data di nascita")
    factor.fill("1990-01-01")
    page.get_by_role("button", name="Scarica la fattura (PDF)").click()
    assert "Tentativi rimasti: 4" in page.get_by_role("alert").inner_text()
    for date in ("1990-01-02", "1990-01-03"):
        page.get_by_label("La tua data di nascita").fill(date)
        page.get_by_role("button", name="Scarica la fattura (PDF)").click()
    assert "Troppi tentativi" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("La tua data di nascita").count() == 0
    save_screenshot(page, "secure-link-2-wait")

    with time_machine.travel(timezone.now() + datetime.timedelta(seconds=61)):
        page.goto(links[0])
        page.get_by_label("La tua data di nascita").fill("1980-01-01")
        with page.expect_download() as info:
            page.get_by_role("button", name="Scarica la fattura (PDF)").click()
        download = info.value
        target = tmp_path / "fattura.pdf"
        download.save_as(target)
    with deliveries[0].invoice.pdf.open("rb") as handle:
        assert target.read_bytes() == handle.read()
    assert download.suggested_filename == "fattura-12-2026.pdf"
    only_this_origin(page, live_server)

    # The practitioner sees the download on the delivery page and its timeline.
    login(page, live_server, practitioner.email, PASSWORD)
    page.goto(f"{live_server.url}/email/invii/{deliveries[0].pk}/")
    assert page.locator("[data-downloaded]").inner_text().startswith("scaricata il ")
    assert "Fattura scaricata dal paziente il" in page.locator("table.timeline").inner_text()
    save_screenshot(page, "secure-link-3-practitioner")


def test_revoked_expired_unknown_and_another_practitioners(phone, browser, live_server, sent):
    practitioner, deliveries, links = sent
    page = phone

    # The practitioner revokes the first link from the delivery page.
    desk = browser.new_context(locale="it-IT", viewport={"width": 1280, "height": 900})
    office = desk.new_page()
    login(office, live_server, practitioner.email, PASSWORD)
    office.goto(f"{live_server.url}/email/invii/{deliveries[0].pk}/")
    office.get_by_role("button", name="Revoca il link", exact=True).click()
    assert "Link revocato" in office.locator(".messages").inner_text()
    assert SecureLink.objects.get(delivery=deliveries[0]).revoked_at is not None

    # Another practitioner does not find the delivery.
    other = PractitionerFactory(email="luca@example.test")
    stranger = browser.new_context(locale="it-IT").new_page()
    login(stranger, live_server, other.email, PASSWORD)
    answer = stranger.goto(f"{live_server.url}/email/invii/{deliveries[1].pk}/")
    assert answer is not None and answer.status == 404
    desk.close()
    stranger.context.close()

    answer = page.goto(links[0])
    assert answer is not None and answer.status == 410
    assert "revocato" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("La tua data di nascita").count() == 0

    answer = page.goto(re.sub(r"[0-9a-f]{64}", "0" * 64, links[1]))
    assert answer is not None and answer.status == 404

    link = SecureLink.objects.get(delivery=deliveries[1])
    with time_machine.travel(link.expires_at + datetime.timedelta(minutes=1)):
        answer = page.goto(links[1])
        assert answer is not None and answer.status == 410
        assert "scaduto" in page.get_by_role("alert").inner_text()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        save_screenshot(page, "secure-link-4-expired")
    only_this_origin(page, live_server)
