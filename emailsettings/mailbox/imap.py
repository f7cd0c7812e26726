"""The guarded IMAP connection to a practitioner's own mailbox (read-only use).

The same rules as SMTP (:mod:`emailsettings.mailbox.smtp`): the host is resolved once and every
address checked (public addresses only, ports 993 and 143), the socket is opened to the
checked address, TLS is always verified against the host name (implicit TLS on 993,
STARTTLS required on 143: never a login in clear), and every read has a timeout. Built on
``imapclient``; nothing here changes a message (folders are opened read-only, bodies
fetched with ``BODY.PEEK``).
"""

from __future__ import annotations

import imaplib
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

import imapclient
from django.utils.translation import gettext as _
from imapclient import imap4, tls

from emailsettings.exceptions import DecryptionError, DeliveryError, DestinationRefused, ImapError
from emailsettings.mailbox import oauth, presets
from emailsettings.mailbox.smtp import check_destination, tls_context

if TYPE_CHECKING:
    from emailsettings.models import SmtpAccount

IMAP_PORTS = (993, 143)
IMPLICIT_TLS_PORT = 993
TIMEOUT = 20.0


@dataclass(frozen=True)
class ImapServer:
    host: str
    port: int
    security: str  # "ssl" (implicit TLS) or "starttls"


def _connect(addresses: list[str], port: int, timeout: float) -> socket.socket:
    last: OSError | None = None
    for address in addresses:
        try:
            sock = socket.create_connection((address, port), timeout=timeout)
        except OSError as err:
            last = err
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise last or OSError("no address")


class _GuardedTLS(tls.IMAP4_TLS):
    def __init__(self, host: str, port: int, addresses: list[str], timeout: float):
        self._addresses = addresses
        super().__init__(host, port, tls_context(), timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        sock = _connect(self._addresses, self.port, timeout or self._timeout or TIMEOUT)
        return tls.wrap_socket(sock, self.ssl_context, self.host)


class _GuardedPlain(imap4.IMAP4WithTimeout):
    """Port 143 before STARTTLS: the guard's address, then :meth:`GuardedIMAP.starttls`."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float):
        self._addresses = addresses
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        return _connect(self._addresses, self.port, timeout or TIMEOUT)


class GuardedIMAP(imapclient.IMAPClient):
    """An :class:`imapclient.IMAPClient` whose socket goes only to checked addresses."""

    def __init__(self, server: ImapServer, *, timeout: float = TIMEOUT):
        try:
            self._addresses = check_destination(server.host, server.port, ports=IMAP_PORTS)
        except DestinationRefused as err:
            if err.code == "port_not_allowed":
                raise ImapError(_("Per leggere la casella usa la porta 993 (SSL).")) from err
            if err.code == "host_missing":
                raise ImapError(_("Indica il server IMAP della casella.")) from err
            # The guard's own words are about SMTP: the same refusal, in IMAP's.
            raise ImapError(
                _(
                    "Il server IMAP indicato non è raggiungibile o non è consentito: usa il "
                    "server IMAP pubblico del tuo provider, sulla porta 993."
                )
            ) from err
        self._guard_timeout = timeout
        super().__init__(
            server.host,
            port=server.port,
            ssl=server.security == "ssl",
            ssl_context=tls_context(),
            timeout=timeout,
        )
        if server.security != "ssl":
            if b"STARTTLS" not in self.capabilities():
                self.shutdown()
                raise ImapError(_("Il server IMAP non offre una connessione protetta (STARTTLS)."))
            self.starttls(tls_context())

    def _create_IMAP4(self) -> imaplib.IMAP4:  # noqa: N802 (imapclient's name)
        if self.ssl:
            return _GuardedTLS(self.host, self.port, self._addresses, self._guard_timeout)
        return _GuardedPlain(self.host, self.port, self._addresses, self._guard_timeout)


def _connected(server: ImapServer, timeout: float) -> GuardedIMAP:
    """The guarded connection, not logged in; :class:`ImapError` with a plain reason."""
    try:
        return GuardedIMAP(server, timeout=timeout)
    except ImapError:
        raise
    except ssl.SSLCertVerificationError as err:
        raise ImapError(_("Il certificato del server IMAP non è valido.")) from err
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as err:
        raise ImapError(_("Il server IMAP non è raggiungibile.")) from err


def open_mailbox(
    server: ImapServer, *, username: str, password: str, timeout: float = TIMEOUT
) -> GuardedIMAP:
    """Connect and log in; :class:`ImapError` with a plain Italian reason otherwise."""
    client = _connected(server, timeout)
    try:
        client.login(username, password)
    except imapclient.exceptions.LoginError as err:
        client.shutdown()
        raise ImapError(_("Il server IMAP ha rifiutato nome utente o password.")) from err
    except (OSError, imaplib.IMAP4.error) as err:
        client.shutdown()
        raise ImapError(_("Il server IMAP non ha completato l'accesso.")) from err
    return client


def server_for(account: SmtpAccount) -> ImapServer | None:
    """The IMAP side of ``account``: its own settings, else its preset's."""
    if account.imap_host:
        return ImapServer(account.imap_host, account.imap_port, account.imap_security)
    known = presets.imap_server(account.preset)
    return ImapServer(*known) if known else None


def open_for_account(account: SmtpAccount, *, timeout: float = TIMEOUT) -> GuardedIMAP:
    """Log in to ``account``'s IMAP side with its own credentials: the password, or for a
    mailbox connected with "Accedi con Google / Microsoft" SASL XOAUTH2 with the same tokens
    as SMTP (a refused token refreshed once, on a new connection)."""
    server = server_for(account)
    if server is None:
        raise ImapError(_("Indica il server IMAP della casella."))
    if not account.uses_oauth:
        try:
            password = account.get_password()
        except DecryptionError as err:
            raise ImapError(
                _("La password salvata non è più leggibile: inseriscila di nuovo.")
            ) from err
        return open_mailbox(server, username=account.username, password=password, timeout=timeout)
    rejected = ""
    for _attempt in (1, 2):
        try:
            token = oauth.access_token(account, rejected=rejected)
        except DeliveryError as err:
            raise ImapError(_("Ricollega l'account della casella: l'accesso è scaduto.")) from err
        client = _connected(server, timeout)
        try:
            client.oauth2_login(account.username, token)
        except imapclient.exceptions.LoginError:
            client.shutdown()
            rejected = token
            continue
        return client
    raise ImapError(_("Il server IMAP ha rifiutato l'accesso con l'account collegato."))
