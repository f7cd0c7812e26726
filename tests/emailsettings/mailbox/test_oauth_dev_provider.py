"""The "provider di prova" of ``make run``: "Accedi con il provider di prova" for the
"Server di test locale" preset, whose SMTP server checks the tokens by introspection at the
local authorization server (another process in ``make run``; HTTP here too)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from devtools.oauthserver import remote_bearer_check
from emailsettings.checks import check_personal_smtp_guard
from emailsettings.health.verify import verify_mailbox
from emailsettings.models import SmtpAccount
from tests.emailsettings.mailbox.test_oauth_flow import connect

DEV_CLIENT = {"client_id": "psicogest-sviluppo", "client_secret": "segreto-di-sviluppo"}


@pytest.mark.django_db
def test_connect_with_the_provider_di_prova_and_verify(
    logged_client, practitioner, settings, oauth_server_factory, smtp_server_factory
):
    provider = oauth_server_factory(open_registration=True, **DEV_CLIENT)
    settings.EMAILSETTINGS_LOCAL_OAUTH_SERVER = {"url": provider.url, **DEV_CLIENT}
    settings.EMAILSETTINGS_OAUTH_REDIRECT_BASE_URL = "http://testserver"
    smtp_server = smtp_server_factory(xoauth2=remote_bearer_check(provider.url, **DEV_CLIENT))
    settings.EMAILSETTINGS_LOCAL_TEST_SERVER = {"host": "127.0.0.1", "port": smtp_server.port}
    SmtpAccount.objects.create(
        practitioner=practitioner,
        email=practitioner.email,
        preset="local",
        host="127.0.0.1",
        port=smtp_server.port,
        security="starttls",
        username=practitioner.email,
    )
    page = logged_client.get(reverse("emailsettings:settings")).content.decode()
    assert "Accedi con il provider di prova" in page

    connect(logged_client, provider, email="prova@esempio.test", provider="local", preset="local")

    account = SmtpAccount.objects.get(practitioner=practitioner)
    assert account.uses_oauth and account.email == "prova@esempio.test"
    assert (account.host, account.port) == ("127.0.0.1", smtp_server.port)
    assert verify_mailbox(account=account).ok
    assert smtp_server.auth_attempts == ["prova@esempio.test"]


def test_the_provider_di_prova_is_refused_in_production(settings):
    settings.DJANGO_ENV = "production"
    settings.EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS = False
    settings.EMAILSETTINGS_LOCAL_TEST_SERVER = None
    settings.EMAILSETTINGS_LOCAL_OAUTH_SERVER = {"url": "http://127.0.0.1:8765", **DEV_CLIENT}
    assert [error.id for error in check_personal_smtp_guard()] == ["emailsettings.E013"]
