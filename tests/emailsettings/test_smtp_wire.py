"""How the product's SMTP client uses the wire: ``TCP_NODELAY`` on every connection it
opens (checked on the real socket, against aiosmtpd with STARTTLS and with implicit TLS)."""

from __future__ import annotations

import socket

import pytest

from emailsettings import smtp
from tests.smtp_fixtures import SMTP_PASSWORD, SMTP_USER


@pytest.mark.parametrize(("tls", "security"), [("starttls", "starttls"), ("implicit", "ssl")])
def test_guarded_connection_sets_tcp_nodelay(smtp_server_factory, tls, security):
    """Nagle's algorithm would hold each command's last TLS record for a delayed ACK."""
    server = smtp_server_factory(tls=tls)

    connection = smtp.open_connection(
        host="127.0.0.1",
        port=server.port,
        security=security,
        username=SMTP_USER,
        password=SMTP_PASSWORD,
    )
    try:
        assert connection.sock is not None
        assert connection.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        # Still a working, authenticated session over TLS.
        assert connection.noop()[0] == 250
        assert connection.sock.version() is not None  # type: ignore[attr-defined]
    finally:
        smtp.close_quietly(connection)


def test_connection_for_a_stored_mailbox_sets_tcp_nodelay(smtp_server, smtp_account_factory):
    connection = smtp.connection_for(smtp_account_factory(smtp_server))
    try:
        assert connection.sock is not None
        assert connection.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        smtp.close_quietly(connection)


def test_tcp_connection_helper_sets_the_option(smtp_server):
    with smtp.tcp_connection("127.0.0.1", smtp_server.port, 5.0) as raw:
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
