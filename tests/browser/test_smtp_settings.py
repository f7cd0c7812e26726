"""The "Configurazione SMTP personale" section in Chromium: presets, notes, auto-detection."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from emailsettings.models import Channel, EmailSettings, SmtpAccount
from tests.conftest import login, save_screenshot

pytestmark = pytest.mark.browser

PASSWORD = "password-di-prova"
MAILBOX_PASSWORD = "Casella-Segreta-71"


@pytest.fixture
def settings_page(page, live_server, practitioner, transactional_db, settings):
    settings.EMAILSETTINGS_LOCAL_TEST_SERVER = {"host": "localhost", "port": 1025}
    login(page, live_server, practitioner.email, PASSWORD)
    page.goto(f"{live_server.url}/email/impostazioni/#smtp")
    return page


def test_choosing_gmail_fills_the_server_and_shows_the_app_password_note(settings_page):
    page = settings_page
    section = page.locator("#smtp")
    section.get_by_label("Provider").select_option(label="Gmail")

    expect(section.get_by_label("Server SMTP")).to_have_value("smtp.gmail.com")
    expect(section.get_by_label("Porta")).to_have_value("465")
    expect(section.get_by_label("Sicurezza")).to_have_value("ssl")
    notes = page.locator("#smtp-preset-notes")
    expect(notes).to_be_visible()
    expect(notes).to_contain_text("password per le app")
    expect(notes).to_contain_text("verifica in due passaggi")
    expect(notes.get_by_role("link", name="Apri la pagina del provider")).to_have_attribute(
        "href", "https://myaccount.google.com/apppasswords"
    )
    save_screenshot(page, "smtp-gmail-preset")

    section.get_by_label("Provider").select_option(label="Outlook.com / Hotmail / Live")
    expect(section.get_by_label("Server SMTP")).to_have_value("smtp-mail.outlook.com")
    expect(notes).to_contain_text("Smart Mail")
    expect(notes).to_have_class("smtp-notes smtp-notes-unusable")
    # Said once, not twice.
    assert notes.inner_text().count("Smart Mail") == 1


def test_typing_a_libero_address_proposes_libero(settings_page):
    page = settings_page
    section = page.locator("#smtp")
    email = section.get_by_label("Indirizzo email")
    email.fill("mario.rossi@libero.it")
    email.blur()

    suggestion = page.locator("#smtp-suggestion")
    expect(suggestion).to_contain_text("Ti suggeriamo: Libero Mail")
    # The provider was untouched, so the suggestion is applied at once.
    expect(section.get_by_label("Provider")).to_have_value("libero")
    expect(section.get_by_label("Server SMTP")).to_have_value("smtp.libero.it")
    expect(section.get_by_label("Nome utente")).to_have_value("mario.rossi@libero.it")
    expect(page.locator("#smtp-preset-notes")).to_contain_text("login.libero.it")
    save_screenshot(page, "smtp-libero-detected")


def test_a_chosen_provider_is_only_suggested_over(settings_page):
    page = settings_page
    section = page.locator("#smtp")
    section.get_by_label("Provider").select_option(label="Gmail")
    email = section.get_by_label("Indirizzo email")
    email.fill("studio@libero.it")
    email.blur()

    expect(page.locator("#smtp-suggestion")).to_contain_text("Ti suggeriamo: Libero Mail")
    expect(section.get_by_label("Provider")).to_have_value("gmail")
    page.get_by_role("button", name="Usa queste impostazioni").click()
    expect(section.get_by_label("Provider")).to_have_value("libero")
    expect(section.get_by_label("Server SMTP")).to_have_value("smtp.libero.it")


def test_save_with_the_local_server_then_send_from_the_mailbox(settings_page, practitioner):
    page = settings_page
    section = page.locator("#smtp")
    section.get_by_label("Provider").select_option(label="Server di test locale")
    expect(section.get_by_label("Porta")).to_have_value("1025")
    section.get_by_label("Password").fill(MAILBOX_PASSWORD)
    section.get_by_label("Nome mittente").fill("Dott.ssa Maria Rossi")
    section.get_by_role("button", name="Salva configurazione SMTP").click()

    expect(page.get_by_text("Configurazione SMTP salvata")).to_be_visible()
    expect(page.locator("#smtp-status")).to_contain_text("non verificata")
    password = page.locator("#smtp").get_by_label("Password")
    expect(password).to_have_value("")
    expect(password).to_have_attribute("placeholder", "•••• salvata")
    assert MAILBOX_PASSWORD not in page.content()
    account = SmtpAccount.objects.get(practitioner=practitioner)
    assert account.get_password() == MAILBOX_PASSWORD
    save_screenshot(page, "smtp-saved")

    page.locator('#settings-checklist [data-step-link="invio"]').click()
    page.locator("#channel").get_by_label("SMTP personale").check()
    page.get_by_role("button", name="Salva modalità di invio").click()
    expect(page.get_by_text("Le fatture partiranno dalla tua casella")).to_be_visible()
    assert EmailSettings.objects.get(practitioner=practitioner).channel == Channel.SMTP


def test_deleting_the_mailbox_asks_first_and_can_be_cancelled(settings_page, practitioner):
    from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory

    account = SmtpAccount(
        practitioner=practitioner,
        email=practitioner.email,
        preset="custom",
        host="smtp.example.test",
        port=587,
        security="starttls",
        username=practitioner.email,
    )
    account.set_password(MAILBOX_PASSWORD)
    account.save()
    EmailSettings.objects.create(practitioner=practitioner, channel=Channel.SMTP)
    patient = PatientFactory(practitioner=practitioner)
    for _ in range(2):
        DeliveryFactory(invoice=InvoiceFactory(patient=patient), channel="smtp", status="queued")
    page = settings_page
    page.reload()

    opener = page.get_by_text("Elimina la configurazione SMTP")
    opener.click()
    box = page.locator("#smtp-delete-confirm .confirm-box")
    expect(box).to_be_visible()
    expect(box).to_contain_text("In coda per questa casella: 2 fatture. Non partiranno")
    expect(box).to_contain_text("«Invia con Smart Mail»")
    expect(box).to_contain_text("Le prossime fatture partiranno con Smart Mail.")
    save_screenshot(page, "smtp-delete-confirm")
    assert SmtpAccount.objects.filter(practitioner=practitioner).exists()

    box.get_by_role("button", name="Annulla").click()
    expect(box).to_be_hidden()
    expect(page.locator("#smtp-delete-confirm summary")).to_be_focused()
    assert SmtpAccount.objects.filter(practitioner=practitioner).exists()

    opener.click()
    page.get_by_role("button", name="Sì, elimina la configurazione").click()
    messages = page.locator("#smtp-messages")
    expect(messages).to_contain_text("Configurazione SMTP eliminata.")
    expect(messages).to_contain_text("2 fatture in coda per la casella restano trattenute")
    expect(page.locator("#channel").get_by_label("Smart Mail")).to_be_checked()
    assert not SmtpAccount.objects.filter(practitioner=practitioner).exists()
    assert EmailSettings.objects.get(practitioner=practitioner).channel == Channel.SMART_MAIL


def test_a_new_mailbox_starts_from_the_address_name_and_guessed_provider(
    page, live_server, transactional_db
):
    from tests.factories import PractitionerFactory

    newcomer = PractitionerFactory(email="nuova@libero.it", first_name="Sara", last_name="Neri")
    login(page, live_server, newcomer.email, PASSWORD)
    page.goto(f"{live_server.url}/email/impostazioni/#smtp")
    section = page.locator("#smtp")
    expect(page.locator("#smtp-form")).to_have_attribute("data-detection", "done")

    expect(section.get_by_label("Indirizzo email")).to_have_value("nuova@libero.it")
    expect(section.get_by_label("Provider")).to_have_value("libero")
    expect(section.get_by_label("Server SMTP")).to_have_value("smtp.libero.it")
    expect(section.get_by_label("Porta")).to_have_value("465")
    expect(section.get_by_label("Sicurezza")).to_have_value("ssl")
    expect(section.get_by_label("Nome mittente")).to_have_value("Dott.ssa Sara Neri")
    expect(page.locator("#smtp-suggestion")).to_contain_text("Ti suggeriamo: Libero Mail")
    # Security choices name the mode only: the port is its own field.
    options = section.get_by_label("Sicurezza").locator("option").all_inner_texts()
    assert options == ["STARTTLS", "SSL/TLS"]
    # A proposal is not an unsaved edit: nothing flagged, leaving does not ask.
    expect(page.locator("#smtp [data-unsaved-note]")).to_be_hidden()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.dismiss()))
    page.get_by_role("link", name="Fatture").click()
    expect(page).to_have_url(f"{live_server.url}/fatture/")
    assert dialogs == []


def test_custom_provider_starts_on_587_starttls(settings_page):
    page = settings_page
    section = page.locator("#smtp")
    section.get_by_label("Provider").select_option(label="Altro provider")
    expect(section.get_by_label("Sicurezza")).to_have_value("starttls")
    expect(page.locator("#smtp-preset-notes")).to_contain_text("di solito porta 587 con STARTTLS")
