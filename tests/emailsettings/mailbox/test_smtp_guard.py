"""The destination guard: ports and non-public addresses are refused before any connection
(SSRF, DNS rebinding), classification of replies, and secrets kept out of failures."""

from __future__ import annotations

import smtplib
import socket
import ssl

import pytest
from django.core.exceptions import ValidationError

from emailsettings.exceptions import (
    DestinationRefused,
    MailboxConfigurationError,
    TemporaryDeliveryError,
)
from emailsettings.guidance import ErrorClass
from emailsettings.mailbox import classify as smtpclassify
from emailsettings.mailbox import smtp


class FakeResolver:
    """Stands in for public DNS: maps names to addresses and records every look-up."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002
        self.lookups.append(host)
        addresses = self.table.get(host, [host])
        result = []
        for address in addresses:
            if ":" in address:
                result.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                result.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return result


@pytest.fixture
def guard_on(settings):
    settings.EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS = False


@pytest.fixture
def resolver(monkeypatch):
    fake = FakeResolver(
        {
            "smtp.example.com": ["93.184.216.34"],
            "interno.example.com": ["10.1.2.3"],
            "misto.example.com": ["93.184.216.34", "192.168.1.10"],
            "v6.example.com": ["2606:2800:220:1:248:1893:25c8:1946"],
        }
    )
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def no_connections(monkeypatch):
    """Any attempt to open a socket fails the test."""
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


NON_PUBLIC = [
    "127.0.0.1",
    "::1",
    "0.0.0.0",
    "::",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "64:ff9b::a00:1",
    "64:ff9b::7f00:1",
    "2002:a00:1::1",
    "2002:7f00:1::1",
    "224.0.0.1",
    "ff02::1",
    "240.0.0.1",
    "255.255.255.255",
    "198.18.0.1",
    "interno.example.com",
    "misto.example.com",
]


@pytest.mark.parametrize("host", NON_PUBLIC)
def test_non_public_destinations_are_refused(guard_on, resolver, no_connections, host):
    with pytest.raises(ValidationError) as caught:
        smtp.check_destination(host, 587)
    assert caught.value.code == "address_not_allowed"
    assert "non è consentito" in caught.value.messages[0]


@pytest.mark.parametrize("port", [6379, 22, 80, 443, 1025, 0, 70000])
def test_ports_other_than_submission_are_refused(guard_on, resolver, port):
    with pytest.raises(DestinationRefused) as caught:
        smtp.check_destination("smtp.example.com", port)
    assert caught.value.code == "port_not_allowed"
    assert resolver.lookups == []


@pytest.mark.parametrize("port", [465, 587, 2525, 25])
def test_public_address_passes_on_submission_ports(guard_on, resolver, port):
    assert smtp.check_destination("smtp.example.com", port) == ["93.184.216.34"]
    assert smtp.check_destination("v6.example.com", port) == ["2606:2800:220:1:248:1893:25c8:1946"]
    assert smtp.check_destination("93.184.216.34", port) == ["93.184.216.34"]


def test_the_host_is_resolved_once_and_the_checked_address_is_used(guard_on, resolver, monkeypatch):
    """No second look-up (DNS rebinding): the socket goes to the address that was checked,
    and TLS still verifies the certificate against the host name."""
    connected: list[tuple] = []

    def fake_connect(address, timeout=None, source_address=None):
        connected.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", fake_connect)
    # A refused connection is temporary (the server may come back), not a broken mailbox.
    with pytest.raises(TemporaryDeliveryError) as caught:
        smtp.open_connection(
            host="smtp.example.com",
            port=587,
            security="starttls",
            username="u",
            password="p",
        )
    assert resolver.lookups == ["smtp.example.com"]
    assert connected == [("93.184.216.34", 587)]
    assert caught.value.failure.error_class == ErrorClass.CONNECTION_FAILED


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "169.254.169.254", "interno.example.com"])
def test_open_connection_refuses_before_connecting(guard_on, resolver, no_connections, host):
    with pytest.raises(MailboxConfigurationError) as caught:
        smtp.open_connection(
            host=host, port=587, security="starttls", username="u", password="segreto-xyz"
        )
    assert caught.value.failure.error_class == ErrorClass.DESTINATION_REFUSED
    assert isinstance(caught.value.__cause__, DestinationRefused)
    assert "segreto-xyz" not in str(caught.value.failure)
    assert no_connections == []


def test_the_allow_setting_permits_private_addresses_on_any_port(resolver, settings):
    settings.EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS = True
    assert smtp.check_destination("127.0.0.1", 1025) == ["127.0.0.1"]
    assert smtp.check_destination("interno.example.com", 587) == ["10.1.2.3"]


def test_unknown_host_is_a_connection_failure(guard_on, monkeypatch):
    def nxdomain(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nxdomain)
    with pytest.raises(DestinationRefused) as caught:
        smtp.check_destination("smtp.inesistente.example", 587)
    assert caught.value.code == "host_not_found"
    # During a send it is retried with backoff; only a lasting outage breaks the mailbox.
    with pytest.raises(TemporaryDeliveryError) as caught_connection:
        smtp.open_connection(
            host="smtp.inesistente.example",
            port=587,
            security="ssl",
            username="u",
            password="p",
        )
    assert caught_connection.value.failure.error_class == ErrorClass.HOST_NOT_FOUND


def test_a_dns_hiccup_is_temporary(guard_on, monkeypatch):
    def eai_again(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", eai_again)
    with pytest.raises(TemporaryDeliveryError) as caught:
        smtp.open_connection(
            host="smtp.example.com", port=465, security="ssl", username="u", password="p"
        )
    assert caught.value.failure.error_class == ErrorClass.TEMPORARY
    assert caught.value.failure.is_temporary


# --- classification table (smtp-errors.md) --------------------------------------------


def auth_error(reply: str) -> smtplib.SMTPAuthenticationError:
    return smtplib.SMTPAuthenticationError(int(reply[:3]), reply[4:].encode())


@pytest.mark.parametrize(
    ("exc", "phase", "preset", "error_class", "configuration", "temporary"),
    [
        (
            auth_error(
                "534 5.7.9 Application-specific password required. Learn more at "
                "https://support.google.com/mail/?p=InvalidSecondFactor"
            ),
            "auth",
            "gmail",
            ErrorClass.APP_PASSWORD_REQUIRED,
            True,
            False,
        ),
        (
            auth_error("535 5.7.8 Username and Password not accepted."),
            "auth",
            "custom",
            ErrorClass.APP_PASSWORD_REQUIRED,
            True,
            False,
        ),
        (
            auth_error("535 5.7.8 Authentication credentials invalid"),
            "auth",
            "aruba",
            ErrorClass.AUTH_FAILED,
            True,
            False,
        ),
        (
            auth_error("534 5.7.14 Please log in through your web browser and then try again."),
            "auth",
            "gmail",
            ErrorClass.SUSPICIOUS_LOGIN,
            True,
            False,
        ),
        (
            auth_error(
                "535 5.7.139 Authentication unsuccessful, basic authentication is disabled."
            ),
            "auth",
            "outlook",
            ErrorClass.OAUTH_REQUIRED,
            True,
            False,
        ),
        (
            auth_error(
                "535 5.7.139 Authentication unsuccessful, user is locked by your "
                "organization's security defaults policy."
            ),
            "auth",
            "microsoft365",
            ErrorClass.OAUTH_REQUIRED,
            True,
            False,
        ),
        (
            auth_error("454 4.7.0 Too many login attempts, please try again later."),
            "auth",
            "gmail",
            ErrorClass.RATE_LIMITED,
            False,
            True,
        ),
        (
            auth_error("530 5.7.0 Must issue a STARTTLS command first"),
            "auth",
            "custom",
            ErrorClass.STARTTLS_MISSING,
            True,
            False,
        ),
        (
            smtplib.SMTPSenderRefused(553, b"5.7.1 Sender address rejected: not owned", "x@y"),
            "mail",
            "aruba",
            ErrorClass.SENDER_REFUSED,
            True,
            False,
        ),
        (
            smtplib.SMTPSenderRefused(550, b"5.7.1 Not allowed", "x@y"),
            "mail",
            "custom",
            ErrorClass.SENDER_REFUSED,
            True,
            False,
        ),
        (
            smtplib.SMTPSenderRefused(550, b"5.4.5 Daily user sending limit exceeded.", "x@y"),
            "mail",
            "gmail",
            ErrorClass.RATE_LIMITED,
            False,
            True,
        ),
        (
            smtplib.SMTPRecipientsRefused({"p@x": (550, b"5.1.1 User unknown")}),
            "rcpt",
            "custom",
            ErrorClass.RECIPIENT_REFUSED,
            False,
            False,
        ),
        (
            smtplib.SMTPRecipientsRefused({"p@x": (451, b"4.7.1 Greylisted, try later")}),
            "rcpt",
            "custom",
            ErrorClass.GREYLISTED,
            False,
            True,
        ),
        (
            smtplib.SMTPRecipientsRefused({"p@x": (451, b"Try again later")}),
            "rcpt",
            "custom",
            ErrorClass.GREYLISTED,
            False,
            True,
        ),
        (
            smtplib.SMTPRecipientsRefused({"p@x": (552, b"5.2.2 Mailbox full")}),
            "rcpt",
            "custom",
            ErrorClass.MAILBOX_FULL,
            False,
            False,
        ),
        (
            smtplib.SMTPDataError(550, b"5.7.26 Unauthenticated email is not accepted (DMARC)"),
            "data_sent",
            "custom",
            ErrorClass.MESSAGE_REJECTED,
            False,
            False,
        ),
        (
            smtplib.SMTPConnectError(421, b"4.7.0 Try again later, closing connection"),
            "connect",
            "custom",
            ErrorClass.RATE_LIMITED,
            False,
            True,
        ),
        (
            smtplib.SMTPDataError(421, b"Service not available"),
            "data",
            "custom",
            ErrorClass.TEMPORARY,
            False,
            True,
        ),
        (
            smtplib.SMTPDataError(451, b"4.3.0 Local error"),
            "data_sent",
            "custom",
            ErrorClass.TEMPORARY,
            False,
            True,
        ),
        (
            smtplib.SMTPDataError(550, b"Class Of Service - Too much traffic from this sender"),
            "data_sent",
            "legalmail",
            ErrorClass.RATE_LIMITED,
            False,
            True,
        ),
        (
            ConnectionRefusedError(111, "Connection refused"),
            "connect",
            None,
            ErrorClass.CONNECTION_FAILED,
            False,
            True,
        ),
        (TimeoutError("timed out"), "connect", None, ErrorClass.TIMEOUT, False, True),
        (
            ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
            "tls",
            None,
            ErrorClass.TLS_FAILED,
            True,
            False,
        ),
        (
            smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
            "rcpt",
            None,
            ErrorClass.TEMPORARY,
            False,
            True,
        ),
    ],
)
def test_classification(exc, phase, preset, error_class, configuration, temporary):
    failure = smtpclassify.classify(exc, phase=phase, preset_key=preset)
    assert failure.error_class == error_class
    assert failure.is_configuration_error is configuration
    assert failure.is_temporary is temporary
    assert not failure.after_data


def test_disconnect_after_data_is_an_unknown_outcome():
    failure = smtpclassify.classify(
        smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), phase="data_sent"
    )
    assert failure.after_data
    assert failure.error_class == ErrorClass.UNKNOWN
    assert not failure.is_temporary
    assert not failure.is_configuration_error


def test_enhanced_code_wins_over_the_basic_code():
    failure = smtpclassify.classify(
        smtplib.SMTPDataError(550, b"4.2.0 Temporarily deferred"), phase="data_sent"
    )
    assert failure.enhanced == "4.2.0"
    assert failure.is_temporary


def test_scrub_removes_password_and_auth_blobs():
    import base64

    blob = base64.b64encode(b"\x00anna@example.test\x00Segreta!").decode()
    text = f"AUTH PLAIN {blob}\n535 5.7.8 bad Segreta! {blob} U2VncmV0YSE="
    clean = smtpclassify.scrub(text, ["Segreta!"])
    assert "Segreta!" not in clean
    assert blob not in clean
    assert "U2VncmV0YSE" not in clean
    assert "535 5.7.8 bad" in clean
