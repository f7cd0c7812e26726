""" "Accedi con Google / Microsoft" with real parts: a local authorization server built with
Authlib (tests/support/oauth_server.py) reached through settings only, an aiosmtpd server with TLS
whose AUTH XOAUTH2 accepts only tokens that server issued, the Django test client for the
browser's part, and the worker's own code path (``send_batch``) for the sends.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.urls import reverse

from emailsettings.exceptions import DeliveryError, OAuthFlowError
from emailsettings.failures import ErrorClass
from emailsettings.health.verify import verify_mailbox
from emailsettings.mailbox import oauth
from emailsettings.models import (
    AuthMethod,
    Channel,
    DeliveryStatus,
    EmailSettings,
    MailboxStatus,
    SmtpAccount,
)
from emailsettings.outbox.queueing import queue_invoice_email
from emailsettings.outbox.worker import send_batch
from tests.factories import InvoiceFactory, PatientFactory
from tests.support.oauth_server import authorize_query, callback_path, configure, consent

MAILBOX = "maria.rossi@gmail.test"
START = "emailsettings:oauth_start"


def connect(client, server, *, email: str = MAILBOX, provider: str = "google", preset="gmail"):
    """The practitioner presses "Accedi con …", consents, comes back."""
    server.add_user(email)
    response = client.post(reverse(START, args=[provider]), {"preset": preset})
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith(server.url + "/authorize?")
    back = consent(location, email=email)
    response = client.get(callback_path(back))
    assert response.status_code == 302
    assert response["Location"].endswith("#smtp")
    return response


def point_at(account: SmtpAccount, smtp_server) -> SmtpAccount:
    """The mailbox's server is the local one (the preset's host is Google's)."""
    SmtpAccount.objects.filter(pk=account.pk).update(
        host="127.0.0.1", port=smtp_server.port, security="starttls"
    )
    account.refresh_from_db()
    return account


def smtp_channel(practitioner) -> None:
    EmailSettings.objects.update_or_create(
        practitioner=practitioner, defaults={"channel": Channel.SMTP}
    )


def invoices(practitioner, count: int = 1):
    return [InvoiceFactory(patient=PatientFactory(practitioner=practitioner)) for _ in range(count)]


@pytest.fixture
def xoauth2_server(smtp_server_factory, oauth_provider):
    return smtp_server_factory(xoauth2=oauth_provider.check_bearer)


@pytest.fixture
def connected(logged_client, practitioner, oauth_provider, xoauth2_server):
    connect(logged_client, oauth_provider)
    account = SmtpAccount.objects.get(practitioner=practitioner)
    smtp_channel(practitioner)
    return point_at(account, xoauth2_server)


def _tokens(server) -> list[str]:
    found = []
    for token in server.issued_tokens:
        found += [token.access_token, token.refresh_token]
    return [token for token in found if token]


# --- the authorization flow ---------------------------------------------------------------


@pytest.mark.django_db
def test_the_buttons_appear_only_for_a_configured_provider(logged_client, settings):
    page = logged_client.get(reverse("emailsettings:settings")).content.decode()
    assert "Accedi con Google" not in page.split('id="smtp-preset-notes"')[1].split("</form>")[0]
    assert 'id="smtp-oauth-google-button"' not in page
    assert logged_client.post(reverse(START, args=["google"])).status_code == 404

    settings.GOOGLE_OAUTH_CLIENT_ID, settings.GOOGLE_OAUTH_CLIENT_SECRET = "id", "secret"
    page = logged_client.get(reverse("emailsettings:settings")).content.decode()
    assert 'id="smtp-oauth-google-button"' in page
    assert 'data-oauth-presets="gmail google_workspace"' in page
    assert 'id="smtp-oauth-microsoft-button"' not in page


@pytest.mark.django_db
def test_the_consent_request_uses_pkce_s256_state_nonce_and_the_mail_scope(
    logged_client, oauth_provider
):
    response = logged_client.post(reverse(START, args=["google"]), {"preset": "gmail"})
    query = authorize_query(response["Location"])
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 40 and query["nonce"]
    assert query["scope"].split() == ["openid", "email", "https://mail.google.com/"]
    assert query["redirect_uri"] == "http://testserver/email/impostazioni/smtp/accedi-ritorno/"
    assert query["access_type"] == "offline"
    # The verifier stays on the server side: never in the URL.
    flow = logged_client.session["emailsettings:oauth-flow"]
    assert flow["code_verifier"] not in response["Location"]


@pytest.mark.django_db
def test_connecting_stores_the_mailbox_from_the_identity_with_tokens_only_encrypted(
    logged_client, practitioner, oauth_provider
):
    connect(logged_client, oauth_provider)

    account = SmtpAccount.objects.get(practitioner=practitioner)
    assert account.auth_method == AuthMethod.OAUTH and account.oauth_provider == "google"
    assert account.email == account.username == MAILBOX
    assert (account.host, account.port, account.security) == ("smtp.gmail.com", 465, "ssl")
    assert account.password_encrypted == ""
    access, refresh = account.get_oauth_tokens()
    assert oauth_provider.check_bearer(MAILBOX, access)
    assert refresh in oauth_provider.by_refresh
    # No column holds a token in clear.
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM emailsettings_smtpaccount WHERE id = %s", [account.pk])
        row = " ".join(str(value) for value in cursor.fetchone())
    for token in _tokens(oauth_provider):
        assert token not in row

    page = logged_client.get(reverse("emailsettings:settings")).content.decode()
    assert "Collegato come <strong>maria.rossi@gmail.test</strong>" in page
    assert 'id="smtp-oauth-disconnect"' in page
    assert "Collegato come maria.rossi@gmail.test." in page  # the card's message
    for token in _tokens(oauth_provider):
        assert token not in page


@pytest.mark.django_db
def test_a_tampered_state_is_refused_and_nothing_is_stored(
    logged_client, practitioner, oauth_provider
):
    oauth_provider.add_user(MAILBOX)
    response = logged_client.post(reverse(START, args=["google"]), {"preset": "gmail"})
    back = consent(response["Location"], email=MAILBOX)
    tampered = back.replace("state=", "state=x")

    response = logged_client.get(callback_path(tampered), follow=True)

    assert "non è più valido" in response.content.decode()
    assert not SmtpAccount.objects.filter(practitioner=practitioner).exists()
    # The flow was used up by the attempt: the genuine answer no longer works either.
    logged_client.get(callback_path(back))
    assert not SmtpAccount.objects.filter(practitioner=practitioner).exists()


@pytest.mark.django_db
def test_a_replayed_callback_and_a_replayed_code_are_refused(
    logged_client, practitioner, oauth_provider
):
    oauth_provider.add_user(MAILBOX)
    response = logged_client.post(reverse(START, args=["google"]), {"preset": "gmail"})
    flow = dict(logged_client.session["emailsettings:oauth-flow"])
    back = consent(response["Location"], email=MAILBOX)
    assert logged_client.get(callback_path(back)).status_code == 302
    SmtpAccount.objects.filter(practitioner=practitioner).delete()

    response = logged_client.get(callback_path(back), follow=True)
    assert "non è più valido" in response.content.decode()
    assert not SmtpAccount.objects.filter(practitioner=practitioner).exists()
    # The code itself is single-use at the authorization server too.
    with pytest.raises(OAuthFlowError):
        oauth.exchange_code(
            provider=oauth.get_provider("google"),
            code=authorize_query(back)["code"],
            code_verifier=flow["code_verifier"],
            nonce=flow["nonce"],
        )


@pytest.mark.django_db
def test_a_wrong_pkce_verifier_is_refused_by_the_authorization_server(
    logged_client, oauth_provider
):
    oauth_provider.add_user(MAILBOX)
    response = logged_client.post(reverse(START, args=["google"]), {"preset": "gmail"})
    flow = logged_client.session["emailsettings:oauth-flow"]
    back = consent(response["Location"], email=MAILBOX)
    with pytest.raises(OAuthFlowError):
        oauth.exchange_code(
            provider=oauth.get_provider("google"),
            code=authorize_query(back)["code"],
            code_verifier=flow["code_verifier"][:-4] + "AAAA",
            nonce=flow["nonce"],
        )
    assert not oauth_provider.issued_tokens


@pytest.mark.django_db
def test_another_practitioners_callback_is_refused(
    client, logged_client, practitioner, other_practitioner, oauth_provider
):
    oauth_provider.add_user(MAILBOX)
    response = logged_client.post(reverse(START, args=["google"]), {"preset": "gmail"})
    back = consent(response["Location"], email=MAILBOX)

    from django.test import Client

    intruder = Client()
    intruder.force_login(other_practitioner)
    response = intruder.get(callback_path(back), follow=True)

    assert "non è più valido" in response.content.decode()
    assert not SmtpAccount.objects.exists()
    assert not oauth_provider.issued_tokens  # the code was never exchanged


@pytest.mark.django_db
def test_a_refused_consent_says_so_and_stores_nothing(logged_client, practitioner, oauth_provider):
    oauth_provider.add_user(MAILBOX)
    response = logged_client.post(reverse(START, args=["google"]), {"preset": "gmail"})
    back = consent(response["Location"], email=MAILBOX, allow=False)
    assert "error=access_denied" in back
    response = logged_client.get(callback_path(back), follow=True)
    assert "Accesso annullato" in response.content.decode()
    assert not SmtpAccount.objects.filter(practitioner=practitioner).exists()


# --- sending with XOAUTH2 --------------------------------------------------------------------


@pytest.mark.django_db
def test_verify_and_an_invoice_go_out_with_xoauth2(connected, practitioner, xoauth2_server):
    assert verify_mailbox(account=connected).ok
    [invoice] = invoices(practitioner)
    delivery = queue_invoice_email(invoice)

    send_batch(delivery_ids=[delivery.pk])

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT, delivery.last_error_text
    [received] = xoauth2_server.messages
    assert received.login == MAILBOX and received.mail_from == MAILBOX
    assert xoauth2_server.auth_attempts == [MAILBOX, MAILBOX]  # the check, then the send


@pytest.mark.django_db
def test_an_expired_access_token_is_refreshed_once_before_the_send(
    connected, practitioner, oauth_provider, xoauth2_server
):
    oauth_provider.expire_access_tokens()
    SmtpAccount.objects.filter(pk=connected.pk).update(oauth_access_token_expires_at=None)
    old_access = connected.get_oauth_tokens()[0]
    SmtpAccount.objects.filter(pk=connected.pk).update(
        oauth_access_token_expires_at="2020-01-01T00:00:00Z"
    )
    deliveries = [queue_invoice_email(invoice) for invoice in invoices(practitioner, 2)]

    send_batch(delivery_ids=[d.pk for d in deliveries])

    assert oauth_provider.refreshes == 1
    assert [d.status for d in map(_reloaded, deliveries)] == [DeliveryStatus.SENT] * 2
    connected.refresh_from_db()
    assert connected.get_oauth_tokens()[0] != old_access
    assert xoauth2_server.connections == 1  # no refused AUTH: refreshed before connecting


@pytest.mark.django_db
def test_a_token_the_server_refuses_is_refreshed_once_and_retried(
    connected, practitioner, oauth_provider, xoauth2_server
):
    # Still valid by its stored expiry, but the provider no longer accepts it.
    oauth_provider.expire_access_tokens()
    [invoice] = invoices(practitioner)
    delivery = queue_invoice_email(invoice)

    send_batch(delivery_ids=[delivery.pk])

    assert _reloaded(delivery).status == DeliveryStatus.SENT
    assert oauth_provider.refreshes == 1
    assert xoauth2_server.auth_attempts == [MAILBOX, MAILBOX]  # one AUTH per connection


def _reloaded(delivery):
    delivery.refresh_from_db()
    return delivery


@pytest.mark.django_db
def test_a_revoked_grant_holds_the_invoices_shows_the_banner_and_reconnecting_releases_them(
    logged_client, connected, practitioner, oauth_provider, xoauth2_server, caplog
):
    oauth_provider.revoke_user(MAILBOX)
    deliveries = [queue_invoice_email(invoice) for invoice in invoices(practitioner, 3)]

    send_batch(delivery_ids=[d.pk for d in deliveries])

    assert [_reloaded(d).status for d in deliveries] == [DeliveryStatus.HELD] * 3
    account = SmtpAccount.objects.get(pk=connected.pk)
    assert account.status == MailboxStatus.BROKEN and account.needs_reconnect
    assert account.last_error["error_class"] == ErrorClass.OAUTH_RECONNECT
    page = logged_client.get(reverse("emailsettings:settings")).content.decode()
    assert "Ricollega il tuo account Google" in page
    assert "da ricollegare" in page
    assert 'id="smtp-advice-oauth"' in page
    assert not xoauth2_server.messages

    connect(logged_client, oauth_provider)
    account = point_at(SmtpAccount.objects.get(pk=connected.pk), xoauth2_server)
    assert verify_mailbox(account=account).ok
    assert [_reloaded(d).status for d in deliveries] == [DeliveryStatus.QUEUED] * 3
    send_batch(delivery_ids=[d.pk for d in deliveries])
    assert [_reloaded(d).status for d in deliveries] == [DeliveryStatus.SENT] * 3
    assert len(xoauth2_server.messages) == 3
    for token in _tokens(oauth_provider):
        assert token not in caplog.text


@pytest.mark.django_db(transaction=True)
def test_two_workers_needing_a_refresh_at_once_refresh_only_once(connected, oauth_provider):
    SmtpAccount.objects.filter(pk=connected.pk).update(
        oauth_access_token_expires_at="2020-01-01T00:00:00Z"
    )
    oauth_provider.refresh_delay = 0.5  # a slow provider widens the window
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            account = SmtpAccount.objects.get(pk=connected.pk)
            results.append(oauth.access_token(account))
        except BaseException as err:  # noqa: BLE001 (reported below)
            errors.append(err)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors
    assert oauth_provider.refreshes == 1
    assert len(set(results)) == 1 and oauth_provider.check_bearer(MAILBOX, results[0])


@pytest.mark.django_db
def test_microsoft_rotates_refresh_tokens_and_outlook_becomes_usable(
    logged_client, practitioner, settings, oauth_server_factory, smtp_server_factory
):
    microsoft = oauth_server_factory(rotate_refresh_tokens=True, issuer_path="/tenant/v2.0")
    configure(settings, "microsoft", microsoft)
    connect(
        logged_client, microsoft, email="luca@outlook.test", provider="microsoft", preset="outlook"
    )
    account = SmtpAccount.objects.get(practitioner=practitioner)
    assert (account.preset, account.host, account.port) == ("outlook", "smtp-mail.outlook.com", 587)
    query = authorize_query(
        logged_client.post(reverse(START, args=["microsoft"]), {"preset": "outlook"})["Location"]
    )
    assert "https://outlook.office.com/SMTP.Send" in query["scope"].split()
    assert "offline_access" in query["scope"].split()

    first_refresh = account.get_oauth_tokens()[1]
    SmtpAccount.objects.filter(pk=account.pk).update(
        oauth_access_token_expires_at="2020-01-01T00:00:00Z"
    )
    account.refresh_from_db()
    token = oauth.access_token(account)

    account.refresh_from_db()
    access, refresh = account.get_oauth_tokens()
    assert access == token and refresh != first_refresh
    assert microsoft.by_refresh[first_refresh].revoked and not microsoft.by_refresh[refresh].revoked
    server = smtp_server_factory(xoauth2=microsoft.check_bearer)
    point_at(account, server)
    assert verify_mailbox(account=account).ok


@pytest.mark.django_db
def test_disconnecting_revokes_at_the_provider_and_forgets_the_tokens(
    logged_client, connected, practitioner, oauth_provider
):
    response = logged_client.post(reverse("emailsettings:oauth_disconnect"), follow=True)

    assert "scollegata" in response.content.decode()
    account = SmtpAccount.objects.get(pk=connected.pk)
    assert account.auth_method == AuthMethod.PASSWORD and not account.has_credentials
    assert account.oauth_refresh_token_encrypted == account.oauth_access_token_encrypted == ""
    assert oauth_provider.revocations == 1
    assert EmailSettings.objects.get(practitioner=practitioner).channel == Channel.SMART_MAIL


@pytest.mark.django_db
def test_a_refresh_the_provider_cannot_answer_is_temporary(connected, oauth_provider):
    SmtpAccount.objects.filter(pk=connected.pk).update(
        oauth_access_token_expires_at="2020-01-01T00:00:00Z"
    )
    connected.refresh_from_db()
    oauth_provider.stop()
    with pytest.raises(DeliveryError) as excinfo:
        oauth.access_token(connected)
    assert excinfo.value.failure.error_class == ErrorClass.TEMPORARY
    assert excinfo.value.failure.is_temporary


@pytest.mark.django_db
def test_deleting_a_connected_mailbox_also_revokes_it(logged_client, connected, oauth_provider):
    logged_client.post(reverse("emailsettings:smtp_delete"))
    assert not SmtpAccount.objects.filter(pk=connected.pk).exists()
    assert oauth_provider.revocations == 1


@pytest.mark.django_db
def test_outlook_is_usable_through_the_button_when_microsoft_is_configured(
    logged_client, settings, practitioner
):
    SmtpAccount.objects.create(
        practitioner=practitioner,
        email="luca@outlook.test",
        preset="outlook",
        host="smtp-mail.outlook.com",
        port=587,
        security="starttls",
        username="luca@outlook.test",
    )
    page = logged_client.get(reverse("emailsettings:settings")).content.decode()
    assert "smtp-notes-unusable" in page
    settings.MICROSOFT_OAUTH_CLIENT_ID, settings.MICROSOFT_OAUTH_CLIENT_SECRET = "id", "secret"
    page = logged_client.get(reverse("emailsettings:settings")).content.decode()
    assert "smtp-notes-unusable" not in page
    assert 'id="smtp-oauth-microsoft-button"' in page
    assert 'value="outlook" data-oauth-preset' in page


TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"


def _multi_tenant(settings, server) -> None:
    """Microsoft as in production: no fixed issuer, the token's tenant names its issuer."""
    configure(settings, "microsoft", server)
    endpoints = dict(settings.EMAILSETTINGS_OAUTH_ENDPOINTS)
    microsoft = {k: v for k, v in endpoints["microsoft"].items() if k != "issuer"}
    microsoft["tenant_issuer"] = server.url + "/{tid}/v2.0"
    settings.EMAILSETTINGS_OAUTH_ENDPOINTS = {**endpoints, "microsoft": microsoft}


def _sign_in(client, server, email: str):
    server.add_user(email)
    location = client.post(reverse(START, args=["microsoft"]), {"preset": "microsoft365"})[
        "Location"
    ]
    return client.get(callback_path(consent(location, email=email)), follow=True)


@pytest.mark.django_db
def test_a_microsoft_token_from_its_own_tenant_connects_as_the_sign_in_name(
    logged_client, practitioner, settings, oauth_server_factory
):
    microsoft = oauth_server_factory(tenant=TENANT)
    _multi_tenant(settings, microsoft)
    # The tenant's admin can type any "email": only the sign-in name is the mailbox.
    microsoft.claimed_email = "direzione@banca.example"

    _sign_in(logged_client, microsoft, "luca@studio365.example")

    account = SmtpAccount.objects.get(practitioner=practitioner)
    assert account.uses_oauth
    assert account.email == account.username == "luca@studio365.example"


@pytest.mark.django_db
def test_a_microsoft_token_whose_tenant_is_not_its_issuers_is_refused(
    logged_client, practitioner, settings, oauth_server_factory
):
    microsoft = oauth_server_factory(tenant=TENANT)
    _multi_tenant(settings, microsoft)
    microsoft.token_tenant = OTHER_TENANT  # signed by one tenant, claiming another

    page = _sign_in(logged_client, microsoft, "luca@studio365.example").content.decode()

    assert not SmtpAccount.objects.filter(practitioner=practitioner).exists()
    assert "Non è stato possibile leggere l" in page
