"""TLS is verified against the configured host name, not against the address connected to.

The shared test certificate names ``localhost``, ``127.0.0.1`` and ``::1`` at once, so
verifying against the IP would pass every other test. Here each certificate names only one
host name (no IP SAN): a mailbox configured as ``localhost`` verifies, the same server
configured as ``127.0.0.1`` does not, and a certificate for another name never does.

``localhost`` goes through the real resolver (127.0.0.1 and possibly ::1); the server
listens on 127.0.0.1 and the guarded connection tries each resolved address in turn.
"""

from __future__ import annotations

import pytest

from emailsettings.health.verify import verify_mailbox
from emailsettings.models import MailboxStatus

STUDIO_HOST = "mail.studio.test"


@pytest.fixture(scope="module")
def hostname_only_certs(local_ca):
    """Certificates signed by the test CA naming one DNS name each, and no IP address."""
    local_ca.issue("only-localhost", ("localhost",))
    local_ca.issue("only-studio", (STUDIO_HOST,))
    return local_ca


def _verify(server, smtp_account_factory, *, host):
    account = smtp_account_factory(server, host=host)
    result = verify_mailbox(account=account)
    account.refresh_from_db()
    return result, account


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_certificate_for_the_host_name_only_verifies_when_configured_by_name(
    hostname_only_certs, smtp_server_factory, smtp_account_factory, tls
):
    server = smtp_server_factory(tls=tls, cert="only-localhost")

    result, account = _verify(server, smtp_account_factory, host="localhost")

    assert result.ok, result.failure
    assert account.status == MailboxStatus.OK
    assert server.messages == []


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_same_server_configured_by_address_fails_the_certificate(
    hostname_only_certs, smtp_server_factory, smtp_account_factory, tls
):
    """The certificate names localhost, not 127.0.0.1: verifying against the address the
    client connects to must not be what makes it pass."""
    server = smtp_server_factory(tls=tls, cert="only-localhost")

    result, account = _verify(server, smtp_account_factory, host="127.0.0.1")

    assert not result.ok
    assert result.failure is not None
    assert result.failure.error_class == "certificate_invalid"
    assert result.failure.phase == "tls"
    assert account.last_error["error_class"] == "certificate_invalid"
    # No credential went out over an unverified connection.
    assert server.auth_attempts == []


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_certificate_for_another_host_name_fails_while_configured_as_localhost(
    hostname_only_certs, smtp_server_factory, smtp_account_factory, tls
):
    server = smtp_server_factory(tls=tls, cert="only-studio")

    result, _account = _verify(server, smtp_account_factory, host="localhost")

    assert not result.ok
    assert result.failure is not None
    assert result.failure.error_class == "certificate_invalid"
    assert server.auth_attempts == []
