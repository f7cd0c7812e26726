"""The "Rimbalzi: leggi le risposte dalla casella" option in the SMTP card: opt-in, scoped,
CSRF-protected, a clear Italian error for a bad server, and the last read shown."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from emailsettings.models import SmtpAccount

SAVE_URL = reverse("emailsettings:reading_save")
SETTINGS_URL = reverse("emailsettings:settings")

pytestmark = pytest.mark.django_db


def test_opting_in_uses_the_providers_imap_server(logged_client, smtp_account_factory):
    account = smtp_account_factory(None, preset="gmail", host="smtp.gmail.com", port=587)
    page = logged_client.get(SETTINGS_URL).content.decode()
    assert "Rimbalzi e posta inviata (IMAP)" in page
    assert 'placeholder="imap.gmail.com"' in page
    assert "reading-sent_copy" not in page  # Gmail files its sent mail by itself

    response = logged_client.post(
        SAVE_URL,
        {"reading-imap_enabled": "on", "reading-imap_port": "993", "reading-imap_security": "ssl"},
        follow=True,
    )

    page = response.content.decode()
    assert "PsicoGest leggerà gli avvisi di mancata consegna dalla tua casella." in page
    assert "la casella viene letta dopo il prossimo invio · imap.gmail.com" in page
    account.refresh_from_db()
    assert account.imap_enabled and account.imap_host == ""


def test_a_custom_provider_needs_the_server_and_keeps_what_was_typed(
    logged_client, smtp_account_factory
):
    account = smtp_account_factory(None, preset="custom")

    response = logged_client.post(
        SAVE_URL,
        {"reading-imap_enabled": "on", "reading-imap_port": "993", "reading-imap_security": "ssl"},
        follow=True,
    )

    page = response.content.decode()
    assert "Lettura della casella non salvata." in page
    assert "Indica il server IMAP: il tuo provider non è tra quelli noti." in page
    account.refresh_from_db()
    assert not account.imap_enabled


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"reading-imap_host": "imap.esempio.it\r\nX: y"}, "Scrivi solo il nome del server"),
        (
            {"reading-imap_host": "imap.esempio.it", "reading-imap_port": "25"},
            "Porta non consentita",
        ),
    ],
)
def test_bad_servers_are_refused_in_italian(
    logged_client, smtp_account_factory, settings, fields, error
):
    settings.EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS = False
    smtp_account_factory(None, preset="custom")
    data = {
        "reading-imap_enabled": "on",
        "reading-imap_port": "993",
        "reading-imap_security": "ssl",
    }
    data.update(fields)

    page = logged_client.post(SAVE_URL, data, follow=True).content.decode()

    assert error in page
    assert not SmtpAccount.objects.get().imap_enabled


def test_the_last_reads_outcome_is_shown(logged_client, smtp_account_factory):
    smtp_account_factory(
        None,
        preset="gmail",
        imap_enabled=True,
        imap_error="Il server IMAP ha rifiutato nome utente o password.",
        imap_next_read_at=timezone.now(),
    )
    page = logged_client.get(SETTINGS_URL).content.decode()
    assert "lettura non riuscita" in page
    assert "Il server IMAP ha rifiutato nome utente o password." in page


def test_without_a_mailbox_there_is_nothing_to_save(
    logged_client, other_practitioner, smtp_account_factory
):
    # Another practitioner's mailbox is never reachable from this session.
    smtp_account_factory(None, practitioner=other_practitioner)
    response = logged_client.post(SAVE_URL, {"reading-imap_enabled": "on"})
    assert response.status_code == 404
    assert not SmtpAccount.objects.get(practitioner=other_practitioner).imap_enabled


def test_saving_requires_csrf(practitioner, smtp_account_factory):
    smtp_account_factory(None)
    client = Client(enforce_csrf_checks=True)
    client.force_login(practitioner)
    response = client.post(SAVE_URL, {"reading-imap_enabled": "on"})
    assert response.status_code == 403
    assert not SmtpAccount.objects.get().imap_enabled


def test_the_local_preset_shows_the_imap_port_it_uses(
    logged_client, smtp_account_factory, settings
):
    settings.EMAILSETTINGS_LOCAL_TEST_SERVER = {
        "host": "localhost",
        "port": 1025,
        "imap_port": 1993,
    }
    smtp_account_factory(None, preset="local", host="localhost", port=1025)
    page = logged_client.get(SETTINGS_URL).content.decode()
    assert 'name="reading-imap_port" value="1993"' in page
    assert 'name="reading-imap_port" value="993"' not in page
