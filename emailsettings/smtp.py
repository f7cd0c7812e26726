"""The guarded SMTP connection to a practitioner's own mailbox, and failure classification.

Everything that talks to a personal mailbox goes through here:

- :func:`check_destination` resolves the host once and refuses ports other than 465, 587,
  2525 and 25 and every non-public address (loopback, private, link-local, CGNAT,
  unique-local, the IPv4-mapped / NAT64 / 6to4 forms of those, multicast, reserved,
  unspecified) — unless ``EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS`` is on.
- :func:`open_connection` / :func:`connection_for` connect to the *checked* address (no
  second look-up, so DNS rebinding cannot redirect it), verify TLS against the configured
  host name, require STARTTLS when it is the chosen security, and log in. Nothing comes from
  Django's ``EMAIL_*`` settings.
- :func:`send_message` runs MAIL / RCPT / DATA (pipelined, RFC 2920, when the server offers
  it: :mod:`emailsettings.pipelining`) and reports each phase, so a caller knows whether a
  failure came before or after the message data left. Every socket has ``TCP_NODELAY``.
- :func:`classify` turns any exception into an :class:`~emailsettings.failures.Failure` following
  ``smtp-errors.md``; the exceptions of :mod:`emailsettings.exceptions` carry it.

To recognise a new provider reply, add a rule to :data:`_REPLY_RULES` (first match wins)
and its advice to :mod:`emailsettings.guidance`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.message
import errno
import functools
import ipaddress
import logging
import os
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext as _

from . import conf, ipranges
from .exceptions import DeliveryError, DestinationRefused
from .failures import ErrorClass, Failure

if TYPE_CHECKING:
    from .models import SmtpAccount

logger = logging.getLogger(__name__)

ALLOWED_PORTS = (465, 587, 2525, 25)
DEFAULT_TIMEOUT = 15.0
MAX_REPLY_LENGTH = 2000

PhaseCallback = Callable[[str], None]

# --- destination guard ------------------------------------------------------------------


def check_destination(host: str, port: int, *, ports: tuple[int, ...] = ALLOWED_PORTS) -> list[str]:
    """Resolve ``host`` once and return its addresses, all checked.

    Raises :class:`~emailsettings.exceptions.DestinationRefused` (a ``ValidationError``) for a
    port outside ``ports`` (SMTP's 465/587/2525/25 unless told) or any non-public address; with
    ``EMAILSETTINGS_ALLOW_PRIVATE_SMTP_HOSTS`` on, every address and port is allowed. A host
    that does not resolve raises it with ``code="host_not_found"``.

    Every refusal that depends on the host's addresses says the same words: neither the
    address nor whether the name resolved is shown, so the SMTP form cannot be used to map
    internal names (the ``code`` tells them apart for the failure classification).
    """
    refused = _(
        "Il server SMTP indicato non è raggiungibile o non è consentito: usa il server "
        "pubblico del tuo provider, sulla porta 465 o 587."
    )
    allow_private = conf.allow_private_smtp_hosts()
    host = (host or "").strip()
    if not host:
        raise DestinationRefused(_("Indica il server SMTP."), code="host_missing")
    if not 0 < int(port) < 65536 or (not allow_private and int(port) not in ports):
        raise DestinationRefused(
            _("La porta %(port)s non è consentita: usa 465 (SSL) o 587 (STARTTLS).")
            % {"port": port},
            code="port_not_allowed",
        )
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        if err.errno == socket.EAI_AGAIN:
            raise DestinationRefused(
                refused,
                code="host_lookup_failed",
            ) from err
        raise DestinationRefused(
            refused,
            code="host_not_found",
        ) from err
    except UnicodeError as err:
        raise DestinationRefused(
            refused,
            code="host_not_found",
        ) from err
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DestinationRefused(
            refused,
            code="host_not_found",
        )
    if not allow_private:
        for address in addresses:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError as err:
                raise DestinationRefused(
                    refused,
                    code="address_not_allowed",
                ) from err
            if not ipranges.is_public(ip):
                raise DestinationRefused(
                    refused,
                    code="address_not_allowed",
                )
    return addresses


# --- failures ---------------------------------------------------------------------------

# The classified failure is the module-wide value of emailsettings.failures.
SmtpFailure = Failure

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_AUTH_LINE = re.compile(r"(?im)^(\s*AUTH\s+[A-Z0-9_-]+)\s+\S+")
_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/]{12,}={0,2}")


def _enhanced_code(text: str) -> str:
    match = _ENHANCED.search(text)
    return ".".join(match.groups()) if match else ""


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secrets (plain or base64) or AUTH initial responses."""
    text = _AUTH_LINE.sub(r"\1 [omesso]", text)
    for secret in secrets:
        if not secret:
            continue
        text = text.replace(secret, "[omesso]")
        encoded = base64.b64encode(secret.encode()).decode()
        text = text.replace(encoded, "[omesso]").replace(encoded.rstrip("="), "[omesso]")

    def blob(match: re.Match[str]) -> str:
        token = match.group(0)
        try:
            decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        except (binascii.Error, ValueError):
            return token
        # SASL PLAIN is "authzid NUL user NUL password"; XOAUTH2 carries "auth=Bearer".
        if decoded.count(b"\x00") >= 2 or b"auth=Bearer" in decoded:
            return "[omesso]"
        return token

    return _BASE64_TOKEN.sub(blob, text)[:MAX_REPLY_LENGTH]


def _reply_parts(exc: BaseException) -> tuple[int | None, str]:
    """The server's reply code and text carried by ``exc``, or the local error text."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        for refused_code, message in exc.recipients.values():
            return int(refused_code), _text(message)
        return None, str(exc)
    if isinstance(exc, smtplib.SMTPResponseException):
        code = int(exc.smtp_code) if exc.smtp_code and exc.smtp_code > 0 else None
        return code, _text(exc.smtp_error)
    text = str(exc) or exc.__class__.__name__
    return None, text


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _is_timeout(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _depth in range(5):
        if seen is None:
            return False
        if isinstance(seen, TimeoutError | socket.timeout):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# (pattern on the lower-cased reply, phases or None for any, error class)
_REPLY_RULES: tuple[tuple[re.Pattern[str], frozenset[str] | None, str], ...] = tuple(
    (re.compile(pattern), frozenset(phases) if phases else None, error_class)
    for pattern, phases, error_class in (
        # Gmail 534 5.7.9: the account has 2-step verification.
        (
            r"5\.7\.90?\b|application-specific password",
            None,
            ErrorClass.APP_PASSWORD_REQUIRED,
        ),
        # Gmail 534 5.7.14: sign-in from an unknown place blocked as suspicious.
        (
            r"5\.7\.14\b|log ?in (through|via) your web browser|web login required",
            None,
            ErrorClass.SUSPICIOUS_LOGIN,
        ),
        # Microsoft 5.7.139 "SmtpClientAuthentication is disabled for the Tenant": the admin
        # turned SMTP AUTH off, for passwords and OAuth alike.
        (
            r"smtpclientauthentication is disabled|smtp ?auth(entication)? is disabled",
            None,
            ErrorClass.SMTP_AUTH_DISABLED,
        ),
        # Microsoft: basic (password) auth disabled, security defaults.
        (
            r"5\.7\.139\b|5\.7\.30\b|basic authentication is (disabled|not supported)"
            r"|security defaults",
            None,
            ErrorClass.OAUTH_REQUIRED,
        ),
        # Gmail 535 5.7.8: the account password is no longer accepted from apps.
        (
            r"username and password not accepted|5\.7\.80\b",
            None,
            ErrorClass.APP_PASSWORD_REQUIRED,
        ),
        (
            r"must issue a starttls|5\.7\.11\b|encryption required",
            None,
            ErrorClass.STARTTLS_MISSING,
        ),
        # Rate and quota: Gmail 4.7.28 / 5.4.5, Aruba, Legalmail, "too many login attempts".
        (
            r"4\.7\.28\b|5\.4\.5\b|daily user sending limit|sending limit|policy violation"
            r"|too much traffic|too many (login attempts|messages|connections)|rate limit",
            None,
            ErrorClass.RATE_LIMITED,
        ),
        # Microsoft SendAsDenied, sender mismatch (Aruba, PEC), relay refused (Libero).
        (
            r"sendasdenied|5\.2\.252\b|5\.7\.60\b|sender address rejected|not logged in"
            r"|relay (disabled|denied|access denied|not permitted)|relaying denied",
            None,
            ErrorClass.SENDER_REFUSED,
        ),
        # The recipient's domain refused the sender's domain (SPF/DKIM/DMARC).
        (r"5\.7\.26\b|5\.7\.515\b|dmarc", None, ErrorClass.MESSAGE_REJECTED),
        (r"[45]\.2\.2\b|mailbox (is )?full|over quota", None, ErrorClass.MAILBOX_FULL),
        (r"greylist|graylist", None, ErrorClass.GREYLISTED),
    )
)


def classify(exc: BaseException, *, phase: str, preset_key: str | None = None) -> Failure:
    """Classify ``exc`` raised during ``phase`` (connect, tls, auth, mail, rcpt, data,
    data_sent) following ``smtp-errors.md``. The reply is not yet scrubbed of the password:
    :func:`open_connection` and :func:`send_message` do it."""
    from .presets import get_preset

    after_data = phase == "data_sent"
    code, text = _reply_parts(exc)
    enhanced = _enhanced_code(text)
    reply = f"{code} {text}" if code else text

    def failure(error_class: str) -> Failure:
        return Failure(
            phase=phase,
            code=code,
            enhanced=enhanced,
            error_class=str(error_class),
            reply=reply,
            after_data=after_data and error_class == ErrorClass.UNKNOWN,
        )

    if isinstance(exc, DestinationRefused):
        if exc.code == "host_not_found":
            return failure(ErrorClass.HOST_NOT_FOUND)
        if exc.code == "host_lookup_failed":
            return failure(ErrorClass.TEMPORARY)
        return failure(ErrorClass.DESTINATION_REFUSED)
    if code is None:
        return failure(_classify_local(exc, phase=phase))

    lowered = text.lower()
    for pattern, phases, error_class in _REPLY_RULES:
        if (phases is None or phase in phases) and pattern.search(lowered):
            return failure(error_class)

    reply_class = enhanced[0] if enhanced else str(code)[0]
    if phase == "auth":
        if reply_class == "4":
            return failure(ErrorClass.TEMPORARY)
        preset = get_preset(preset_key)
        if code == 535 and preset is not None and preset.app_password_on_535:
            return failure(ErrorClass.APP_PASSWORD_REQUIRED)
        return failure(ErrorClass.AUTH_FAILED)
    if reply_class == "4":
        if phase == "rcpt" and code in (450, 451):
            return failure(ErrorClass.GREYLISTED)
        # 421 4.7.x and other 4.7.x: the provider is throttling this sender.
        if enhanced.startswith("4.7."):
            return failure(ErrorClass.RATE_LIMITED)
        return failure(ErrorClass.TEMPORARY)
    if reply_class == "5":
        if phase == "mail":
            return failure(ErrorClass.SENDER_REFUSED)
        if phase == "rcpt":
            if enhanced.startswith("5.7.") and not enhanced.startswith("5.7.1"):
                return failure(ErrorClass.MESSAGE_REJECTED)
            return failure(ErrorClass.RECIPIENT_REFUSED)
        if phase in ("data", "data_sent"):
            return failure(ErrorClass.MESSAGE_REJECTED)
        if phase == "tls":
            return failure(ErrorClass.TLS_FAILED)
        if phase == "connect":
            return failure(ErrorClass.CONNECTION_FAILED)
    return failure(ErrorClass.UNKNOWN)


def _classify_local(exc: BaseException, *, phase: str) -> str:
    """Errors with no server reply: network, TLS, protocol."""
    if isinstance(exc, ssl.SSLCertVerificationError) or (
        isinstance(exc, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(exc)
    ):
        return ErrorClass.CERTIFICATE_INVALID
    if isinstance(exc, ssl.CertificateError):
        return ErrorClass.CERTIFICATE_INVALID
    if isinstance(exc, ssl.SSLError):
        return ErrorClass.TLS_FAILED
    if isinstance(exc, SecurityMismatch):
        return ErrorClass.TLS_FAILED
    if isinstance(exc, StarttlsMissing):
        return ErrorClass.STARTTLS_MISSING
    if isinstance(exc, AuthUnavailable):
        return ErrorClass.AUTH_UNAVAILABLE
    if isinstance(exc, AddressUnsupported | UnicodeError):
        return ErrorClass.SENDER_REFUSED if phase == "mail" else ErrorClass.ADDRESS_UNSUPPORTED
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        if "starttls" in str(exc).lower():
            return ErrorClass.STARTTLS_MISSING
        return ErrorClass.AUTH_UNAVAILABLE
    if phase == "data_sent":
        return ErrorClass.UNKNOWN
    if _is_timeout(exc):
        return ErrorClass.TIMEOUT
    if isinstance(exc, socket.gaierror):
        if exc.errno == socket.EAI_AGAIN:
            return ErrorClass.TEMPORARY
        return ErrorClass.HOST_NOT_FOUND
    if isinstance(exc, ConnectionRefusedError):
        return ErrorClass.CONNECTION_FAILED
    if isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionResetError | BrokenPipeError):
        # A TLS handshake the server hangs up on is a security mismatch, not an outage.
        if phase == "tls":
            return ErrorClass.TLS_FAILED
        return ErrorClass.TEMPORARY
    if isinstance(exc, OSError) and exc.errno in (
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ENETDOWN,
        errno.EHOSTDOWN,
    ):
        return ErrorClass.CONNECTION_FAILED
    if isinstance(exc, smtplib.SMTPException) and phase == "auth":
        # "No suitable authentication method found."
        return ErrorClass.AUTH_UNAVAILABLE
    if isinstance(exc, OSError):
        return ErrorClass.TEMPORARY
    return ErrorClass.UNKNOWN


class SecurityMismatch(smtplib.SMTPException):
    """STARTTLS was chosen on a port that speaks implicit TLS: the server waits for a TLS
    handshake while the client waits for its greeting."""


class AuthUnavailable(smtplib.SMTPNotSupportedError):
    """The server offers no AUTH mechanism the product uses (wrong server or port)."""


class AddressUnsupported(smtplib.SMTPException):
    """An address with a non-ASCII local part, and the server does not offer SMTPUTF8."""

    # Which command the address was for ("mail": the sender, "rcpt": a recipient).
    phase = "rcpt"


class StarttlsMissing(smtplib.SMTPNotSupportedError):
    """The server does not offer STARTTLS although the mailbox is set to use it."""


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


class _PhaseMixin:
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


class GuardedSMTP(_PhaseMixin, smtplib.SMTP):
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


class GuardedSMTPSSL(_PhaseMixin, smtplib.SMTP_SSL):
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


def _fail(
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
        raise _fail(err, phase=phase, preset_key=preset_key, secrets=secrets) from err

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
                and _is_timeout(err)
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
            if isinstance(err, smtplib.SMTPResponseException | ssl.SSLError) or _is_timeout(err):
                break
            continue
        connection = candidate
        break
    if connection is None:
        assert last_error is not None
        raise _fail(last_error, phase=phase, preset_key=preset_key, secrets=secrets) from (
            last_error
        )

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
        failed = _fail(err, phase=phase, preset_key=preset_key, secrets=secrets)
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
    from .crypto import DecryptionError

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
    """XOAUTH2 with a token from :func:`emailsettings.oauth.access_token`; a token the
    server refuses is refreshed once and tried on a new connection (each connection makes
    one AUTH attempt). Refused again, the mailbox must be connected again."""
    from . import oauth

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


# --- the transaction --------------------------------------------------------------------


@dataclass(frozen=True)
class SendReply:
    """The server's final answer to DATA (accepted)."""

    code: int
    reply: str


def probe_envelope(
    connection: smtplib.SMTP,
    *,
    from_addr: str,
    to_addr: str,
    on_phase: PhaseCallback | None = None,
    preset_key: str | None = None,
) -> None:
    """MAIL FROM and RCPT TO without sending anything, then RSET (the "verify" probe)."""
    _envelope(connection, from_addr, [to_addr], on_phase=on_phase, preset_key=preset_key)
    try:
        connection.rset()
    except (OSError, smtplib.SMTPException) as err:
        raise _fail(err, phase="rcpt", preset_key=preset_key, secrets=()) from err


def send_message(
    connection: smtplib.SMTP,
    *,
    message: bytes | email.message.Message,
    from_addr: str,
    to_addrs: list[str],
    on_phase: PhaseCallback | None = None,
    preset_key: str | None = None,
) -> SendReply:
    """MAIL, RCPT (every recipient must be accepted), DATA. Phases reported: "mail",
    "rcpt", "data", then "data_sent" once the whole message is out — a failure after that
    raises :class:`~emailsettings.exceptions.UnknownOutcomeError`.

    When the server offers PIPELINING (RFC 2920) the three commands go in one write and
    only "data" is reported before it (see :mod:`emailsettings.pipelining`); each reply is
    still checked and classified in its own phase.

    An 8-bit message is declared ``BODY=8BITMIME`` (RFC 6152) when the server offers it and
    re-encoded quoted-printable when it does not."""
    from .messages import seven_bit

    if isinstance(message, email.message.Message):
        data = message.as_bytes()
    else:
        data = message
    options: list[str] = []
    if not data.isascii():
        if connection.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        else:
            data = seven_bit(data)
    if connection.has_extn("pipelining") and conf.smtp_pipelining():
        from .pipelining import pipelined_envelope

        pipelined_envelope(
            connection,
            from_addr,
            to_addrs,
            on_phase=on_phase,
            preset_key=preset_key,
            mail_options=options,
        )
    else:
        _envelope(
            connection,
            from_addr,
            to_addrs,
            on_phase=on_phase,
            preset_key=preset_key,
            mail_options=options,
        )
        _notify(on_phase, "data")
        try:
            connection.putcmd("data")
            code, reply = connection.getreply()
            if code != 354:
                raise smtplib.SMTPDataError(code, reply)
        except (OSError, smtplib.SMTPException) as err:
            raise _fail(err, phase="data", preset_key=preset_key, secrets=()) from err
    return _send_data(connection, data, on_phase=on_phase, preset_key=preset_key)


def _send_data(
    connection: smtplib.SMTP,
    data: bytes,
    *,
    on_phase: PhaseCallback | None,
    preset_key: str | None,
) -> SendReply:
    """The message data after the server's 354, and its final reply."""
    phase = "data"
    try:
        payload = dot_stuffed(data)
        if not payload.endswith(b"\r\n"):
            payload += b"\r\n"
        # The data and the final reply together: a slow reader must not hold the session
        # forever either (a generous rate for the payload on top of the command timeout).
        with _deadline(connection, len(payload) / 50_000):
            connection.send(payload + b".\r\n")
            phase = "data_sent"
            _notify(on_phase, phase)
            code, reply = connection.getreply()
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
    except (OSError, smtplib.SMTPException) as err:
        raise _fail(err, phase=phase, preset_key=preset_key, secrets=()) from err
    return SendReply(code=code, reply=scrub(_text(reply)))


def dot_stuffed(data: bytes) -> bytes:
    """RFC 5321 4.5.2: CRLF line ends, and a leading "." doubled (dot-stuffing). A message
    whose lines all end in CRLF already (every message the product builds) takes two
    substring passes instead of two regular expressions over 40 KB."""
    crlf = data.count(b"\r\n")
    if data.count(b"\r") != crlf or data.count(b"\n") != crlf:
        data = re.sub(rb"\r\n|\n|\r", b"\r\n", data)
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def _deadline(connection: smtplib.SMTP, extra: float) -> contextlib.AbstractContextManager[None]:
    if isinstance(connection, _PhaseMixin):
        return connection.deadline(connection.command_timeout + extra)
    return contextlib.nullcontext()


def _rset_quietly(connection: smtplib.SMTP) -> None:
    # Leaves the session clean for the next message of a batch; the refusal is what matters.
    try:
        connection.rset()
    except (OSError, smtplib.SMTPException):
        pass


def _notify(on_phase: PhaseCallback | None, phase: str) -> None:
    if on_phase is not None:
        on_phase(phase)


def envelope_address(address: str, *, smtputf8: bool) -> str:
    """``address`` as it goes in MAIL FROM / RCPT TO: the domain IDNA-encoded
    (``università.it`` → ``xn--universit-y1a.it``); a non-ASCII local part only when the
    server offers SMTPUTF8 (RFC 6531), else :class:`AddressUnsupported`."""
    local, _at, domain = address.strip().rpartition("@")
    if not domain.isascii():
        import idna

        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as err:
            raise AddressUnsupported(f"Invalid international domain: {err}") from err
    if not local.isascii() and not smtputf8:
        raise AddressUnsupported(
            "The address has non-ASCII characters before the @ and the server does not "
            "offer SMTPUTF8."
        )
    return f"{local}@{domain}" if local else domain


def envelope_parts(
    connection: smtplib.SMTP,
    from_addr: str,
    to_addrs: list[str],
    mail_options: list[str] | None = None,
) -> tuple[str, list[str], list[str]]:
    """The sender, the recipients and the MAIL options as they go on the wire (IDNA
    domains, ``SMTPUTF8`` when a local part needs it); :class:`AddressUnsupported` (its
    ``phase`` says which command) when an address cannot go."""
    options = list(mail_options or ())
    smtputf8 = connection.has_extn("smtputf8")
    if smtputf8 and not all(
        address.rpartition("@")[0].isascii() for address in (from_addr, *to_addrs)
    ):
        options.append("SMTPUTF8")
    try:
        sender = envelope_address(from_addr, smtputf8=smtputf8)
    except AddressUnsupported as err:
        err.phase = "mail"
        raise
    recipients = [envelope_address(address, smtputf8=smtputf8) for address in to_addrs]
    return sender, recipients, options


def _envelope(
    connection: smtplib.SMTP,
    from_addr: str,
    to_addrs: list[str],
    *,
    on_phase: PhaseCallback | None,
    preset_key: str | None,
    mail_options: list[str] | None = None,
) -> None:
    phase = "mail"
    _notify(on_phase, phase)
    try:
        sender, recipients, options = envelope_parts(connection, from_addr, to_addrs, mail_options)
        code, reply = connection.mail(sender, options)
        if code != 250:
            _rset_quietly(connection)
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        phase = "rcpt"
        _notify(on_phase, phase)
        for address, recipient in zip(to_addrs, recipients, strict=True):
            code, reply = connection.rcpt(recipient)
            if code not in (250, 251):
                _rset_quietly(connection)
                raise smtplib.SMTPRecipientsRefused({address: (code, reply)})
    except AddressUnsupported as err:
        raise _fail(err, phase=err.phase, preset_key=preset_key, secrets=()) from err
    except (OSError, smtplib.SMTPException, UnicodeError) as err:
        raise _fail(err, phase=phase, preset_key=preset_key, secrets=()) from err
