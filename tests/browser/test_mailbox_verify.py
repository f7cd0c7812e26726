"""Mailbox checks in Chromium: "Verifica connessione" and "Invia una mail di prova" run by a
real worker against a local SMTP test server; the page shows progress, then the result."""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from devtools.smtpserver import Behaviour
from tests.conftest import login, save_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def settings_page(page, live_server, practitioner, local_ca, celery_worker_factory):
    celery_worker_factory(EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file)
    failed: list[str] = []
    page.on(
        "response", lambda response: failed.append(response.url) if response.status >= 400 else None
    )
    page.on("pageerror", lambda error: failed.append(f"script error: {error}"))

    def open_page():
        login(page, live_server, practitioner.email, "password-di-prova")
        page.goto(f"{live_server.url}/email/impostazioni/#smtp")
        return page

    yield open_page
    # favicon.ico is not part of this module; anything else failing to load is a bug.
    assert [url for url in failed if not url.endswith("/favicon.ico")] == []


def test_verify_shows_the_success_state(settings_page, smtp_server_factory, smtp_account_factory):
    server = smtp_server_factory()
    smtp_account_factory(server)
    page = settings_page()
    badge = page.locator("#smtp-status-badge")
    expect(badge).to_have_text("non verificata")

    page.get_by_role("button", name="Verifica connessione").click()

    result = page.locator("#mailbox-result")
    expect(result).to_be_visible(timeout=60000)
    expect(page.locator("#mailbox-result-title")).to_have_text("Connessione riuscita")
    expect(result).to_have_class("mailbox-result is-ok")
    expect(page.locator("#mailbox-progress")).to_be_hidden()
    expect(page.get_by_role("button", name="Verifica connessione")).to_be_enabled()
    # The badge beside "Stato della casella" follows the result without a reload.
    expect(badge).to_have_text("funzionante")
    expect(badge).to_have_class("badge badge-ok")
    expect(page.locator("#smtp-last-verified")).to_be_visible()
    save_screenshot(page, "mailbox-verify-success")
    assert server.messages == []


def test_a_green_check_clears_da_correggere(
    settings_page, smtp_server_factory, smtp_account_factory
):
    server = smtp_server_factory()
    smtp_account_factory(
        server,
        status="broken",
        last_error={
            "phase": "auth",
            "code": 535,
            "enhanced": "5.7.8",
            "error_class": "auth_failed",
        },
        last_error_at=timezone.now(),
    )
    page = settings_page()
    badge = page.locator("#smtp-status-badge")
    expect(badge).to_have_text("da correggere")
    expect(badge).to_have_class("badge badge-err")
    expect(page.locator("#mailbox-banner")).to_be_visible()

    page.get_by_role("button", name="Verifica connessione").click()

    expect(page.locator("#mailbox-result-title")).to_have_text(
        "Connessione riuscita", timeout=60000
    )
    expect(badge).to_have_text("funzionante")
    expect(badge).to_have_class("badge badge-ok")
    expect(page.locator("#mailbox-banner")).to_be_hidden()
    expect(page.locator("#smtp-last-error")).to_be_hidden()
    save_screenshot(page, "mailbox-verify-cleared")


def test_test_mail_failure_shows_advice_and_technical_details(
    settings_page, smtp_server_factory, smtp_account_factory
):
    server = smtp_server_factory(
        behaviour=Behaviour(auth_failure="535 5.7.8 Username and Password not accepted. Learn more")
    )
    smtp_account_factory(server, preset="gmail", password="Password-Normale-1")
    page = settings_page()

    page.get_by_role("button", name="Invia una mail di prova").click()

    result = page.locator("#mailbox-result")
    expect(result).to_be_visible(timeout=60000)
    expect(result).to_have_class("mailbox-result is-error")
    expect(result).to_contain_text("password per le app")
    details = page.locator("#mailbox-result-details")
    expect(details.locator("pre")).to_be_hidden()
    details.locator("summary").click()
    expect(page.locator("#mailbox-result-reply")).to_contain_text(
        "Username and Password not accepted"
    )
    assert "Password-Normale-1" not in page.content()
    save_screenshot(page, "mailbox-test-mail-app-password")
    assert server.messages == []


def test_a_closed_port_gets_advice_about_that_port(settings_page, smtp_account_factory):
    smtp_account_factory(None, host="127.0.0.1", port=1)
    page = settings_page()

    page.get_by_role("button", name="Verifica connessione").click()

    result = page.locator("#mailbox-result")
    expect(result).to_be_visible(timeout=60000)
    expect(page.locator("#mailbox-result-title")).to_have_text("Server non raggiungibile")
    steps = page.locator("#mailbox-result-steps")
    expect(steps).to_contain_text("La porta 1 non è una porta per la posta in uscita")
    expect(steps).not_to_contain_text("porta 25")
    save_screenshot(page, "mailbox-verify-port-1")


def test_the_check_says_it_uses_the_saved_configuration_not_the_edited_fields(
    settings_page, smtp_account_factory
):
    smtp_account_factory(None, host="smtp.salvato.test", port=587)
    page = settings_page()
    config = page.locator("#mailbox-checked-config")
    warning = page.locator("#mailbox-unsaved-warning")
    expect(config).to_contain_text("smtp.salvato.test, porta 587, STARTTLS")
    expect(warning).to_be_hidden()

    section = page.locator("#smtp-form")
    section.get_by_label("Server SMTP").fill("smtp.nuovo.test")
    expect(warning).to_be_visible()
    section.get_by_label("Server SMTP").fill("smtp.salvato.test")
    expect(warning).to_be_hidden()

    # A refused save: the fields keep what was typed, the check still uses the saved settings.
    section.get_by_label("Server SMTP").fill("smtp.nuovo.test")
    section.get_by_label("Porta").fill("1")
    section.get_by_role("button", name="Salva configurazione SMTP").click()
    expect(page.locator("#smtp-messages")).to_contain_text("Configurazione SMTP non salvata")
    expect(section.get_by_label("Server SMTP")).to_have_value("smtp.nuovo.test")
    expect(warning).to_be_visible()
    expect(config).to_contain_text("smtp.salvato.test, porta 587")
    save_screenshot(page, "mailbox-check-saved-configuration")
