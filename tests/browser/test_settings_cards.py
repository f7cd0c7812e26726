"""The settings page's cards in Chromium: each save answers inside its card (announced with
role="status"), without reloading the page, so unsaved edits elsewhere survive; leaving the
page with unsaved edits asks first."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from emailsettings.covermail.rendering import DEFAULT_SUBJECT, cover_mail_templates_for
from emailsettings.models import Channel, EmailSettings, SmtpAccount
from tests.conftest import login, save_screenshot
from tests.factories import InvoiceFactory, PatientFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SETTINGS = "/email/impostazioni/"


@pytest.fixture
def settings_page(page, live_server, practitioner, settings):
    settings.EMAILSETTINGS_LOCAL_TEST_SERVER = {"host": "localhost", "port": 1025}
    InvoiceFactory(patient=PatientFactory(practitioner=practitioner, last_name="Ferrari"))
    login(page, live_server, practitioner.email, "password-di-prova")
    page.goto(live_server.url + SETTINGS)
    expect(page.locator("#covermail-form")).to_have_attribute("data-preview-state", "ready")
    # A marker that a full page load would wipe out.
    page.evaluate("window.__sameDocument = true")
    return page


def open_step(page, slug: str) -> None:
    """Open one step of the page from the checklist (in place, with JavaScript)."""
    page.locator(f'#settings-checklist [data-step-link="{slug}"]').click()
    expect(page.locator(f"#passo-{slug}")).to_be_visible()


def same_document(page) -> bool:
    return page.evaluate("window.__sameDocument === true")


def test_the_cover_mail_confirmation_shows_in_its_card_for_eyes_and_screen_readers(
    settings_page, practitioner
):
    page = settings_page
    page.locator("#id_subject_template").fill("Fattura ${numero_fattura}")
    page.get_by_role("button", name="Salva", exact=True).click()

    status = page.locator("#covermail-messages")
    expect(status).to_have_text("Mail di accompagnamento salvata.")
    expect(status).to_have_attribute("role", "status")
    expect(status).to_be_in_viewport()
    assert (
        page.locator("#covermail")
        .get_by_role("status")
        .filter(has_text="Mail di accompagnamento salvata.")
        .count()
        == 1
    )
    expect(page.locator(".messages")).to_have_count(0)
    assert cover_mail_templates_for(practitioner)[0] == "Fattura ${numero_fattura}"
    assert same_document(page)
    assert page.url.endswith(SETTINGS)
    save_screenshot(page, "settings-covermail-saved")


def test_saving_one_card_keeps_the_unsaved_edits_of_another(settings_page, practitioner):
    page = settings_page
    page.locator("#id_subject_template").fill("Oggetto non ancora salvato")
    covermail_note = page.locator("#covermail [data-unsaved-note]")
    expect(covermail_note).to_have_text("Modifiche non salvate")

    # One step at a time: «Testo» is shown, «Come inviare» is one click away.
    expect(page.locator("#passo-invio")).to_be_hidden()
    open_step(page, "invio")
    expect(page.locator("#passo-testo")).to_be_hidden()
    page.get_by_role("button", name="Salva modalità di invio").click()
    expect(page.locator("#channel-messages")).to_have_text("Le fatture partiranno con Smart Mail.")
    expect(page.locator("#channel-messages")).to_be_in_viewport()
    open_step(page, "testo")
    expect(page.locator("#id_subject_template")).to_have_value("Oggetto non ancora salvato")
    expect(covermail_note).to_be_visible()
    assert same_document(page)
    assert EmailSettings.objects.get(practitioner=practitioner).channel == Channel.SMART_MAIL
    assert cover_mail_templates_for(practitioner)[0] == DEFAULT_SUBJECT


def test_leaving_with_unsaved_edits_asks_first(settings_page, live_server):
    page = settings_page
    dialogs: list[str] = []

    def dismiss(dialog):
        dialogs.append(dialog.type)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.locator("#id_body_template").press_sequentially("Aggiunta ")
    page.get_by_role("link", name="Fatture").click()
    page.wait_for_timeout(500)
    assert dialogs == ["beforeunload"]
    assert page.url.endswith(SETTINGS)
    assert page.locator("#id_body_template").input_value().startswith("Aggiunta ")

    # Once saved, nothing to lose: leaving does not ask.
    page.get_by_role("button", name="Salva", exact=True).click()
    expect(page.locator("#covermail-messages")).to_have_text("Mail di accompagnamento salvata.")
    expect(page.locator("#covermail [data-unsaved-note]")).to_be_hidden()
    page.get_by_role("link", name="Fatture").click()
    expect(page).to_have_url(live_server.url + "/fatture/")
    assert dialogs == ["beforeunload"]


def test_a_refused_save_stays_on_the_settings_page_with_the_errors_in_one_place(
    settings_page, practitioner
):
    page = settings_page
    page.locator("#id_subject_template").fill("Fattura ${numero}")
    open_step(page, "invio")
    page.locator("#channel").get_by_label("SMTP personale").check()
    open_step(page, "testo")
    page.get_by_role("button", name="Salva", exact=True).click()

    expect(page.locator("#covermail-messages")).to_contain_text(
        "La mail di accompagnamento non è stata salvata"
    )
    expect(page.locator("#id_subject_template_error")).to_contain_text(
        "Forse intendevi ${numero_fattura}?"
    )
    expect(page.get_by_text("Forse intendevi ${numero_fattura}?")).to_have_count(1)
    expect(page.locator("#covermail-preview-warnings")).not_to_contain_text("non esiste")
    expect(page.locator("#id_subject_template")).to_be_focused()
    expect(page.locator("#id_subject_template")).to_have_value("Fattura ${numero}")
    expect(page.locator("#covermail [data-unsaved-note]")).to_be_visible()
    # The other card's choice is still there, unsaved.
    open_step(page, "invio")
    expect(page.locator("#channel").get_by_label("SMTP personale")).to_be_checked()
    assert page.url.split("#")[0].endswith(SETTINGS)
    assert same_document(page)
    assert cover_mail_templates_for(practitioner)[0] == DEFAULT_SUBJECT
    save_screenshot(page, "settings-covermail-refused")


def test_saving_the_mailbox_updates_its_card_and_the_channel_card(settings_page, practitioner):
    page = settings_page
    open_step(page, "casella")
    section = page.locator("#smtp")
    expect(page.locator("#channel")).to_contain_text("Prima configura e salva la tua casella.")
    section.get_by_label("Provider").select_option(label="Server di test locale")
    section.get_by_label("Password").fill("Casella-Segreta-71")
    section.get_by_role("button", name="Salva configurazione SMTP").click()

    status = page.locator("#smtp-messages")
    expect(status).to_contain_text("Configurazione SMTP salvata.")
    expect(status).to_be_in_viewport()
    expect(page.locator("#smtp-status")).to_contain_text("non verificata")
    expect(section.get_by_label("Password")).to_have_attribute("placeholder", "•••• salvata")
    expect(page.locator("#channel")).not_to_contain_text("Prima configura e salva la tua casella.")
    assert SmtpAccount.objects.filter(practitioner=practitioner).exists()
    assert same_document(page)

    # The new card's buttons work without a reload: the check starts in place.
    page.get_by_role("button", name="Verifica connessione").click()
    expect(page.locator("#mailbox-progress")).to_be_visible()
    assert same_document(page)
    save_screenshot(page, "settings-smtp-saved")


def test_without_javascript_the_message_still_lands_in_the_card(browser, live_server, practitioner):
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    try:
        login(page, live_server, practitioner.email, "password-di-prova")
        page.goto(live_server.url + SETTINGS)
        page.get_by_role("button", name="Salva modalità di invio").click()
        expect(page.locator("#channel-messages")).to_have_text(
            "Le fatture partiranno con Smart Mail."
        )
        expect(page.locator("#channel-messages")).to_be_in_viewport()
    finally:
        context.close()


def test_the_steps_and_the_checklist_say_what_is_set(settings_page, practitioner, live_server):
    page = settings_page
    checklist = page.locator("#settings-checklist")
    expect(checklist.locator("[data-from-line]")).to_contain_text("via PsicoGest")
    expect(checklist.locator("[data-mode]")).to_have_text("Smart Mail")
    expect(checklist.locator('[data-step-state="casella"]')).to_contain_text("non configurata")
    save_screenshot(page, "settings-steps-1-testo")

    # Each step has its own address, which opens it alone (also without JavaScript).
    page.goto(live_server.url + SETTINGS + "casella/")
    expect(page.locator("#smtp")).to_be_visible()
    expect(page.locator("#covermail")).to_have_count(0)
    expect(page.locator('[data-step-link="casella"]')).to_have_attribute("aria-current", "page")
    section = page.locator("#smtp")
    section.get_by_label("Provider").select_option(label="Server di test locale")
    section.get_by_label("Password").fill("Casella-Segreta-71")
    section.get_by_role("button", name="Salva configurazione SMTP").click()
    expect(page.locator("#smtp-messages")).to_contain_text("Configurazione SMTP salvata.")
    # The checklist follows the save.
    expect(checklist.locator('[data-step-state="casella"]')).to_contain_text("non verificata")

    page.goto(live_server.url + SETTINGS + "invio/")
    page.locator("#channel").get_by_label("SMTP personale").check()
    page.get_by_role("button", name="Salva modalità di invio").click()
    expect(checklist.locator("[data-mode]")).to_have_text("La tua casella")
    account = SmtpAccount.objects.get(practitioner=practitioner)
    expect(checklist.locator("[data-from-line]")).to_contain_text(account.email)
    expect(checklist.locator("[data-from-line]")).not_to_contain_text("via PsicoGest")
    save_screenshot(page, "settings-steps-2-invio")

    # The whole page, opened at a card's address, shows that card's step.
    page.goto(live_server.url + SETTINGS + "#sender-domain")
    expect(page.locator("#passo-dominio")).to_be_visible()
    expect(page.locator("#passo-testo")).to_be_hidden()


def test_without_javascript_each_step_opens_alone_and_saves(browser, live_server, practitioner):
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    try:
        login(page, live_server, practitioner.email, "password-di-prova")
        page.goto(live_server.url + SETTINGS)
        # Without JavaScript the whole page shows every step; the links open one each.
        expect(page.locator("#passo-testo")).to_be_visible()
        expect(page.locator("#passo-dominio")).to_be_visible()
        page.locator('[data-step-link="invio"]').click()
        page.wait_for_url("**/email/impostazioni/invio/")
        expect(page.locator("#covermail")).to_have_count(0)
        page.locator("#sending-options").get_by_label("Ricevi una copia").check()
        page.locator("#sending-options").get_by_role("button").first.click()
        page.wait_for_load_state()
        assert EmailSettings.objects.get(practitioner=practitioner).copy_to_self
    finally:
        context.close()
