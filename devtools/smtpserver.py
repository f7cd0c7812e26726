"""A real SMTP server for development and tests (aiosmtpd), with TLS and AUTH.

``make run`` starts one on 127.0.0.1:1025 (``manage.py run_smtp_test_server``): STARTTLS with
a certificate from a local certificate authority kept under ``var/devsmtp/``, AUTH with any
user name and password, every message kept as an ``.eml`` file, and ``550 5.1.1`` for
recipients at ``rifiuta.test`` so a failure can be seen too.

Tests build servers with scripted behaviour::

    ca = LocalCA.create(tmp_path)                     # trust ca.ca_file in the client
    with SmtpTestServer(ca=ca, tls="starttls", users={"anna": "segreta"}) as server:
        ...                                           # server.port, server.messages
    server = SmtpTestServer(ca=ca, behaviour=Behaviour(data_replies=["451 4.3.0 busy"]))

``Behaviour`` scripts replies: per connection (``connect_replies``, consumed one per
connection, e.g. ``"421 4.7.0 Try later"``), per RCPT (``rcpt_reply(address, attempt)``),
per DATA (``data_replies``, consumed one per message; ``"drop"`` closes the connection after
the data without answering), and the AUTH failure text. ``SilentServer`` accepts
connections and never answers (timeouts).

``xoauth2=check`` also offers AUTH XOAUTH2 (Google's and Microsoft's SASL mechanism):
``check(user, token)`` decides; a refused token gets the providers' ``334`` error
challenge, then ``535``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import email
import ipaddress
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devtools.imapserver import ImapTestServer, MailStore
from devtools.pec import PROVIDER_ADDRESS as PEC_PROVIDER_ADDRESS
from devtools.provider import DevProvider
from psicogest.files import write_atomically

REFUSED_DOMAIN = "rifiuta.test"


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --- certificates ---------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


@dataclass(frozen=True)
class LocalCA:
    """A certificate authority and a server certificate signed by it, as PEM files."""

    directory: Path

    @property
    def ca_file(self) -> str:
        return str(self.directory / "ca.pem")

    @classmethod
    def create(
        cls, directory: Path, *, hostnames: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
    ) -> LocalCA:
        """Create (or reuse) the CA and a server certificate for ``hostnames``."""
        directory.mkdir(parents=True, exist_ok=True)
        ca = cls(directory)
        if not (directory / "ca.pem").exists():
            ca._make_ca()
        if not (directory / "server.pem").exists():
            ca.issue("server", hostnames)
        return ca

    def _make_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("PsicoGest local test CA"))
            .issuer_name(_name("PsicoGest local test CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        _write_key(self.directory / "ca.key", key)
        (self.directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, hostnames: tuple[str, ...], *, self_signed: bool = False) -> str:
        """Write ``<name>.pem``/``<name>.key`` for ``hostnames``; return the cert path.

        ``self_signed=True`` makes a certificate no client trusts (for the failure tests).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        if self_signed:
            issuer_key: Any = key
            issuer_name = _name(hostnames[0])
        else:
            issuer_key = serialization.load_pem_private_key(
                (self.directory / "ca.key").read_bytes(), password=None
            )
            issuer_name = _name("PsicoGest local test CA")
        alt_names: list[x509.GeneralName] = []
        for host in hostnames:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt_names.append(x509.DNSName(host))
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(hostnames[0]))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(issuer_key, hashes.SHA256())
        )
        _write_key(self.directory / f"{name}.key", key)
        path = self.directory / f"{name}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return str(path)

    def pec_signer(
        self, address: str, *, organisation: str = "Gestore PEC di prova"
    ) -> tuple[x509.Certificate, Any]:
        """A PEC provider's signing certificate for ``address`` (``posta-certificata@…``),
        issued by this CA and kept beside it: the key and certificate receipts are signed
        with, verifiable against ``ca.pem``."""
        stem = "pec-" + address.replace("@", "_at_")
        cert_path, key_path = self.directory / f"{stem}.pem", self.directory / f"{stem}.key"
        if cert_path.exists() and key_path.exists():
            return (
                x509.load_pem_x509_certificate(cert_path.read_bytes()),
                serialization.load_pem_private_key(key_path.read_bytes(), password=None),
            )
        key = ec.generate_private_key(ec.SECP256R1())
        issuer_key: Any = serialization.load_pem_private_key(
            (self.directory / "ca.key").read_bytes(), password=None
        )
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                x509.NameAttribute(NameOID.COMMON_NAME, address),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(_name("PsicoGest local test CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                critical=False,
            )
            .sign(issuer_key, hashes.SHA256())
        )
        _write_key(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert, key

    def server_context(self, name: str = "server") -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(
            str(self.directory / f"{name}.pem"), str(self.directory / f"{name}.key")
        )
        return context


# --- scripted behaviour -------------------------------------------------------------


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str | None

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=default_policy)  # type: ignore[return-value]

    @property
    def message_id(self) -> str:
        return str(self.message.get("Message-ID", ""))


def refuse_test_domain(address: str, attempt: int) -> str | None:
    """Default RCPT rule: ``550 5.1.1`` for recipients at rifiuta.test."""
    if address.lower().rsplit("@", 1)[-1] == REFUSED_DOMAIN:
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
    return None


@dataclass
class Behaviour:
    """Scripted replies; every list is consumed front to back, then the normal reply."""

    connect_replies: list[str] = field(default_factory=list)
    rcpt_reply: Callable[[str, int], str | None] = refuse_test_domain
    data_replies: list[str] = field(default_factory=list)
    auth_failure: str = "535 5.7.8 Authentication credentials invalid"
    # Seconds to wait before answering DATA (a slow server).
    data_delay: float = 0.0
    rcpt_attempts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_connect_reply(self) -> str | None:
        with self.lock:
            return self.connect_replies.pop(0) if self.connect_replies else None

    def next_data_reply(self) -> str | None:
        with self.lock:
            return self.data_replies.pop(0) if self.data_replies else None

    def rcpt(self, address: str) -> str | None:
        with self.lock:
            attempt = self.rcpt_attempts.get(address, 0) + 1
            self.rcpt_attempts[address] = attempt
        return self.rcpt_reply(address, attempt)


class _Handler:
    def __init__(self, server: SmtpTestServer) -> None:
        self.server = server

    async def handle_EHLO(  # noqa: N802 (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list:
        session.host_name = hostname
        if self.server.pipelining:
            # aiosmtpd reads commands line by line, so a pipelined group is served in order;
            # it only does not say so in its EHLO.
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(  # noqa: N802 (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        reply = self.server.behaviour.rcpt(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:

        reply = self.server.behaviour.next_data_reply()
        if self.server.behaviour.data_delay:
            await asyncio.sleep(self.server.behaviour.data_delay)
        if reply and not reply.startswith("drop"):
            return reply
        auth_data = getattr(session, "auth_data", None)
        login = getattr(auth_data, "login", None)
        received = Received(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(envelope.original_content or b""),
            login=login.decode() if isinstance(login, bytes) else login,
        )
        self.server._store(received)
        if self.server.on_accepted is not None and reply != "drop":
            self.server.on_accepted(received)
        if reply == "drop":
            # Accepted the data, then the connection dies before the reply.
            if isinstance(server.transport, asyncio.Transport):
                server.transport.abort()
            return "250 2.0.0 never seen"
        return "250 2.0.0 OK: queued"


# What Gmail answers to a refused bearer token (a base64 JSON challenge, then 535).
XOAUTH2_ERROR = {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}
XOAUTH2_FAILURE = "535 5.7.8 Username and Password not accepted. Learn more at 5.7.8 (test)"


class _XOAuth2Handler(_Handler):
    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        if len(args) > 1:
            response: Any = args[1].encode()
        else:
            response = await server.challenge_auth("", encode_to_b64=False)
            if response is MISSING:
                return AuthResult(success=False)
        try:
            text = base64.b64decode(response, validate=True).decode()
            fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
            user, token = fields["user"], fields["auth"].removeprefix("Bearer ")
        except (binascii.Error, UnicodeError, ValueError, KeyError):
            return AuthResult(success=False, handled=False, message="501 5.5.2 Bad XOAUTH2")
        with self.server._lock:
            self.server.auth_attempts.append(user)
        check = self.server.xoauth2
        if check is not None and check(user, token):
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        error = base64.b64encode(json.dumps(XOAUTH2_ERROR).encode())
        await server.challenge_auth(error, encode_to_b64=False)
        return AuthResult(success=False, handled=False, message=XOAUTH2_FAILURE)


class _ScriptedSMTP(SMTP):
    def __init__(self, *args: Any, test_server: SmtpTestServer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._test_server = test_server

    async def _handle_client(self) -> None:
        server = self._test_server
        server.connections += 1
        server.open_now += 1
        server.max_concurrent = max(server.max_concurrent, server.open_now)
        try:
            reply = server.behaviour.next_connect_reply()
            if reply:
                await self.push(reply)
                if self.transport is not None:
                    self.transport.close()
                return
            await super()._handle_client()
        finally:
            server.open_now -= 1


class _ScriptedController(Controller):
    def __init__(self, *args: Any, test_server: SmtpTestServer, **kwargs: Any) -> None:
        self._test_server = test_server
        super().__init__(*args, **kwargs)

    def factory(self) -> SMTP:
        return _ScriptedSMTP(self.handler, test_server=self._test_server, **self.SMTP_kwargs)


class SmtpTestServer:
    """An aiosmtpd server in a thread on loopback.

    ``tls``: "starttls" (offered; required before AUTH), "implicit" (TLS from the first
    byte, like port 465) or "none" (no TLS at all). ``users``: accepted credentials;
    ``None`` accepts any. ``cert``: the name of a certificate issued by ``ca``.
    ``pipelining``: also offer PIPELINING in the EHLO reply.
    """

    def __init__(
        self,
        *,
        ca: LocalCA | None = None,
        tls: str = "starttls",
        users: dict[str, str] | None = None,
        behaviour: Behaviour | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        cert: str = "server",
        mailbox_dir: Path | None = None,
        smtputf8: bool = True,
        xoauth2: Callable[[str, str], bool] | None = None,
        pipelining: bool = False,
        on_accepted: Callable[[Received], None] | None = None,
    ) -> None:
        if tls != "none" and ca is None:
            raise ValueError("TLS needs a LocalCA")
        self.ca = ca
        self.tls = tls
        self.users = users
        self.behaviour = behaviour or Behaviour()
        self.host = host
        self.port = port or free_port(host)
        self.cert = cert
        self.mailbox_dir = mailbox_dir
        # Offer SMTPUTF8 (RFC 6531), as aiosmtpd's controller does by default.
        self.smtputf8 = smtputf8
        self.xoauth2 = xoauth2
        # Offer PIPELINING (RFC 2920), as Postfix does.
        self.pipelining = pipelining
        # Called with each message accepted (make run's provider: bounces, PEC receipts).
        self.on_accepted = on_accepted
        self.messages: list[Received] = []
        self.auth_attempts: list[str] = []
        self.connections = 0
        # Sessions open now, and the most at once (all on the server's event loop thread).
        self.open_now = 0
        self.max_concurrent = 0
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    # -- lifecycle --
    def start(self) -> SmtpTestServer:
        kwargs: dict[str, Any] = {
            "authenticator": self._authenticate,
            # With implicit TLS the whole connection is encrypted; aiosmtpd only knows
            # about STARTTLS, so its own "TLS before AUTH" rule applies to that mode.
            "auth_require_tls": self.tls == "starttls",
            "enable_SMTPUTF8": self.smtputf8,
        }
        ssl_context = None
        if self.tls == "starttls":
            assert self.ca is not None
            kwargs["tls_context"] = self.ca.server_context(self.cert)
        elif self.tls == "implicit":
            assert self.ca is not None
            ssl_context = self.ca.server_context(self.cert)
        handler = _XOAuth2Handler(self) if self.xoauth2 is not None else _Handler(self)
        self._controller = _ScriptedController(
            handler,
            test_server=self,
            hostname=self.host,
            port=self.port,
            ssl_context=ssl_context,
            server_hostname="smtp.test.local",
            ready_timeout=10,
            **kwargs,
        )
        # The controller's readiness probe is a connection: keep the script away from it.
        scripted, self.behaviour.connect_replies = self.behaviour.connect_replies, []
        self._controller.start()
        self.behaviour.connect_replies = scripted
        self.connections = 0
        self.max_concurrent = 0
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals --
    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode()
        password = auth_data.password.decode()
        with self._lock:
            self.auth_attempts.append(login)
        if self.users is None or self.users.get(login) == password:
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False, message=self.behaviour.auth_failure)

    def _store(self, received: Received) -> None:
        with self._lock:
            self.messages.append(received)
        if self.mailbox_dir is not None:
            self.mailbox_dir.mkdir(parents=True, exist_ok=True)
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            write_atomically(self.mailbox_dir / f"{stamp}.eml", received.data)

    def message_ids(self) -> list[str]:
        with self._lock:
            return [m.message_id for m in self.messages]


class SilentServer:
    """Accepts TCP connections and never says a word (for timeout tests)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self._sock: socket.socket | None = None
        self._clients: list[socket.socket] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> SilentServer:
        self._sock = socket.create_server((self.host, self.port))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._clients.append(client)
            self._accepted(client)

    def _accepted(self, client: socket.socket) -> None:
        """What to do with a new connection: nothing (it is never answered)."""

    def stop(self) -> None:
        self._stopping.set()
        for client in self._clients:
            client.close()
        if self._sock is not None:
            self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> SilentServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DripServer(SilentServer):
    """A hostile server: greets with a "220-" continuation line every ``interval`` seconds
    and never finishes the greeting, so no single read ever times out. Counts the
    connections open at the same time (``max_concurrent``)."""

    def __init__(self, host: str = "127.0.0.1", *, interval: float = 0.5) -> None:
        super().__init__(host)
        self.interval = interval
        self.connections = 0
        self.open_now = 0
        self.max_concurrent = 0
        self._count_lock = threading.Lock()

    def _accepted(self, client: socket.socket) -> None:
        threading.Thread(target=self._drip, args=(client,), daemon=True).start()

    def _drip(self, client: socket.socket) -> None:
        with self._count_lock:
            self.connections += 1
            self.open_now += 1
            self.max_concurrent = max(self.max_concurrent, self.open_now)
        try:
            while not self._stopping.is_set():
                client.sendall(b"220-mail.drip.test still thinking\r\n")
                # Wait for the next drip, noticing at once when the client hangs up.
                readable, _w, _x = select.select([client], [], [], self.interval)
                if readable and not client.recv(4096):
                    break
        except OSError:
            pass
        finally:
            with self._count_lock:
                self.open_now -= 1


def wait_for_interrupt() -> None:
    """Sleep until Ctrl-C (or the SIGINT ``make run`` sends when it stops)."""
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def serve_forever(
    *,
    directory: Path,
    host: str,
    port: int,
    imap_port: int | None = None,
    xoauth2: Callable[[str, str], bool] | None = None,
    notice_delay: float = 20.0,
) -> None:
    """Run the development server until interrupted (``manage.py run_smtp_test_server``);
    ``xoauth2`` also accepts the bearer tokens it approves (the provider di prova's).

    With ``imap_port`` it has an IMAP side too (``devtools/imapserver.py``): each user's
    mailbox, where a recipient at ``rimbalza.test`` bounces and a PEC recipient's receipts
    arrive ``notice_delay`` seconds after the message was accepted."""
    ca = LocalCA.create(directory)
    store = MailStore(directory / "caselle")
    provider = DevProvider(store, delay=notice_delay, signer=ca.pec_signer(PEC_PROVIDER_ADDRESS))
    server = SmtpTestServer(
        ca=ca,
        tls="starttls",
        host=host,
        port=port,
        mailbox_dir=directory / "mailbox",
        xoauth2=xoauth2,
        on_accepted=lambda received: provider.accepted(
            login=received.login,
            mail_from=received.mail_from,
            rcpt_tos=received.rcpt_tos,
            data=received.data,
        ),
    ).start()
    imap = None
    if imap_port is not None:
        imap = ImapTestServer(
            store=store,
            ssl_context=ca.server_context(),
            host=host,
            port=imap_port,
            xoauth2=xoauth2,
        ).start()
    print(  # noqa: T201
        f"Server SMTP di test su {host}:{port} (STARTTLS, qualsiasi utente e password); "
        f"posta ricevuta in {directory / 'mailbox'}",
        flush=True,
    )
    if imap is not None:
        print(  # noqa: T201
            f"IMAP di test su {host}:{imap.port} (SSL); caselle in {directory / 'caselle'}",
            flush=True,
        )
    try:
        wait_for_interrupt()
    finally:
        provider.stop()
        if imap is not None:
            imap.stop()
        server.stop()
