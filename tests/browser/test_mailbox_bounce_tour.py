"""The tour of the mailbox back channel in Chromium, as a new user takes it in ``make run``:
the "Server di test locale" mailbox, "Leggi le risposte dalla casella" on, two invoices sent
from "Fatture" by a real worker; the local server's provider bounces the one to
``rimbalza.test`` and answers the PEC one with receipts; the beat's read job (the real task,
run on the worker) turns the report into "rimbalzata", with the server's reason, and
"consegnata", with the receipts to download; the invoices are in the Sent folder."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from emailsettings.models import Delivery, DeliveryStatus
from emailsettings.tasks import read_mailboxes_task
from tests.conftest import login, save_screenshot, wait_until
from tests.factories import InvoiceFactory, PatientFactory
from tests.support.devmail import USER

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

PASSWORD = "password-di-prova"


def test_a_bounce_and_a_pec_receipt_reach_the_report(
    page, live_server, practitioner, local_mail_server, celery_worker_factory
):
    server = local_mail_server
    InvoiceFactory(
        patient=PatientFactory(
            practitioner=practitioner,
            first_name="Davide",
            last_name="Conti",
            email="davide.conti@rimbalza.test",
        ),
        number="1/2026",
    )
    InvoiceFactory(
        patient=PatientFactory(
            practitioner=practitioner,
            first_name="Francesca",
            last_name="Ricci",
            email="francesca.ricci@pec.example.test",
            pec="francesca.ricci@pec.example.test",
        ),
        number="2/2026",
    )
    failed: list[str] = []
    page.on("pageerror", lambda error: failed.append(f"script error: {error}"))

    login(page, live_server, practitioner.email, PASSWORD)
    page.goto(f"{live_server.url}/email/impostazioni/#smtp")
    section = page.locator("#smtp")
    section.get_by_label("Provider").select_option(label="Server di test locale")
    section.get_by_label("Indirizzo email").fill(USER)
    section.get_by_label("Indirizzo email").press("Tab")
    # The user name follows the address (the local preset logs in with the address).
    expect(section.get_by_label("Nome utente")).to_have_value(USER)
    section.get_by_label("Password").fill("qualsiasi")
    section.get_by_label("Nome mittente").fill("Dott.ssa Maria Rossi")
    section.get_by_role("button", name="Salva configurazione SMTP").click()
    expect(page.get_by_text("Configurazione SMTP salvata")).to_be_visible()
    # The settings come one step at a time: «Come inviare», then back to «La tua casella».
    page.locator('#settings-checklist [data-step-link="invio"]').click()
    page.locator("#channel").get_by_label("SMTP personale").check()
    page.get_by_role("button", name="Salva modalità di invio").click()
    expect(page.get_by_text("Le fatture partiranno dalla tua casella")).to_be_visible()
    page.locator('#settings-checklist [data-step-link="casella"]').click()

    reading = page.locator("#smtp-reading")
    if not reading.evaluate("element => element.open"):
        reading.locator("summary").click()
    reading.get_by_label("Leggi le risposte dalla casella").check()
    reading.get_by_role("button", name="Salva").click()
    expect(page.locator("#smtp-reading-state")).to_contain_text("attiva")
    save_screenshot(page, "bounce-tour-1-reading-on")

    worker = celery_worker_factory(**server.worker_env())
    page.goto(f"{live_server.url}/fatture/")
    page.get_by_label("Seleziona la fattura 1/2026").check()
    page.get_by_label("Seleziona la fattura 2/2026").check()
    page.get_by_role("button", name="Invia le selezionate").click()
    page.wait_for_url("**/email/invio/?*")
    page.get_by_role("button", name="Invia 2 fatture").click()
    page.locator('[data-state="done"]').wait_for(state="visible", timeout=60000)
    assert page.locator("tr[data-delivery] [data-status]").all_inner_texts() == ["inviata"] * 2

    # The provider's notices: the bounce report and the two PEC receipts.
    server.wait_for(3)
    bounced = Delivery.objects.get(recipient="davide.conti@rimbalza.test")
    pec = Delivery.objects.get(recipient="francesca.ricci@pec.example.test")
    read_mailboxes_task()  # what beat runs every minute: the read itself runs on the worker
    wait_until(
        lambda: (
            set(
                Delivery.objects.filter(pk__in=[bounced.pk, pec.pk]).values_list(
                    "status", flat=True
                )
            )
            == {DeliveryStatus.BOUNCED, DeliveryStatus.DELIVERED}
        ),
        timeout=60,
        message="the mailbox was not read:\n" + worker.log()[-3000:],
    )

    page.goto(f"{live_server.url}/email/invii/")
    rows = page.locator("tr[data-delivery]")
    bounced_row = rows.filter(has_text="davide.conti@rimbalza.test")
    expect(bounced_row).to_contain_text("rimbalzata")
    expect(bounced_row.locator(".last-error")).to_have_text(
        "Rimbalzata: il destinatario non accetta il messaggio Correggi l'indirizzo"
    )
    expect(rows.filter(has_text="francesca.ricci@pec.example.test")).to_contain_text("consegnata")
    save_screenshot(page, "bounce-tour-2-report")

    page.goto(f"{live_server.url}/email/invii/{bounced.pk}/")
    expect(page.locator("main")).to_contain_text("User unknown")
    page.goto(f"{live_server.url}/email/invii/{pec.pk}/")
    receipts = page.locator("#pec-receipts")
    expect(receipts).to_contain_text("Ricevuta di accettazione")
    expect(receipts).to_contain_text("Ricevuta di avvenuta consegna")
    with page.expect_download() as download:
        receipts.get_by_role("link", name="scarica (.eml)").last.click()
    assert b"X-Ricevuta: avvenuta-consegna" in open(download.value.path(), "rb").read()
    assert download.value.suggested_filename == "ricevuta-avvenuta-consegna-2-2026.eml"
    # The outcome is said at the top, in the guide's words.
    expect(page.locator("[data-pec-summary]")).to_contain_text(
        "Consegnata (ricevuta PEC di avvenuta consegna del"
    )
    save_screenshot(page, "bounce-tour-3-pec-receipts")

    # Both invoices are in the mailbox's Sent folder, as sent.
    sent = wait_until(lambda: len(server.store.messages(USER, "Sent")) == 2 or None, timeout=30)
    assert sent
    assert failed == []
