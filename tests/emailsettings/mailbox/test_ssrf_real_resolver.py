"""The SSRF guard through the REAL resolver (``socket.getaddrinfo``), not the fake one.

The C library accepts spellings of loopback and private addresses that a string check
would miss (``2130706433``, ``0x7f.0.0.1``, ``127.1``, octal, full-width digits through
IDNA, zone ids): each must resolve to an address the guard refuses, before any connection.

Only literals and ``localhost`` (answered by /etc/hosts) are used: nothing here queries DNS.
"""

from __future__ import annotations

import socket

import pytest
from django.core.exceptions import ValidationError

from emailsettings.exceptions import DeliveryError, DestinationRefused
from emailsettings.mailbox import smtp

REFUSED = [
    # IPv4 loopback, other spellings
    "2130706433",
    "0x7f.0.0.1",
    "127.1",
    "0177.0.0.1",
    "0x7f000001",
    "１２７.０.０.１",  # full-width digits, mapped to ASCII by IDNA
    "０x7f.1",
    # IPv4 private, other spellings
    "10.1",
    "0x0a.0.0.1",
    "167772161",  # 10.0.0.1
    # link-local metadata address, octal
    "0251.0376.0251.0376",
    # unspecified ("0" is 0.0.0.0, which reaches the local host)
    "0",
    "0.0.0.0",
    # CGNAT
    "100.64.0.1",
    # IPv6 loopback, link-local with a zone id, unique-local
    "::1",
    "fe80::1%lo",
    "fd00::1",
    # IPv4 embedded in IPv6
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::",
    # the name
    "localhost",
    "LOCALHOST",
]

NOT_A_REFUSAL = {"host_not_found", "host_lookup_failed", "port_not_allowed", "host_missing"}


@pytest.fixture
def guard_on(settings, monkeypatch):
    """Private destinations refused (the production value); any connection fails the test."""
    settings.EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS = False
    real_getaddrinfo = socket.getaddrinfo
    looked_up: list[str] = []

    def recording_getaddrinfo(host, *args, **kwargs):
        looked_up.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    def no_connection(*args, **kwargs):
        pytest.fail(f"a connection was opened to a refused destination: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", no_connection)
    return looked_up


def _resolves_locally(host: str) -> bool:
    try:
        return bool(socket.getaddrinfo(host, 587, type=socket.SOCK_STREAM))
    except (OSError, UnicodeError):
        return False


@pytest.mark.parametrize("host", REFUSED)
def test_real_resolver_spellings_are_refused_before_any_connection(guard_on, host):
    # The spelling really does resolve here (so a refusal is the guard's, not a failed look-up).
    assert _resolves_locally(host), f"{host!r} does not resolve on this machine"

    with pytest.raises(DestinationRefused) as caught:
        smtp.check_destination(host, 587)

    assert isinstance(caught.value, ValidationError)
    assert caught.value.code not in NOT_A_REFUSAL, caught.value.code
    assert host in guard_on  # it went through the real resolver


@pytest.mark.parametrize("host", ["2130706433", "１２７.０.０.１", "fe80::1%lo", "localhost"])
@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_open_connection_refuses_without_connecting(guard_on, host, security):
    with pytest.raises(DeliveryError) as caught:
        smtp.open_connection(
            host=host, port=587, security=security, username="u@example.test", password="x"
        )

    assert caught.value.failure.error_class == "destination_refused"
    assert caught.value.failure.phase == "connect"


@pytest.mark.parametrize(
    ("host", "address"),
    [("8.8.8.8", "8.8.8.8"), ("134744072", "8.8.8.8"), ("0x08.0x08.0x08.0x08", "8.8.8.8")],
)
def test_public_literals_in_any_spelling_pass_the_guard(guard_on, host, address):
    """The guard is not refusing everything: a public address, however spelled, is allowed
    (check_destination resolves only; nothing connects)."""
    assert smtp.check_destination(host, 587) == [address]


def test_verify_says_the_same_for_a_missing_name_and_an_internal_one(
    guard_on, monkeypatch, smtp_account_factory
):
    """After "Verifica", a name that does not exist and a name that resolves to an internal
    address must read alike, or the check maps which internal names exist."""
    from emailsettings import guidance
    from emailsettings.failures import ErrorClass
    from emailsettings.health.verify import verify_mailbox

    resolving = socket.getaddrinfo

    def nxdomain_for_missing(host, *args, **kwargs):
        if host == "smtp.missing.example":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return resolving(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", nxdomain_for_missing)
    shown = []
    for host in ("smtp.missing.example", "127.1"):
        account = smtp_account_factory(host=host, port=587)
        result = verify_mailbox(account=account)
        assert not result.ok and result.failure is not None
        failure = result.failure
        advice = guidance.advice(
            error_class=failure.error_class, preset_key=account.preset, port=587
        )
        shown.append((advice, ErrorClass(failure.error_class).label))
    assert shown[0] == shown[1]
    assert shown[0][0].title == "Server non trovato o non consentito"
