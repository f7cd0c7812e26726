"""The pages on a phone (390 px wide) in Chromium: nothing wider than the screen, stacked
table cells say what they are, the report's filters stay inside their card, and the keyword
panel is a short list of chips next to the editor."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from emailsettings.models import DeliveryEvent, DeliveryStatus
from emailsettings.outbox.reminders import rules_for
from tests.conftest import login, save_screenshot
from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory, PractitionerFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def phone(browser, live_server):
    context = browser.new_context(locale="it-IT", viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


@pytest.fixture
def data(live_server):
    practitioner = PractitionerFactory(email="maria@example.test")
    invoice = InvoiceFactory(
        patient=PatientFactory(
            practitioner=practitioner,
            first_name="Anna",
            last_name="Russo",
            email="anna.russo.con.un.indirizzo.lungo@studio-esempio.example.test",
        ),
        number="12/2026",
    )
    failed = DeliveryFactory(
        invoice=invoice,
        status=DeliveryStatus.FAILED,
        recipient=invoice.patient.email,
        last_error_class="recipient_refused",
        last_error_code=550,
        last_error_enhanced="5.1.1",
        last_error_text="5.1.1 <anna.russo.con.un.indirizzo.lungo@studio-esempio.example.test>: "
        "Recipient address rejected: User unknown in virtual mailbox table",
        created_at=timezone.now() - datetime.timedelta(hours=1),
    )
    DeliveryEvent.objects.create(
        delivery=failed,
        kind="attempt",
        status="failed",
        phase="rcpt",
        reply_code=550,
        enhanced_code="5.1.1",
        text="Recipient address rejected: User unknown in virtual mailbox table",
    )
    return practitioner, failed


def page_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def label_of(cell) -> str:
    return cell.evaluate("el => getComputedStyle(el, '::before').content")


def test_delivery_detail_fits_the_phone_and_its_timeline_cells_are_labelled(
    phone, live_server, data
):
    practitioner, failed = data
    login(phone, live_server, practitioner.email, "password-di-prova")
    phone.goto(f"{live_server.url}/email/invii/{failed.pk}/")
    expect(phone.locator("table.timeline")).to_be_visible()
    assert page_width(phone) <= PHONE["width"]
    reply = phone.locator("table.timeline tbody tr").first.locator("td").last
    assert label_of(reply) == '"Risposta del server"'
    # The label sits beside the value, not on top of it.
    assert reply.bounding_box()["width"] <= PHONE["width"]
    save_screenshot(phone, "phone-delivery-detail")


def test_report_rows_are_labelled_and_the_filters_stay_in_their_card(phone, live_server, data):
    practitioner, _failed = data
    login(phone, live_server, practitioner.email, "password-di-prova")
    phone.goto(f"{live_server.url}/email/invii/")
    assert page_width(phone) <= PHONE["width"]
    row = phone.locator("table.report-table tbody tr").first
    labels = [label_of(cell) for cell in row.locator("td[data-label]").all()]
    assert labels[:4] == ['"Data e ora"', '"Paziente"', '"Destinatario"', '"Fattura"']
    assert '"Ultimo errore"' in labels

    # The filters wait behind «Filtri»: the first screen shows results, and the counters
    # stay quick filters.
    toggle = phone.get_by_role("button", name="Filtri")
    expect(phone.locator("#report-filters")).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    first_row = phone.locator("table.report-table tbody tr").first.bounding_box()
    assert first_row["y"] < PHONE["height"], "no result on the first screen"
    save_screenshot(phone, "phone-report-filters-closed")
    toggle.click()
    expect(phone.locator("#report-filters")).to_be_visible()
    groups = phone.locator("#report-filters .status-group legend").all_inner_texts()
    assert groups == ["Da sistemare", "In corso", "Riuscite", "Programmate"]

    card = phone.locator("#report-filters").bounding_box()
    for control in phone.locator("#report-filters input, #report-filters select").all():
        if not control.is_visible():
            continue
        box = control.bounding_box()
        assert box["x"] >= card["x"] - 0.5, control.get_attribute("name")
        assert box["x"] + box["width"] <= card["x"] + card["width"] + 0.5, control.get_attribute(
            "name"
        )
    save_screenshot(phone, "phone-report")

    toggle.click()
    expect(phone.locator("#report-filters")).to_be_hidden()
    phone.locator('.counters a[data-status="failed"]').click()
    phone.wait_for_url("**/email/invii/?*status=failed*")
    statuses = phone.locator("table.report-table tbody tr .status .badge").all_inner_texts()
    assert statuses and set(statuses) == {"non riuscita"}
    expect(phone.locator("[data-active-filters]")).to_have_text("1")


def test_invoice_list_fits_and_says_what_each_cell_is(phone, live_server, data):
    practitioner, _failed = data
    login(phone, live_server, practitioner.email, "password-di-prova")
    phone.goto(f"{live_server.url}/fatture/")
    assert page_width(phone) <= PHONE["width"]
    row = phone.locator("table.invoice-table tbody tr").first
    total = row.locator("td", has_text="€ 1.234,56")
    assert label_of(total) == '"Totale"'
    # The amount stays on one line.
    lines = total.evaluate(
        "el => { const r = document.createRange(); r.selectNodeContents(el);"
        " return new Set(Array.from(r.getClientRects()).map(b => Math.round(b.top))).size; }"
    )
    assert lines == 1
    save_screenshot(phone, "phone-invoices")


def test_settings_page_fits_and_the_keywords_are_a_compact_list_by_the_editor(
    phone, live_server, data
):
    practitioner, _failed = data
    login(phone, live_server, practitioner.email, "password-di-prova")
    phone.goto(f"{live_server.url}/email/impostazioni/")
    expect(phone.locator("#covermail-form")).to_have_attribute("data-preview-state", "ready")
    assert page_width(phone) <= PHONE["width"]
    body = phone.locator("#id_body_template").bounding_box()
    panel = phone.locator(".keyword-panel").bounding_box()
    assert 0 <= panel["y"] - (body["y"] + body["height"]) <= 60
    assert panel["height"] < 300
    # A keyword chip still works with a tap.
    phone.locator("#id_body_template").tap()
    phone.locator("#id_body_template").press("Control+End")
    phone.get_by_role("button", name="${importo} Importo").tap()
    expect(phone.locator("#id_body_template")).to_have_value(
        phone.locator("#id_body_template").input_value()
    )
    assert phone.locator("#id_body_template").input_value().endswith("${importo}")
    save_screenshot(phone, "phone-settings")


def test_patient_card_fits(phone, live_server, data):
    practitioner, failed = data
    login(phone, live_server, practitioner.email, "password-di-prova")
    phone.goto(f"{live_server.url}/pazienti/{failed.patient_id}/modifica/")
    assert page_width(phone) <= PHONE["width"]
    save_screenshot(phone, "phone-patient")


def test_reminder_pages_fit_the_phone(phone, live_server, data):
    practitioner, _failed = data
    rules = rules_for(practitioner)
    rules.enabled = True
    rules.save()
    InvoiceFactory(
        patient=PatientFactory(practitioner=practitioner, first_name="Piero", last_name="Neri"),
        number="13/2026",
        due_date=timezone.localdate() - datetime.timedelta(days=10),
    )
    login(phone, live_server, practitioner.email, "password-di-prova")
    phone.goto(f"{live_server.url}/email/solleciti/")
    assert page_width(phone) <= PHONE["width"]
    row = phone.locator("#upcoming-reminders tbody tr").first
    assert label_of(row.locator("td", has_text="Sollecito 1")) == '"Sollecito"'
    save_screenshot(phone, "phone-reminders-upcoming")
    phone.goto(f"{live_server.url}/email/solleciti/regole/")
    assert page_width(phone) <= PHONE["width"]
    save_screenshot(phone, "phone-reminders-rules")
