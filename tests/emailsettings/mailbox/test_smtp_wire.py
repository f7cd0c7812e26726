"""How the product's SMTP client uses the wire: ``TCP_NODELAY`` on every connection it
opens (checked on the real socket, against aiosmtpd with STARTTLS and with implicit TLS)."""

from __future__ import annotations

import os
import random
import re
import socket
from pathlib import Path

import pytest

from emailsettings.mailbox import smtp
from emailsettings.mailbox import transaction as smtpsend
from tests.support.smtp_fixtures import SMTP_PASSWORD, SMTP_USER


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


def _reference_stuffing(data: bytes) -> bytes:
    # RFC 5321 4.5.2 spelled the slow way (as the product did before): every line end made
    # CRLF, then every line's leading "." doubled.
    normalized = re.sub(rb"\r\n|\n|\r", b"\r\n", data)
    return re.sub(rb"(?m)^\.", b"..", normalized)


def test_dot_stuffing_matches_the_rule_for_any_mix_of_line_ends_and_dots():
    rng = random.Random(5321)
    pieces = [b"\r\n", b"\n", b"\r", b".", b"..", b"a", b"\r\n.", b" .", b"\xc3\xa8"]
    samples = [b"", b".", b"\r\n.", b".\r\n", b"a\r\n.\r\n..b\r\n"]
    samples += [
        b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 40))) for _ in range(2000)
    ]
    for data in samples:
        assert smtpsend.dot_stuffed(data) == _reference_stuffing(data), data


def test_a_line_that_starts_with_a_dot_arrives_unchanged(smtp_server):
    """The server removes the doubled dots: the message it stores is the message sent."""
    body = (
        b"From: studio@example.com\r\nTo: paziente@example.com\r\nSubject: punti\r\n\r\n"
        b".una riga che inizia con un punto\r\n..due punti\r\n.\r\nfine\r\n"
    )
    connection = smtp.open_connection(
        host="127.0.0.1",
        port=smtp_server.port,
        security="starttls",
        username=SMTP_USER,
        password=SMTP_PASSWORD,
    )
    try:
        smtpsend.send_message(
            connection,
            message=body,
            from_addr="studio@example.com",
            to_addrs=["paziente@example.com"],
        )
    finally:
        smtp.close_quietly(connection)
    assert smtp_server.messages[-1].data.replace(b"\r\n", b"\n") == body.replace(b"\r\n", b"\n")


def test_connections_share_one_tls_context_until_the_ca_file_changes(tmp_path, settings):
    """Loading the system CA bundle for every batch's session cost about 20 ms; a changed
    extra CA file is still picked up."""
    from devtools.smtpserver import LocalCA

    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(Path(LocalCA.create(tmp_path / "one").ca_file).read_bytes())
    settings.EMAILSETTINGS_SMTP_EXTRA_CA_FILE = str(ca_file)
    first = smtp.tls_context()
    assert smtp.tls_context() is first
    before = len(first.get_ca_certs())

    ca_file.write_bytes(
        ca_file.read_bytes() + Path(LocalCA.create(tmp_path / "two").ca_file).read_bytes()
    )
    os.utime(ca_file, ns=(1, 1))  # a different version even within the clock's resolution
    second = smtp.tls_context()
    assert second is not first
    assert len(second.get_ca_certs()) == before + 1
