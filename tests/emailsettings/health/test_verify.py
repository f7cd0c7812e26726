"""Verify and test mail against real aiosmtpd servers on loopback (TLS, AUTH, scripted
replies): the outcome stored on the mailbox, the error class and the Italian advice."""

from __future__ import annotations

import logging
import smtplib

import pytest

from devtools.smtpserver import Behaviour
from emailsettings.exceptions import (
    MailboxConfigurationError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
    UnknownOutcomeError,
)
from emailsettings.guidance import ErrorClass, advice
from emailsettings.health.verify import send_test_mail, verify_mailbox
from emailsettings.mailbox import smtp
from emailsettings.mailbox import transaction as smtpsend
from emailsettings.models import MailboxStatus, SmtpAccount
from tests.support.smtp_fixtures import SMTP_PASSWORD, SMTP_USER

GMAIL_535 = (
    "535 5.7.8 Username and Password not accepted. For more information, go to "
    "5.7.8  https://support.google.com/mail/?p=BadCredentials"
)
MICROSOFT_535 = (
    "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
    "Tenant. Visit https://aka.ms/smtp_auth_disabled for more information."
)


def advice_for(account: SmtpAccount):
    error = account.last_error
    return advice(
        error_class=error["error_class"],
        preset_key=account.preset,
        code=error["code"],
        enhanced=error["enhanced"],
        reply=error["reply"],
    )


def assert_no_password(account: SmtpAccount, caplog) -> None:
    assert SMTP_PASSWORD not in str(account.last_error)
    assert SMTP_PASSWORD not in caplog.text


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_verify_succeeds_with_valid_credentials(
    smtp_server_factory, smtp_account_factory, practitioner, tls
):
    """Connect, TLS, AUTH, MAIL FROM / RCPT TO probe: the mailbox is marked working and the
    server receives no message."""
    server = smtp_server_factory(tls=tls)
    account = smtp_account_factory(server)

    result = verify_mailbox(account=account)

    assert result.ok, result.failure
    account.refresh_from_db()
    assert account.status == MailboxStatus.OK
    assert account.last_verified_at is not None
    assert account.last_error == {}
    assert server.auth_attempts == [SMTP_USER]
    assert server.messages == []
    assert server.behaviour.rcpt_attempts == {practitioner.email: 1}


def test_wrong_password_with_gmail_wording_gives_app_password_advice(
    smtp_server_factory, smtp_account_factory, caplog
):
    caplog.set_level(logging.DEBUG)
    server = smtp_server_factory(tls="implicit", behaviour=Behaviour(auth_failure=GMAIL_535))
    account = smtp_account_factory(server, preset="gmail", password="sbagliata-123")

    result = verify_mailbox(account=account)

    assert not result.ok
    account.refresh_from_db()
    assert account.status == MailboxStatus.BROKEN
    assert account.last_error_at is not None
    assert account.last_error["phase"] == "auth"
    assert account.last_error["code"] == 535
    assert account.last_error["enhanced"] == "5.7.8"
    assert account.last_error["error_class"] == ErrorClass.APP_PASSWORD_REQUIRED
    assert "Username and Password not accepted" in account.last_error["reply"]
    tip = advice_for(account)
    assert "password per le app" in (tip.title + tip.text + " ".join(tip.steps)).lower()
    assert "sbagliata-123" not in str(account.last_error)
    assert "sbagliata-123" not in caplog.text


def test_microsoft_smtp_auth_disabled_is_classified_with_its_advice(
    smtp_server_factory, smtp_account_factory, caplog
):
    server = smtp_server_factory(behaviour=Behaviour(auth_failure=MICROSOFT_535))
    account = smtp_account_factory(server, preset="microsoft365", password="altra-password")

    verify_mailbox(account=account)

    account.refresh_from_db()
    assert account.status == MailboxStatus.BROKEN
    assert account.last_error["error_class"] == ErrorClass.SMTP_AUTH_DISABLED
    assert account.last_error["enhanced"] == "5.7.139"
    tip = advice_for(account)
    assert tip.title
    assert "SMTP" in tip.text + " ".join(tip.steps)


def test_server_without_starttls_never_receives_the_credentials(
    smtp_server_factory, smtp_account_factory, caplog
):
    """A starttls mailbox against a server that offers no STARTTLS is refused before AUTH."""
    server = smtp_server_factory(tls="none")
    account = smtp_account_factory(server, security="starttls")

    result = verify_mailbox(account=account)

    assert not result.ok
    assert server.auth_attempts == []
    account.refresh_from_db()
    assert account.last_error["error_class"] == ErrorClass.STARTTLS_MISSING
    assert account.last_error["phase"] == "tls"
    assert account.status == MailboxStatus.BROKEN
    assert advice_for(account).title
    assert_no_password(account, caplog)


@pytest.mark.parametrize("cert", ["selfsigned", "wronghost"])
def test_untrusted_or_wrong_host_certificate_is_refused(
    smtp_server_factory, smtp_account_factory, cert, caplog
):
    server = smtp_server_factory(tls="implicit", cert=cert)
    account = smtp_account_factory(server)

    result = verify_mailbox(account=account)

    assert not result.ok
    assert server.auth_attempts == []
    account.refresh_from_db()
    assert account.last_error["error_class"] == ErrorClass.CERTIFICATE_INVALID
    assert account.last_error["phase"] == "tls"
    assert "certificat" in (advice_for(account).title + advice_for(account).text).lower()
    assert_no_password(account, caplog)


def test_wrong_host_certificate_is_refused_with_starttls(smtp_server_factory, smtp_account_factory):
    server = smtp_server_factory(tls="starttls", cert="wronghost")
    account = smtp_account_factory(server)

    verify_mailbox(account=account)

    account.refresh_from_db()
    assert account.last_error["error_class"] == ErrorClass.CERTIFICATE_INVALID
    assert server.auth_attempts == []


def test_connection_refused(smtp_account_factory, trust_local_ca):
    from devtools.smtpserver import free_port

    account = smtp_account_factory(None, port=free_port())

    result = verify_mailbox(account=account)

    assert not result.ok
    account.refresh_from_db()
    assert account.last_error["error_class"] == ErrorClass.CONNECTION_FAILED
    assert account.last_error["phase"] == "connect"
    assert "porta" in (advice_for(account).text + " ".join(advice_for(account).steps)).lower()


def test_recipient_refused_at_rcpt(smtp_server_factory, smtp_account_factory, practitioner):
    server = smtp_server_factory(
        behaviour=Behaviour(rcpt_reply=lambda address, attempt: "550 5.1.1 User unknown")
    )
    account = smtp_account_factory(server)

    verify_mailbox(account=account)

    account.refresh_from_db()
    assert account.last_error["phase"] == "rcpt"
    assert account.last_error["code"] == 550
    assert account.last_error["enhanced"] == "5.1.1"
    assert account.last_error["error_class"] == ErrorClass.RECIPIENT_REFUSED
    # Not a problem of the mailbox settings: it is not marked broken.
    assert account.status != MailboxStatus.BROKEN


def test_server_that_never_answers_times_out(silent_server, smtp_account_factory):
    account = smtp_account_factory(silent_server, port=silent_server.port)

    result = verify_mailbox(account=account, timeout=1.0)

    assert not result.ok
    account.refresh_from_db()
    assert account.last_error["error_class"] == ErrorClass.TIMEOUT
    assert account.last_error["phase"] == "connect"
    assert result.failure is not None and result.failure.is_temporary


def test_test_mail_arrives_with_the_configured_sender(
    smtp_server_factory, smtp_account_factory, practitioner
):
    server = smtp_server_factory()
    account = smtp_account_factory(server, sender_name="Studio Dott.ssa Bianchi")

    result = send_test_mail(account=account)

    assert result.ok, result.failure
    assert len(server.messages) == 1
    received = server.messages[0]
    assert received.mail_from == SMTP_USER
    assert received.rcpt_tos == [practitioner.email]
    assert received.login == SMTP_USER
    message = received.message
    assert message["From"].addresses[0].display_name == "Studio Dott.ssa Bianchi"
    assert message["From"].addresses[0].addr_spec == SMTP_USER
    assert message["To"].addresses[0].addr_spec == practitioner.email
    assert "prova" in message["Subject"].lower()
    assert received.message_id
    account.refresh_from_db()
    assert account.status == MailboxStatus.OK


def test_test_mail_dropped_after_data_is_an_unknown_outcome(
    smtp_server_factory, smtp_account_factory
):
    server = smtp_server_factory(behaviour=Behaviour(data_replies=["drop"]))
    account = smtp_account_factory(server)

    result = send_test_mail(account=account)

    assert not result.ok
    assert result.failure is not None
    assert result.failure.after_data
    assert result.failure.phase == "data_sent"
    assert not result.failure.is_temporary


# --- the connection API used by the sending pipeline ----------------------------------


def test_open_connection_exceptions_match_the_failure_kind(smtp_server_factory, caplog):
    server = smtp_server_factory(behaviour=Behaviour(auth_failure=GMAIL_535))

    with pytest.raises(MailboxConfigurationError) as caught:
        smtp.open_connection(
            host="127.0.0.1",
            port=server.port,
            security="starttls",
            username=SMTP_USER,
            password="password-errata",
            preset_key="gmail",
        )

    failure = caught.value.failure
    assert failure.is_configuration_error
    assert not failure.is_temporary
    assert "password-errata" not in failure.reply
    assert isinstance(caught.value.__cause__, smtplib.SMTPAuthenticationError)


def test_phases_are_reported_in_order(smtp_server_factory):
    server = smtp_server_factory()
    phases: list[str] = []

    connection = smtp.open_connection(
        host="localhost",
        port=server.port,
        security="starttls",
        username=SMTP_USER,
        password=SMTP_PASSWORD,
        on_phase=phases.append,
    )
    reply = smtpsend.send_message(
        connection,
        message=b"Subject: x\r\n\r\nciao\r\n.punto\r\n",
        from_addr=SMTP_USER,
        to_addrs=["a@example.test"],
        on_phase=phases.append,
    )
    smtp.close_quietly(connection)

    assert reply.code == 250
    assert phases == ["connect", "connect", "tls", "auth", "mail", "rcpt", "data", "data_sent"]
    assert server.messages[0].message.get_content().strip().endswith(".punto")


@pytest.mark.parametrize(
    ("reply", "exception"),
    [
        ("451 4.3.0 Try again later", TemporaryDeliveryError),
        ("554 5.7.1 Message refused", PermanentDeliveryError),
    ],
)
def test_data_replies_raise_temporary_or_permanent(smtp_server_factory, reply, exception):
    server = smtp_server_factory(behaviour=Behaviour(data_replies=[reply]))
    connection = smtp.open_connection(
        host="127.0.0.1",
        port=server.port,
        security="starttls",
        username=SMTP_USER,
        password=SMTP_PASSWORD,
    )
    try:
        with pytest.raises(exception) as caught:
            smtpsend.send_message(
                connection,
                message=b"Subject: x\r\n\r\nciao\r\n",
                from_addr=SMTP_USER,
                to_addrs=["a@example.test"],
            )
    finally:
        smtp.close_quietly(connection)
    assert not isinstance(caught.value, UnknownOutcomeError)
    assert caught.value.failure.phase == "data_sent"
    assert caught.value.failure.code == int(reply[:3])


def test_ssl_mailbox_against_a_starttls_server_is_a_tls_mismatch(
    smtp_server_factory, smtp_account_factory
):
    server = smtp_server_factory(tls="starttls")
    account = smtp_account_factory(server, security="ssl")

    verify_mailbox(account=account)

    account.refresh_from_db()
    assert account.last_error["error_class"] == ErrorClass.TLS_FAILED
    assert account.last_error["phase"] == "tls"
    assert server.auth_attempts == []
    steps = advice_for(account)
    assert "587" in steps.text + " ".join(steps.steps)


def test_djangos_email_settings_never_reach_a_personal_connection(
    smtp_server_factory, smtp_account_factory, settings
):
    settings.EMAIL_HOST = "smtp.django-default.invalid"
    settings.EMAIL_PORT = 2
    settings.EMAIL_HOST_USER = "django-user"
    settings.EMAIL_HOST_PASSWORD = "django-password"
    settings.EMAIL_USE_SSL = True
    settings.EMAIL_TIMEOUT = 0.001
    server = smtp_server_factory()
    account = smtp_account_factory(server)

    assert verify_mailbox(account=account).ok
    assert server.auth_attempts == [SMTP_USER]


def test_password_is_in_no_log_record_nor_failure(
    smtp_server_factory, smtp_account_factory, caplog
):
    import base64

    caplog.set_level(logging.DEBUG)
    server = smtp_server_factory()
    account = smtp_account_factory(server, password="Nuova-Password-Errata-5")

    result = send_test_mail(account=account)

    assert result.failure is not None
    blob = base64.b64encode(f"\0{SMTP_USER}\0Nuova-Password-Errata-5".encode()).decode()
    for secret in ("Nuova-Password-Errata-5", blob, blob.rstrip("=")):
        assert secret not in caplog.text
        assert secret not in result.failure.reply
        assert secret not in str(account.last_error)


@pytest.mark.parametrize(
    ("preset", "auth_reply", "error_class", "words"),
    [
        (
            "gmail",
            "534 5.7.9 Application-specific password required. Learn more",
            ErrorClass.APP_PASSWORD_REQUIRED,
            ["password per le app"],
        ),
        (
            "gmail",
            "534 5.7.14 Please log in through your web browser and then try again.",
            ErrorClass.SUSPICIOUS_LOGIN,
            ["Germania", "Francoforte"],
        ),
        (
            "outlook",
            "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
            ErrorClass.OAUTH_REQUIRED,
            ["Smart Mail"],
        ),
    ],
)
def test_provider_replies_become_italian_advice(
    smtp_server_factory, smtp_account_factory, preset, auth_reply, error_class, words
):
    server = smtp_server_factory(tls="implicit", behaviour=Behaviour(auth_failure=auth_reply))
    account = smtp_account_factory(server, preset=preset, password="non-questa")

    verify_mailbox(account=account)

    account.refresh_from_db()
    assert account.last_error["error_class"] == error_class
    assert account.status == MailboxStatus.BROKEN
    tip = advice_for(account)
    shown = " ".join([tip.title, tip.text, *tip.steps])
    for word in words:
        assert word in shown


def test_a_check_stopped_by_the_task_time_limit_is_stored_as_a_timeout(smtp_account_factory):
    from emailsettings.health.verify import VERIFY, record_check_abandoned

    account = smtp_account_factory(None, port=587)

    result = record_check_abandoned(account=account, kind=VERIFY)

    assert result.failure is not None and result.failure.is_temporary
    account.refresh_from_db()
    assert account.last_error["error_class"] == ErrorClass.TIMEOUT
    assert account.status == MailboxStatus.UNVERIFIED
    assert advice_for(account).title


def test_a_successful_verify_releases_held_invoices_and_a_failed_one_holds_them(
    smtp_server_factory, smtp_account_factory, practitioner, django_capture_on_commit_callbacks
):
    """The outbox follows the mailbox: fixing it resumes the held rows; an auth failure holds
    what is still queued."""
    from emailsettings.models import Channel, Delivery, DeliveryStatus, EmailSettings
    from tests.factories import DeliveryFactory, InvoiceFactory, PatientFactory

    EmailSettings.objects.create(practitioner=practitioner, channel=Channel.SMTP)
    server = smtp_server_factory()
    account = smtp_account_factory(server)

    def smtp_row(status):
        invoice = InvoiceFactory(patient=PatientFactory(practitioner=practitioner))
        return DeliveryFactory(
            practitioner=practitioner,
            invoice=invoice,
            patient=invoice.patient,
            channel=Channel.SMTP,
            status=status,
        )

    held = smtp_row(DeliveryStatus.HELD)
    with django_capture_on_commit_callbacks(execute=False):
        assert verify_mailbox(account=account).ok
    held.refresh_from_db()
    assert held.status == DeliveryStatus.QUEUED

    queued = smtp_row(DeliveryStatus.QUEUED)
    server.behaviour.auth_failure = GMAIL_535
    account = smtp_account_factory(server, password="sbagliata")
    assert not verify_mailbox(account=account).ok
    assert set(
        Delivery.objects.filter(pk__in=[held.pk, queued.pk]).values_list("status", flat=True)
    ) == {DeliveryStatus.HELD}
