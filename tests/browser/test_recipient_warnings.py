"""A practitioner about to send to a wrong address, in Chromium: the confirmation page of a
batch shows each warning with the address; without the tick nothing leaves, with it the
flagged invoice goes too."""

from __future__ import annotations

import pytest

from emailsettings.models import Delivery, DeliveryStatus
from emailsettings.outbox import recipientcheck
from tests.conftest import login, save_screenshot
from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory, PractitionerFactory
from tests.support.fakedns import FakeResolver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "password-di-prova"


def test_flagged_addresses_need_the_tick(page, live_server, monkeypatch):
    resolver = FakeResolver({("studio-bianchi.it", "MX"): ["10 mx.studio-bianchi.it."]})
    monkeypatch.setattr(recipientcheck, "default_resolver", lambda: resolver)
    practitioner = PractitionerFactory(email="maria@example.test")

    def invoice(email: str, number: str, name: str):
        patient = PatientFactory(practitioner=practitioner, first_name=name, email=email)
        return InvoiceFactory(patient=patient, number=number)

    typo = invoice("anna@gmial.com", "1/2026", "Anna")
    nomail = invoice("luca@chiuso-da-tempo.it", "2/2026", "Luca")
    shared_a = invoice("famiglia@studio-bianchi.it", "3/2026", "Sara")
    shared_b = invoice("famiglia@studio-bianchi.it", "4/2026", "Marco")
    changed = invoice("piero.nuovo@studio-bianchi.it", "5/2026", "Piero")
    DeliveryFactory(
        invoice=InvoiceFactory(patient=changed.patient, number="0/2026"),
        recipient="piero@studio-bianchi.it",
        status=DeliveryStatus.SENT,
    )
    fine = invoice("giulia@studio-bianchi.it", "6/2026", "Giulia")
    batch = [typo, nomail, shared_a, shared_b, changed, fine]

    login(page, live_server, practitioner.email, PASSWORD)
    query = "&".join(f"fattura={item.pk}" for item in batch)
    page.goto(f"{live_server.url}/email/invio/?{query}")

    def row(item):
        return page.locator(f'tr[data-invoice="{item.pk}"]')

    assert "forse «gmail.com»" in row(typo).inner_text()
    assert "anna@gmial.com" in row(typo).locator("[data-address-warning=typo]").inner_text()
    assert row(nomail).locator("[data-address-warning=no_mail_server]").count() == 1
    assert "Marco" in row(shared_a).locator("[data-address-warning=shared]").inner_text()
    assert "Sara" in row(shared_b).locator("[data-address-warning=shared]").inner_text()
    changed_text = row(changed).locator("[data-address-warning=changed]").inner_text()
    assert "piero.nuovo@studio-bianchi.it" in changed_text
    assert "piero@studio-bianchi.it" in changed_text
    assert row(fine).locator("[data-address-warnings]").count() == 0
    save_screenshot(page, "recipient-warnings-1-confirm")

    # Ticking all but one: nothing leaves, and the page says which one.
    for item in (typo, nomail, shared_a, shared_b):
        row(item).get_by_label("L'indirizzo è giusto: invia comunque").check()
    page.get_by_role("button", name="Invia 6 fatture").click()
    page.wait_for_load_state()
    assert not Delivery.objects.filter(invoice__in=batch).exists()
    assert row(changed).get_by_role("alert").is_visible()
    assert row(typo).get_by_label("L'indirizzo è giusto: invia comunque").is_checked()
    save_screenshot(page, "recipient-warnings-2-refused")

    row(changed).get_by_label("L'indirizzo è giusto: invia comunque").check()
    page.get_by_role("button", name="Invia 6 fatture").click()
    page.wait_for_url("**/email/invio/avanzamento/?*")
    assert Delivery.objects.filter(invoice__in=batch).count() == 6
