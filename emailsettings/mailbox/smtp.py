"""The guarded SMTP connection to a practitioner's own mailbox.

Everything that talks to a personal mailbox goes through here:

- :func:`~emailsettings.mailbox.guard.check_destination` (``guard``) resolves the host
  once and refuses other ports and every non-public address.
- :func:`open_connection` / :func:`connection_for` connect to the *checked* address (no
  second look-up, so DNS rebinding cannot redirect it), verify TLS against the configured
  host name, require STARTTLS when it is the chosen security, and log in. Nothing comes from
  Django's ``EMAIL_*`` settings.
- the mail transaction on such a connection (MAIL / RCPT / DATA, pipelined when the server
  offers it) is :mod:`emailsettings.mailbox.transaction`. Every socket has ``TCP_NODELAY``.
- a failure is classified by :mod:`emailsettings.mailbox.classify` (``smtp-errors.md``) into the
  :class:`~emailsettings.failures.Failure` the exceptions of :mod:`emailsettings.exceptions`
  carry.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from emailsettings import conf
from emailsettings.exceptions import (
    AuthUnavailable,
    DecryptionError,
    DeliveryError,
    DestinationRefused,
    SecurityMismatch,
    StarttlsMissing,
)
from emailsettings.failures import ErrorClass, Failure
from emailsettings.mailbox import oauth
from emailsettings.mailbox.classify import classify, is_timeout, scrub
from emailsettings.mailbox.guard import check_destination

if TYPE_CHECKING:
    from emailsettings.models import SmtpAccount

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 15.0

PhaseCallback = Callable[[str], None]

# --- the guarded connection -------------------------------------------------------------


def tls_context() -> ssl.SSLContext:
    """System CAs plus ``EMAILSETTINGS_SMTP_EXTRA_CA_FILE``; host name always checked.

    One context per process and CA file version, shared by every connection (an
    ``SSLContext`` is safe to share; nothing changes it after this): building one loads the
    system's CA bundle, about 20 ms, which every batch paid for its SMTP session."""
    extra = conf.smtp_extra_ca_file()
    stamp: tuple[int, int] | None = None
    if extra:
        try:
            found = os.stat(extra)
            stamp = (found.st_mtime_ns, found.st_size)
        except OSError:
            stamp = None
    return _tls_context(extra, stamp)


@functools.lru_cache(maxsize=8)
def _tls_context(extra: str, stamp: tuple[int, int] | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if extra:
        try:
            context.load_verify_locations(cafile=extra)
        except (OSError, ssl.SSLError):
            logger.warning("EMAILSETTINGS_SMTP_EXTRA_CA_FILE %s cannot be loaded", extra)
    return context


class _Watchdog:
    """One thread per connection that enforces its current deadline. Arming and disarming
    it takes a lock, not a new thread: a ``threading.Timer`` per reply cost about 0.25 ms
    each, four a message. The thread ends after a minute without a deadline (so a connection
    nobody closed is not kept alive by it) and starts again when needed."""

    IDLE_SECONDS = 60.0

    def __init__(self, expire: Callable[[], None]) -> None:
        self._expire = expire
        self._cond = threading.Condition()
        self._at: float | None = None
        # When the waiting thread wakes by itself: a later deadline needs no wake-up (each
        # one would make the thread compete with the reading one, three a pipelined message).
        self._wakes_at = 0.0
        self._closed = False
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float) -> None:
        with self._cond:
            self._at = time.monotonic() + seconds
            if self._thread is None:
                self._closed = False
                self._thread = threading.Thread(target=self._run, name="smtp-deadline", daemon=True)
                self._thread.start()
            elif self._at < self._wakes_at:
                self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._at = None

    def close(self) -> None:
        with self._cond:
            self._closed, self._at = True, None
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            try:
                while not self._closed:
                    if self._at is None:
                        self._wakes_at = time.monotonic() + self.IDLE_SECONDS
                        if not self._cond.wait(self.IDLE_SECONDS) and self._at is None:
                            return
                        continue
                    remaining = self._at - time.monotonic()
                    if remaining > 0:
                        self._wakes_at = self._at
                        self._cond.wait(remaining)
                        continue
                    self._at = None
                    self._expire()
            finally:
                self._thread = None


class PhaseMixin:
    """The phase reached, and deadlines: a socket timeout bounds each read, but a server that
    drips a continuation line ("220-…") every second never lets one expire. Every reply (and
    the message data) therefore has a deadline of its own; when it passes, the socket is
    shut down and the wait ends in a :class:`TimeoutError`."""

    phase: str
    on_phase: PhaseCallback | None
    command_timeout: float = DEFAULT_TIMEOUT
    sock: socket.socket | None
    _deadline_active: bool = False
    _deadline_expired: bool = False
    _watchdog: _Watchdog | None = None

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        if self.on_phase is not None:
            self.on_phase(phase)

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Everything inside must finish within ``seconds`` (the outermost deadline wins)."""
        if self._deadline_active:
            yield
            return
        self._deadline_active, self._deadline_expired = True, False
        if self._watchdog is None:
            self._watchdog = _Watchdog(self._expire)
        watchdog = self._watchdog
        watchdog.arm(seconds)
        try:
            yield
        except OSError as err:  # smtplib's errors are OSErrors too
            if self._deadline_expired:
                raise TimeoutError(f"No complete answer within {seconds:.0f} s") from err
            raise
        finally:
            watchdog.disarm()
            self._deadline_active = False

    def close(self) -> None:
        try:
            super().close()  # type: ignore[misc]
        finally:
            watchdog, self._watchdog = self._watchdog, None
            if watchdog is not None:
                watchdog.close()

    def _expire(self) -> None:
        self._deadline_expired = True
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def getreply(self) -> tuple[int, bytes]:
        with self.deadline(self.command_timeout):
            return super().getreply()  # type: ignore[misc]


def tcp_connection(
    address: str, port: int, timeout: float, source_address: Any = None
) -> socket.socket:
    """A TCP connection with ``TCP_NODELAY``: without it Nagle's algorithm holds the last
    small TLS record of each command (or of the message data) until the server's delayed
    ACK arrives, about 40 ms a message whatever the server's speed."""
    raw = socket.create_connection((address, port), timeout, source_address)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not a TCP socket (never expected); the stall is only slower
        logger.info("TCP_NODELAY could not be set on the SMTP socket")
    return raw


class GuardedSMTP(PhaseMixin, smtplib.SMTP):
    """An SMTP client that connects to a checked address while TLS verifies the host
    name (``smtplib`` takes the name for TLS from ``_host``)."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return tcp_connection(host, port, timeout, self.source_address)

    def __init__(
        self, *, server_hostname: str, timeout: float, on_phase: PhaseCallback | None
    ) -> None:
        self.phase = "connect"
        self.on_phase = on_phase
        super().__init__(host="", local_hostname=_local_hostname(), timeout=timeout)
        self._host = server_hostname


class GuardedSMTPSSL(PhaseMixin, smtplib.SMTP_SSL):
    """Implicit TLS (port 465) to a checked address, verified against the host name."""

    def __init__(
        self,
        *,
        server_hostname: str,
        timeout: float,
        context: ssl.SSLContext,
        on_phase: PhaseCallback | None,
    ) -> None:
        self.phase = "connect"
        self.on_phase = on_phase
        super().__init__(
            host="", local_hostname=_local_hostname(), timeout=timeout, context=context
        )
        self._host = server_hostname

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        raw = tcp_connection(host, port, timeout, self.source_address)
        self.set_phase("tls")
        try:
            wrapped = self.context.wrap_socket(raw, server_hostname=self._host)
        except BaseException:
            raw.close()
            raise
        # The greeting that follows belongs to the connect phase.
        self.phase = "connect"
        return wrapped


def _speaks_tls(address: str, port: int, *, server_hostname: str, timeout: float) -> bool:
    """Whether the (already checked) address answers a TLS handshake. Only a probe: nothing
    is sent over it, so the certificate is not verified here."""
    probe = ssl.create_default_context()
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE  # noqa: S501 (probe only, no data sent)
    try:
        with tcp_connection(address, port, timeout) as raw:
            with probe.wrap_socket(raw, server_hostname=server_hostname):
                return True
    except (OSError, ssl.SSLError):
        return False


def _local_hostname() -> str:
    # socket.getfqdn() may wait on DNS; the EHLO name is informational for submission.
    return socket.gethostname() or "localhost"


def classified_error(
    err: BaseException, *, phase: str, preset_key: str | None, secrets: Iterable[str]
) -> DeliveryError:
    found = classify(err, phase=phase, preset_key=preset_key)
    clean = replace(found, reply=scrub(found.reply, secrets))
    logger.info(
        "SMTP failure at %s: %s %s %s", clean.phase, clean.error_class, clean.code, clean.enhanced
    )
    return DeliveryError.for_failure(clean)


def close_quietly(connection: smtplib.SMTP | None) -> None:
    """QUIT politely, then close; errors at this point change nothing."""
    if connection is None:
        return
    try:
        connection.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        try:
            connection.close()
        except OSError:
            pass


def open_connection(
    *,
    host: str,
    port: int,
    security: str,
    username: str,
    password: str,
    timeout: float = DEFAULT_TIMEOUT,
    on_phase: PhaseCallback | None = None,
    preset_key: str | None = None,
    oauth_token: str = "",
) -> smtplib.SMTP:
    """Connect, secure, EHLO and log in; return the ready connection.

    ``security`` is "ssl" (implicit TLS) or "starttls" (required: a server that does not
    offer it is refused before any credential is sent). ``timeout`` applies to the connect
    and to every command. Raises a :class:`~emailsettings.exceptions.DeliveryError` subclass
    whose ``failure`` never contains the password.

    With ``oauth_token`` the login is SASL XOAUTH2 (the password is not used); a refused
    token is an ``auth_failed`` failure, whatever the provider's wording.
    """
    if security not in ("ssl", "starttls"):
        raise ValueError(f"Unsupported SMTP security {security!r}: use 'ssl' or 'starttls'.")
    secrets = [password, oauth_token]
    phase = "connect"
    if on_phase is not None:
        on_phase(phase)
    try:
        addresses = check_destination(host, port)
    except DestinationRefused as err:
        raise classified_error(err, phase=phase, preset_key=preset_key, secrets=secrets) from err

    context = tls_context()
    connection: GuardedSMTP | GuardedSMTPSSL | None = None
    last_error: BaseException | None = None
    for address in addresses:
        candidate: GuardedSMTP | GuardedSMTPSSL
        if security == "ssl":
            candidate = GuardedSMTPSSL(
                server_hostname=host, timeout=timeout, context=context, on_phase=on_phase
            )
        else:
            candidate = GuardedSMTP(server_hostname=host, timeout=timeout, on_phase=on_phase)
        candidate.command_timeout = timeout
        try:
            code, message = candidate.connect(address, port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, message)
        except (OSError, smtplib.SMTPException) as err:
            phase = candidate.phase
            candidate.close()
            if (
                security == "starttls"
                and is_timeout(err)
                and _speaks_tls(address, int(port), server_hostname=host, timeout=min(timeout, 5.0))
            ):
                # An implicit-TLS port (465, or any other) waits for a TLS handshake while the
                # client waits for a plain greeting: a wrong setting, not a silent server.
                err = SecurityMismatch(
                    "No greeting with STARTTLS, but the port answers a TLS handshake: it "
                    "expects implicit TLS (SSL/TLS)."
                )
                phase = "tls"
            last_error = err
            # Another address may work, unless the server answered (it is the server).
            if isinstance(err, smtplib.SMTPResponseException | ssl.SSLError) or is_timeout(err):
                break
            continue
        connection = candidate
        break
    if connection is None:
        assert last_error is not None
        raise classified_error(
            last_error, phase=phase, preset_key=preset_key, secrets=secrets
        ) from (last_error)

    try:
        with connection.deadline(timeout * 2):
            _prepare(
                connection,
                security=security,
                username=username,
                password=password,
                context=context,
                oauth_token=oauth_token,
            )
    except (OSError, smtplib.SMTPException, ValueError) as err:
        phase = connection.phase
        close_quietly(connection)
        failed = classified_error(err, phase=phase, preset_key=preset_key, secrets=secrets)
        if oauth_token and _token_refused(failed.failure):
            # Gmail words a refused token like a refused password (535 5.7.8).
            failed = DeliveryError.for_failure(failed.failure.with_class(ErrorClass.AUTH_FAILED))
        raise failed from err
    return connection


def _token_refused(failure: Failure) -> bool:
    return (
        failure.phase == "auth"
        and failure.code is not None
        and failure.reply_class == "5"
        and failure.error_class in (ErrorClass.AUTH_FAILED, ErrorClass.APP_PASSWORD_REQUIRED)
    )


def _prepare(
    connection: GuardedSMTP | GuardedSMTPSSL,
    *,
    security: str,
    username: str,
    password: str,
    context: ssl.SSLContext,
    oauth_token: str = "",
) -> None:
    """EHLO, STARTTLS when chosen (required before any credential), EHLO again, AUTH."""
    connection.set_phase("connect")
    connection.ehlo()
    if security == "starttls":
        connection.set_phase("tls")
        if not connection.has_extn("starttls"):
            raise StarttlsMissing(
                "STARTTLS non offerto dal server: le credenziali non sono state inviate."
            )
        connection.starttls(context=context)
        connection.ehlo()
    if oauth_token:
        connection.set_phase("auth")
        login_xoauth2(connection, username, oauth_token)
    elif username:
        connection.set_phase("auth")
        login(connection, username, password)


# Strongest first among those smtplib implements; over TLS PLAIN is as good as any, and a
# server that offers several gets exactly one try (smtplib's login() tries each in turn, so
# one wrong password counted as two failed logins towards the provider's lockout).
_AUTH_PREFERENCE = ("PLAIN", "LOGIN", "CRAM-MD5")


def login(connection: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH once, with the best mechanism the server offers; raises
    :class:`AuthUnavailable` when it offers none (or no AUTH at all)."""
    if not connection.has_extn("auth"):
        raise AuthUnavailable("The server offers no AUTH (SMTP AUTH extension missing).")
    offered = connection.esmtp_features.get("auth", "").upper().split()
    mechanism = next((name for name in _AUTH_PREFERENCE if name in offered), None)
    if mechanism is None:
        raise AuthUnavailable(f"No supported AUTH mechanism among: {' '.join(offered)[:200]}")
    connection.user, connection.password = username, password
    authobject = getattr(connection, "auth_" + mechanism.lower().replace("-", "_"))
    connection.auth(mechanism, authobject, initial_response_ok=True)


def login_xoauth2(connection: smtplib.SMTP, username: str, token: str) -> None:
    """AUTH XOAUTH2 once (Google's and Microsoft's SASL mechanism), the bearer token in the
    initial response. A refusal comes as ``334 <base64 JSON>``: the empty answer lets the
    server end with its 535 (answering the challenge again would make smtplib loop)."""
    if not connection.has_extn("auth"):
        raise AuthUnavailable("The server offers no AUTH (SMTP AUTH extension missing).")
    offered = connection.esmtp_features.get("auth", "").upper().split()
    if "XOAUTH2" not in offered:
        raise AuthUnavailable(f"XOAUTH2 not offered among: {' '.join(offered)[:200]}")
    initial = f"user={username}\x01auth=Bearer {token}\x01\x01"

    def respond(challenge: bytes | None = None) -> str:
        return initial if challenge is None else ""

    connection.auth("XOAUTH2", respond, initial_response_ok=True)


def connection_for(
    account: SmtpAccount, *, timeout: float = DEFAULT_TIMEOUT, on_phase: PhaseCallback | None = None
) -> smtplib.SMTP:
    """:func:`open_connection` for a stored mailbox (the password is decrypted here)."""
    if account.uses_oauth:
        return _oauth_connection(account, timeout=timeout, on_phase=on_phase)

    try:
        password = account.get_password()
    except DecryptionError as err:
        failure = Failure(
            phase="auth",
            code=None,
            enhanced="",
            error_class=ErrorClass.AUTH_FAILED,
            reply="La password salvata non è leggibile: inseriscila di nuovo.",
        )
        raise DeliveryError.for_failure(failure) from err
    return open_connection(
        host=account.host,
        port=account.port,
        security=account.security,
        username=account.username,
        password=password,
        timeout=timeout,
        on_phase=on_phase,
        preset_key=account.preset,
    )


def _oauth_connection(
    account: SmtpAccount, *, timeout: float, on_phase: PhaseCallback | None
) -> smtplib.SMTP:
    """XOAUTH2 with a token from :func:`emailsettings.mailbox.oauth.access_token`; a token the
    server refuses is refreshed once and tried on a new connection (each connection makes
    one AUTH attempt). Refused again, the mailbox must be connected again."""
    rejected = ""
    for attempt in (1, 2):
        token = oauth.access_token(account, rejected=rejected)
        try:
            return open_connection(
                host=account.host,
                port=account.port,
                security=account.security,
                username=account.username,
                password="",
                timeout=timeout,
                on_phase=on_phase,
                preset_key=account.preset,
                oauth_token=token,
            )
        except DeliveryError as err:
            if err.failure.error_class != ErrorClass.AUTH_FAILED or err.failure.phase != "auth":
                raise
            if attempt == 2:
                raise DeliveryError.for_failure(
                    err.failure.with_class(ErrorClass.OAUTH_RECONNECT)
                ) from err
            rejected = token
    raise AssertionError("unreachable")
