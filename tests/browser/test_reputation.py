"""The Smart Mail suspension in Chromium: the banner on every page, the page that explains it
with the numbers, and the one click that sends the held invoices through the practitioner's
own mailbox."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from emailsettings.failures import ErrorClass
from emailsettings.models import Channel, Delivery, DeliveryStatus, Reputation, ReputationState
from tests.conftest import login, save_screenshot
from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory, PractitionerFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def suspended(live_server, smtp_account_factory):
    practitioner = PractitionerFactory(email="maria@example.test", last_name="Rossi")
    Reputation.objects.create(
        practitioner=practitioner,
        state=ReputationState.SUSPENDED,
        window_days=7,
        recipients=41,
        bounced=4,
        reason="bounces",
    )
    held = [
        DeliveryFactory(
            invoice=InvoiceFactory(patient=PatientFactory(practitioner=practitioner)),
            status=DeliveryStatus.HELD,
            last_error_class=ErrorClass.REPUTATION_HOLD,
        )
        for _n in range(2)
    ]
    smtp_account_factory(None, practitioner=practitioner, status="ok", email="maria@studio.test")
    return practitioner, held


def test_banner_page_and_one_click_send_through_own_mailbox(page, live_server, suspended):
    practitioner, held = suspended
    login(page, live_server, practitioner.email, "password-di-prova")

    banner = page.locator("#reputation-banner")
    expect(banner).to_contain_text("Smart Mail è sospeso per il tuo account")
    banner.get_by_role("link").click()

    expect(page.locator("h1")).to_have_text("Reputazione Smart Mail")
    expect(page.locator("[data-reputation-numbers]")).to_contain_text(
        "4 indirizzi su 41 rimbalzati negli ultimi 7 giorni (9,8%)"
    )
    expect(page.locator("#held")).to_contain_text("2 fatture con Smart Mail sono trattenute")
    save_screenshot(page, "reputation-suspended")

    page.get_by_role("button", name="Invia subito con la tua casella maria@studio.test").click()

    expect(page.locator(".messages")).to_contain_text("2 fatture messe in coda con la tua casella")
    rows = Delivery.objects.filter(pk__in=[row.pk for row in held])
    assert {(row.status, row.channel) for row in rows} == {(DeliveryStatus.QUEUED, Channel.SMTP)}
    assert {row.from_header for row in rows} == {'"Studio Bianchi" <maria@studio.test>'}
    expect(page.locator("[data-send-held]")).to_have_count(0)
