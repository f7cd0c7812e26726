"""Payment reminders in Chromium: the practitioner turns them on in the rules editor (a
keyword clicked into a level's text, the live preview, a typo refused under its editor), then
reads «In arrivo», skips one reminder and pauses another."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone

from emailsettings.models import ReminderRules, ReminderSkip
from psicogest.models import Invoice
from tests.conftest import login, save_screenshot
from tests.factories import InvoiceFactory, PatientFactory, PractitionerFactory

pytestmark = pytest.mark.browser

PASSWORD = "password-di-prova"


def test_turn_reminders_on_then_skip_and_pause_in_arrivo(page, live_server, transactional_db):
    practitioner = PractitionerFactory(email="maria@example.test")
    today = timezone.localdate()
    # Level 1 (7 days after the due date) falls in three days: inside the 14 days whatever
    # the weekday and the holidays around it.
    soon = InvoiceFactory(
        patient=PatientFactory(practitioner=practitioner, first_name="Anna", last_name="Russo"),
        number="3/2026",
        due_date=today - datetime.timedelta(days=4),
    )
    late = InvoiceFactory(
        patient=PatientFactory(practitioner=practitioner, first_name="Piero", last_name="Neri"),
        number="4/2026",
        due_date=today - datetime.timedelta(days=10),
    )

    login(page, live_server, practitioner.email, PASSWORD)
    page.goto(f"{live_server.url}/email/solleciti/")
    assert "I solleciti sono spenti" in page.content()
    page.get_by_role("link", name="Regole dei solleciti").click()
    page.wait_for_url("**/email/solleciti/regole/")

    page.get_by_label("Invia i solleciti di pagamento").check()
    body = page.locator("#id_l1-body_template")
    body.fill("${saluto} ${nominativo}, sono passati ")
    body.press("End")
    page.locator("#reminders-form button.keyword[data-keyword='giorni_ritardo']").click()
    assert body.input_value().endswith("sono passati ${giorni_ritardo}")
    preview = page.locator("#level-1 [data-preview-text]")
    preview.filter(has_text="sono passati").wait_for()
    # The preview is for the first unpaid invoice in the list.
    assert "Gentile" in preview.inner_text()

    page.locator("#id_l2-body_template").fill("Restano ${importo_da_pagre}.")
    errors = page.locator("#level-2 [data-errors-for='body_template']")
    errors.filter(has_text="importo_da_pagare").wait_for()
    save_screenshot(page, "reminders-1-typo")
    page.locator("#id_l2-body_template").fill("Restano ${importo_da_pagare}.")
    page.locator("#level-2 [data-errors-for='body_template']").wait_for(state="hidden")
    page.get_by_role("button", name="Salva le regole").click()
    page.wait_for_load_state()
    assert "Regole dei solleciti salvate." in page.locator(".messages").inner_text()
    rules = ReminderRules.objects.get(practitioner=practitioner)
    assert rules.enabled
    assert rules.levels.get(level=1).body_template.endswith("${giorni_ritardo}")

    page.goto(f"{live_server.url}/email/solleciti/")
    table = page.locator("#upcoming-reminders")
    assert "Sollecito 1" in table.locator(f"tr[data-upcoming='{soon.pk}']").inner_text()
    assert "Piero Neri" in table.inner_text()
    save_screenshot(page, "reminders-2-upcoming")

    table.locator(f"tr[data-upcoming='{soon.pk}'] button[data-skip]").click()
    page.wait_for_load_state()
    assert "Sollecito 1 della fattura 3/2026 saltato." in page.locator(".messages").inner_text()
    assert ReminderSkip.objects.filter(invoice=soon, level=1).exists()

    row = page.locator(f"tr[data-upcoming='{late.pk}']")
    row.get_by_text("Sospendi", exact=True).click()
    until = today + datetime.timedelta(days=30)
    row.locator(f"#id_p{late.pk}-until").fill(until.isoformat())
    row.locator(f"#id_p{late.pk}-reason").fill("Ha chiesto una dilazione")
    row.get_by_role("button", name="Sospendi i solleciti").click()
    page.wait_for_load_state()
    assert page.locator(f"tr[data-upcoming='{late.pk}']").count() == 0
    paused = page.locator("#paused-reminders").inner_text()
    assert "4/2026" in paused and "Ha chiesto una dilazione" in paused
    assert Invoice.objects.get(pk=late.pk).reminders_paused_until == until
    save_screenshot(page, "reminders-3-paused")

    # «Segna come pagata» from the invoice list: the row says so, and «In arrivo» drops it.
    resumed = Invoice.objects.get(pk=late.pk)
    resumed.reminders_paused_until = None
    resumed.save()
    page.goto(f"{live_server.url}/fatture/")
    page.locator(f"tr[data-invoice='{late.pk}'] button[data-mark-paid]").click()
    page.wait_for_load_state()
    assert "segnata come pagata" in page.locator(".messages").inner_text()
    assert "pagata" in page.locator(f"tr[data-invoice='{late.pk}'] [data-payment]").inner_text()
    assert Invoice.objects.get(pk=late.pk).paid_at is not None
    page.goto(f"{live_server.url}/email/solleciti/")
    assert page.locator(f"tr[data-upcoming='{late.pk}']").count() == 0
