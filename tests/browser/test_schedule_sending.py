"""A practitioner schedules an invoice for tomorrow from the confirmation page in Chromium,
reads "programmata per …" in the report and cancels it from the detail page: one «Annulla»
cancels the invoice for the patient, the other recipients and the copy."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from emailsettings.models import Delivery, DeliveryStatus, EmailSettings, RecipientRole
from tests.conftest import login, save_screenshot
from tests.factories import InvoiceFactory, PatientFactory, PractitionerFactory

pytestmark = pytest.mark.browser

PASSWORD = "password-di-prova"


def test_schedule_for_tomorrow_read_it_in_the_report_and_cancel_it(
    page, live_server, transactional_db
):
    practitioner = PractitionerFactory(email="maria@example.test")
    invoice = InvoiceFactory(
        patient=PatientFactory(
            practitioner=practitioner,
            first_name="Anna",
            last_name="Russo",
            email="anna@example.test",
            extra_emails=["mamma.russo@example.test", "papa.russo@example.test"],
        ),
        number="1/2026",
    )
    EmailSettings.objects.create(practitioner=practitioner, copy_to_self=True)
    tomorrow = (timezone.localtime() + datetime.timedelta(days=1)).replace(
        hour=9, minute=30, second=0, microsecond=0
    )

    login(page, live_server, practitioner.email, PASSWORD)
    page.goto(f"{live_server.url}/email/invio/?fattura={invoice.pk}")
    assert "mamma.russo@example.test" in page.locator("table.send-table").inner_text()

    # A date in the past is refused on the same page; the selection stays.
    page.get_by_label("Invia il…").check()
    page.fill("#id_invia_il", "2020-01-01T09:00")
    page.get_by_role("button", name="Invia 1 fattura").click()
    page.wait_for_load_state()
    assert "Scegli una data e un'ora future." in page.locator("#send-schedule").inner_text()
    assert page.locator('input[name="fattura"]').count() == 1
    assert not Delivery.objects.exists()
    save_screenshot(page, "schedule-1-refused")

    # The date shows only with "Invia il…".
    page.get_by_label("Invia subito").check()
    assert page.locator("#id_invia_il").is_hidden()
    page.get_by_label("Invia il…").check()
    assert page.locator("#id_invia_il").is_visible()
    assert page.locator("#id_invia_il").evaluate("el => el === document.activeElement")
    page.fill("#id_invia_il", tomorrow.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Invia 1 fattura").click()

    page.wait_for_url("**/email/invio/avanzamento/?*")
    message = page.locator(".messages").inner_text()
    assert "1 fattura (4 email) programmata: partirà" in message
    assert "9:30" in message
    rows = list(Delivery.objects.order_by("pk"))
    assert [row.role for row in rows] == [
        RecipientRole.PATIENT,
        RecipientRole.EXTRA,
        RecipientRole.EXTRA,
        RecipientRole.COPY,
    ]
    assert {row.status for row in rows} == {DeliveryStatus.SCHEDULED}
    assert {row.scheduled_for for row in rows} == {tomorrow}
    # The progress page counts the invoice, not its emails, and names each email's role.
    counts = page.locator(".send-counts").inner_text()
    assert "Fatture\n1 (4 email)" in counts
    roles = page.locator("table.send-table [data-role]").all_inner_texts()
    assert roles == ["paziente", "altro destinatario", "altro destinatario", "copia per te"]
    save_screenshot(page, "schedule-2-progress")

    page.goto(f"{live_server.url}/email/invii/")
    listing = page.locator("table").first.inner_text()
    assert "programmata per" in listing
    assert "altro destinatario" in listing
    page.locator(f"#invio-{rows[0].pk} td.when a").click()
    page.wait_for_url(f"**/email/invii/{rows[0].pk}/**")
    assert "programmata per" in page.locator("#stato").inner_text().lower()
    assert "comprende 4 email" in page.locator(".scheduled-together").inner_text()
    page.get_by_text("Annulla l'invio programmato").click()
    assert "per nessun destinatario (4 email)" in page.locator("details[open]").inner_text()
    page.get_by_role("button", name="Sì, annulla l'invio").click()
    page.wait_for_load_state()
    assert "non partirà per nessun destinatario (4 email)" in page.locator(".messages").inner_text()
    assert page.locator("#stato .badge").inner_text() == "annullata"
    save_screenshot(page, "schedule-3-cancelled")

    # Neither parent nor the copy would still be sent.
    assert {row.status for row in Delivery.objects.all()} == {DeliveryStatus.CANCELLED}
