""" "Accedi con Google" in Chromium, as a new user would: choose Gmail, press the button,
consent on the (local) provider's page, come back "Collegato come …", verify, and three
invoices leave over XOAUTH2 through a real worker."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from emailsettings.models import Delivery, DeliveryStatus, SmtpAccount
from emailsettings.outbox.queueing import queue_invoice_emails
from tests.conftest import login, save_screenshot, wait_until
from tests.emailsettings.mailbox.test_oauth_flow import invoices, point_at, smtp_channel
from tests.support.oauth_server import CALLBACK_PATH, configure, worker_env

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

MAILBOX = "maria.rossi@gmail.test"


def test_connect_with_google_verify_and_send_three_invoices(
    page,
    live_server,
    practitioner,
    settings,
    oauth_server_factory,
    smtp_server_factory,
    local_ca,
    celery_worker_factory,
):
    provider = oauth_server_factory(redirect_uri=live_server.url + CALLBACK_PATH)
    provider.add_user(MAILBOX)
    configure(settings, "google", provider, base=live_server.url)
    smtp_server = smtp_server_factory(xoauth2=provider.check_bearer)
    failed: list[str] = []
    page.on("pageerror", lambda error: failed.append(f"script error: {error}"))
    page.on("console", lambda m: failed.append(m.text) if "Content Security" in m.text else None)

    login(page, live_server, practitioner.email, "password-di-prova")
    page.goto(f"{live_server.url}/email/impostazioni/#smtp")
    section = page.locator("#smtp")
    button = page.locator("#smtp-oauth-google-button")
    section.get_by_label("Provider").select_option(label="Libero Mail")
    expect(button).to_be_hidden()
    section.get_by_label("Provider").select_option(label="Gmail")
    expect(button).to_be_visible()
    expect(button).to_have_text("Accedi con Google")
    save_screenshot(page, "oauth-gmail-button")

    button.click()
    expect(page.get_by_role("heading", name="Provider di prova")).to_be_visible()
    page.fill("#email", MAILBOX)
    page.click("#allow")

    expect(page.locator("#smtp-oauth-connected")).to_contain_text(f"Collegato come {MAILBOX}")
    expect(page.get_by_role("button", name="Scollega")).to_be_visible()
    save_screenshot(page, "oauth-connected")

    account = point_at(SmtpAccount.objects.get(practitioner=practitioner), smtp_server)
    smtp_channel(practitioner)
    worker = celery_worker_factory(
        EMAILSETTINGS_SMTP_EXTRA_CA_FILE=local_ca.ca_file,
        **worker_env("google", provider, base=live_server.url),
    )
    page.reload()
    page.get_by_role("button", name="Verifica connessione").click()
    expect(page.locator("#mailbox-result-title")).to_have_text(
        "Connessione riuscita", timeout=60000
    )
    expect(page.locator("#smtp-status-badge")).to_have_text("funzionante")

    deliveries = queue_invoice_emails(invoices(practitioner, 3))
    wait_until(
        lambda: (
            set(
                Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).values_list(
                    "status", flat=True
                )
            )
            == {DeliveryStatus.SENT}
        ),
        timeout=60,
        message="the invoices were not sent:\n" + worker.log()[-3000:],
    )
    assert len(smtp_server.messages) == 3
    assert {message.login for message in smtp_server.messages} == {account.email}
    assert failed == []
