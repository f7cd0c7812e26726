"""The pieces around "Accedi con Google / Microsoft": the system check, the advice by class,
the SMTP form of a connected mailbox, key rotation of the tokens, the classification of
Microsoft's replies."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.urls import reverse

from devtools.smtpserver import Behaviour
from emailsettings.checks import check_oauth_providers
from emailsettings.failures import ErrorClass
from emailsettings.forms.smtp import SmtpAccountForm
from emailsettings.guidance import advice
from emailsettings.health.verify import verify_mailbox
from emailsettings.models import AuthMethod, MailboxStatus, SmtpAccount
from tests.emailsettings.mailbox.test_oauth_flow import MAILBOX, connect


def _ids(messages) -> list[str]:
    return [message.id for message in messages]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, []),
        ({"GOOGLE_OAUTH_CLIENT_ID": "id"}, ["emailsettings.W010"]),
        ({"MICROSOFT_OAUTH_CLIENT_SECRET": "secret"}, ["emailsettings.W010"]),
        (
            {"GOOGLE_OAUTH_CLIENT_ID": "id", "GOOGLE_OAUTH_CLIENT_SECRET": "secret"},
            ["emailsettings.W012"],
        ),
        (
            {
                "GOOGLE_OAUTH_CLIENT_ID": "id",
                "GOOGLE_OAUTH_CLIENT_SECRET": "secret",
                "EMAILSETTINGS_OAUTH_REDIRECT_BASE_URL": "https://app.psicogest.test",
            },
            [],
        ),
    ],
)
def test_the_system_check_names_what_is_missing(settings, values, expected):
    settings.EMAILSETTINGS_OAUTH_REDIRECT_BASE_URL = ""
    for name, value in values.items():
        setattr(settings, name, value)
    found = check_oauth_providers()
    assert _ids(found) == expected
    for message in found:
        assert "SECRET" in message.msg or "REDIRECT" in message.msg or "ID" in message.msg


def test_production_refuses_plain_http_endpoints_and_redirects(settings):
    settings.DJANGO_ENV = "production"
    settings.GOOGLE_OAUTH_CLIENT_ID, settings.GOOGLE_OAUTH_CLIENT_SECRET = "id", "secret"
    settings.EMAILSETTINGS_OAUTH_REDIRECT_BASE_URL = "http://app.psicogest.test"
    settings.EMAILSETTINGS_OAUTH_ENDPOINTS = {"google": {"token_url": "http://127.0.0.1/token"}}
    assert _ids(check_oauth_providers()) == ["emailsettings.E011", "emailsettings.E012"]


@pytest.mark.parametrize(
    ("kwargs", "title_words", "step_words", "suggest_oauth"),
    [
        pytest.param(
            dict(error_class=ErrorClass.OAUTH_RECONNECT, preset_key="gmail"),
            ["Ricollega il tuo account Google"],
            ["Accedi con Google"],
            "google",
            id="google-reconnect",
        ),
        pytest.param(
            dict(error_class=ErrorClass.OAUTH_RECONNECT, preset_key="microsoft365"),
            ["Ricollega il tuo account Microsoft"],
            ["Accedi con Microsoft"],
            "microsoft",
            id="microsoft-reconnect",
        ),
        pytest.param(
            dict(
                error_class=ErrorClass.SMTP_AUTH_DISABLED,
                preset_key="microsoft365",
                code=535,
                enhanced="5.7.139",
                reply="535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is "
                "disabled for the Tenant.",
            ),
            ["organizzazione"],
            ["reparto IT", "SMTP autenticato", "Set-CASMailbox", "Smart Mail"],
            "",
            id="microsoft-5.7.139-tenant-for-the-it-admin",
        ),
        pytest.param(
            dict(
                error_class=ErrorClass.OAUTH_REQUIRED,
                preset_key="microsoft365",
                code=550,
                enhanced="5.7.30",
                reply="550 5.7.30 Basic authentication is not supported for Client Submission",
            ),
            ["Microsoft", "password"],
            ["Accedi con Microsoft", "Smart Mail"],
            "microsoft",
            id="microsoft-5.7.30-password-mailbox",
        ),
        pytest.param(
            dict(error_class=ErrorClass.APP_PASSWORD_REQUIRED, preset_key="gmail", code=534),
            ["password per le app"],
            ["Accedi con Google"],
            "google",
            id="gmail-app-password-or-google-login",
        ),
    ],
)
def test_advice_by_class_proposes_the_right_way_out(kwargs, title_words, step_words, suggest_oauth):
    tip = advice(**kwargs)
    for word in title_words:
        assert word in tip.title
    for word in step_words:
        assert word in " ".join(tip.steps)
    assert tip.suggest_oauth == suggest_oauth


MICROSOFT_530 = "550 5.7.30 Basic authentication is not supported for Client Submission"


@pytest.mark.django_db
def test_a_5_7_30_on_a_password_mailbox_proposes_accedi_con_microsoft(
    logged_client, settings, smtp_server_factory, smtp_account_factory
):
    settings.MICROSOFT_OAUTH_CLIENT_ID, settings.MICROSOFT_OAUTH_CLIENT_SECRET = "id", "secret"
    server = smtp_server_factory(behaviour=Behaviour(auth_failure=MICROSOFT_530))
    account = smtp_account_factory(server, preset="microsoft365", password="non-piu-valida")

    verify_mailbox(account=account)

    account.refresh_from_db()
    assert account.status == MailboxStatus.BROKEN
    assert account.last_error["error_class"] == ErrorClass.OAUTH_REQUIRED
    page = logged_client.get(reverse("emailsettings:settings")).content.decode()
    assert 'form="smtp-oauth-microsoft" class="primary" id="smtp-advice-oauth"' in page
    assert 'value="microsoft365" data-oauth-preset' in page


@pytest.mark.django_db
def test_a_tenant_without_smtp_auth_is_the_it_admins_matter_even_with_oauth(
    logged_client, practitioner, oauth_provider, smtp_server_factory
):
    from tests.emailsettings.mailbox.test_oauth_flow import point_at

    connect(logged_client, oauth_provider)
    server = smtp_server_factory(
        xoauth2=lambda user, token: False,
        behaviour=Behaviour(),
    )
    account = point_at(SmtpAccount.objects.get(practitioner=practitioner), server)
    # Microsoft's wording, whatever the mechanism: no refresh can help.
    import devtools.smtpserver as devsmtp

    original = devsmtp.XOAUTH2_FAILURE
    devsmtp.XOAUTH2_FAILURE = (
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
        "the Tenant."
    )
    try:
        verify_mailbox(account=account)
    finally:
        devsmtp.XOAUTH2_FAILURE = original
    account.refresh_from_db()
    assert account.last_error["error_class"] == ErrorClass.SMTP_AUTH_DISABLED
    assert oauth_provider.refreshes == 0
    assert not account.needs_reconnect


@pytest.mark.django_db
def test_saving_a_connected_mailbox_without_password_keeps_the_connection(
    logged_client, practitioner, oauth_provider
):
    connect(logged_client, oauth_provider)
    account = SmtpAccount.objects.get(practitioner=practitioner)
    data = {
        "email": "altro@example.test",  # the address comes from the provider, not the form
        "preset": "gmail",
        "host": "127.0.0.1",  # no public DNS here; the preset's server is Google's
        "port": 465,
        "security": "ssl",
        "username": "",
        "password": "",
        "sender_name": "Dott.ssa Rossi",
    }
    form = SmtpAccountForm(data, instance=account)
    assert form.is_valid(), form.errors
    saved = form.save()
    assert saved.uses_oauth and saved.email == MAILBOX and saved.sender_name == "Dott.ssa Rossi"

    form = SmtpAccountForm({**data, "password": "app-password-1234"}, instance=saved)
    assert form.is_valid(), form.errors
    saved = form.save()
    assert saved.auth_method == AuthMethod.PASSWORD and saved.has_password
    assert saved.oauth_refresh_token_encrypted == ""


@pytest.mark.django_db
def test_rotate_email_keys_re_encrypts_the_tokens(
    logged_client, practitioner, oauth_provider, settings
):
    connect(logged_client, oauth_provider)
    account = SmtpAccount.objects.get(practitioner=practitioner)
    before = account.get_oauth_tokens()
    old_key = settings.EMAILSETTINGS_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.EMAILSETTINGS_ENCRYPTION_KEYS = [new_key, old_key]

    out = io.StringIO()
    call_command("rotate_email_keys", stdout=out)

    assert "Re-encrypted 2 mailbox secret(s)" in out.getvalue()
    settings.EMAILSETTINGS_ENCRYPTION_KEYS = [new_key]
    account.refresh_from_db()
    assert account.get_oauth_tokens() == before
