"""The progress of a mailbox check in Chromium, with no worker picking it up: "Ci vuole più
del solito" appears only after the real wait, measured from when the check started (also
when the page is reloaded meanwhile)."""

from __future__ import annotations

import datetime

import pytest
from django.core.cache import cache
from django.utils import timezone
from playwright.sync_api import expect

from emailsettings.health.verify import _progress_key
from tests.conftest import login, save_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SLOW = "Ci vuole più del solito"


@pytest.fixture
def account(smtp_account_factory):
    return smtp_account_factory(None)


@pytest.fixture
def open_settings(page, live_server, practitioner, account):
    def open_page():
        login(page, live_server, practitioner.email, "password-di-prova")
        page.goto(f"{live_server.url}/email/impostazioni/#smtp")
        return page

    return open_page


def started(account, seconds_ago: int) -> None:
    cache.set(
        _progress_key(account.pk),
        {
            "kind": "verify",
            "state": "queued",
            "phase": "",
            "started_at": (timezone.now() - datetime.timedelta(seconds=seconds_ago)).isoformat(),
        },
        timeout=600,
    )


def test_a_check_just_started_does_not_say_it_is_slow(open_settings):
    page = open_settings()
    page.get_by_role("button", name="Verifica connessione").click()
    progress = page.locator("#mailbox-progress")
    expect(progress).to_be_visible()
    expect(progress).to_contain_text("In coda, tra poco inizia")
    # A few polls later (one a second), still no "slow" note: no worker has had its chance.
    page.wait_for_timeout(3500)
    expect(progress).to_contain_text("In coda, tra poco inizia")
    expect(progress).not_to_contain_text(SLOW)
    expect(page.get_by_role("button", name="Verifica connessione")).to_be_disabled()


def test_after_a_reload_the_wait_counts_from_the_start_of_the_check(open_settings, account):
    started(account, seconds_ago=40)
    page = open_settings()
    progress = page.locator("#mailbox-progress")
    expect(progress).to_contain_text(SLOW)
    expect(progress).to_have_class("mailbox-progress is-slow")
    save_screenshot(page, "mailbox-check-slow")


def test_a_recent_check_followed_after_a_reload_is_not_slow(open_settings, account):
    started(account, seconds_ago=5)
    page = open_settings()
    progress = page.locator("#mailbox-progress")
    expect(progress).to_contain_text("In coda, tra poco inizia")
    page.wait_for_timeout(1500)
    expect(progress).not_to_contain_text(SLOW)
