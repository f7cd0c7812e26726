"""A practitioner sends invoices from "Fatture" in Chromium; a real Celery worker sends them
through Smart Mail (the embedded .eml backend) and the progress page updates by itself."""

from __future__ import annotations

import email
from email import policy

import pytest

from emailsettings.models import Channel, Delivery, DeliveryStatus
from tests.conftest import login, save_screenshot, wait_until
from tests.factories import InvoiceFactory, PatientFactory, PractitionerFactory

pytestmark = pytest.mark.browser

PASSWORD = "password-di-prova"


def test_select_confirm_and_watch_the_batch_get_sent(
    page, live_server, transactional_db, celery_worker_factory, tmp_path
):
    practitioner = PractitionerFactory(email="maria@example.test")
    anna = InvoiceFactory(
        patient=PatientFactory(
            practitioner=practitioner,
            first_name="Anna",
            last_name="Russo",
            email="anna@example.test",
        ),
        number="1/2026",
    )
    luca = InvoiceFactory(
        patient=PatientFactory(
            practitioner=practitioner,
            first_name="Luca",
            last_name="Verdi",
            email="luca@example.test",
        ),
        number="2/2026",
    )
    not_selected = InvoiceFactory(
        patient=PatientFactory(practitioner=practitioner, last_name="Escluso"), number="3/2026"
    )
    worker_var = tmp_path / "worker-var"

    login(page, live_server, practitioner.email, PASSWORD)
    page.goto(f"{live_server.url}/fatture/")
    bulk = page.get_by_role("button", name="Invia le selezionate")
    assert bulk.is_disabled(), "nothing selected yet"
    page.get_by_label("Seleziona la fattura 1/2026").check()
    page.get_by_label("Seleziona la fattura 2/2026").check()
    assert page.locator("[data-selected-count]").inner_text() == "2 fatture selezionate"
    save_screenshot(page, "send-invoices-1-list-selected")
    bulk.click()

    page.wait_for_url("**/email/invio/?*")
    assert page.get_by_role("heading", level=1).inner_text() == "Conferma invio per email"
    table = page.locator("table.send-table")
    assert "anna@example.test" in table.inner_text()
    assert "luca@example.test" in table.inner_text()
    assert "Smart Mail" in table.inner_text()
    assert "Fattura n. 1/2026" in table.inner_text()
    assert "3/2026" not in table.inner_text()
    save_screenshot(page, "send-invoices-2-confirm")
    page.get_by_role("button", name="Invia 2 fatture").click()

    page.wait_for_url("**/email/invio/avanzamento/?*")
    assert "2 fatture messe in coda per l'invio." in page.locator(".messages").inner_text()
    # No worker yet: the batch waits in the queue, and the page says so.
    assert page.locator('[data-count="in_flight"]').inner_text() == "2"
    assert page.locator('[data-state="running"]').is_visible()
    assert page.locator("tr[data-delivery] [data-status]").all_inner_texts() == ["in coda"] * 2
    save_screenshot(page, "send-invoices-3-progress-queued")

    # Smart Mail in its embedded default: the worker writes .eml files under its var/
    # (the test process itself runs with Django's locmem backend).
    celery_worker_factory(
        PSICOGEST_VAR_DIR=str(worker_var), EMAIL_BACKEND="emailsettings.backends.EmlFileBackend"
    )
    # No reload from here on: the page's own polling must bring it to the end.
    done = page.locator('[data-state="done"]')
    done.wait_for(state="visible", timeout=60000)
    assert page.locator('[data-count="sent"]').inner_text() == "2"
    assert page.locator('[data-count="in_flight"]').inner_text() == "0"
    assert page.locator('[data-count="failed"]').inner_text() == "0"
    badges = page.locator("tr[data-delivery] [data-status]")
    assert badges.all_inner_texts() == ["inviata", "inviata"]
    save_screenshot(page, "send-invoices-4-progress-done")

    deliveries = Delivery.objects.filter(practitioner=practitioner)
    assert {d.invoice_id for d in deliveries} == {anna.pk, luca.pk}
    assert {d.status for d in deliveries} == {DeliveryStatus.SENT}
    assert {d.channel for d in deliveries} == {Channel.SMART_MAIL}
    assert not Delivery.objects.filter(invoice=not_selected).exists()

    # What the worker wrote: one .eml per invoice, to the right patient, with the PDF.
    files = wait_until(lambda: sorted((worker_var / "smartmail").glob("*.eml")), timeout=10)
    assert len(files) == 2
    messages = [email.message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]
    assert sorted(str(m["To"]) for m in messages) == ["anna@example.test", "luca@example.test"]
    for message in messages:
        attachments = [part.get_filename() for part in message.iter_attachments()]
        assert any(name and name.endswith(".pdf") for name in attachments)

    page.get_by_role("link", name="Vai all'elenco invii email").click()
    page.wait_for_url("**/email/invii/")
    assert "anna@example.test" in page.content()


def test_patient_without_email_is_refused_in_the_browser(page, live_server, transactional_db):
    practitioner = PractitionerFactory(email="maria@example.test")
    InvoiceFactory(
        patient=PatientFactory(practitioner=practitioner, last_name="Senzamail", email=""),
        number="4/2026",
    )
    login(page, live_server, practitioner.email, PASSWORD)
    page.goto(f"{live_server.url}/fatture/")
    page.get_by_role("row", name="4/2026").get_by_role("link", name="Invia per email").click()
    page.wait_for_url("**/email/invio/?*")
    refused = page.locator(".send-refused")
    assert "1 fattura non può essere inviata" in refused.inner_text()
    assert "4/2026" in refused.inner_text()
    assert page.get_by_role("button", name="Invia 1 fattura").count() == 0
    save_screenshot(page, "send-invoices-refused")
    assert not Delivery.objects.exists()
